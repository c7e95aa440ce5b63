//! `/control/v1/workspaces/{wsId}/members`: list, invite, change role, remove.

use authsome_control::{MemberPatch, NewMember};
use authsome_domain::id::{MemberId, WorkspaceId};
use authsome_domain::tenancy::Member;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, ListParams, Query};
use crate::views::{InvitedMemberView, List};
use crate::AppState;

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/members", tag = "members",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<Member>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Member>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .list_members(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |m| m)))
}

/// Invites a person by email. The one-time token goes to that address (`AUTHSOME_SMTP_URL`) or
/// to the server log for the operators to relay; only a platform operator's answer carries it.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/members", tag = "members",
    params(("wsId" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7e]{1,255}$", description = "1-255 visible ASCII characters: replays the first response for 24 h")),
    request_body = NewMember,
    responses((status = 201, body = InvitedMemberView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<NewMember>,
) -> Result<(StatusCode, axum::Json<InvitedMemberView>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let (member, invitation) = state.control.add_member(&caller.actor, &ws, input).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InvitedMemberView { member, invitation }),
    ))
}

/// Changes a member's role. Only owners grant or take away the owner role; the last owner stays.
#[utoipa::path(patch, path = "/control/v1/workspaces/{wsId}/members/{memId}", tag = "members",
    params(("wsId" = String, Path), ("memId" = String, Path)),
    request_body = MemberPatch,
    responses((status = 200, body = Member), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, mem)): Path<(String, String)>,
    Json(patch): Json<MemberPatch>,
) -> Result<axum::Json<Member>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let mem: MemberId = path_id(&mem, "member")?;
    Ok(axum::Json(
        state
            .control
            .update_member(&caller.actor, &ws, &mem, patch)
            .await?,
    ))
}

/// Removes a member (or lets a member leave).
#[utoipa::path(delete, path = "/control/v1/workspaces/{wsId}/members/{memId}", tag = "members",
    params(("wsId" = String, Path), ("memId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, mem)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let mem: MemberId = path_id(&mem, "member")?;
    state
        .control
        .remove_member(&caller.actor, &ws, &mem)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
