//! A workspace's usage by month (`…/usage`) and the users counted in it (`…/usage/mau/users`).

use authsome_control::usage::{CountedUser, WorkspaceUsage};
use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::page::PageRequest;
use axum::extract::{Path, State};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Query};
use crate::views::List;
use crate::AppState;

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MonthParams {
    /// `YYYY-MM` (UTC); default this month.
    #[param(schema_with = authsome_domain::schema::month)]
    pub month: Option<String>,
}

/// The workspace's usage in a month, per application and in total: monthly active users (a
/// user counts once a month when they sign up, sign in or refresh a session), customer-API
/// requests and rotations. Exact across replicas. Every member but an auditor.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/usage", tag = "billing",
    params(("wsId" = String, Path), MonthParams),
    responses((status = 200, body = WorkspaceUsage), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<MonthParams>,
) -> Result<axum::Json<WorkspaceUsage>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .workspace_usage(&caller.actor, &ws, params.month.as_deref())
            .await?,
    ))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CountedParams {
    /// The application whose users are listed; without it, every application's (ordered by
    /// application, then user).
    pub application_id: Option<String>,
    /// `YYYY-MM` (UTC); default this month.
    #[param(schema_with = authsome_domain::schema::month)]
    pub month: Option<String>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The users counted as monthly active users in a month, of one application or of all the
/// workspace's, in id order: each one billed can be checked.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/usage/mau/users", tag = "billing",
    params(("wsId" = String, Path), CountedParams),
    responses((status = 200, body = List<CountedUser>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn counted_users(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<CountedParams>,
) -> Result<axum::Json<List<CountedUser>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let app: Option<ApplicationId> = params
        .application_id
        .as_deref()
        .map(|id| path_id(id, "application"))
        .transpose()?;
    let page = PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let users = state
        .control
        .counted_users(
            &caller.actor,
            &ws,
            params.month.as_deref(),
            app.as_ref(),
            &page,
        )
        .await?;
    Ok(axum::Json(List::from_page(users, |u| u)))
}
