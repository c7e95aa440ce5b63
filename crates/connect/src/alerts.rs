//! Alert delivery to the outside, through the egress policy: Slack incoming webhooks (`POST
//! {text}`, answered `ok`) and workspaces' own endpoints, signed with the Standard Webhooks
//! scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

use crate::egress::Outbound;

/// The largest answer read from a channel.
const MAX_ANSWER: usize = 16 * 1024;

pub struct AlertDelivery {
    outbound: Outbound,
}

impl AlertDelivery {
    pub fn new(outbound: Outbound) -> Self {
        Self { outbound }
    }
}

fn answered(status: reqwest::StatusCode, body: &[u8]) -> Result<(), String> {
    if status.is_success() {
        return Ok(());
    }
    let said: String = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_owned();
    Err(format!("answered {}: {said}", status.as_u16()))
}

#[async_trait::async_trait]
impl authsome_control::alerts::AlertSender for AlertDelivery {
    async fn slack(&self, url: &str, text: &str) -> Result<(), String> {
        let body = serde_json::json!({"text": text}).to_string();
        let answer = self
            .outbound
            .send(
                reqwest::Method::POST,
                url,
                |r| r.header("content-type", "application/json").body(body),
                MAX_ANSWER,
            )
            .await
            // The URL is the channel's secret: never in the error.
            .map_err(|e| format!("Slack: {e}"))?;
        answered(answer.status, &answer.body).map_err(|e| format!("Slack {e}"))
    }

    async fn webhook(&self, url: &str, secret: &str, id: &str, body: &str) -> Result<(), String> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let signature =
            crate::endpoint::sign(secret, id, timestamp, body).map_err(|e| e.to_string())?;
        let body = body.to_owned();
        let answer = self
            .outbound
            .send(
                reqwest::Method::POST,
                url,
                |r| {
                    r.header("content-type", "application/json")
                        .header("webhook-id", id)
                        .header("webhook-timestamp", timestamp.to_string())
                        .header("webhook-signature", signature)
                        .body(body)
                },
                MAX_ANSWER,
            )
            .await
            .map_err(|e| format!("webhook: {e}"))?;
        answered(answer.status, &answer.body).map_err(|e| format!("webhook {e}"))
    }
}
