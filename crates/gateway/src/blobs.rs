//! Opaque values in Redis under caller-given names (the credential vault's envelopes when
//! `AUTHSOME_VAULT_BACKEND=redis`): set, get, delete, each bounded in time. An unreachable
//! Redis is an error to the caller, who answers 503 and never falls back elsewhere. After an
//! error the connection is made anew on the next call, so the store recovers by itself when
//! Redis is back.

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

use crate::{RateLimitError, WithDeadline};

pub struct RedisBlobs {
    url: String,
    prefix: String,
    connection: Mutex<Option<ConnectionManager>>,
}

impl RedisBlobs {
    /// Connects now: a Redis that cannot be reached is an error at start-up.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RateLimitError> {
        Ok(Self {
            connection: Mutex::new(Some(crate::connect(url).await?)),
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The Redis key of `name` (under the deployment's prefix).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    async fn connection(&self) -> Result<ConnectionManager, RateLimitError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = crate::connect(&self.url).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `cmd`; on an error the connection is dropped, to be made anew next time.
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, RateLimitError> {
        let mut c = self.connection().await?;
        let result = cmd.query_async::<T>(&mut c).with_deadline().await;
        if result.is_err() {
            *self.connection.lock().await = None;
        }
        result
    }

    pub async fn put(&self, name: &str, value: &[u8]) -> Result<(), RateLimitError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(name)).arg(value);
        self.run(cmd).await
    }

    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, RateLimitError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(name));
        self.run(cmd).await
    }

    pub async fn delete(&self, name: &str) -> Result<(), RateLimitError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(name));
        self.run(cmd).await
    }
}
