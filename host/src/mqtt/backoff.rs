//! The pause before each connection attempt, for the main MQTT connection and each will's.
//!
//! After a drop the next attempt is made at once; then the pause doubles from 50 ms to the
//! reconnect interval, less up to a quarter at random (so that many services dropped
//! together do not come back in step). It grows whatever the reason for the drop, and starts
//! again from nothing only after a connection stayed up for [`STABLE_AFTER`]: a broker that
//! accepts a connection and closes it at once (it dislikes something sent, or it is
//! overloaded) must not be hammered in a tight loop, each attempt announcing the service's
//! wills to every subscriber.

use std::time::{Duration, Instant};

const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// How long a connection must have stayed up for the pause to start again from nothing at
/// its loss; a shorter one makes the next pause longer.
pub(crate) const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One connection's back-off.
#[derive(Debug)]
pub(crate) struct Backoff {
    longest: Duration,
    pause: Option<Duration>,
    up_since: Option<Instant>,
}

impl Backoff {
    /// `longest`: the reconnect interval.
    pub fn new(longest: Duration) -> Self {
        Backoff {
            longest,
            pause: None,
            up_since: None,
        }
    }

    /// The broker accepted the connection (CONNACK).
    pub fn connected(&mut self) {
        self.up_since = Some(Instant::now());
    }

    /// The connection dropped or an attempt failed: how long to wait before the next one.
    pub fn next_wait(&mut self) -> Duration {
        if self
            .up_since
            .take()
            .is_some_and(|since| since.elapsed() >= STABLE_AFTER)
        {
            self.pause = None;
        }
        let wait = self.pause.map_or(Duration::ZERO, jittered);
        self.pause = Some(next_pause(self.pause, self.longest));
        wait
    }
}

fn next_pause(pause: Option<Duration>, longest: Duration) -> Duration {
    match pause {
        None => FIRST_PAUSE.min(longest),
        Some(pause) => (pause * 2).min(longest),
    }
}

/// `pause` less up to a quarter.
fn jittered(pause: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    pause.mul_f64(1.0 - f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_the_longest_and_jitter_only_shortens_it() {
        let longest = Duration::from_secs(2);
        let mut pause = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            pause = Some(next_pause(pause, longest));
            seen.push(pause.unwrap());
        }
        assert_eq!(seen[0], FIRST_PAUSE);
        assert_eq!(seen[1], FIRST_PAUSE * 2);
        assert_eq!(seen[9], longest);
        for pause in seen {
            let jittered = jittered(pause);
            assert!(jittered <= pause && jittered >= pause * 3 / 4, "{pause:?}");
        }
    }

    #[test]
    fn a_connection_closed_at_once_does_not_reset_the_pause() {
        let mut backoff = Backoff::new(Duration::from_secs(2));
        assert_eq!(
            backoff.next_wait(),
            Duration::ZERO,
            "the first retry is at once"
        );
        let mut last = Duration::ZERO;
        for _ in 0..6 {
            backoff.connected(); // accepted, then closed at once
            let wait = backoff.next_wait();
            assert!(
                wait > Duration::ZERO && wait * 4 >= last * 3,
                "{wait:?} after {last:?}"
            );
            last = wait;
        }
        assert!(last >= Duration::from_millis(1200), "{last:?}");
        // A connection that stayed up long enough starts again from nothing.
        backoff.up_since = Some(Instant::now() - STABLE_AFTER);
        assert_eq!(backoff.next_wait(), Duration::ZERO);
    }
}
