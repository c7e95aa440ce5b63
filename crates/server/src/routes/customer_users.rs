//! An application's admin API over its users and sessions: secret key only, by scope.

use authsome_control::admission::{SessionsRead, SessionsWrite, UsersRead, UsersWrite};
use authsome_domain::id::{SessionId, UserId};
use authsome_domain::identity::{Session, User};
use authsome_identity::{NewUser, UserPatch};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Json, Query};
use crate::routes::customer::admin;
use crate::views::List;
use crate::AppState;

/// A user as the admin API shows it: with `privateMetadata`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUser {
    #[serde(flatten)]
    pub user: User,
    #[schema(value_type = Object)]
    pub private_metadata: serde_json::Value,
}

impl From<User> for AdminUser {
    fn from(user: User) -> Self {
        Self {
            private_metadata: user.private_metadata.clone(),
            user,
        }
    }
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Exact email, case-insensitive.
    pub email: Option<String>,
    /// Part of the email or name, case-insensitive.
    pub query: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(post, path = "/v1/{appId}/users", tag = "users",
    params(("appId" = String, Path)),
    request_body = NewUser,
    responses((status = 201, body = AdminUser), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
    Json(input): Json<NewUser>,
) -> Result<(StatusCode, axum::Json<AdminUser>), ApiError> {
    let access = admin::<UsersWrite>(&state, &app_id, &parts).await?;
    let user = state.identity.create_user(&access, input).await?;
    Ok((StatusCode::CREATED, axum::Json(user.into())))
}

#[utoipa::path(get, path = "/v1/{appId}/users", tag = "users",
    params(("appId" = String, Path), UserListParams),
    responses((status = 200, body = List<AdminUser>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(params): Query<UserListParams>,
    parts: Parts,
) -> Result<axum::Json<List<AdminUser>>, ApiError> {
    let access = admin::<UsersRead>(&state, &app_id, &parts).await?;
    let page = authsome_domain::page::PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let users = state
        .identity
        .list_users(
            &access,
            params.email.as_deref(),
            params.query.as_deref(),
            &page,
        )
        .await?;
    Ok(axum::Json(List::from_page(users, AdminUser::from)))
}

#[utoipa::path(get, path = "/v1/{appId}/users/{usrId}", tag = "users",
    params(("appId" = String, Path), ("usrId" = String, Path)),
    responses((status = 200, body = AdminUser), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path((app_id, user)): Path<(String, String)>,
    parts: Parts,
) -> Result<axum::Json<AdminUser>, ApiError> {
    let access = admin::<UsersRead>(&state, &app_id, &parts).await?;
    let user: UserId = path_id(&user, "user")?;
    Ok(axum::Json(
        state.identity.get_user(&access, &user).await?.into(),
    ))
}

#[utoipa::path(patch, path = "/v1/{appId}/users/{usrId}", tag = "users",
    params(("appId" = String, Path), ("usrId" = String, Path)),
    request_body = UserPatch,
    responses((status = 200, body = AdminUser), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path((app_id, user)): Path<(String, String)>,
    parts: Parts,
    Json(patch): Json<UserPatch>,
) -> Result<axum::Json<AdminUser>, ApiError> {
    let access = admin::<UsersWrite>(&state, &app_id, &parts).await?;
    let user: UserId = path_id(&user, "user")?;
    Ok(axum::Json(
        state
            .identity
            .update_user(&access, &user, patch)
            .await?
            .into(),
    ))
}

#[utoipa::path(delete, path = "/v1/{appId}/users/{usrId}", tag = "users",
    params(("appId" = String, Path), ("usrId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path((app_id, user)): Path<(String, String)>,
    parts: Parts,
) -> Result<StatusCode, ApiError> {
    let access = admin::<UsersWrite>(&state, &app_id, &parts).await?;
    let user: UserId = path_id(&user, "user")?;
    state.identity.delete_user(&access, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables a user: sign-in is refused and every session ends at once.
#[utoipa::path(post, path = "/v1/{appId}/users/{usrId}/disable", tag = "users",
    params(("appId" = String, Path), ("usrId" = String, Path)),
    responses((status = 200, body = AdminUser), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable(
    State(state): State<AppState>,
    Path((app_id, user)): Path<(String, String)>,
    parts: Parts,
) -> Result<axum::Json<AdminUser>, ApiError> {
    set_disabled(state, app_id, user, parts, true).await
}

#[utoipa::path(post, path = "/v1/{appId}/users/{usrId}/enable", tag = "users",
    params(("appId" = String, Path), ("usrId" = String, Path)),
    responses((status = 200, body = AdminUser), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn enable(
    State(state): State<AppState>,
    Path((app_id, user)): Path<(String, String)>,
    parts: Parts,
) -> Result<axum::Json<AdminUser>, ApiError> {
    set_disabled(state, app_id, user, parts, false).await
}

async fn set_disabled(
    state: AppState,
    app_id: String,
    user: String,
    parts: Parts,
    disabled: bool,
) -> Result<axum::Json<AdminUser>, ApiError> {
    let access = admin::<UsersWrite>(&state, &app_id, &parts).await?;
    let user: UserId = path_id(&user, "user")?;
    Ok(axum::Json(
        state
            .identity
            .set_disabled(&access, &user, disabled)
            .await?
            .into(),
    ))
}

#[utoipa::path(get, path = "/v1/{appId}/users/{usrId}/sessions", tag = "users",
    params(("appId" = String, Path), ("usrId" = String, Path), PageParams),
    responses((status = 200, body = List<Session>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sessions(
    State(state): State<AppState>,
    Path((app_id, user)): Path<(String, String)>,
    Query(params): Query<PageParams>,
    parts: Parts,
) -> Result<axum::Json<List<Session>>, ApiError> {
    let access = admin::<SessionsRead>(&state, &app_id, &parts).await?;
    let user: UserId = path_id(&user, "user")?;
    let page = authsome_domain::page::PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let sessions = state.identity.user_sessions(&access, &user, &page).await?;
    Ok(axum::Json(List::from_page(sessions, |s| s)))
}

/// Revokes a session: its access tokens stop working here at once, its refresh token too.
#[utoipa::path(delete, path = "/v1/{appId}/sessions/{sesId}", tag = "users",
    params(("appId" = String, Path), ("sesId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_session(
    State(state): State<AppState>,
    Path((app_id, session)): Path<(String, String)>,
    parts: Parts,
) -> Result<StatusCode, ApiError> {
    let access = admin::<SessionsWrite>(&state, &app_id, &parts).await?;
    let session: SessionId = path_id(&session, "session")?;
    state.identity.revoke_session(&access, &session).await?;
    Ok(StatusCode::NO_CONTENT)
}
