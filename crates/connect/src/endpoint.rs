//! A customer's credential endpoint (`api_key` mode): AuthSome asks for the credential when it
//! needs it, uses it once and forgets it.
//!
//! The request is `POST <url>` with the JSON body
//! `{"type": "credential.request", "workspaceId", "provider", "requestId", "expiresAt"}`, signed
//! the Standard Webhooks way: headers `webhook-id` (the request id), `webhook-timestamp` (Unix
//! seconds) and `webhook-signature` (`v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`
//! with the configured `whsec_` secret's key). The endpoint verifies the signature, refuses a
//! timestamp more than five minutes off, and answers 200 `{"credential": "..."}`.

use authsome_control::{FetchRequest, SourceError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::egress::{CallError, Outbound};

const MAX_ANSWER: usize = 64 * 1024;
/// How long a request is good for, as its body says.
const VALID_FOR_SECS: u64 = 300;

/// `v1,<signature>` of `id.timestamp.body` under a `whsec_` secret.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &str) -> Result<String, SourceError> {
    let key = Zeroizing::new(
        B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .map_err(|_| SourceError::Refused("the signing secret is not whsec_<base64>".into()))?,
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| SourceError::Refused("the signing secret is empty".into()))?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

pub async fn fetch(
    outbound: &Outbound,
    request: &FetchRequest<'_>,
) -> Result<Zeroizing<String>, SourceError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let body = json!({
        "type": "credential.request",
        "workspaceId": request.workspace.as_str(),
        "provider": request.provider.as_str(),
        "requestId": id,
        "expiresAt": now + VALID_FOR_SECS,
    })
    .to_string();
    let signature = sign(request.signing_secret, &id, now, &body)?;
    let answer = outbound
        .send(
            reqwest::Method::POST,
            request.url,
            |r| {
                r.header("Content-Type", "application/json")
                    .header("webhook-id", id.as_str())
                    .header("webhook-timestamp", now.to_string())
                    .header("webhook-signature", signature.as_str())
                    .body(body.clone())
            },
            MAX_ANSWER,
        )
        .await
        .map_err(|e| match e {
            CallError::Refused(m) => SourceError::Refused(format!("credential endpoint: {m}")),
            CallError::Failed(m) => SourceError::Unavailable(format!("credential endpoint: {m}")),
        })?;
    let status = answer.status;
    if !status.is_success() {
        let said = format!("the credential endpoint answered {}", status.as_u16());
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            SourceError::Unavailable(said)
        } else {
            SourceError::Refused(said)
        });
    }
    let json: Value = serde_json::from_slice(&answer.body).map_err(|_| {
        SourceError::Refused("the credential endpoint answered something other than JSON".into())
    })?;
    json.get("credential")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(|c| Zeroizing::new(c.to_owned()))
        .ok_or_else(|| {
            SourceError::Refused("the credential endpoint answered without a `credential`".into())
        })
}
