//! Keys: application keys at `/control/v1/applications/{appId}/keys` and workspace management
//! keys at `/control/v1/workspaces/{wsId}/keys`. The secret is in the response once.

use authsome_control::{NewAppKey, NewManagementKey, RollKey};
use authsome_domain::id::{ApplicationId, KeyId, WorkspaceId};
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, ListParams, Query};
use crate::views::{CreatedKeyView, KeyView, List, RolledKeyView};
use crate::AppState;

/// A roll body is optional: no body means the default grace period.
fn roll_input(body: Option<Json<RollKey>>) -> RollKey {
    body.map(|Json(r)| r).unwrap_or_default()
}

#[utoipa::path(get, path = "/control/v1/applications/{appId}/keys", tag = "keys",
    params(("appId" = String, Path), ListParams),
    responses((status = 200, body = List<KeyView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_app_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<KeyView>>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    let page = state
        .control
        .list_app_keys(&caller.actor, &app, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, KeyView::from)))
}

/// Creates a publishable or secret key (`pk_live_`/`sk_live_` for production, `_test_` otherwise).
#[utoipa::path(post, path = "/control/v1/applications/{appId}/keys", tag = "keys",
    params(("appId" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7e]{1,255}$", description = "1-255 visible ASCII characters: replays the first response for 24 h")),
    request_body = NewAppKey,
    responses((status = 201, body = CreatedKeyView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_app_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Json(input): Json<NewAppKey>,
) -> Result<(StatusCode, axum::Json<CreatedKeyView>), ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    let created = state
        .control
        .create_app_key(&caller.actor, &app, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

/// Replaces a key; the old one keeps working for `expiresInSeconds` (default 24 h, 0 = now).
#[utoipa::path(post, path = "/control/v1/applications/{appId}/keys/{keyId}/roll", tag = "keys",
    params(("appId" = String, Path), ("keyId" = String, Path)),
    request_body(content = Option<RollKey>),
    responses((status = 201, body = RolledKeyView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn roll_app_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, key)): Path<(String, String)>,
    body: Option<Json<RollKey>>,
) -> Result<(StatusCode, axum::Json<RolledKeyView>), ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    let key: KeyId = path_id(&key, "key")?;
    let rolled = state
        .control
        .roll_app_key(&caller.actor, &app, &key, roll_input(body))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(rolled_view(rolled))))
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/control/v1/applications/{appId}/keys/{keyId}", tag = "keys",
    params(("appId" = String, Path), ("keyId" = String, Path)),
    responses((status = 200, body = KeyView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_app_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, key)): Path<(String, String)>,
) -> Result<axum::Json<KeyView>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    let key: KeyId = path_id(&key, "key")?;
    let revoked = state
        .control
        .revoke_app_key(&caller.actor, &app, &key)
        .await?;
    Ok(axum::Json(revoked.into()))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/keys", tag = "keys",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<KeyView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_management_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<KeyView>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .list_management_keys(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, KeyView::from)))
}

/// Creates a workspace management key (`wk_live_`) acting with a role (default `admin`).
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/keys", tag = "keys",
    params(("wsId" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7e]{1,255}$", description = "1-255 visible ASCII characters: replays the first response for 24 h")),
    request_body(content = Option<NewManagementKey>),
    responses((status = 201, body = CreatedKeyView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_management_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    body: Option<Json<NewManagementKey>>,
) -> Result<(StatusCode, axum::Json<CreatedKeyView>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let input = body.map(|Json(b)| b).unwrap_or_default();
    let created = state
        .control
        .create_management_key(&caller.actor, &ws, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/keys/{keyId}/roll", tag = "keys",
    params(("wsId" = String, Path), ("keyId" = String, Path)),
    request_body(content = Option<RollKey>),
    responses((status = 201, body = RolledKeyView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn roll_management_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, key)): Path<(String, String)>,
    body: Option<Json<RollKey>>,
) -> Result<(StatusCode, axum::Json<RolledKeyView>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let key: KeyId = path_id(&key, "key")?;
    let rolled = state
        .control
        .roll_management_key(&caller.actor, &ws, &key, roll_input(body))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(rolled_view(rolled))))
}

#[utoipa::path(delete, path = "/control/v1/workspaces/{wsId}/keys/{keyId}", tag = "keys",
    params(("wsId" = String, Path), ("keyId" = String, Path)),
    responses((status = 200, body = KeyView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_management_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, key)): Path<(String, String)>,
) -> Result<axum::Json<KeyView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let key: KeyId = path_id(&key, "key")?;
    let revoked = state
        .control
        .revoke_management_key(&caller.actor, &ws, &key)
        .await?;
    Ok(axum::Json(revoked.into()))
}

/// Makes a management key the calling owner's: it then survives its member leaving (which
/// revokes a member's keys) or being demoted (which caps them to the new role).
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/keys/{keyId}/reassign", tag = "keys",
    params(("wsId" = String, Path), ("keyId" = String, Path)),
    responses((status = 200, body = KeyView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reassign_management_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, key)): Path<(String, String)>,
) -> Result<axum::Json<KeyView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let key: KeyId = path_id(&key, "key")?;
    let reassigned = state
        .control
        .reassign_management_key(&caller.actor, &ws, &key)
        .await?;
    Ok(axum::Json(reassigned.into()))
}

fn rolled_view(rolled: authsome_control::RolledKey) -> RolledKeyView {
    RolledKeyView {
        key: rolled.new.into(),
        previous: rolled.old.into(),
    }
}
