//! The customer API, `/v1/{appId}/…`: one application's own surface, reached with its
//! publishable or secret key. Its first route says which application and key type a key is.

use std::net::SocketAddr;
use std::sync::Arc;

use authsome_domain::event::{DomainEvent, EventActor, EventSink, Outcome};
use authsome_domain::keys::KeyKind;
use authsome_domain::shared_state::app_scoped;
use authsome_domain::tenancy::{
    ApiKey, AppStatus, Application, Environment, KeyScope, PaymentStatus, Workspace,
    WorkspaceStatus,
};
use authsome_gateway::Limit;
use authsome_identity::ClientInfo;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody};
use crate::extract::bearer;
use crate::AppState;

/// The name of the header that carries a publishable key.
pub(crate) const PUBLISHABLE_KEY: &str = "x-publishable-key";
const PUBLISHABLE_KEY_HEADER: HeaderName = HeaderName::from_static(PUBLISHABLE_KEY);

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppIdentity {
    pub id: String,
    pub name: String,
    pub environment: Environment,
    pub status: AppStatus,
    /// `publishable` or `secret`.
    pub key_type: KeyKind,
}

/// The key a customer-API request carries: `Authorization: Bearer` (unless that holds an access
/// token) or `X-Publishable-Key`.
pub fn credential(parts: &Parts) -> Option<&str> {
    let header_key = || parts.headers.get(PUBLISHABLE_KEY_HEADER)?.to_str().ok();
    credential_of(bearer(parts), header_key)
}

/// [`credential`] from the request's bearer token (if `Authorization` is `Bearer`) and its
/// `X-Publishable-Key` value, asked for only when needed.
pub(crate) fn credential_of<'a>(
    bearer: Option<&'a str>,
    publishable: impl FnOnce() -> Option<&'a str>,
) -> Option<&'a str> {
    match bearer {
        Some(token) if looks_like_key(token) => Some(token),
        _ => publishable().map(str::trim),
    }
}

fn looks_like_key(token: &str) -> bool {
    ["pk_", "sk_", "wk_"].iter().any(|p| token.starts_with(p))
}

/// The application of the path and the verified key of the request, for routes that need a key.
/// The application must be ready to serve (`active`).
pub async fn keyed(
    state: &AppState,
    app_id: &str,
    parts: &Parts,
) -> Result<(Arc<Application>, Arc<ApiKey>), ApiError> {
    let (app, key) = entry(state, app_id, parts).await?;
    ensure_serving(&app)?;
    Ok((app, key))
}

/// The entry point of every keyed request: the key verified against the application, the
/// workspace's standing, and the key's rate limit.
async fn entry(
    state: &AppState,
    app_id: &str,
    parts: &Parts,
) -> Result<(Arc<Application>, Arc<ApiKey>), ApiError> {
    let (app, key) = authenticated_key(state, app_id, parts).await?;
    // On a dedicated instance, the gateway already verified the key and applied the rate
    // limit, quota and metering; the key was looked up again only to refuse one revoked since.
    if is_forwarded_with_key(parts) {
        crate::request_id::set_actor(authsome_domain::event::EventActor::Key(key.id.clone()));
        crate::request_id::set_app(&app);
        ensure_standing(&*state.control.workspace_view(&app.workspace_id).await?)?;
        return Ok((app, key));
    }
    if let Some(Ok(signed)) = signed(parts) {
        first_use_of_signature(state, &app, &key, &signed).await?;
    }
    admit(state, app, key).await
}

fn is_forwarded_with_key(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<crate::gateway::Forwarded>()
        .is_some_and(|f| f.0.key_hash.is_some())
}

/// Which application and key the request's credential proves, and nothing more: no
/// admission, no rate limit, and a signature is not yet marked used. For the entry point, and
/// for the idempotency record, which is kept per authenticated key.
pub(crate) async fn authenticated_key(
    state: &AppState,
    app_id: &str,
    parts: &Parts,
) -> Result<(Arc<Application>, Arc<ApiKey>), ApiError> {
    if let Some(hash) = parts
        .extensions
        .get::<crate::gateway::Forwarded>()
        .and_then(|f| f.0.key_hash.as_deref())
    {
        return Ok(state.control.verify_forwarded_key(app_id, hash).await?);
    }
    match signed(parts) {
        Some(signed) => verify_signed(state, app_id, parts, signed).await,
        None => {
            let key = credential(parts).ok_or_else(|| {
                ApiError::unauthorized(
                    "missing API key (Authorization: Bearer, X-Publishable-Key or a signed request)",
                )
            })?;
            Ok(state.control.verify_app_key(app_id, key).await?)
        }
    }
}

/// [`keyed`] for a request that carries `credential` (as [`credential`] finds it) and is not
/// signed: the gateway's own HTTP path, which has no `Parts`, and keeps what its connection's
/// previous request resolved in `memo`.
#[cfg(feature = "direct-path")]
pub(crate) async fn keyed_by(
    state: &AppState,
    app_id: &str,
    credential: &str,
    memo: &mut authsome_control::ConnectionMemo,
) -> Result<(Arc<Application>, Arc<ApiKey>), ApiError> {
    let (app, key) = state.control.memo_app_key(memo, app_id, credential).await?;
    let (app, key) = admit(state, app, key).await?;
    ensure_serving(&app)?;
    Ok((app, key))
}

/// What every verified key goes through: the workspace's standing, the key's rate limit, the
/// monthly quota, and metering.
async fn admit(
    state: &AppState,
    app: Arc<Application>,
    key: Arc<ApiKey>,
) -> Result<(Arc<Application>, Arc<ApiKey>), ApiError> {
    crate::request_id::set_actor(authsome_domain::event::EventActor::Key(key.id.clone()));
    crate::request_id::set_app(&app);
    let workspace = state.control.workspace_view(&app.workspace_id).await?;
    ensure_standing(&workspace)?;
    let limit = Limit {
        per_second: workspace.requests_per_second_per_key(),
    };
    let cell = app_scoped(app.id.as_str(), "ratelimit", key.id.as_str());
    let checked = match state.limiter.check_now(&cell, limit) {
        Some(now) => now,
        None => state.limiter.check(&cell, limit).await,
    };
    let decision = match checked {
        Ok(d) => d,
        Err(e) => {
            // The shared limiter is down: keep serving (logged); limits resume with it.
            tracing::warn!(error = %e, "rate limiter unavailable; request allowed");
            return Ok((app, key));
        }
    };
    crate::request_id::set_rate_limit(decision);
    if let Some(wait) = decision.retry_after {
        return Err(ApiError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit of {} requests per second exceeded",
                    decision.limit
                ),
            )
        });
    }
    if let Some(quota) = workspace.requests_per_month() {
        if state.control.month_requests(&app.id).await? >= quota {
            let (_, next_month) = authsome_control::month_bounds(chrono::Utc::now());
            let wait = (next_month - chrono::Utc::now()).num_seconds().max(1) as u64;
            return Err(ApiError {
                retry_after: Some(wait),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("monthly quota of {quota} requests exceeded"),
                )
            });
        }
    }
    state.control.record_request(&app.id, &key.id);
    Ok((app, key))
}

pub(crate) const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-api-key-id");
const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static("x-timestamp");
pub(crate) const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-signature");

/// How long a signature is remembered: its whole validity window (±300 s) and a margin.
const SIGNATURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(660);

/// The three headers of a signed request, when it is one.
struct Signed<'a> {
    key_id: &'a str,
    timestamp: &'a str,
    signature: &'a str,
}

/// Whether the request claims to be signed (`X-Api-Key-Id`).
pub fn is_signed(parts: &Parts) -> bool {
    parts.headers.contains_key(KEY_ID_HEADER)
}

fn signed(parts: &Parts) -> Option<Result<Signed<'_>, ApiError>> {
    let header = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let key_id = header(&KEY_ID_HEADER)?;
    Some(
        match (header(&TIMESTAMP_HEADER), header(&SIGNATURE_HEADER)) {
            (Some(timestamp), Some(signature)) => Ok(Signed {
                key_id,
                timestamp,
                signature,
            }),
            _ => Err(ApiError::unauthorized(
                "a signed request needs X-Api-Key-Id, X-Timestamp and X-Signature",
            )),
        },
    )
}

/// The body's SHA-256 (hex), computed by [`digest_signed_body`] before the handler reads it.
#[derive(Clone)]
pub(crate) struct BodyDigest(pub String);

/// For signed requests only: reads the body (within the size limit), records its digest and
/// hands the same bytes on.
pub(crate) async fn digest_signed_body(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !request.headers().contains_key(SIGNATURE_HEADER) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, state.http.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                .into_response()
        }
    };
    parts
        .extensions
        .insert(BodyDigest(authsome_domain::keys::signing::body_digest(
            &bytes,
        )));
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

async fn verify_signed(
    state: &AppState,
    app_id: &str,
    parts: &Parts,
    signed: Result<Signed<'_>, ApiError>,
) -> Result<(Arc<Application>, Arc<ApiKey>), ApiError> {
    let signed = signed?;
    let digest = parts
        .extensions
        .get::<BodyDigest>()
        .map(|d| d.0.clone())
        .unwrap_or_else(|| authsome_domain::keys::signing::body_digest(b""));
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    Ok(state
        .control
        .verify_signed_request(
            app_id,
            signed.key_id,
            signed.timestamp,
            signed.signature,
            parts.method.as_str(),
            path,
            &digest,
        )
        .await?)
}

/// Each signature is accepted once, on any replica. Without the replay cache, refuse.
async fn first_use_of_signature(
    state: &AppState,
    app: &Application,
    key: &ApiKey,
    signed: &Signed<'_>,
) -> Result<(), ApiError> {
    let memo = app_scoped(
        app.id.as_str(),
        "replay-signature",
        &format!(
            "{}:{}",
            key.id,
            signed.signature.trim().to_ascii_lowercase()
        ),
    );
    match state.replay.first_use(&memo, SIGNATURE_MEMORY).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::unauthorized(
            "this request signature was already used",
        )),
        Err(e) => {
            tracing::error!(error = %e, "replay cache unavailable; signed request refused");
            Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "request signatures cannot be checked right now",
                )
            })
        }
    }
}

/// A suspended workspace is closed (403); one past due on payment gets 402.
fn ensure_standing(workspace: &Workspace) -> Result<(), ApiError> {
    if workspace.status == WorkspaceStatus::Suspended {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the workspace is suspended",
        ));
    }
    if workspace.payment_status == PaymentStatus::PastDue {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "the workspace's payment is past due",
        ));
    }
    Ok(())
}

/// The application of the path for routes reached without a key (JWKS, discovery, access-token
/// routes).
pub async fn public(state: &AppState, app_id: &str) -> Result<Arc<Application>, ApiError> {
    let app = state.control.public_application(app_id).await?;
    admit_public(state, app).await
}

/// [`public`] for an application already resolved from the path.
pub(crate) async fn admit_public(
    state: &AppState,
    app: Arc<Application>,
) -> Result<Arc<Application>, ApiError> {
    crate::request_id::set_app(&app);
    ensure_standing(&*state.control.workspace_view(&app.workspace_id).await?)?;
    ensure_serving(&app)?;
    Ok(app)
}

fn ensure_serving(app: &Application) -> Result<(), ApiError> {
    match app.status {
        AppStatus::Active => Ok(()),
        AppStatus::Provisioning => Err(ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the application is still being provisioned",
            )
        }),
        AppStatus::Suspended => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the application is suspended",
        )),
        AppStatus::Deleting => Err(ApiError::not_found("application")),
    }
}

/// Secret keys only, and only with the scope the route needs.
/// The admin API needs the application's secret key with `scope`; a refusal is audited.
pub fn require_secret(state: &AppState, key: &ApiKey, scope: KeyScope) -> Result<(), ApiError> {
    let refusal = if key.kind != KeyKind::Secret {
        "this route needs the application's secret key".to_owned()
    } else if !key.has_scope(scope) {
        format!("this key lacks the `{}` scope", scope.as_str())
    } else {
        return Ok(());
    };
    let mut denied = DomainEvent::new("permission.denied")
        .workspace(&key.workspace_id)
        .actor(EventActor::Key(key.id.clone()))
        .outcome(Outcome::Denied)
        .change("scope", scope.as_str());
    if let Some(app) = &key.application_id {
        denied = denied.application(app);
    }
    state.events.emit(denied);
    Err(ApiError::new(StatusCode::FORBIDDEN, refusal))
}

/// The access token of a request, with the key thumbprint of its DPoP proof when it comes as
/// `Authorization: DPoP <token>` (RFC 9449; the proof is then required). `Bearer` tokens carry
/// none, and a token bound to a key is refused without one by the identity engine.
pub async fn presented(state: &AppState, parts: &Parts) -> Result<PresentedToken, ApiError> {
    let missing =
        || ApiError::unauthorized("missing access token (Authorization: Bearer or DPoP <JWT>)");
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if token.is_empty() || looks_like_key(token) {
        return Err(missing());
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(PresentedToken {
            token: token.to_owned(),
            jkt: None,
        });
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(missing());
    }
    let jkt = crate::dpop::verify(state, parts, Some(token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("Authorization: DPoP needs a DPoP proof header"))?;
    Ok(PresentedToken {
        token: token.to_owned(),
        jkt: Some(jkt),
    })
}

/// An access token and its verified proof's key thumbprint.
pub struct PresentedToken {
    token: String,
    jkt: Option<String>,
}

impl PresentedToken {
    pub fn get(&self) -> authsome_identity::Presented<'_> {
        authsome_identity::Presented {
            token: &self.token,
            dpop_jkt: self.jkt.as_deref(),
        }
    }
}

/// [`client_info`], with the key thumbprint of the request's DPoP proof, if it has one (sign-up
/// and sign-in bind the new session to that key).
pub async fn client_info_with_proof(
    state: &AppState,
    parts: &Parts,
) -> Result<ClientInfo, ApiError> {
    let mut client = client_info(parts);
    client.dpop_jkt = crate::dpop::verify(state, parts, None).await?;
    Ok(client)
}

/// Client address (from the connection) and user agent, for sessions and throttling.
pub fn client_info(parts: &Parts) -> ClientInfo {
    ClientInfo {
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        dpop_jkt: None,
    }
}

/// Which application and key type the presented key belongs to.
#[utoipa::path(get, path = "/v1/{appId}", tag = "customer",
    params(("appId" = String, Path),
        ("X-Publishable-Key" = Option<String>, Header, description = "Alternative to Bearer for pk_ keys")),
    responses((status = 200, body = AppIdentity), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn identify(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let (app, key) = entry(&state, &app_id, &parts).await?;
    Ok(axum::Json(AppIdentity {
        id: app.id.to_string(),
        name: app.name.clone(),
        environment: app.environment,
        status: app.status,
        key_type: key.kind,
    })
    .into_response())
}
