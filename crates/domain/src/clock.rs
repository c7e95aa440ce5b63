//! Cheap clocks for the request path's coarse needs: cache ages, idle timeouts, whole seconds.
//! On Linux these are the kernel's coarse clocks, read from the vDSO without reading the time
//! stamp counter, at the resolution of the scheduler tick (a few milliseconds). Anything that
//! needs finer time (rate limits, latencies, identifiers, stored timestamps) keeps `std::time`.

use std::time::Duration;

/// A point on the coarse monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CoarseInstant(Duration);

impl CoarseInstant {
    pub fn now() -> Self {
        Self(monotonic())
    }

    /// The point `d` before this one, if the clock goes back that far.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        self.0.checked_sub(d).map(Self)
    }

    /// Time since `self` (zero if the clock reads earlier, which it never should).
    pub fn elapsed(self) -> Duration {
        monotonic().saturating_sub(self.0)
    }

    /// Time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The point `d` after this one.
    pub fn after(self, d: Duration) -> Self {
        Self(self.0 + d)
    }
}

/// Now, since the Unix epoch, at the coarse clock's resolution.
pub fn coarse_since_epoch() -> Duration {
    realtime()
}

/// The time a part of the server decides by: expiries, grace periods, lock-outs, backoffs and
/// cache ages. In production the system's clocks ([`Clock::system`], read as cheaply as
/// [`crate::now`] and the coarse clocks); a test takes [`Clock::manual`] and moves it forward
/// with [`Clock::advance`] instead of sleeping. Every clone reads the same time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// How far a manual clock has been moved ahead of the system's, in nanoseconds.
    ahead: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Clock {
    /// The system's time.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system's time until [`Clock::advance`] moves it forward (tests).
    pub fn manual() -> Self {
        Self {
            ahead: Some(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0))),
        }
    }

    /// Moves a manual clock forward by `by`, for every clone of it. The system clock cannot be
    /// moved: calling this on it is a bug.
    pub fn advance(&self, by: Duration) {
        match &self.ahead {
            Some(ahead) => {
                let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
                ahead.fetch_add(nanos, std::sync::atomic::Ordering::SeqCst);
            }
            None => debug_assert!(false, "the system clock cannot be advanced"),
        }
    }

    fn ahead(&self) -> Duration {
        self.ahead.as_ref().map_or(Duration::ZERO, |a| {
            Duration::from_nanos(a.load(std::sync::atomic::Ordering::SeqCst))
        })
    }

    fn shifted(&self, t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        match &self.ahead {
            None => t,
            Some(_) => {
                let ahead = chrono::Duration::from_std(self.ahead()).unwrap_or_default();
                let t = t + ahead;
                chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
            }
        }
    }

    /// [`crate::now`] on this clock: millisecond precision, for records and expiries.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shifted(crate::now())
    }

    /// [`crate::coarse_now`] on this clock.
    pub fn coarse_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shifted(crate::coarse_now())
    }

    /// Microseconds since the Unix epoch, precise (rate limits).
    pub fn unix_micros(&self) -> i64 {
        i64::try_from((precise_realtime() + self.ahead()).as_micros()).unwrap_or(i64::MAX)
    }

    /// A point on this clock's monotonic time, for ages and timeouts.
    pub fn instant(&self) -> CoarseInstant {
        CoarseInstant(monotonic() + self.ahead())
    }

    /// Time since `since` on this clock.
    pub fn elapsed(&self, since: CoarseInstant) -> Duration {
        self.instant().0.saturating_sub(since.0)
    }
}

#[cfg(target_os = "linux")]
fn read(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime writes only into it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| {
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    })
}

#[cfg(target_os = "linux")]
fn monotonic() -> Duration {
    read(libc::CLOCK_MONOTONIC_COARSE).unwrap_or_else(precise_monotonic)
}

#[cfg(target_os = "linux")]
fn realtime() -> Duration {
    read(libc::CLOCK_REALTIME_COARSE).unwrap_or_else(precise_realtime)
}

#[cfg(not(target_os = "linux"))]
fn monotonic() -> Duration {
    precise_monotonic()
}

#[cfg(not(target_os = "linux"))]
fn realtime() -> Duration {
    precise_realtime()
}

fn precise_monotonic() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

fn precise_realtime() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_for_every_clone() {
        let clock = Clock::manual();
        let other = clock.clone();
        let (start, mark) = (clock.now(), clock.instant());
        clock.advance(Duration::from_secs(90));
        let moved = other.now() - start;
        assert!(
            moved >= chrono::Duration::seconds(90) && moved < chrono::Duration::seconds(91),
            "{moved:?}"
        );
        assert!(other.elapsed(mark) >= Duration::from_secs(90));
        assert_eq!(other.now().timestamp_subsec_nanos() % 1_000_000, 0);
        let system = Clock::system();
        assert!((system.now() - crate::now()).num_seconds().abs() < 1);
    }

    #[test]
    fn the_coarse_clocks_agree_with_the_precise_ones_within_their_resolution() {
        let coarse = coarse_since_epoch();
        let precise = precise_realtime();
        let gap = precise.abs_diff(coarse);
        assert!(gap < Duration::from_millis(100), "{gap:?}");

        let start = CoarseInstant::now();
        let precise = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        let coarse = start.elapsed();
        let precise = precise.elapsed();
        assert!(coarse >= Duration::from_millis(30), "{coarse:?}");
        assert!(
            precise.abs_diff(coarse) < Duration::from_millis(30),
            "{coarse:?} vs {precise:?}"
        );
        assert!(CoarseInstant::now() >= start);
    }
}
