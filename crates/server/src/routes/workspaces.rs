//! `/control/v1/workspaces`: create, list, read, update, delete.

use authsome_control::{NewWorkspace, WorkspacePatch};
use authsome_domain::id::WorkspaceId;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, ListParams, Query};
use crate::views::{List, WorkspaceView};
use crate::AppState;

/// Creates a workspace; the caller (a signed-in team member) becomes its owner.
#[utoipa::path(post, path = "/control/v1/workspaces", tag = "workspaces",
    request_body = NewWorkspace,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7e]{1,255}$", description = "1-255 visible ASCII characters: replays the first response for 24 h")),
    responses((status = 201, body = WorkspaceView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<NewWorkspace>,
) -> Result<(StatusCode, axum::Json<WorkspaceView>), ApiError> {
    let (workspace, role) = state.control.create_workspace(&caller.actor, input).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(WorkspaceView { workspace, role }),
    ))
}

/// The workspaces the caller belongs to.
#[utoipa::path(get, path = "/control/v1/workspaces", tag = "workspaces",
    params(ListParams),
    responses((status = 200, body = List<WorkspaceView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<WorkspaceView>>, ApiError> {
    let page = state
        .control
        .list_workspaces(&caller.actor, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |(workspace, role)| {
        WorkspaceView { workspace, role }
    })))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}", tag = "workspaces",
    params(("wsId" = String, Path)),
    responses((status = 200, body = WorkspaceView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<WorkspaceView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let (workspace, role) = state.control.get_workspace(&caller.actor, &ws).await?;
    Ok(axum::Json(WorkspaceView { workspace, role }))
}

/// Renames a workspace or replaces its metadata (owner, admin).
#[utoipa::path(patch, path = "/control/v1/workspaces/{wsId}", tag = "workspaces",
    params(("wsId" = String, Path)),
    request_body = WorkspacePatch,
    responses((status = 200, body = WorkspaceView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(patch): Json<WorkspacePatch>,
) -> Result<axum::Json<WorkspaceView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let (workspace, role) = state
        .control
        .update_workspace(&caller.actor, &ws, patch)
        .await?;
    Ok(axum::Json(WorkspaceView { workspace, role }))
}

/// Deletes a workspace that has no applications left (owner only).
#[utoipa::path(delete, path = "/control/v1/workspaces/{wsId}", tag = "workspaces",
    params(("wsId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    state.control.delete_workspace(&caller.actor, &ws).await?;
    Ok(StatusCode::NO_CONTENT)
}
