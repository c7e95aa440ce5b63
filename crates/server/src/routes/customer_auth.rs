//! The public auth surface of an application: sign-up, sign-in, refresh, sign-out, the current
//! user, and the keys and discovery document that let anyone verify its tokens.

use authsome_domain::identity::User;
use authsome_identity::{IssuedSession, SignIn, SignUp};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde_json::json;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::routes::customer::{client_info, client_info_with_proof, keyed, presented, public};
use crate::AppState;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub user: User,
    pub session: IssuedSession,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshResponse {
    pub session: IssuedSession,
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Creates a user with email and password and signs them in.
#[utoipa::path(post, path = "/v1/{appId}/auth/signup", tag = "customer",
    params(("appId" = String, Path)),
    request_body = SignUp,
    responses((status = 201, body = AuthResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = []), ("publishableKey" = [])))]
pub async fn sign_up(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
    Json(input): Json<SignUp>,
) -> Result<(StatusCode, axum::Json<AuthResponse>), ApiError> {
    let app = keyed(&state, &app_id, &parts).await?.application;
    state.control.admit_sign_up(&app).await?;
    let (user, session) = state
        .identity
        .sign_up(
            &app.id,
            input,
            &client_info_with_proof(&state, &parts).await?,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AuthResponse { user, session }),
    ))
}

/// Signs a user in. Wrong password and unknown email get the same answer; repeated failures
/// lock sign-in for a while (429 with `Retry-After`).
#[utoipa::path(post, path = "/v1/{appId}/auth/signin", tag = "customer",
    params(("appId" = String, Path)),
    request_body = SignIn,
    responses((status = 200, body = AuthResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = []), ("publishableKey" = [])))]
pub async fn sign_in(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
    Json(input): Json<SignIn>,
) -> Result<axum::Json<AuthResponse>, ApiError> {
    let app = keyed(&state, &app_id, &parts).await?.application;
    let (user, session) = state
        .identity
        .sign_in(
            &app.id,
            input,
            &client_info_with_proof(&state, &parts).await?,
        )
        .await?;
    Ok(axum::Json(AuthResponse { user, session }))
}

/// Exchanges a refresh token (once) for a new access and refresh token.
#[utoipa::path(post, path = "/v1/{appId}/auth/refresh", tag = "customer",
    params(("appId" = String, Path)),
    request_body = RefreshRequest,
    responses((status = 200, body = RefreshResponse), (status = "4XX", body = ErrorBody)),
    security(("bearer" = []), ("publishableKey" = [])))]
pub async fn refresh(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
    Json(input): Json<RefreshRequest>,
) -> Result<axum::Json<RefreshResponse>, ApiError> {
    let app = keyed(&state, &app_id, &parts).await?.application;
    let jkt = crate::dpop::verify(&state, &parts, None).await?;
    let session = state
        .identity
        .refresh_with_proof(
            &app.id,
            &input.refresh_token,
            jkt.as_deref(),
            client_info(&parts).ip.as_deref(),
        )
        .await?;
    Ok(axum::Json(RefreshResponse { session }))
}

/// Ends the session of the access token in `Authorization: Bearer`.
#[utoipa::path(post, path = "/v1/{appId}/auth/signout", tag = "customer",
    params(("appId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sign_out(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
) -> Result<StatusCode, ApiError> {
    let app = public(&state, &app_id).await?;
    state
        .identity
        .sign_out(&app.id, presented(&state, &parts).await?.get())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user of the access token.
#[utoipa::path(get, path = "/v1/{appId}/me", tag = "customer",
    params(("appId" = String, Path)),
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
) -> Result<axum::Json<User>, ApiError> {
    let app = public(&state, &app_id).await?;
    let (user, _, _) = state
        .identity
        .authenticate(&app.id, presented(&state, &parts).await?.get())
        .await?;
    Ok(axum::Json(user))
}

/// The application's token-verification keys (every key that may still verify a live token).
#[utoipa::path(get, path = "/v1/{appId}/.well-known/jwks.json", tag = "customer",
    params(("appId" = String, Path)),
    responses((status = 200, description = "JWK Set (RFC 7517)"), (status = "4XX", body = ErrorBody)))]
pub async fn jwks(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = public(&state, &app_id).await?;
    Ok(axum::Json(state.identity.key_set(&app.id).await?.jwks()))
}

/// OpenID discovery: issuer, JWKS location and the algorithms in use.
#[utoipa::path(get, path = "/v1/{appId}/.well-known/openid-configuration", tag = "customer",
    params(("appId" = String, Path)),
    responses((status = 200, description = "OpenID Provider Metadata"), (status = "4XX", body = ErrorBody)))]
pub async fn openid_configuration(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = public(&state, &app_id).await?;
    let issuer = state.identity.issuer(&app.id);
    Ok(axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "userinfo_endpoint": format!("{issuer}/me"),
        "token_endpoint": format!("{issuer}/auth/refresh"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": ["iss", "sub", "aud", "sid", "iat", "exp", "org", "orgRole"],
    })))
}

/// The signed-in user's own sessions.
#[utoipa::path(get, path = "/v1/{appId}/me/sessions", tag = "customer",
    params(("appId" = String, Path), crate::routes::customer_users::PageParams),
    responses((status = 200, body = crate::views::List<authsome_domain::identity::Session>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn my_sessions(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    crate::extract::Query(params): crate::extract::Query<crate::routes::customer_users::PageParams>,
    parts: Parts,
) -> Result<axum::Json<crate::views::List<authsome_domain::identity::Session>>, ApiError> {
    let app = public(&state, &app_id).await?;
    let page = authsome_domain::page::PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let sessions = state
        .identity
        .my_sessions(&app.id, presented(&state, &parts).await?.get(), &page)
        .await?;
    Ok(axum::Json(crate::views::List::from_page(sessions, |s| s)))
}

/// Ends one of the signed-in user's own sessions (another user's is 404).
#[utoipa::path(delete, path = "/v1/{appId}/me/sessions/{sesId}", tag = "customer",
    params(("appId" = String, Path), ("sesId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_my_session(
    State(state): State<AppState>,
    Path((app_id, session)): Path<(String, String)>,
    parts: Parts,
) -> Result<StatusCode, ApiError> {
    let app = public(&state, &app_id).await?;
    let session: authsome_domain::id::SessionId = crate::extract::path_id(&session, "session")?;
    state
        .identity
        .revoke_my_session(&app.id, presented(&state, &parts).await?.get(), &session)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
