//! Applications: `/control/v1/workspaces/{wsId}/applications` and `/control/v1/applications/{appId}`.

use authsome_control::{ApplicationPatch, NewApplication};
use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::tenancy::Application;
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
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Also list deleted applications still inside their undelete window.
    pub include_deleted: Option<bool>,
}

/// Creates an application. Production applications need a workspace whose KYC is completed.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/applications", tag = "applications",
    params(("wsId" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for 24 h")),
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
