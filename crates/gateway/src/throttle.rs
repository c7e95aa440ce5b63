//! Sign-in failure counters shared by replicas, in Redis: consecutive failures of one subject
//! lock it for a growing period (2 s after the free attempts, doubling, at most 15 minutes),
//! the same policy as the in-process `LoginThrottle`, with Redis's clock. A quiet period longer
//! than the longest lock forgives (the key expires then). Unreachable Redis is an error:
//! callers refuse sign-in.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::{RateLimitError, WithDeadline};

// The scripts' shared steps, put together below (`concat!` takes only literals).
macro_rules! now_ms {
    () => {
        "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"
    };
}
macro_rules! return_wait_if_locked {
    () => {
        "local untl = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if untl > now then return untl - now end
"
    };
}
// Counts a failure, locks past the free attempts (ARGV[1]), and keeps the count for the
// forgiveness period (ARGV[2], ms).
macro_rules! count_failure {
    () => {
        "local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
local free = tonumber(ARGV[1])
if count >= free then
  local exponent = math.min(count - free, 10)
  local lock = math.min(2000 * (2 ^ exponent), 900000)
  redis.call('HSET', KEYS[1], 'until', now + lock)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
"
    };
}

const FAIL: &str = concat!(now_ms!(), count_failure!(), "return count\n");
const ATTEMPT: &str = concat!(
    now_ms!(),
    return_wait_if_locked!(),
    count_failure!(),
    "return 0\n"
);
const CHECK: &str = concat!(now_ms!(), return_wait_if_locked!(), "return 0\n");

#[derive(Clone)]
pub struct RedisThrottle {
    connection: ConnectionManager,
    prefix: String,
    free_attempts: u32,
    forgive_after_ms: u64,
    fail: redis::Script,
    attempt: redis::Script,
    check: redis::Script,
}

impl RedisThrottle {
    /// Counters under `prefix` + subject (see `authsome_domain::shared_state`), locking after
    /// `free_attempts`, forgotten after `forgive_after` without a failure (never sooner than
    /// twice the longest lock, as in process).
    pub async fn connect(
        url: &str,
        prefix: &str,
        free_attempts: u32,
        forgive_after: Duration,
    ) -> Result<Self, RateLimitError> {
        let connection = crate::connect(url).await?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            free_attempts: free_attempts.max(1),
            forgive_after_ms: u64::try_from(
                forgive_after
                    .max(2 * authsome_domain::throttle::MAX_LOCK)
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
            fail: redis::Script::new(FAIL),
            attempt: redis::Script::new(ATTEMPT),
            check: redis::Script::new(CHECK),
        })
    }

    fn key(&self, subject: &str) -> String {
        format!("{}{subject}", self.prefix)
    }

    /// Runs one of the scripts on `subject`'s counter (each takes the free attempts and the
    /// forgiveness period; `CHECK` ignores them) and returns what it returned.
    async fn run(&self, script: &redis::Script, subject: &str) -> Result<i64, RateLimitError> {
        let mut connection = self.connection.clone();
        script
            .key(self.key(subject))
            .arg(self.free_attempts)
            .arg(self.forgive_after_ms)
            .invoke_async(&mut connection)
            .with_deadline()
            .await
    }

    /// `Some(wait)` while `subject` is locked.
    pub async fn check(&self, subject: &str) -> Result<Option<Duration>, RateLimitError> {
        Ok(wait(self.run(&self.check, subject).await?))
    }

    pub async fn failed(&self, subject: &str) -> Result<(), RateLimitError> {
        self.run(&self.fail, subject).await.map(drop)
    }

    /// Checks and counts in one step (see `LoginThrottle::attempt`): `Some(wait)` while
    /// locked, otherwise the attempt is counted.
    pub async fn attempt(&self, subject: &str) -> Result<Option<Duration>, RateLimitError> {
        Ok(wait(self.run(&self.attempt, subject).await?))
    }

    pub async fn succeeded(&self, subject: &str) -> Result<(), RateLimitError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(subject))
            .query_async(&mut connection)
            .with_deadline()
            .await?;
        Ok(())
    }
}

/// A script's answer in milliseconds as a wait, if any.
fn wait(ms: i64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_lock_across_connections_and_success_clears() {
        let url = std::env::var("AUTHSOME_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("authsome-test-throttle-{}:", std::process::id());
        let first = match RedisThrottle::connect(&url, &prefix, 3, Duration::from_secs(3600)).await
        {
            Ok(t) => t,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and Redis is unreachable at {url}: {e}")
            }
            Err(e) => {
                eprintln!("skipping the Redis throttle test: {e}");
                return;
            }
        };
        let second = RedisThrottle::connect(&url, &prefix, 3, Duration::from_secs(3600))
            .await
            .unwrap();
        let subject = format!("app:{}@example.com", std::process::id());
        first.succeeded(&subject).await.unwrap();
        // Failures on two replicas add up: the third locks, for about two seconds.
        first.failed(&subject).await.unwrap();
        second.failed(&subject).await.unwrap();
        assert_eq!(first.check(&subject).await.unwrap(), None);
        first.failed(&subject).await.unwrap();
        let wait = second.check(&subject).await.unwrap().expect("locked");
        assert!(
            wait <= Duration::from_secs(2) && wait > Duration::from_millis(1500),
            "{wait:?}"
        );
        // The next failure doubles the lock.
        second.failed(&subject).await.unwrap();
        let wait = first.check(&subject).await.unwrap().expect("locked");
        assert!(wait > Duration::from_secs(3), "{wait:?}");
        // The count outlives the longest lock: it expires only after the quiet hour.
        let mut connection = first.connection.clone();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(first.key(&subject))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl > 3_500_000, "{ttl}");
        // An attempt while locked is refused and not counted; after a success it counts.
        assert!(first.attempt(&subject).await.unwrap().is_some());
        // Success (after the lock) clears everything.
        first.succeeded(&subject).await.unwrap();
        assert_eq!(second.check(&subject).await.unwrap(), None);
        for _ in 0..2 {
            assert_eq!(first.attempt(&subject).await.unwrap(), None);
        }
        // The third attempt (3 free) was counted at once, so it locks.
        assert_eq!(second.attempt(&subject).await.unwrap(), None);
        assert!(first.check(&subject).await.unwrap().is_some());
    }
}
