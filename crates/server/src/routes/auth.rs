//! `/control/v1/auth`: team-member login, logout, who am I, accepting an invitation.

use authsome_control::AcceptInvitation;
use authsome_domain::tenancy::Member;
use axum::extract::State;
use axum::http::StatusCode;

use axum::http::request::Parts;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Json};
use crate::routes::customer::client_info;
use crate::views::{LoginView, UserView};
use crate::AppState;

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(schema_with = authsome_domain::schema::email)]
    pub email: String,
    #[schema(schema_with = authsome_domain::schema::presented_password)]
    pub password: String,
}

/// Exchanges a team member's email and password for a short-lived session token.
#[utoipa::path(post, path = "/control/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = LoginView), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Json(input): Json<LoginRequest>,
) -> Result<axum::Json<LoginView>, ApiError> {
    let client = client_info(&parts);
    let done = state
        .control
        .login(&input.email, &input.password, client.ip.as_deref())
        .await?;
    Ok(axum::Json(LoginView {
        token: done.token,
        expires_at: done.expires_at,
        user: UserView {
            account: done.account,
            memberships: done.memberships,
        },
    }))
}

/// Ends the session whose token is presented.
#[utoipa::path(post, path = "/control/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    state.control.logout(&caller.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in account and its memberships.
#[utoipa::path(get, path = "/control/v1/auth/me", tag = "auth",
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<UserView>, ApiError> {
    let (account, memberships) = state.control.me(&caller.actor, &caller.token).await?;
    Ok(axum::Json(UserView {
        account,
        memberships,
    }))
}

/// Accepts an invitation: sets the password (or confirms an existing one) and activates the
/// membership. The token works once, for 7 days.
#[utoipa::path(post, path = "/control/v1/auth/accept-invitation", tag = "auth",
    request_body = AcceptInvitation,
    responses((status = 200, body = Member), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    parts: Parts,
    Json(input): Json<AcceptInvitation>,
) -> Result<axum::Json<Member>, ApiError> {
    let client = client_info(&parts);
    Ok(axum::Json(
        state
            .control
            .accept_invitation(input, client.ip.as_deref())
            .await?,
    ))
}
