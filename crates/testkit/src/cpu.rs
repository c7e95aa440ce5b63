//! CPU time, for benchmarks that report what a change costs in CPU as well as in time (steadier
//! than wall time on a shared machine, and it counts background work however that overlaps).
//!
//! [`Usage`] is the CPU this process has used and, when asked, every `postgres` process on this
//! machine (from /proc): a benchmark against a local Postgres counts the server's work too, so
//! it should run on a quiet server.

use std::collections::HashMap;
use std::time::Duration;

/// CPU time of a POSIX clock (`CLOCK_PROCESS_CPUTIME_ID`, `CLOCK_THREAD_CPUTIME_ID`).
fn clock(id: libc::clockid_t) -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill in.
    if unsafe { libc::clock_gettime(id, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time this process has used (all its threads).
pub fn process() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time the calling thread has used.
pub fn thread() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU used up to a moment: this process's and, if asked, each `postgres` process's in clock
/// ticks.
pub struct Usage {
    process: Duration,
    postgres: HashMap<u32, u64>,
}

impl Usage {
    /// The CPU used so far by this process and, with `postgres`, by the Postgres server's
    /// processes.
    pub fn now(postgres: bool) -> Self {
        Self {
            process: process(),
            postgres: if postgres {
                postgres_ticks()
            } else {
                HashMap::new()
            },
        }
    }

    /// CPU used between `before` and this moment. A server process that started in between
    /// counts whole; one that ended in between is missed (its last figures are gone).
    pub fn since(&self, before: &Usage) -> Duration {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ticks: u64 = self
            .postgres
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0)))
            .sum();
        self.process.saturating_sub(before.process) + Duration::from_micros(ticks * 1_000_000 / hz)
    }
}

/// CPU ticks (user + system) each `postgres` process on this machine has used, from /proc.
fn postgres_ticks() -> HashMap<u32, u64> {
    let mut ticks = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return ticks;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        if !std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // The fields after the command (which ends with the last ')'): utime and stime are the
        // 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let used: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        ticks.insert(pid, used);
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_shows_in_the_process_and_thread_clocks() {
        let (process_before, thread_before, usage_before) =
            (process(), thread(), Usage::now(false));
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        assert!(thread() > thread_before);
        assert!(process() >= process_before + (thread() - thread_before) / 2);
        assert!(Usage::now(false).since(&usage_before) > Duration::ZERO);
    }
}
