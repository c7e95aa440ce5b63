//! Brute-force protection for sign-in: consecutive failures for one subject (an email, a client
//! address) lock it for a growing period (2 s after the allowed failures, doubling, at most 15
//! minutes). During a lock the password is not even checked, so a correct guess gains nothing. A
//! success clears the count.
//!
//! In-process (a mutex and a map, no I/O); the gateway work moves these counters to Redis so
//! replicas share them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::{Clock, CoarseInstant};

const MAX_LOCK: Duration = Duration::from_secs(15 * 60);

pub struct LoginThrottle {
    free_attempts: u32,
    accounts: Mutex<HashMap<String, Failures>>,
    clock: Clock,
}

impl Default for LoginThrottle {
    /// Five failures before the first lock.
    fn default() -> Self {
        Self::new(5)
    }
}

struct Failures {
    count: u32,
    last: CoarseInstant,
    locked_until: Option<CoarseInstant>,
}

impl LoginThrottle {
    /// Allows `free_attempts` consecutive failures before locking.
    pub fn new(free_attempts: u32) -> Self {
        Self {
            free_attempts: free_attempts.max(1),
            accounts: Mutex::new(HashMap::new()),
            clock: Clock::system(),
        }
    }

    /// The same throttle on `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// `Err(retry_after)` while `email` is locked.
    pub fn check(&self, email: &str) -> Result<(), Duration> {
        let Ok(accounts) = self.accounts.lock() else {
            return Ok(());
        };
        let now = self.clock.instant();
        match accounts.get(email).and_then(|f| f.locked_until) {
            Some(until) if until > now => Err(until.since(now)),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, email: &str) {
        let Ok(mut accounts) = self.accounts.lock() else {
            return;
        };
        let now = self.clock.instant();
        let entry = accounts.entry(email.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        // A quiet quarter of an hour forgives earlier failures.
        if now.since(entry.last) > MAX_LOCK {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= self.free_attempts {
            let exponent = (entry.count - self.free_attempts).min(10);
            let lock = Duration::from_secs(2u64 << exponent).min(MAX_LOCK);
            entry.locked_until = Some(now.after(lock));
        }
    }

    pub fn succeeded(&self, email: &str) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.remove(email);
        }
    }

    /// Drops entries idle for longer than the longest lock.
    pub fn prune(&self) {
        if let Ok(mut accounts) = self.accounts.lock() {
            let now = self.clock.instant();
            accounts.retain(|_, f| now.since(f.last) <= MAX_LOCK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_repeated_failures_and_grows() {
        let t = LoginThrottle::default();
        for _ in 0..4 {
            t.failed("a@x.test");
            assert!(t.check("a@x.test").is_ok());
        }
        t.failed("a@x.test");
        let first = t.check("a@x.test").unwrap_err();
        assert!(first <= Duration::from_secs(2) && first > Duration::from_secs(1));
        t.failed("a@x.test");
        let second = t.check("a@x.test").unwrap_err();
        assert!(second > Duration::from_secs(3), "{second:?}");
        assert!(t.check("b@x.test").is_ok(), "per account");
        for _ in 0..40 {
            t.failed("a@x.test");
        }
        assert!(t.check("a@x.test").unwrap_err() <= MAX_LOCK);
        t.succeeded("a@x.test");
        assert!(t.check("a@x.test").is_ok());
    }

    #[test]
    fn a_lock_ends_when_its_time_has_passed_on_the_throttles_clock() {
        let clock = Clock::manual();
        let t = LoginThrottle::default().with_clock(clock.clone());
        for _ in 0..5 {
            t.failed("a@x.test");
        }
        assert!(t.check("a@x.test").is_err());
        clock.advance(Duration::from_secs(2));
        assert!(t.check("a@x.test").is_ok());
        // A quiet quarter of an hour forgives, and an idle entry is pruned.
        clock.advance(MAX_LOCK + Duration::from_secs(1));
        t.prune();
        t.failed("a@x.test");
        assert!(t.check("a@x.test").is_ok(), "the count started again");
    }
}
