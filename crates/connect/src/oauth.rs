//! The OAuth 2.0 refresh grant (RFC 6749 §6): `POST` to the token endpoint, form-encoded
//! `grant_type=refresh_token`, the client authenticated with HTTP Basic when it has a secret
//! (§2.3.1), else named by `client_id` in the body. The answer's `access_token`, `expires_in`
//! and, when the server rotates refresh tokens, the new `refresh_token`; an error answer is
//! `{"error": "invalid_grant", "error_description": ...}` (§5.2).

use std::time::Duration;

use authsome_control::{RefreshRequest, SourceError, TokenGrant};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::egress::{CallError, Outbound};

const MAX_ANSWER: usize = 64 * 1024;

/// §2.3.1: the id and secret are form-encoded before they are joined.
fn basic(client_id: &str, secret: &str) -> Zeroizing<String> {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let joined = Zeroizing::new(format!("{}:{}", encode(client_id), encode(secret)));
    Zeroizing::new(format!("Basic {}", B64.encode(joined.as_bytes())))
}

pub async fn refresh(
    outbound: &Outbound,
    request: &RefreshRequest<'_>,
) -> Result<TokenGrant, SourceError> {
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "refresh_token");
        form.append_pair("refresh_token", request.refresh_token);
        if let Some(scope) = request.scope {
            form.append_pair("scope", scope);
        }
        if request.client_secret.is_none() {
            form.append_pair("client_id", request.client_id);
        }
        Zeroizing::new(form.finish())
    };
    let authorization = request
        .client_secret
        .map(|secret| basic(request.client_id, secret));
    let answer = outbound
        .send(
            reqwest::Method::POST,
            request.token_url,
            |r| {
                let r = r
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .header("Accept", "application/json")
                    .body(body.to_string());
                match &authorization {
                    Some(a) => r.header("Authorization", a.as_str()),
                    None => r,
                }
            },
            MAX_ANSWER,
        )
        .await
        .map_err(|e| match e {
            CallError::Refused(m) => SourceError::Refused(format!("token endpoint: {m}")),
            CallError::Failed(m) => SourceError::Unavailable(format!("token endpoint: {m}")),
        })?;
    let json: Option<Value> = serde_json::from_slice(&answer.body).ok();
    if !answer.status.is_success() {
        let error = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .map(|e| e.chars().take(64).collect::<String>())
            .unwrap_or_else(|| format!("HTTP {}", answer.status.as_u16()));
        let said = format!(
            "the token endpoint answered {}: {error}",
            answer.status.as_u16()
        );
        return Err(
            if answer.status.is_server_error() || answer.status.as_u16() == 429 {
                SourceError::Unavailable(said)
            } else {
                SourceError::Refused(said)
            },
        );
    }
    let json = json.ok_or_else(|| {
        SourceError::Unavailable("the token endpoint answered something other than JSON".into())
    })?;
    let text = |k: &str| {
        json.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let access_token = text("access_token")
        .map(|t| Zeroizing::new(t.to_owned()))
        .ok_or_else(|| SourceError::Refused("the token endpoint gave no access_token".into()))?;
    Ok(TokenGrant {
        access_token,
        // A number, or (some servers) a numeric string.
        expires_in: json
            .get("expires_in")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(Duration::from_secs),
        refresh_token: text("refresh_token").map(|t| Zeroizing::new(t.to_owned())),
    })
}
