//! Applications: `/control/v1/workspaces/{wsId}/applications` and `/control/v1/applications/{appId}`.

use authsome_control::{ApplicationPatch, NewApplication};
use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::tenancy::{Application, Permission};
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, Query};
use crate::views::List;
use crate::AppState;

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplicationListParams {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Also list deleted applications still inside their undelete window.
    pub include_deleted: Option<bool>,
}

/// Creates an application. Production applications need a workspace whose KYC is completed.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/applications", tag = "applications",
    params(("wsId" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7e]{1,255}$", description = "1-255 visible ASCII characters: replays the first response for 24 h")),
    request_body = NewApplication,
    responses((status = 201, body = Application), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<NewApplication>,
) -> Result<(StatusCode, axum::Json<Application>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let app = state
        .control
        .create_application(&caller.actor, &ws, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(app)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/applications", tag = "applications",
    params(("wsId" = String, Path), ApplicationListParams),
    responses((status = 200, body = List<Application>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ApplicationListParams>,
) -> Result<axum::Json<List<Application>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = authsome_domain::page::PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let page = state
        .control
        .list_applications(
            &caller.actor,
            &ws,
            params.include_deleted.unwrap_or(false),
            &page,
        )
        .await?;
    Ok(axum::Json(List::from_page(page, |a| a)))
}

#[utoipa::path(get, path = "/control/v1/applications/{appId}", tag = "applications",
    params(("appId" = String, Path)),
    responses((status = 200, body = Application), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> Result<axum::Json<Application>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    Ok(axum::Json(
        state.control.get_application(&caller.actor, &app).await?,
    ))
}

#[utoipa::path(patch, path = "/control/v1/applications/{appId}", tag = "applications",
    params(("appId" = String, Path)),
    request_body = ApplicationPatch,
    responses((status = 200, body = Application), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Json(patch): Json<ApplicationPatch>,
) -> Result<axum::Json<Application>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    Ok(axum::Json(
        state
            .control
            .update_application(&caller.actor, &app, patch)
            .await?,
    ))
}

/// Soft-deletes an application: its keys stop working at once; it can be restored for 7 days.
#[utoipa::path(delete, path = "/control/v1/applications/{appId}", tag = "applications",
    params(("appId" = String, Path)),
    responses((status = 200, body = Application), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> Result<axum::Json<Application>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    Ok(axum::Json(
        state
            .control
            .delete_application(&caller.actor, &app)
            .await?,
    ))
}

/// Restores a deleted application inside its undelete window.
#[utoipa::path(post, path = "/control/v1/applications/{appId}/restore", tag = "applications",
    params(("appId" = String, Path)),
    responses((status = 200, body = Application), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> Result<axum::Json<Application>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    Ok(axum::Json(
        state
            .control
            .restore_application(&caller.actor, &app)
            .await?,
    ))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// `YYYY-MM` (UTC); default the current month.
    #[param(schema_with = authsome_domain::schema::month)]
    pub month: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub application_id: String,
    pub month: String,
    /// Distinct users whose first authentication (sign-up, sign-in, refresh) fell in the month.
    pub monthly_active_users: u64,
    /// Customer-API requests this calendar month (UTC), when `month` is the current month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
}

/// Monthly active users of an application, exact.
#[utoipa::path(get, path = "/control/v1/applications/{appId}/usage", tag = "applications",
    params(("appId" = String, Path), UsageParams),
    responses((status = 200, body = UsageView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Query(params): Query<UsageParams>,
) -> Result<axum::Json<UsageView>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    let app = state
        .control
        .authorize_application(&caller.actor, &app, Permission::ApplicationsRead)
        .await?;
    let month = params
        .month
        .unwrap_or_else(|| authsome_domain::identity::month_of(authsome_domain::now()));
    let count = state.identity.monthly_active_users(&app.id, &month).await?;
    let current = authsome_domain::identity::month_of(authsome_domain::now()) == month;
    let requests = if current {
        state.control.flush_request_counts().await?;
        Some(state.control.month_requests(&app.id).await?)
    } else {
        None
    };
    Ok(axum::Json(UsageView {
        application_id: app.id.to_string(),
        month,
        monthly_active_users: count,
        requests,
    }))
}

/// A signing key as the control plane shows it: public half and schedule.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyView {
    pub kid: String,
    /// Published in JWKS from here on.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Signs from here on.
    pub activates_at: chrono::DateTime<chrono::Utc>,
    /// Stops signing here; verifies until its last token has expired.
    pub retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn signing_views(keys: Vec<authsome_domain::identity::SigningKeyRecord>) -> Vec<SigningKeyView> {
    keys.into_iter()
        .map(|k| SigningKeyView {
            kid: k.kid,
            created_at: k.created_at,
            activates_at: k.activates_at,
            retired_at: k.retired_at,
        })
        .collect()
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateSigningKey {
    /// Seconds the next key is published before it signs (0-86400, default 300), so verifiers
    /// that cache the JWKS fetch it first.
    #[schema(minimum = 0, maximum = 86400)]
    pub activate_in_seconds: Option<i64>,
}

#[utoipa::path(get, path = "/control/v1/applications/{appId}/signing-keys", tag = "applications",
    params(("appId" = String, Path)),
    responses((status = 200, body = Vec<SigningKeyView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn signing_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> Result<axum::Json<Vec<SigningKeyView>>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    let app = state
        .control
        .authorize_application(&caller.actor, &app, Permission::KeysRead)
        .await?;
    Ok(axum::Json(signing_views(
        state.identity.signing_keys(&app.id).await?,
    )))
}

/// Rotates the application's token-signing key.
#[utoipa::path(post, path = "/control/v1/applications/{appId}/signing-keys/rotate", tag = "applications",
    params(("appId" = String, Path)),
    request_body(content = Option<RotateSigningKey>),
    responses((status = 200, body = Vec<SigningKeyView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_signing_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    body: Option<Json<RotateSigningKey>>,
) -> Result<axum::Json<Vec<SigningKeyView>>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    let app = state
        .control
        .authorize_application(&caller.actor, &app, Permission::KeysRoll)
        .await?;
    let lead = body
        .and_then(|Json(b)| b.activate_in_seconds)
        .unwrap_or(300);
    Ok(axum::Json(signing_views(
        state.identity.rotate_signing_key(&app.id, lead).await?,
    )))
}
