//! The simulated fermentation chamber: pure, deterministic physics and control, with no
//! clock, I/O or host in sight, so that every behaviour can be unit-tested exactly.
//!
//! The chamber air is a first-order system. It relaxes toward an equilibrium temperature
//! with time constant [`TIME_CONSTANT`]: the ambient temperature when both actuators are
//! off, [`HEATER_DELTA`] above it while the heater runs, [`COOLER_DELTA`] below it while the
//! cooler runs. A bang-bang controller with [`HYSTERESIS`] switches the actuators, as real
//! fermentation fridges do to spare their compressor.

use std::{ops::RangeInclusive, time::Duration};

/// Seconds for the chamber to close ~63% of the gap to its equilibrium temperature. Short
/// compared to a real fridge (hours) so that a demo shows movement within minutes.
pub const TIME_CONSTANT: f64 = 600.0;

/// How far above ambient the heater would eventually drive the chamber (°C).
pub const HEATER_DELTA: f64 = 25.0;

/// How far below ambient the cooler would eventually drive the chamber (°C).
pub const COOLER_DELTA: f64 = 25.0;

/// Dead band around the setpoint (°C): an actuator switches on only once the temperature
/// strays this far, and off when it reaches the setpoint. Without it the actuators would
/// chatter on every update.
pub const HYSTERESIS: f64 = 0.5;

/// The longest stretch integrated at once (seconds). The controller only looks at the
/// temperature between sub-steps, so a long update interval would otherwise let the heater
/// run far past the setpoint. One second is about how often a real controller samples.
pub const MAX_SUBSTEP: f64 = 1.0;

/// The most simulated time one update may cover (seconds). A host that was suspended for a
/// day should not spend its first update integrating that day in one-second sub-steps.
pub const MAX_STEP: f64 = 3600.0;

/// Setpoints the chamber accepts (°C). Beyond these a request is surely a typo or a unit
/// mix-up (°F, K), and answering 400 says so rather than silently heating for hours.
pub const SETPOINT_RANGE: RangeInclusive<f64> = -20.0..=120.0;

/// Ambient temperature of the simulated room (°C).
pub const DEFAULT_AMBIENT: f64 = 20.0;

/// Initial setpoint (°C): a typical ale fermentation, a little below room temperature, so
/// that a freshly started device already has something to do (the cooler runs).
pub const DEFAULT_SETPOINT: f64 = 18.0;

/// The chamber's physical and control state.
#[derive(Debug, Clone, PartialEq)]
pub struct Chamber {
    /// Air temperature inside the chamber (°C).
    pub temperature: f64,
    /// The temperature the controller aims for (°C).
    pub setpoint: f64,
    /// Temperature of the room around the chamber (°C).
    pub ambient: f64,
    /// Whether the heater is running.
    pub heater: bool,
    /// Whether the cooler is running.
    pub cooler: bool,
}

impl Default for Chamber {
    fn default() -> Self {
        Chamber::new(DEFAULT_AMBIENT, DEFAULT_SETPOINT)
    }
}

impl Chamber {
    /// A chamber that has been standing in the room long enough to be at ambient
    /// temperature, with the controller already reacting to `setpoint`.
    pub fn new(ambient: f64, setpoint: f64) -> Self {
        let mut chamber = Chamber {
            temperature: ambient,
            setpoint,
            ambient,
            heater: false,
            cooler: false,
        };
        chamber.control();
        chamber
    }

    /// Changes the setpoint and lets the controller react at once, so that the answer to a
    /// setpoint request already shows which actuator will run.
    pub fn set_setpoint(&mut self, setpoint: f64) -> Result<(), String> {
        let setpoint = validate_setpoint(setpoint)?;
        self.setpoint = setpoint;
        self.control();
        Ok(())
    }

    /// Advances the simulation by `elapsed` wall-clock time.
    pub fn step(&mut self, elapsed: Duration) {
        let mut remaining = elapsed.as_secs_f64().min(MAX_STEP);
        while remaining > 0.0 {
            let dt = remaining.min(MAX_SUBSTEP);
            self.integrate(dt);
            self.control();
            remaining -= dt;
        }
    }

    /// The temperature the chamber would settle at if the actuators stayed as they are.
    pub fn equilibrium(&self) -> f64 {
        let mut target = self.ambient;
        if self.heater {
            target += HEATER_DELTA;
        }
        if self.cooler {
            target -= COOLER_DELTA;
        }
        target
    }

    /// The exact solution of the first-order system over `dt` rather than an Euler step:
    /// it cannot overshoot or go unstable, whatever the step size.
    fn integrate(&mut self, dt: f64) {
        let target = self.equilibrium();
        let approach = 1.0 - (-dt / TIME_CONSTANT).exp();
        self.temperature += (target - self.temperature) * approach;
    }

    /// Bang-bang control with hysteresis. An actuator runs until the temperature reaches
    /// the setpoint; a new one starts only when the temperature has strayed by more than
    /// [`HYSTERESIS`]. Heater and cooler are never on together.
    fn control(&mut self) {
        if self.heater && self.temperature >= self.setpoint {
            self.heater = false;
        }
        if self.cooler && self.temperature <= self.setpoint {
            self.cooler = false;
        }
        if !self.heater && !self.cooler {
            if self.temperature < self.setpoint - HYSTERESIS {
                self.heater = true;
            } else if self.temperature > self.setpoint + HYSTERESIS {
                self.cooler = true;
            }
        }
    }
}

/// Checks a requested setpoint; the error is the message for the client.
pub fn validate_setpoint(setpoint: f64) -> Result<f64, String> {
    if !setpoint.is_finite() {
        return Err(format!("setpoint must be a finite number, got {setpoint}"));
    }
    if !SETPOINT_RANGE.contains(&setpoint) {
        return Err(format!(
            "setpoint must be between {} and {} °C, got {setpoint}",
            SETPOINT_RANGE.start(),
            SETPOINT_RANGE.end()
        ));
    }
    Ok(setpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn starts_at_ambient_and_reacts_to_the_setpoint() {
        let chamber = Chamber::new(20.0, 18.0);
        assert_eq!(chamber.temperature, 20.0);
        assert!(chamber.cooler && !chamber.heater);

        let idle = Chamber::new(20.0, 20.2);
        assert!(!idle.cooler && !idle.heater, "inside the dead band");

        let cold = Chamber::new(20.0, 25.0);
        assert!(cold.heater && !cold.cooler);
    }

    #[test]
    fn idle_chamber_stays_at_ambient() {
        let mut chamber = Chamber::new(20.0, 20.0);
        chamber.step(secs(3600));
        assert_eq!(chamber.temperature, 20.0);
        assert!(!chamber.heater && !chamber.cooler);
    }

    #[test]
    fn heater_warms_toward_setpoint_and_switches_off_there() {
        let mut chamber = Chamber::new(20.0, 22.0);
        assert!(chamber.heater);
        let mut last = chamber.temperature;
        let mut steps = 0;
        while chamber.heater {
            chamber.step(secs(1));
            assert!(chamber.temperature > last, "warming monotonically");
            last = chamber.temperature;
            steps += 1;
            assert!(steps < 3600, "heater never reached the setpoint");
        }
        assert!(chamber.temperature >= 22.0);
        assert!(
            chamber.temperature < 22.1,
            "no big overshoot: {}",
            chamber.temperature
        );
        assert!(!chamber.cooler);
    }

    #[test]
    fn cycles_within_the_dead_band() {
        // Ambient above the setpoint: the cooler has to come back on now and then.
        let mut chamber = Chamber::new(20.0, 18.0);
        let mut cooler_starts = 0;
        let mut was_on = chamber.cooler;
        for _ in 0..4 * 3600 {
            chamber.step(secs(1));
            if chamber.cooler && !was_on {
                cooler_starts += 1;
            }
            was_on = chamber.cooler;
            if cooler_starts > 0 {
                let error = chamber.temperature - chamber.setpoint;
                assert!(
                    (-0.1..=HYSTERESIS + 0.1).contains(&error),
                    "left the band: {}",
                    chamber.temperature
                );
            }
            assert!(!chamber.heater, "ambient is warm; heater is never needed");
        }
        assert!(cooler_starts >= 2, "cooler restarted {cooler_starts} times");
    }

    #[test]
    fn never_heats_and_cools_together() {
        let mut chamber = Chamber::new(20.0, 30.0);
        for (i, setpoint) in [30.0, 5.0, 40.0, -20.0, 120.0, 20.0]
            .into_iter()
            .enumerate()
        {
            chamber.set_setpoint(setpoint).expect("valid setpoint");
            for _ in 0..600 {
                chamber.step(secs(1));
                assert!(!(chamber.heater && chamber.cooler), "both on at round {i}");
            }
        }
    }

    #[test]
    fn long_steps_are_split_so_the_controller_keeps_up() {
        let mut one_go = Chamber::new(20.0, 22.0);
        one_go.step(secs(1800));
        let mut in_seconds = Chamber::new(20.0, 22.0);
        for _ in 0..1800 {
            in_seconds.step(secs(1));
        }
        assert!((one_go.temperature - in_seconds.temperature).abs() < 1e-9);
        assert_eq!(one_go.heater, in_seconds.heater);
        assert!(one_go.temperature < 23.0, "heater did not run unchecked");
    }

    #[test]
    fn deterministic() {
        let run = || {
            let mut chamber = Chamber::default();
            for ms in [50, 1000, 3, 12_345, 700] {
                chamber.step(Duration::from_millis(ms));
            }
            chamber
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn huge_and_zero_steps_are_harmless() {
        let mut chamber = Chamber::new(20.0, 100.0);
        chamber.step(Duration::ZERO);
        assert_eq!(chamber.temperature, 20.0);
        chamber.step(Duration::MAX);
        assert!(chamber.temperature.is_finite());
        // Capped at MAX_STEP: an hour of heating toward 45 °C.
        let expected = 45.0 - 25.0 * (-MAX_STEP / TIME_CONSTANT).exp();
        assert!((chamber.temperature - expected).abs() < 1e-6);
        assert!(chamber.heater, "100 °C is out of the heater's reach");
    }

    #[test]
    fn setpoint_validation() {
        assert_eq!(validate_setpoint(18.5), Ok(18.5));
        assert_eq!(validate_setpoint(-20.0), Ok(-20.0));
        assert_eq!(validate_setpoint(120.0), Ok(120.0));
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -20.1,
            120.1,
            1e300,
        ] {
            let err = validate_setpoint(bad).unwrap_err();
            assert!(err.starts_with("setpoint must be"), "{err}");
        }
        let mut chamber = Chamber::default();
        assert!(chamber.set_setpoint(f64::NAN).is_err());
        assert_eq!(
            chamber.setpoint, DEFAULT_SETPOINT,
            "rejected value left no trace"
        );
    }

    #[test]
    fn setpoint_change_switches_at_once() {
        let mut chamber = Chamber::new(20.0, 18.0);
        assert!(chamber.cooler);
        chamber.set_setpoint(25.0).expect("valid");
        assert!(chamber.heater && !chamber.cooler);
        chamber.set_setpoint(20.3).expect("valid");
        assert!(
            chamber.heater,
            "a running heater runs on until the setpoint"
        );
        chamber.set_setpoint(19.8).expect("valid");
        assert!(
            !chamber.heater && !chamber.cooler,
            "above setpoint, inside the band"
        );
    }
}
