//! Brute-force protection for sign-in: consecutive failures for one subject (an account, a
//! client address) lock it for a growing period (2 s after the allowed failures, doubling, at
//! most 15 minutes). During a lock the password is not even checked, so a correct guess gains
//! nothing. A success clears the count.
//!
//! The count is forgiven only after a quiet period longer than the longest lock, so waiting a
//! lock out does not buy a fresh set of free attempts: past the free ones, guesses stay at one
//! per longest lock for as long as they keep coming.
//!
//! In-process (a mutex and a map, no I/O), bounded: beyond its capacity the entries idle
//! longest are dropped. Subjects are whatever the caller passes (the control plane passes
//! fixed-size digests, never the typed email). Redis holds the same counters for replicas.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::{Clock, CoarseInstant};

/// The longest lock.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Subjects an in-process throttle keeps at most, unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

pub struct LoginThrottle {
    free_attempts: u32,
    /// Quiet time after which the count starts again; longer than [`MAX_LOCK`].
    forgive_after: Duration,
    capacity: usize,
    accounts: Mutex<HashMap<String, Failures>>,
    clock: Clock,
}

impl Default for LoginThrottle {
    /// Five failures before the first lock, forgiven after a quiet day.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(24 * 3600))
    }
}

struct Failures {
    count: u32,
    last: CoarseInstant,
    locked_until: Option<CoarseInstant>,
}

impl LoginThrottle {
    /// Allows `free_attempts` consecutive failures before locking; forgets them after
    /// `forgive_after` without one (at least twice the longest lock).
    pub fn new(free_attempts: u32, forgive_after: Duration) -> Self {
        Self {
            free_attempts: free_attempts.max(1),
            forgive_after: forgive_after.max(2 * MAX_LOCK),
            capacity: DEFAULT_CAPACITY,
            accounts: Mutex::new(HashMap::new()),
            clock: Clock::system(),
        }
    }

    /// Keeps at most `capacity` subjects (the idlest are dropped beyond it).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The quiet time after which failures are forgotten.
    pub fn forgive_after(&self) -> Duration {
        self.forgive_after
    }

    pub fn free_attempts(&self) -> u32 {
        self.free_attempts
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
        self.count(&mut accounts, email);
    }

    /// Checks and counts in one step: `Err(retry_after)` while `subject` is locked, otherwise
    /// the attempt is counted as a failure at once (a success clears it with
    /// [`LoginThrottle::succeeded`]), so concurrent attempts cannot all pass the check
    /// before any of them is counted.
    pub fn attempt(&self, subject: &str) -> Result<(), Duration> {
        let Ok(mut accounts) = self.accounts.lock() else {
            return Ok(());
        };
        let now = self.clock.instant();
        if let Some(until) = accounts.get(subject).and_then(|f| f.locked_until) {
            if until > now {
                return Err(until.since(now));
            }
        }
        self.count(&mut accounts, subject);
        Ok(())
    }

    fn count(&self, accounts: &mut HashMap<String, Failures>, subject: &str) {
        let now = self.clock.instant();
        if accounts.len() >= self.capacity && !accounts.contains_key(subject) {
            evict_idlest(accounts, self.capacity);
        }
        let entry = accounts.entry(subject.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        // A quiet period (longer than any lock) forgives earlier failures.
        if now.since(entry.last) > self.forgive_after {
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

    /// Drops entries whose failures are forgiven.
    pub fn prune(&self) {
        if let Ok(mut accounts) = self.accounts.lock() {
            let now = self.clock.instant();
            accounts.retain(|_, f| now.since(f.last) <= self.forgive_after);
        }
    }

    /// Subjects held now.
    pub fn len(&self) -> usize {
        self.accounts.lock().map_or(0, |a| a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room: drops the tenth of `capacity` idle longest (one pass, so a flood of new
/// subjects costs amortised constant time each).
fn evict_idlest(accounts: &mut HashMap<String, Failures>, capacity: usize) {
    let drop = (capacity / 10).max(1);
    let mut lasts: Vec<CoarseInstant> = accounts.values().map(|f| f.last).collect();
    let cut = drop.min(lasts.len()) - 1;
    lasts.select_nth_unstable(cut);
    let threshold = lasts[cut];
    // Every entry idler than the threshold goes, then as many at it as make up the tenth.
    let before = accounts.len();
    accounts.retain(|_, f| f.last >= threshold);
    let mut dropped = before - accounts.len();
    accounts.retain(|_, f| {
        if dropped < drop && f.last == threshold {
            dropped += 1;
            false
        } else {
            true
        }
    });
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
        // A quiet day forgives, and an idle entry is pruned.
        clock.advance(t.forgive_after() + Duration::from_secs(1));
        t.prune();
        assert!(t.is_empty());
        t.failed("a@x.test");
        assert!(t.check("a@x.test").is_ok(), "the count started again");
    }

    #[test]
    fn waiting_out_the_longest_lock_does_not_buy_free_attempts() {
        let clock = Clock::manual();
        let t = LoginThrottle::default().with_clock(clock.clone());
        let mut guesses = 0;
        // A day of an attacker guessing whenever the lock allows.
        let day = Duration::from_secs(24 * 3600);
        let mut elapsed = Duration::ZERO;
        while elapsed < day {
            match t.check("a@x.test") {
                Ok(()) => {
                    guesses += 1;
                    t.failed("a@x.test");
                }
                Err(wait) => {
                    clock.advance(wait);
                    elapsed += wait;
                }
            }
        }
        // 5 free, the growing locks up to the longest, then one per longest lock.
        assert!(guesses <= 5 + 10 + 24 * 4 + 1, "{guesses} guesses in a day");
    }

    #[test]
    fn concurrent_attempts_cannot_all_pass_before_one_is_counted() {
        let t = std::sync::Arc::new(LoginThrottle::default());
        let admitted: usize = (0..16)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || usize::from(t.attempt("a@x.test").is_ok()))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted, 5);
        // A success clears what the attempts counted.
        t.succeeded("a@x.test");
        assert!(t.attempt("a@x.test").is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_idlest() {
        let clock = Clock::manual();
        let t = LoginThrottle::default()
            .with_capacity(100)
            .with_clock(clock.clone());
        for _ in 0..5 {
            t.failed("victim");
        }
        clock.advance(Duration::from_secs(1));
        for n in 0..1000 {
            t.failed(&format!("spray-{n}"));
            assert!(t.len() <= 100);
        }
        // The most recent subjects are kept; the idlest (the first) went.
        for _ in 0..4 {
            t.failed("spray-999");
        }
        assert!(t.check("spray-999").is_err());
        assert!(t.check("victim").is_ok());
    }
}
