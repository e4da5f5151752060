//! Deciding when a publishing failure is worth a log line.
//!
//! The device publishes on every update, possibly several times a second. Logging every
//! failed publish while the eventbus is down would bury everything else in the log, and
//! logging none would hide the outage. So: one warning when publishing starts failing, one
//! info line when it works again (as brewblox-service's repeaters do).

/// What the log should say after a publish attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing new: still working, or still failing.
    Unchanged,
    /// The first failure after a success (or the first attempt): warn.
    Down,
    /// The first success after failures: tell how many attempts were lost.
    Recovered { failed: u64 },
}

/// Counts consecutive publishing failures.
#[derive(Debug, Default)]
pub struct Outage {
    failures: u64,
}

impl Outage {
    /// Records one attempt's outcome.
    pub fn record(&mut self, ok: bool) -> Transition {
        match (ok, self.failures) {
            (true, 0) => Transition::Unchanged,
            (true, failed) => {
                self.failures = 0;
                Transition::Recovered { failed }
            }
            (false, failures) => {
                self.failures = failures.saturating_add(1);
                if failures == 0 {
                    Transition::Down
                } else {
                    Transition::Unchanged
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_transition_per_outage() {
        let mut outage = Outage::default();
        assert_eq!(outage.record(true), Transition::Unchanged);
        assert_eq!(outage.record(false), Transition::Down);
        assert_eq!(outage.record(false), Transition::Unchanged);
        assert_eq!(outage.record(false), Transition::Unchanged);
        assert_eq!(outage.record(true), Transition::Recovered { failed: 3 });
        assert_eq!(outage.record(true), Transition::Unchanged);
        assert_eq!(
            outage.record(false),
            Transition::Down,
            "a new outage warns again"
        );
    }

    #[test]
    fn failing_from_the_start_warns_once() {
        let mut outage = Outage::default();
        assert_eq!(outage.record(false), Transition::Down);
        for _ in 0..100 {
            assert_eq!(outage.record(false), Transition::Unchanged);
        }
    }
}
