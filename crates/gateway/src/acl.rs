//! Per-application Redis users (Redis 6+ ACL), for dedicated instances: a user that may read
//! and write only the application's own keys (`{prefix}app:{appId}:*`, see
//! `authsome_domain::shared_state`), subscribe only to the deployment's invalidation channel,
//! and run no administrative or dangerous command. A compromised instance then cannot read or
//! disturb any other application's state.
//!
//! The gateways create the user when a dedicated application is provisioned and delete it when
//! the application is destroyed; the instance connects as it. The password is given by the
//! caller (derived from the master key, so it is never stored or handed out).

use redis::aio::ConnectionManager;

use crate::{RateLimitError, WithDeadline};

/// Creates and deletes the users, over an administrative connection.
pub struct RedisAppUsers {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisAppUsers {
    /// Connects with credentials that may run `ACL SETUSER` / `ACL DELUSER`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RateLimitError> {
        Ok(Self {
            connection: crate::connect(url).await?,
            prefix: prefix.to_owned(),
        })
    }

    /// The user of `app` under `prefix` (`authsome:` gives `authsome-app_…`): only characters
    /// that need no escaping in a `redis://user:password@host` URL.
    pub fn username(prefix: &str, app: &str) -> String {
        let safe: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{safe}{app}")
    }

    /// Creates the user of `app`, or resets it to exactly these rights and this password.
    pub async fn ensure(&self, app: &str, password: &str) -> Result<(), RateLimitError> {
        let mut connection = self.connection.clone();
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(Self::username(&self.prefix, app))
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"))
            .arg(format!("~{}app:{app}:*", self.prefix))
            .arg(format!("&{}invalidations", self.prefix))
            .arg("+@all")
            .arg("-@admin")
            .arg("-@dangerous")
            .query_async(&mut connection)
            .with_deadline()
            .await?;
        Ok(())
    }

    /// Deletes the user of `app` (nothing if there is none).
    pub async fn remove(&self, app: &str) -> Result<(), RateLimitError> {
        let mut connection = self.connection.clone();
        let _: i64 = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(Self::username(&self.prefix, app))
            .query_async(&mut connection)
            .with_deadline()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limit, RateLimiter, RedisChannel, RedisLimiter, RedisReplayCache, ReplayCache};

    fn with_user(url: &str, user: &str, password: &str) -> String {
        let rest = url.strip_prefix("redis://").unwrap();
        format!("redis://{user}:{password}@{rest}")
    }

    #[tokio::test]
    async fn an_application_user_reaches_only_its_own_keys() {
        let url = std::env::var("AUTHSOME_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("authsome-acl-test-{}:", std::process::id());
        let admin = match RedisAppUsers::connect(&url, &prefix).await {
            Ok(a) => a,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and Redis is unreachable at {url}: {e}")
            }
            Err(_) => return,
        };
        let (app, other) = ("app_aaa", "app_bbb");
        admin.ensure(app, "s3cret-password").await.unwrap();
        // Ensuring again resets it to the same rights (idempotent).
        admin.ensure(app, "s3cret-password").await.unwrap();
        let user = RedisAppUsers::username(&prefix, app);
        let as_app = with_user(&url, &user, "s3cret-password");

        // The shared-state structures work as the application's user, on its names.
        let limiter = RedisLimiter::connect(&as_app, &prefix).await.unwrap();
        let cell = format!("app:{app}:ratelimit:key_1");
        let limit = Limit { per_second: 5 };
        assert!(limiter.check(&cell, limit).await.unwrap().allowed);
        let replay = RedisReplayCache::connect(&as_app, &prefix).await.unwrap();
        let memo = format!("app:{app}:replay-signature:key_1:abc");
        let ttl = std::time::Duration::from_secs(5);
        assert!(replay.first_use(&memo, ttl).await.unwrap());
        assert!(!replay.first_use(&memo, ttl).await.unwrap());
        RedisChannel::connect(&as_app, &format!("{prefix}invalidations"))
            .await
            .unwrap();

        // Another application's names, anything outside the prefix, and admin commands: refused.
        let foreign = format!("app:{other}:ratelimit:key_1");
        assert!(limiter.check(&foreign, limit).await.is_err());
        assert!(replay
            .first_use(&format!("app:{other}:replay-dpop:x"), ttl)
            .await
            .is_err());
        let client = redis::Client::open(as_app.as_str()).unwrap();
        let mut raw = client.get_multiplexed_async_connection().await.unwrap();
        let denied: redis::RedisResult<()> = redis::cmd("SET")
            .arg("unprefixed")
            .arg(1)
            .query_async(&mut raw)
            .await;
        assert!(denied.unwrap_err().to_string().contains("NOPERM"));
        for admin_command in [
            vec!["FLUSHALL"],
            vec!["CONFIG", "GET", "*"],
            vec!["ACL", "LIST"],
        ] {
            let r: redis::RedisResult<redis::Value> = redis::cmd(admin_command[0])
                .arg(&admin_command[1..])
                .query_async(&mut raw)
                .await;
            assert!(r.is_err(), "{admin_command:?} was allowed");
        }

        // Removed: it can no longer log in.
        admin.remove(app).await.unwrap();
        admin.remove(app).await.unwrap();
        assert!(RedisLimiter::connect(&as_app, &prefix).await.is_err());

        // No residue.
        let mut connection = admin.connection.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }
}
