//! Replay caches: "has this one-time value (a request signature, a DPoP proof's `jti`) been seen
//! within its validity window?", answered atomically. In process for a single replica; in Redis
//! (`SET key 1 NX PX ttl`) so a value used on one replica is refused on every other.
//!
//! When Redis cannot be reached the answer is an error, and callers refuse the request: replay
//! protection fails closed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::{RateLimitError, WithDeadline};

#[async_trait]
pub trait ReplayCache: Send + Sync {
    /// `true` the first time `value` is presented within `ttl`, `false` after.
    async fn first_use(&self, value: &str, ttl: Duration) -> Result<bool, RateLimitError>;
}

/// One process's memory of values seen, pruned as they expire.
#[derive(Default)]
pub struct InProcessReplayCache {
    seen: Mutex<HashMap<String, Instant>>,
}

#[async_trait]
impl ReplayCache for InProcessReplayCache {
    async fn first_use(&self, value: &str, ttl: Duration) -> Result<bool, RateLimitError> {
        let now = Instant::now();
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| RateLimitError::Unavailable("replay cache poisoned".into()))?;
        if seen.len() > 100_000 {
            seen.retain(|_, until| *until > now);
        }
        match seen.get(value) {
            Some(until) if *until > now => Ok(false),
            _ => {
                seen.insert(value.to_owned(), now + ttl);
                Ok(true)
            }
        }
    }
}

/// Values seen by any replica, in Redis under `prefix`.
#[derive(Clone)]
pub struct RedisReplayCache {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisReplayCache {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RateLimitError> {
        let connection = crate::connect(url).await?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
        })
    }
}

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn first_use(&self, value: &str, ttl: Duration) -> Result<bool, RateLimitError> {
        let mut connection = self.connection.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}{value}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut connection)
            .with_deadline()
            .await?;
        Ok(set.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refuses_a_second_use(cache: &dyn ReplayCache, value: &str) {
        let ttl = Duration::from_millis(300);
        assert!(cache.first_use(value, ttl).await.unwrap());
        assert!(!cache.first_use(value, ttl).await.unwrap());
        assert!(cache
            .first_use(&format!("{value}-other"), ttl)
            .await
            .unwrap());
        // After its window a value may come back (its timestamp check refuses it by then).
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(cache.first_use(value, ttl).await.unwrap());
    }

    #[tokio::test]
    async fn in_process() {
        refuses_a_second_use(&InProcessReplayCache::default(), "sig").await;
    }

    #[tokio::test]
    async fn in_redis_shared_by_replicas() {
        let url = std::env::var("AUTHSOME_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("authsome-test-{}:", std::process::id());
        let first = match RedisReplayCache::connect(&url, &prefix).await {
            Ok(c) => c,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and Redis is unreachable at {url}: {e}")
            }
            Err(e) => {
                eprintln!("skipping the Redis replay test: {e}");
                return;
            }
        };
        let second = RedisReplayCache::connect(&url, &prefix).await.unwrap();
        let value = format!(
            "sig-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        assert!(first
            .first_use(&value, Duration::from_secs(5))
            .await
            .unwrap());
        assert!(!second
            .first_use(&value, Duration::from_secs(5))
            .await
            .unwrap());
        refuses_a_second_use(&second, &format!("{value}-b")).await;
    }
}
