//! Entry-point policy of the customer API: rate limits per key with GCRA (the generic cell rate
//! algorithm), either in process (one replica, no services) or as one atomic Redis script so
//! the limit holds across any number of replicas; and replay caches for one-time values
//! (request signatures), in process or in Redis; opaque values in Redis under given names
//! ([`RedisBlobs`], the vault's envelopes when it keeps them there); and the forwarding hop to dedicated instances
//! ([`proxy`]: balancing, health checks, retries, timeouts, on HTTP/1.1 connections it drives
//! itself with `h1`'s framing; [`forward`]: header hygiene and the gateway's signed assertion).
//!
//! **Architecture invariant:** this crate knows nothing of keys, plans or routes; it is given a
//! subject string and a limit and answers allow/deny with the numbers for the response headers,
//! and it is given a prepared request and a list of upstreams and forwards it.

mod acl;
mod blobs;
mod channel;
pub mod forward;
pub mod h1;
pub mod proxy;
mod redis_limiter;
mod replay;
mod throttle;

use authsome_domain::FastMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

pub use acl::RedisAppUsers;
pub use blobs::RedisBlobs;
pub use channel::RedisChannel;
pub use redis_limiter::RedisLimiter;
pub use replay::{InProcessReplayCache, RedisReplayCache, ReplayCache};
pub use throttle::RedisThrottle;

/// A Redis connection that fails fast: a command that gets no answer within a second, or a
/// connection not made within two, is an error (which the callers turn into their documented
/// behaviour) instead of a request hanging; it reconnects in the background.
pub(crate) async fn connect(url: &str) -> Result<redis::aio::ConnectionManager, RateLimitError> {
    let client =
        redis::Client::open(url).map_err(|e| RateLimitError::Unavailable(e.to_string()))?;
    // One plain connection first: refused credentials are an error now, not after the
    // connection manager's retries (which would hold start-up for minutes).
    let probe = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(1));
    drop(
        client
            .get_multiplexed_async_connection_with_config(&probe)
            .await
            .map_err(|e| RateLimitError::Unavailable(e.to_string()))?,
    );
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(1))
        .set_number_of_retries(2);
    redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| RateLimitError::Unavailable(e.to_string()))
}

/// Every Redis command answers within this, or is an error (whatever the client library does
/// while it reconnects).
const COMMAND_DEADLINE: Duration = Duration::from_secs(2);

/// Bounds a Redis command by [`COMMAND_DEADLINE`] and maps its errors.
pub(crate) trait WithDeadline<T> {
    fn with_deadline(self) -> impl std::future::Future<Output = Result<T, RateLimitError>>;
}

impl<T, F> WithDeadline<T> for F
where
    F: std::future::Future<Output = redis::RedisResult<T>>,
{
    async fn with_deadline(self) -> Result<T, RateLimitError> {
        match tokio::time::timeout(COMMAND_DEADLINE, self).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RateLimitError::Unavailable(e.to_string())),
            Err(_) => Err(RateLimitError::Unavailable(
                "Redis did not answer in time".into(),
            )),
        }
    }
}

/// A sustained rate with a burst of the same size (one second's worth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_second: u32,
}

impl Limit {
    /// The rate the limiter works with: at least one a second, at most one a microsecond (its
    /// resolution), whatever it is given.
    fn rate(self) -> i64 {
        i64::from(self.per_second.clamp(1, 1_000_000))
    }

    fn interval_us(self) -> i64 {
        1_000_000 / self.rate()
    }

    fn window_us(self) -> i64 {
        self.interval_us() * self.rate()
    }
}

/// The answer for one request, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the limit is fully replenished.
    pub reset_after: Duration,
    /// When denied: how long until one request would be allowed.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate-limit store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    async fn check(&self, subject: &str, limit: Limit) -> Result<Decision, RateLimitError>;

    /// The decision at once, for a limiter that needs no I/O to give it (in process); `None`
    /// when only [`RateLimiter::check`] can (a shared store). Spares the request path a boxed
    /// future.
    fn check_now(&self, _subject: &str, _limit: Limit) -> Option<Result<Decision, RateLimitError>> {
        None
    }
}

/// GCRA on a theoretical arrival time `tat` (µs): the pure core both limiters share.
/// Returns the decision and the new `tat` to store when allowed.
pub fn gcra(now_us: i64, tat_us: Option<i64>, limit: Limit) -> (Decision, Option<i64>) {
    let interval = limit.interval_us();
    let window = limit.window_us();
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = tat + interval;
    let us = |v: i64| Duration::from_micros(u64::try_from(v.max(0)).unwrap_or(0));
    if new_tat - now_us > window {
        let decision = Decision {
            allowed: false,
            limit: limit.per_second,
            remaining: 0,
            reset_after: us(tat - now_us),
            retry_after: Some(us(new_tat - now_us - window)),
        };
        return (decision, None);
    }
    let remaining = (window - (new_tat - now_us)) / interval;
    let decision = Decision {
        allowed: true,
        limit: limit.per_second,
        remaining: u32::try_from(remaining).unwrap_or(0),
        reset_after: us(new_tat - now_us),
        retry_after: None,
    };
    (decision, Some(new_tat))
}

/// One replica's limiter: a map of arrival times, pruned when it grows.
#[derive(Default)]
pub struct InProcessLimiter {
    tats: Mutex<FastMap<String, i64>>,
    clock: authsome_domain::clock::Clock,
}

#[async_trait]
impl RateLimiter for InProcessLimiter {
    async fn check(&self, subject: &str, limit: Limit) -> Result<Decision, RateLimitError> {
        self.decide(subject, limit)
    }

    fn check_now(&self, subject: &str, limit: Limit) -> Option<Result<Decision, RateLimitError>> {
        Some(self.decide(subject, limit))
    }
}

impl InProcessLimiter {
    /// The limiter on `clock` (a test's manual clock refills a budget when moved forward).
    pub fn with_clock(mut self, clock: authsome_domain::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    fn decide(&self, subject: &str, limit: Limit) -> Result<Decision, RateLimitError> {
        let now = self.clock.unix_micros();
        let mut tats = self
            .tats
            .lock()
            .map_err(|_| RateLimitError::Unavailable("poisoned".into()))?;
        if tats.len() > 100_000 {
            tats.retain(|_, tat| *tat > now);
        }
        let slot = tats.get_mut(subject);
        let (decision, new_tat) = gcra(now, slot.as_deref().copied(), limit);
        // The subject's name is copied only the first time it is seen.
        match (slot, new_tat) {
            (Some(tat), Some(t)) => *tat = t,
            (None, Some(t)) => {
                tats.insert(subject.to_owned(), t);
            }
            (_, None) => {}
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let limit = Limit { per_second: 10 };
        let mut tat = None;
        let now = 1_000_000_000;
        for n in 0..10 {
            let (d, t) = gcra(now, tat, limit);
            assert!(d.allowed, "request {n}");
            assert_eq!(d.remaining, 9 - n);
            tat = t;
        }
        let (denied, t) = gcra(now, tat, limit);
        assert!(!denied.allowed && t.is_none());
        assert_eq!(denied.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(denied.reset_after, Duration::from_secs(1));
        // One interval later, one more fits.
        let (later, _) = gcra(now + 100_000, tat, limit);
        assert!(later.allowed);
        assert_eq!(later.remaining, 0);
        // A second later everything is back.
        let (fresh, _) = gcra(now + 1_000_000, tat, limit);
        assert_eq!(fresh.remaining, 9);
    }

    #[test]
    fn limits_outside_the_resolution_are_clamped_not_a_panic() {
        for per_second in [0, 1, 999_999, 1_000_000, 5_000_000, u32::MAX] {
            let (d, _) = gcra(1_000_000_000, None, Limit { per_second });
            assert!(d.allowed, "{per_second}");
        }
    }

    #[tokio::test]
    async fn in_process_subjects_are_separate() {
        let limiter = InProcessLimiter::default();
        let limit = Limit { per_second: 2 };
        assert!(limiter.check("a", limit).await.unwrap().allowed);
        assert!(limiter.check("a", limit).await.unwrap().allowed);
        assert!(!limiter.check("a", limit).await.unwrap().allowed);
        assert!(limiter.check("b", limit).await.unwrap().allowed);
    }
}
