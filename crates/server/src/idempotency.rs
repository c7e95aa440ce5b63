//! `Idempotency-Key` on authenticated POSTs: the same key with the same body within 24 hours
//! replays the first response; a different body is 409; a retry while the first request runs is
//! 409. Records are scoped to the credential that sent them (its SHA-256), so one caller can never
//! replay another's response. Unauthenticated POSTs (login, accepting an invitation) are not
//! recorded: their responses carry fresh secrets.

use authsome_storage::IdempotencyBegin;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key(IDEMPOTENCY_KEY) {
        return next.run(request).await;
    }
    // A dedicated instance behind the gateway: the gateway holds the record already (the same
    // one, in the same database); recording it again here would find it in progress.
    if request
        .extensions()
        .get::<crate::gateway::Forwarded>()
        .is_some()
    {
        return next.run(request).await;
    }
    let Some(credential) = request.headers().get(header::AUTHORIZATION).cloned() else {
        return next.run(request).await;
    };
    match run(state, credential, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(
    state: AppState,
    credential: HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=255).contains(&k.len()))
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
                .into_response()
        })?;
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, state.http.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response()
        })?;
    let scope = format!("{}:{}", hex_sha256(credential.as_bytes()), parts.uri.path());
    let request_hash = hex_sha256(&body);
    let store = state.control.store();
    let begun = store
        .idempotency_begin(&scope, &key, &request_hash, authsome_domain::now())
        .await
        .map_err(|e| storage_failure(&e))?;
    match begun {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::Replay { status, body } => {
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
    if status.is_server_error() {
        // Unexpected failure: forget the key so the client's retry runs again.
        let _ = store.idempotency_abandon(&scope, &key).await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(|_| ApiError::internal().into_response())?;
    let text = String::from_utf8_lossy(&bytes);
    if let Err(e) = store
        .idempotency_finish(&scope, &key, status.as_u16(), &text)
        .await
    {
        tracing::warn!(error = %e, "could not record idempotent response");
        let _ = store.idempotency_abandon(&scope, &key).await;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn storage_failure(e: &authsome_storage::StorageError) -> Response {
    tracing::error!(error = %e, "idempotency store failure");
    ApiError::internal().into_response()
}
