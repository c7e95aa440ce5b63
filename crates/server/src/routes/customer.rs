//! The customer API, `/v1/{appId}/…`: one application's own surface, reached with its
//! publishable or secret key. Its first route says which application and key type a key is.

use std::net::SocketAddr;
use std::sync::Arc;

use authsome_control::admission::{
    AdminAccess, Admission, Admitted, Presented, Refusal, Scope, SignedRequest,
};
use authsome_domain::keys::KeyKind;
use authsome_domain::tenancy::{ApiKey, AppStatus, Application, Environment};
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

/// The request's admission through the control plane's one entry point, for routes that need
/// a key: the application must be serving (`active`).
pub async fn keyed(state: &AppState, app_id: &str, parts: &Parts) -> Result<Admitted, ApiError> {
    admit(state, app_id, parts, false).await
}

/// An admin route's access: the request admitted with the application's secret key holding
/// scope `S` (refusals are audited by the control plane).
pub async fn admin<S: Scope>(
    state: &AppState,
    app_id: &str,
    parts: &Parts,
) -> Result<AdminAccess<S>, ApiError> {
    let admitted = keyed(state, app_id, parts).await?;
    Ok(state.control.admin_access::<S>(&admitted)?)
}

async fn admit(
    state: &AppState,
    app_id: &str,
    parts: &Parts,
    identify_only: bool,
) -> Result<Admitted, ApiError> {
    let path_with_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let digest = parts.extensions.get::<BodyDigest>().map(|d| d.0.as_str());
    let presented = presented_credential(parts, path_with_query, digest)?;
    let context = crate::request_id::context();
    let admission = Admission {
        application: app_id,
        presented,
        identify_only,
        client: context.as_ref().and_then(|c| c.ip.as_deref()),
    };
    settle(state.control.admit(admission, None).await)
}

/// What the request presents: a gateway's verified assertion first (on an instance), then a
/// signature, then a key.
fn presented_credential<'a>(
    parts: &'a Parts,
    path_with_query: &'a str,
    body_digest: Option<&'a str>,
) -> Result<Presented<'a>, ApiError> {
    if let Some(key_hash) = parts
        .extensions
        .get::<crate::gateway::Forwarded>()
        .and_then(|f| f.0.key_hash.as_deref())
    {
        return Ok(Presented::Forwarded { key_hash });
    }
    Ok(match signed(parts) {
        Some(signed) => {
            let signed = signed?;
            Presented::Signed(SignedRequest {
                key_id: signed.key_id,
                timestamp: signed.timestamp,
                signature: signed.signature,
                method: parts.method.as_str(),
                path_with_query,
                body_digest: body_digest.unwrap_or(EMPTY_BODY_DIGEST),
            })
        }
        None => match credential(parts) {
            Some(key) => Presented::Key(key),
            None => Presented::Nothing,
        },
    })
}

use authsome_domain::keys::signing::EMPTY_BODY_DIGEST;

/// The request context takes what the entry point learnt (for the audit log, the response's
/// customer-API headers and the log line), and a refusal becomes the contract's error.
fn settle(admitted: Result<Admitted, Refusal>) -> Result<Admitted, ApiError> {
    let (application, key, rate_limit) = match &admitted {
        Ok(a) => (Some(&a.application), Some(&a.key), a.rate_limit),
        Err(r) => (r.application.as_ref(), r.key.as_ref(), r.rate_limit),
    };
    if let Some(key) = key {
        crate::request_id::set_actor(authsome_domain::event::EventActor::Key(key.id.clone()));
    }
    if let Some(application) = application {
        crate::request_id::set_app(application);
    }
    if let Some(decision) = rate_limit {
        crate::request_id::set_rate_limit(decision);
    }
    Ok(admitted?)
}

/// Which application and key the request's credential proves, and nothing more: no
/// admission, no rate limit, and a signature is not marked used. For the idempotency record,
/// which is kept per authenticated key.
pub(crate) async fn authenticated_key(
    state: &AppState,
    app_id: &str,
    parts: &Parts,
) -> Result<(Arc<Application>, Arc<ApiKey>), ApiError> {
    let path_with_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let digest = parts.extensions.get::<BodyDigest>().map(|d| d.0.as_str());
    let control = &state.control;
    Ok(
        match presented_credential(parts, path_with_query, digest)? {
            Presented::Forwarded { key_hash } => {
                control.verify_forwarded_key(app_id, key_hash).await?
            }
            Presented::Signed(s) => {
                control
                    .verify_signed_request(
                        app_id,
                        s.key_id,
                        s.timestamp,
                        s.signature,
                        s.method,
                        s.path_with_query,
                        s.body_digest,
                    )
                    .await?
            }
            Presented::Key(key) => control.verify_app_key(app_id, key).await?,
            Presented::Nothing => {
                return Err(ApiError::unauthorized("missing API key"));
            }
        },
    )
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
) -> Result<Admitted, ApiError> {
    let context = crate::request_id::context();
    let admission = Admission {
        application: app_id,
        presented: Presented::Key(credential),
        identify_only: false,
        client: context.as_ref().and_then(|c| c.ip.as_deref()),
    };
    settle(state.control.admit(admission, Some(memo)).await)
}

pub(crate) const KEY_ID_HEADER: HeaderName = HeaderName::from_static("x-api-key-id");
const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static("x-timestamp");
pub(crate) const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-signature");

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

/// For signed requests and proofs of possession only: reads the body (within the size limit), records its digest and
/// hands the same bytes on.
pub(crate) async fn digest_signed_body(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let proof_of_possession = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 4 && v[..4].eq_ignore_ascii_case("pop "));
    if !request.headers().contains_key(SIGNATURE_HEADER) && !proof_of_possession {
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
    Ok(state.control.admit_public(app).await?)
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
    params(("appId" = String, Path)),
    responses((status = 200, body = AppIdentity), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = []), ("publishableKey" = [])))]
pub async fn identify(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let Admitted {
        application: app,
        key,
        ..
    } = admit(&state, &app_id, &parts, true).await?;
    Ok(axum::Json(AppIdentity {
        id: app.id.to_string(),
        name: app.name.clone(),
        environment: app.environment,
        status: app.status,
        key_type: key.kind,
    })
    .into_response())
}
