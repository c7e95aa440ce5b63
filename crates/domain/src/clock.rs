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
}

/// Now, since the Unix epoch, at the coarse clock's resolution.
pub fn coarse_since_epoch() -> Duration {
    realtime()
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
