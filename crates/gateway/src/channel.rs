//! A Redis pub/sub channel between replicas: fire-and-forget publish, and a subscriber loop that
//! reconnects (with backoff) when Redis goes away. Messages are plain strings; what they mean
//! belongs to the caller.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;

use crate::RateLimitError;

#[derive(Clone)]
pub struct RedisChannel {
    client: redis::Client,
    connection: ConnectionManager,
    channel: String,
}

impl RedisChannel {
    pub async fn connect(url: &str, channel: &str) -> Result<Self, RateLimitError> {
        let client =
            redis::Client::open(url).map_err(|e| RateLimitError::Unavailable(e.to_string()))?;
        let connection = ConnectionManager::new(client.clone())
            .await
            .map_err(|e| RateLimitError::Unavailable(e.to_string()))?;
        Ok(Self {
            client,
            connection,
            channel: channel.to_owned(),
        })
    }

    /// Publishes without waiting; a failure is logged (receivers' caches still expire).
    pub fn publish(&self, message: String) {
        let mut connection = self.connection.clone();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            let sent: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&message)
                .query_async(&mut connection)
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "could not publish an invalidation");
            }
        });
    }

    /// Calls `on_message` for every message on the channel, for as long as the process runs.
    pub fn subscribe(
        &self,
        on_message: Arc<dyn Fn(String) + Send + Sync>,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let channel = self.channel.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(&channel).await.is_ok() {
                            backoff = Duration::from_millis(100);
                            let mut messages = pubsub.on_message();
                            while let Some(message) = messages.next().await {
                                if let Ok(text) = message.get_payload::<String>() {
                                    on_message(text);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "invalidation channel down; retrying"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }
}
