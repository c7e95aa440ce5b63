//! GCRA in Redis: one Lua script reads and advances the arrival time atomically, with Redis's
//! own clock, so every replica enforces the same limit.

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::{gcra, Decision, Limit, RateLimitError, RateLimiter, WithDeadline};

/// Returns {allowed, tat_before_us, now_us}; advances the stored tat when allowed.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = math.max(tonumber(stored), now) end
local new_tat = tat + interval
if new_tat - now > window then
  return {0, tat, now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, tat, now}
"#;

pub struct RedisLimiter {
    connection: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl RedisLimiter {
    /// Connects (failing now, not later, when Redis does not answer). Keys are `prefix` +
    /// subject (see `authsome_domain::shared_state`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RateLimitError> {
        let connection = crate::connect(url).await?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            script: redis::Script::new(SCRIPT),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, subject: &str, limit: Limit) -> Result<Decision, RateLimitError> {
        let mut connection = self.connection.clone();
        let (allowed, tat, now): (i64, i64, i64) = self
            .script
            .key(format!("{}{subject}", self.prefix))
            .arg(limit.interval_us())
            .arg(limit.window_us())
            .invoke_async(&mut connection)
            .with_deadline()
            .await?;
        // Recompute the numbers from the same inputs the script used.
        let (decision, _) = gcra(now, Some(tat), limit);
        debug_assert_eq!(decision.allowed, allowed == 1);
        Ok(Decision {
            allowed: allowed == 1,
            ..decision
        })
    }
}
