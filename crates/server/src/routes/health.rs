//! Liveness, readiness and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
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

/// Storage is reachable and migrated, and the server is not draining.
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
    let checks = json!({
        "database": database,
        "migrations": migrations,
        "server": if draining { "draining" } else { "ok" },
    });
    if database == "ok" && migrations == "ok" && !draining {
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

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state),
    )
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
