//! `/control/v1/admin`: platform operators (owners and admins of the root workspace) manage any
//! workspace's standing, plan and limits, and point dedicated applications at their instances.
//! To anyone else these routes do not exist (404).

use authsome_control::{AdminApplicationPatch, AdminWorkspacePatch, Invitation};
use authsome_domain::id::{ApplicationId, InvitationId, WorkspaceId};
use authsome_domain::tenancy::{Application, Workspace};
use axum::extract::{Path, State};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, ListParams, Query};
use crate::views::List;
use crate::AppState;

#[utoipa::path(get, path = "/control/v1/admin/workspaces", tag = "admin",
    params(ListParams),
    responses((status = 200, body = List<Workspace>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_workspaces(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Workspace>>, ApiError> {
    let page = state
        .control
        .admin_list_workspaces(&caller.actor, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |w| w)))
}

#[utoipa::path(get, path = "/control/v1/admin/workspaces/{wsId}", tag = "admin",
    params(("wsId" = String, Path)),
    responses((status = 200, body = Workspace), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<Workspace>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .admin_get_workspace(&caller.actor, &ws)
            .await?,
    ))
}

/// Sets status, kycStatus, paymentStatus, plan and (enterprise) limits.
#[utoipa::path(patch, path = "/control/v1/admin/workspaces/{wsId}", tag = "admin",
    params(("wsId" = String, Path)),
    request_body = AdminWorkspacePatch,
    responses((status = 200, body = Workspace), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(patch): Json<AdminWorkspacePatch>,
) -> Result<axum::Json<Workspace>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .admin_update_workspace(&caller.actor, &ws, patch)
            .await?,
    ))
}

/// Sets a dedicated application's upstreams (its instances), within `AUTHSOME_UPSTREAM_ALLOW`.
#[utoipa::path(patch, path = "/control/v1/admin/applications/{appId}", tag = "admin",
    params(("appId" = String, Path)),
    request_body = AdminApplicationPatch,
    responses((status = 200, body = Application), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_application(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
    Json(patch): Json<AdminApplicationPatch>,
) -> Result<axum::Json<Application>, ApiError> {
    let app: ApplicationId = path_id(&app, "application")?;
    Ok(axum::Json(
        state
            .control
            .admin_update_application(&caller.actor, &app, patch)
            .await?,
    ))
}

/// A fresh one-time token for an invitation not yet accepted (the old one stops working), for
/// the operator to relay to the person it invites where no mail server is configured; mailed
/// to them as well when one is.
#[utoipa::path(post, path = "/control/v1/admin/invitations/{invId}/token", tag = "admin",
    params(("invId" = String, Path)),
    responses((status = 200, body = Invitation), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reissue_invitation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Invitation>, ApiError> {
    let id: InvitationId = path_id(&id, "invitation")?;
    Ok(axum::Json(
        state
            .control
            .admin_reissue_invitation(&caller.actor, &id)
            .await?,
    ))
}
