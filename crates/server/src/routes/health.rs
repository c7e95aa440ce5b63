//! Liveness, readiness and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{ApiError, ErrorBody};
use crate::views::{HealthView, ReadyView};
use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = HealthView)))]
pub async fn health() -> axum::Json<HealthView> {
    axum::Json(HealthView { status: "ok" })
}

/// Storage is reachable and migrated, the audit log holds what a stopped process left in its
/// outbox, and the server is not draining.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = ReadyView), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<axum::Json<ReadyView>, ApiError> {
    let store = state.control.store();
    let database = match store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("unreachable: {e}"),
    };
    let migrations = match store.is_migrated().await {
        Ok(true) => "ok".to_owned(),
        Ok(false) => "pending".to_owned(),
        Err(e) => format!("unknown: {e}"),
    };
    let draining = state.is_draining();
    // Outbox rows a stopped process left behind are in the audit log before traffic comes.
    let audit = if state.audit_recovered() {
        "ok"
    } else {
        "recovering"
    };
    let checks = json!({
        "database": database,
        "migrations": migrations,
        "audit": audit,
        "server": if draining { "draining" } else { "ok" },
    });
    if database == "ok" && migrations == "ok" && audit == "ok" && !draining {
        return Ok(axum::Json(ReadyView {
            status: "ready",
            checks,
        }));
    }
    let failing: Vec<&str> = checks
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, v)| v.as_str() != Some("ok"))
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {}", failing.join(", ")),
    )
    .with_details(json!({ "checks": checks })))
}

/// Prometheus metrics, in the text exposition format. With `AUTHSOME_METRICS_TOKEN` set, only
/// for `Authorization: Bearer <token>`; with `AUTHSOME_METRICS_LISTEN`, only on that listener
/// (here 404).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.http.metrics_elsewhere {
        return super::not_found().await.into_response();
    }
    metrics_on_own_listener(State(state), headers).await
}

/// `/metrics` on the listener of its own: the token still applies.
pub async fn metrics_on_own_listener(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = &state.http.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::extract::bearer_of)
            .unwrap_or_default();
        if !authsome_domain::keys::same_secret(presented.as_bytes(), token.as_bytes()) {
            return ApiError::unauthorized("/metrics needs its bearer token").into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state),
    )
        .into_response()
}

/// This document: OpenAPI 3.1, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::spec_json(),
    )
}
