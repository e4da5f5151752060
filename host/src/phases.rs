//! Where the time of a start or a reload goes, phase by phase, for one debug-level log line
//! (`--debug`, or `RUST_LOG=brewblox_host=debug`): loading the plugins folder (ELF checks,
//! private copies, `dlopen`, the ABI check, the plugins' arguments), creating the plugins,
//! their `startup` hooks and building the app. `BENCHMARKS.md`'s start-up breakdown is read
//! from it. A phase costs two clock reads.

use std::{
    fmt,
    time::{Duration, Instant},
};

/// Time spent per named phase, in the order the phases first ran. Work done for many plugins
/// adds up under one name; work done on several threads at once adds up too (so the sum
/// can exceed the wall time).
#[derive(Debug, Default, Clone)]
pub struct Phases {
    spent: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// Runs `work`, adding its time to `phase`.
    pub fn time<T>(&mut self, phase: &'static str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let output = work();
        self.add(phase, started.elapsed());
        output
    }

    /// Adds `spent` to `phase`.
    pub fn add(&mut self, phase: &'static str, spent: Duration) {
        match self.spent.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += spent,
            None => self.spent.push((phase, spent)),
        }
    }

    /// Adds every phase of `other` to this one's.
    pub fn merge(&mut self, other: &Phases) {
        for (phase, spent) in &other.spent {
            self.add(phase, *spent);
        }
    }

    /// The time of `phase` (zero if it never ran).
    pub fn get(&self, phase: &str) -> Duration {
        self.spent
            .iter()
            .find(|(name, _)| *name == phase)
            .map_or(Duration::ZERO, |(_, spent)| *spent)
    }
}

/// The CPU time this process has used so far, all its threads (those that ended too): on a
/// busy machine a steadier measure of start-up work than the wall time.
pub fn process_cpu() -> Duration {
    let mut spent = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut spent) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(spent.tv_sec as u64, spent.tv_nsec as u32)
}

/// `name 1.23 ms, name 0.45 ms`.
impl fmt::Display for Phases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (phase, spent)) in self.spent.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{phase} {:.2} ms", spent.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Phases;

    #[test]
    fn phases_add_up_by_name_in_first_run_order() {
        let mut phases = Phases::default();
        phases.add("copies", Duration::from_micros(1500));
        phases.add("dlopen", Duration::from_millis(2));
        phases.add("copies", Duration::from_micros(500));
        let mut other = Phases::default();
        other.add("dlopen", Duration::from_millis(1));
        other.add("startup hooks", Duration::from_micros(250));
        phases.merge(&other);
        assert_eq!(phases.get("copies"), Duration::from_millis(2));
        assert_eq!(phases.get("missing"), Duration::ZERO);
        assert_eq!(
            phases.to_string(),
            "copies 2.00 ms, dlopen 3.00 ms, startup hooks 0.25 ms"
        );
        assert_eq!(phases.time("app", || 7), 7);
        assert!(phases.to_string().ends_with(", app 0.00 ms"));
    }
}
