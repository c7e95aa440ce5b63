//! Alerts: a workspace's alert channels (`…/alert-channels`: Slack, email, signed webhooks) and
//! its alerts (`…/alerts`), acknowledged by id.

use authsome_control::alerts::{CreatedAlertChannel, NewAlertChannel};
use authsome_domain::alert::{Alert, AlertChannel};
use authsome_domain::id::{AlertChannelId, AlertId, WorkspaceId};
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, ListParams, Query};
use crate::views::List;
use crate::AppState;

/// Adds a channel: `slack` `{url}` (an incoming webhook; kept sealed, shown as its host),
/// `email` `{to: [...]}`, `webhook` `{url}` (its Standard Webhooks signing secret is in this
/// answer, once). Owners and admins.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/alert-channels", tag = "alerts",
    params(("wsId" = String, Path)), request_body = NewAlertChannel,
    responses((status = 201, body = CreatedAlertChannel), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<NewAlertChannel>,
) -> Result<(StatusCode, axum::Json<CreatedAlertChannel>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let made = state
        .control
        .create_alert_channel(&caller.actor, &ws, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(made)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/alert-channels", tag = "alerts",
    params(("wsId" = String, Path)),
    responses((status = 200, body = List<AlertChannel>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn channels(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<List<AlertChannel>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let data = state.control.alert_channels(&caller.actor, &ws).await?;
    Ok(axum::Json(List {
        data,
        has_more: false,
        next_cursor: None,
    }))
}

#[utoipa::path(delete, path = "/control/v1/workspaces/{wsId}/alert-channels/{alcId}", tag = "alerts",
    params(("wsId" = String, Path), ("alcId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_channel(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let id: AlertChannelId = path_id(&id, "alert channel")?;
    state
        .control
        .delete_alert_channel(&caller.actor, &ws, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The workspace's alerts, newest ids last (rotations, approvals, policy violations, limits).
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/alerts", tag = "alerts",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<Alert>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Alert>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .alerts(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |a| a)))
}

/// Acknowledges an alert, once (409 the second time).
#[utoipa::path(post, path = "/control/v1/alerts/{alrId}/acknowledge", tag = "alerts",
    params(("alrId" = String, Path)),
    responses((status = 200, body = Alert), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn acknowledge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Alert>, ApiError> {
    let id: AlertId = path_id(&id, "alert")?;
    Ok(axum::Json(
        state.control.acknowledge_alert(&caller.actor, &id).await?,
    ))
}
