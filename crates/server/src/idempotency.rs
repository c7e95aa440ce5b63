//! `Idempotency-Key` on the routes that create something (the contract's `POST` creates:
//! [`IDEMPOTENT_ROUTES`]): the same key with the same body within 24 hours replays the first
//! response; a different body is 409; a retry while the first request runs is 409.
//!
//! What a record may hold, and when one is written:
//! - Only after the request's credential is verified, and keyed by what it proves (the account,
//!   management key or application key), never by the credential's bytes: a request that fails
//!   authentication writes nothing, and a revoked key replays nothing (its request is refused
//!   before any record is read).
//! - Never for sign-in, sign-up, token refresh or any other route not listed: their answers are
//!   fresh credentials, and replaying them would defeat refresh-token reuse detection.
//! - Only successful (2xx) answers are kept; anything else forgets the key, so a retry runs again.
//! - The stored answer is sealed under a key derived from the master key (ChaCha20-Poly1305, the
//!   associated data binding it to its principal, route and key): the new API keys and tokens
//!   some of these answers carry are never at rest in the clear. An answer larger than
//!   [`MAX_STORED_BODY`] is not kept.
//!
//! The layer runs after routing (a route layer), so it knows the matched route. A dedicated
//! application's requests are recorded by its instance, which runs these routes; the gateway
//! forwards them untouched.

use authsome_domain::tenancy::Actor;
use authsome_storage::IdempotencyBegin;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The routes whose `POST` creates something and so accepts `Idempotency-Key`.
pub const IDEMPOTENT_ROUTES: [&str; 11] = [
    "/control/v1/workspaces",
    "/control/v1/workspaces/{wsId}/members",
    "/control/v1/workspaces/{wsId}/keys",
    "/control/v1/workspaces/{wsId}/keys/{keyId}/roll",
    "/control/v1/workspaces/{wsId}/applications",
    "/control/v1/applications/{appId}/keys",
    "/control/v1/applications/{appId}/keys/{keyId}/roll",
    "/v1/{appId}/users",
    "/v1/{appId}/organizations",
    "/v1/{appId}/organizations/{orgId}/memberships",
    "/v1/{appId}/organizations/{orgId}/invitations",
];

/// The largest answer kept for replay; every create answer is far below it.
pub const MAX_STORED_BODY: usize = 64 * 1024;

pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key(IDEMPOTENCY_KEY) {
        return next.run(request).await;
    }
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str())
        .and_then(|m| IDEMPOTENT_ROUTES.iter().find(|r| **r == m))
        .copied()
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    // Unauthenticated: the route refuses it (401 before any judgement of the key); nothing is
    // written.
    let Some(principal) = principal(&state, route, &parts).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let key = match parts
        .headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=255).contains(&k.len()))
    {
        Some(key) => key.to_owned(),
        None => {
            return ApiError::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
                .into_response()
        }
    };
    let body = match axum::body::to_bytes(body, state.http.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                .into_response()
        }
    };
    let record = Record {
        scope: format!("{principal}:{}", parts.uri.path()),
        key,
    };
    match run(&state, &record, parts, body, next).await {
        Ok(response) | Err(response) => response,
    }
}

/// Who the request's credential proves the caller is, or `None` when it proves nothing.
async fn principal(state: &AppState, route: &str, parts: &Parts) -> Option<String> {
    if route.starts_with("/control/") {
        let token = crate::extract::bearer(parts)?;
        return match state.control.authenticate(token).await.ok()? {
            Actor::Account(id) => Some(id.to_string()),
            Actor::ManagementKey { key_id, .. } => Some(key_id.to_string()),
        };
    }
    let app = crate::gateway::customer_app(parts.uri.path())?;
    let (_, key) = crate::routes::customer::authenticated_key(state, app, parts)
        .await
        .ok()?;
    Some(key.id.to_string())
}

/// One record: whose, for which path, under which key.
struct Record {
    scope: String,
    key: String,
}

impl Record {
    /// The associated data of the sealed answer: it opens only as this record's.
    fn context(&self) -> Vec<u8> {
        let mut context = b"authsome.idempotency.v1\0".to_vec();
        context.extend_from_slice(self.scope.as_bytes());
        context.push(0);
        context.extend_from_slice(self.key.as_bytes());
        context
    }

    fn seal(&self, state: &AppState, body: &[u8]) -> String {
        B64.encode(state.identity.master_key().seal(&self.context(), body))
    }

    fn open(&self, state: &AppState, stored: &str) -> Option<Vec<u8>> {
        let sealed = B64.decode(stored).ok()?;
        state
            .identity
            .master_key()
            .open(&self.context(), &sealed)
            .ok()
    }
}

async fn run(
    state: &AppState,
    record: &Record,
    parts: Parts,
    body: Bytes,
    next: Next,
) -> Result<Response, Response> {
    let store = state.control.store();
    let request_hash = hex::encode(Sha256::digest(&body));
    let begun = store
        .idempotency_begin(
            &record.scope,
            &record.key,
            &request_hash,
            authsome_domain::now(),
        )
        .await
        .map_err(|e| storage_failure(&e))?;
    match begun {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::Replay { status, body } => {
            let Some(body) = record.open(state, &body) else {
                tracing::error!("an idempotency record does not open under the master key");
                return Err(ApiError::internal().into_response());
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(REPLAYED, HeaderValue::from_static("true"));
            return Ok(response);
        }
        IdempotencyBegin::Mismatch => {
            return Err(ApiError::conflict(
                "this Idempotency-Key was used with a different request body",
            )
            .into_response())
        }
        IdempotencyBegin::InProgress => {
            return Err(ApiError::conflict(
                "a request with this Idempotency-Key is still in progress",
            )
            .into_response())
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let status = response.status();
    let forget = || async {
        if let Err(e) = store.idempotency_abandon(&record.scope, &record.key).await {
            tracing::warn!(error = %e, "could not forget an idempotency record");
        }
    };
    if !status.is_success() {
        // Not done: a retry runs again.
        forget().await;
        return Ok(response);
    }
    let (mut parts, mut body) = response.into_parts();
    // The handlers' answers are small; one that is not is passed on whole, not kept.
    let mut held = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map(|f| f.into_data()) else {
            forget().await;
            return Err(ApiError::internal().into_response());
        };
        held.extend_from_slice(&data.unwrap_or_default());
        if held.len() > MAX_STORED_BODY {
            forget().await;
            tracing::warn!("an answer too large to keep for Idempotency-Key was not kept");
            let first = futures_util::stream::once(async move { Ok(held.freeze()) });
            let rest = Body::from_stream(first.chain(body.into_data_stream()));
            return Ok(Response::from_parts(parts, rest));
        }
    }
    let bytes = held.freeze();
    let sealed = record.seal(state, &bytes);
    if let Err(e) = store
        .idempotency_finish(&record.scope, &record.key, status.as_u16(), &sealed)
        .await
    {
        tracing::warn!(error = %e, "could not record idempotent response");
        forget().await;
    }
    // Framed again from these bytes.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn storage_failure(e: &authsome_storage::StorageError) -> Response {
    tracing::error!(error = %e, "idempotency store failure");
    ApiError::internal().into_response()
}

#[cfg(test)]
mod tests {
    use super::IDEMPOTENT_ROUTES;

    #[test]
    fn the_idempotent_routes_are_the_creating_posts_and_no_token_route() {
        let spec: serde_json::Value = serde_json::from_str(crate::openapi::spec_json()).unwrap();
        for route in IDEMPOTENT_ROUTES {
            assert!(
                spec["paths"][route]["post"].is_object(),
                "{route} is not a POST route"
            );
            for token_route in ["/auth/", "login", "accept", "signout", "refresh"] {
                assert!(!route.contains(token_route), "{route}");
            }
        }
    }
}
