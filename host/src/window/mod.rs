//! The recent past of the process, for the operator page (`/_service/ui`): a bounded,
//! in-process ring of samples taken every [`INTERVAL`] for [`CAPACITY`] samples (2 s × 300 =
//! the last 10 minutes), so that rates and small plots need no outside database.
//!
//! Each sample reads the process's metrics ([`crate::metrics`]) back from their Prometheus
//! text ([`prom_text`]): the page's rates are the `/metrics` counters' differences and its
//! gauge plots the plugins' own gauges, the very numbers a Prometheus scraper would see.
//!
//! Memory: a series costs `CAPACITY × 8` bytes of values plus its key, and there are at most
//! [`MAX_SERIES`]; the timestamps cost `CAPACITY × 8` once. `host/tests/window_memory.rs`
//! measures it with a counting allocator: about 2.6 KB per series (2400 bytes of values, the
//! rest its key and map node), about 165 KB for the whole window at its bound.

pub mod prom_text;
pub mod sampler;

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::sync::Unpoisoned;

pub use sampler::{sample, start};

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: 10 minutes at [`INTERVAL`].
pub const CAPACITY: usize = 300;
/// Most series kept; further ones are not recorded (plugins may register many gauges).
pub const MAX_SERIES: usize = 64;
/// Longest series key kept (`name{labels}`); a longer one is not recorded.
pub const MAX_KEY: usize = 512;

/// A bounded ring of samples: one time axis and, for each series, one value per sample
/// (NaN where the series had none).
#[derive(Debug)]
pub struct Ring {
    capacity: usize,
    max_series: usize,
    /// Milliseconds since the Unix epoch of each sample, oldest first.
    times: VecDeque<u64>,
    series: BTreeMap<String, VecDeque<f64>>,
}

impl Ring {
    pub fn new(capacity: usize, max_series: usize) -> Self {
        Ring {
            capacity: capacity.max(1),
            max_series,
            times: VecDeque::with_capacity(capacity.max(1)),
            series: BTreeMap::new(),
        }
    }

    /// Adds one sample taken at `time_ms`; the oldest goes when the ring is full. A series
    /// left with no value in the window is forgotten.
    pub fn record(&mut self, time_ms: u64, values: impl IntoIterator<Item = (String, f64)>) {
        if self.times.len() == self.capacity {
            self.times.pop_front();
            for values in self.series.values_mut() {
                values.pop_front();
            }
        }
        self.times.push_back(time_ms);
        let len = self.times.len();
        for (key, value) in values {
            if key.len() > MAX_KEY {
                continue;
            }
            if !self.series.contains_key(&key) {
                if self.series.len() >= self.max_series {
                    continue;
                }
                let mut column = VecDeque::with_capacity(self.capacity);
                column.extend(std::iter::repeat_n(f64::NAN, len - 1));
                self.series.insert(key.clone(), column);
            }
            if let Some(column) = self.series.get_mut(&key) {
                if column.len() < len {
                    column.push_back(value);
                }
            }
        }
        for column in self.series.values_mut() {
            if column.len() < len {
                column.push_back(f64::NAN);
            }
        }
        self.series
            .retain(|_, column| column.iter().any(|value| !value.is_nan()));
    }

    /// The sample times, oldest first.
    pub fn times(&self) -> impl Iterator<Item = u64> + '_ {
        self.times.iter().copied()
    }

    /// Every series key.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }

    /// The values of `key`, one per sample time (NaN: none then).
    pub fn values(&self, key: &str) -> Option<impl Iterator<Item = f64> + '_> {
        self.series.get(key).map(|column| column.iter().copied())
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// The process's window, shared by the sampler and every generation's page.
pub struct Window {
    ring: Mutex<Ring>,
    started: Instant,
}

impl Window {
    fn new() -> Self {
        Window {
            ring: Mutex::new(Ring::new(CAPACITY, MAX_SERIES)),
            started: Instant::now(),
        }
    }

    /// Runs `read` on the ring (the lock is held meanwhile: keep it short).
    pub fn read<T>(&self, read: impl FnOnce(&Ring) -> T) -> T {
        read(&self.ring.locked())
    }

    pub(crate) fn record(&self, values: Vec<(String, f64)>) {
        self.ring.locked().record(now_ms(), values);
    }

    /// Time since the service started (the window is made first thing).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The process's window.
pub fn global() -> &'static Window {
    static GLOBAL: OnceLock<Window> = OnceLock::new();
    GLOBAL.get_or_init(Window::new)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ring: &Ring, key: &str) -> Vec<Option<f64>> {
        ring.values(key)
            .map(|v| v.map(|x| (!x.is_nan()).then_some(x)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn keeps_the_last_samples_aligned_and_bounded() {
        let mut ring = Ring::new(3, 2);
        ring.record(1, [("a".to_owned(), 1.0)]);
        ring.record(2, [("a".to_owned(), 2.0), ("b".to_owned(), 20.0)]);
        // A third series is over the bound and not recorded.
        ring.record(3, [("b".to_owned(), 30.0), ("c".to_owned(), 0.0)]);
        assert_eq!(values(&ring, "a"), [Some(1.0), Some(2.0), None]);
        assert_eq!(values(&ring, "b"), [None, Some(20.0), Some(30.0)]);
        assert!(ring.values("c").is_none());
        ring.record(4, [("b".to_owned(), 40.0)]);
        assert_eq!(ring.times().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(values(&ring, "a"), [Some(2.0), None, None]);
        ring.record(5, [("b".to_owned(), 50.0), ("c".to_owned(), 5.0)]);
        // `a` has no value left in the window: forgotten, which makes room for `c` from
        // the next sample on.
        assert!(ring.values("a").is_none());
        assert!(ring.values("c").is_none());
        ring.record(6, [("c".to_owned(), 6.0)]);
        assert_eq!(values(&ring, "c"), [None, None, Some(6.0)]);
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn a_series_counted_twice_in_one_sample_keeps_its_first_value() {
        let mut ring = Ring::new(2, 4);
        ring.record(1, [("a".to_owned(), 1.0), ("a".to_owned(), 9.0)]);
        assert_eq!(values(&ring, "a"), [Some(1.0)]);
    }
}
