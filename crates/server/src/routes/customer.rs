//! The customer API, `/v1/{appId}/…`: one application's own surface, reached with its
//! publishable or secret key. Its first route says which application and key type a key is.

use authsome_domain::keys::KeyKind;
use authsome_domain::tenancy::{AppStatus, Environment};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody};
use crate::extract::bearer;
use crate::AppState;

pub const APP_ID_HEADER: HeaderName = HeaderName::from_static("x-authsome-app-id");
const PUBLISHABLE_KEY_HEADER: HeaderName = HeaderName::from_static("x-publishable-key");

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppIdentity {
    pub id: String,
    pub name: String,
    pub environment: Environment,
    pub status: AppStatus,
    /// `publishable` or `secret`.
    pub key_type: KeyKind,
}

/// The key a customer-API request carries: `Authorization: Bearer` or `X-Publishable-Key`.
fn credential(parts: &Parts) -> Option<&str> {
    bearer(parts).or_else(|| {
        parts
            .headers
            .get(PUBLISHABLE_KEY_HEADER)?
            .to_str()
            .ok()
            .map(str::trim)
    })
}

/// Which application and key type the presented key belongs to.
#[utoipa::path(get, path = "/v1/{appId}", tag = "customer",
    params(("appId" = String, Path),
        ("X-Publishable-Key" = Option<String>, Header, description = "Alternative to Bearer for pk_ keys")),
    responses((status = 200, body = AppIdentity), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn identify(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let key = credential(&parts).ok_or_else(|| {
        ApiError::unauthorized("missing API key (Authorization: Bearer or X-Publishable-Key)")
    })?;
    let (app, key) = state.control.verify_app_key(&app_id, key).await?;
    let mut response = axum::Json(AppIdentity {
        id: app.id.to_string(),
        name: app.name.clone(),
        environment: app.environment,
        status: app.status,
        key_type: key.kind,
    })
    .into_response();
    if let Ok(value) = HeaderValue::from_str(app.id.as_str()) {
        response.headers_mut().insert(APP_ID_HEADER, value);
    }
    Ok(response)
}
