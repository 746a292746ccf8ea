//! Rate-limited log lines: a flood of events of one kind (an attacker's connections closed one
//! after another, accept failing while descriptors are exhausted) becomes a few lines and a
//! count instead of one line per event.

use std::time::{Duration, Instant};

use crate::logging;

/// Lets `burst` lines of one kind through per `period`; the rest are counted, and the first
/// line of a later period says how many were held back.
#[derive(Debug)]
pub struct LogLimiter {
    period: Duration,
    burst: u32,
    window_start: Option<Instant>,
    written: u32,
    held_back: u64,
}

impl LogLimiter {
    pub const fn new(period: Duration, burst: u32) -> LogLimiter {
        LogLimiter {
            period,
            burst,
            window_start: None,
            written: 0,
            held_back: 0,
        }
    }

    /// Whether a line may be written at `now`: `Some(n)` with the number of lines held back
    /// since the last one written, or `None` (the event is counted).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let new_window = match self.window_start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= self.period,
        };
        if new_window {
            self.window_start = Some(now);
            self.written = 0;
        }
        if self.written < self.burst {
            self.written += 1;
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }

    /// Writes `text()` at `level` if [`LogLimiter::admit`] lets it through, followed by the
    /// count of lines held back before it. Returns whether a line was written.
    pub fn log(&mut self, now: Instant, level: u32, text: impl FnOnce() -> String) -> bool {
        if !logging::enabled(level) {
            return false;
        }
        match self.admit(now) {
            None => false,
            Some(0) => {
                logging::log(level, &text());
                true
            }
            Some(n) => {
                let s = if n == 1 { "" } else { "s" };
                logging::log(
                    level,
                    &format!("{} ({n} similar line{s} held back before this one)", text()),
                );
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_burst_through_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut l = LogLimiter::new(Duration::from_secs(10), 2);
        assert_eq!(l.admit(ms(0)), Some(0));
        assert_eq!(l.admit(ms(1)), Some(0));
        assert_eq!(l.admit(ms(2)), None);
        assert_eq!(l.admit(ms(9_999)), None);
        assert_eq!(
            l.admit(ms(10_000)),
            Some(2),
            "the next period reports the count"
        );
        assert_eq!(l.admit(ms(10_001)), Some(0));
        assert_eq!(l.admit(ms(10_002)), None);

        let mut once = LogLimiter::new(Duration::from_secs(10), 1);
        assert_eq!(once.admit(ms(0)), Some(0));
        for i in 1..100 {
            assert_eq!(once.admit(ms(i)), None);
        }
        assert_eq!(once.admit(ms(25_000)), Some(99));
    }
}
