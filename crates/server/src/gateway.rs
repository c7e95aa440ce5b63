//! Routing of the customer API by application: a `tenancy: shared` application is served by the
//! engine in this process; a `tenancy: dedicated` one is checked here (key, standing, rate
//! limit, quota, metering: the same entry point as in process) and then forwarded to one of its
//! upstream instances, which are this binary run as `authsome serve --app <appId>`.
//!
//! An instance (`HttpSettings::only_app`) serves only its application's `/v1/{appId}/…` and
//! health. It believes what the gateway checked (key, client address, request id) only under a
//! valid `X-AuthSome-Forwarded` assertion ([`authsome_gateway::forward`]); a request that
//! reaches it directly goes through the whole entry point itself.
//!
//! This module must not know what a route does: it routes by the path's application and never
//! looks at bodies beyond their length.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use authsome_domain::tenancy::{Application, Tenancy};
use authsome_gateway::forward::{self, Assertion, Claims, ForwardedFields, FORWARDED_HEADER};
use authsome_gateway::proxy::{Outgoing, ProxyError};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::routes::customer;
use crate::AppState;

/// Bodies up to this size are read before forwarding, so that a request can be sent again on
/// another upstream; larger ones (and chunked ones) stream through once.
pub(crate) const REPLAYABLE_BODY_BYTES: u64 = 64 * 1024;

/// Marks a response to a request this gateway handled for a dedicated application (for the
/// `route="forwarded"` metrics label).
#[derive(Clone, Copy, Debug)]
pub struct ForwardedResponse;

/// What a valid forwarding assertion told an instance.
#[derive(Clone, Debug)]
pub struct Forwarded(pub Assertion);

/// The application named by a customer-API path (`/v1/{appId}` or `/v1/{appId}/…`).
pub(crate) fn customer_app(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/")?;
    let app = rest.split('/').next()?;
    (!app.is_empty()).then_some(app)
}

/// The direct path for a dedicated application's customer-API request that needs nothing of
/// the router's layers (no body signature to digest): the
/// request-id layer's work ([`crate::request_id::instrument_as`]) around `forward_to_upstream`,
/// exactly as [`dispatch`] would do it after the router. Any other request is given back, for
/// the router (which needs the peer address as the `ConnectInfo` extension; this path takes it
/// as `peer`).
#[cfg(feature = "direct-path")]
pub async fn forward_directly(
    state: &AppState,
    request: Request,
    peer: SocketAddr,
) -> Result<Response, Request> {
    let headers = request.headers();
    if state.http.only_app.is_some() || headers.contains_key(customer::SIGNATURE_HEADER) {
        return Err(request);
    }
    let app = match customer_app(request.uri().path()) {
        Some(app_id) => match state.control.public_application(app_id).await {
            Ok(app) if app.tenancy == Tenancy::Dedicated => app,
            _ => return Err(request),
        },
        None => return Err(request),
    };
    use futures_util::FutureExt;
    let route = Some(crate::metrics::FORWARDED_ROUTE);
    Ok(
        crate::request_id::instrument_as(request, Some(peer), route, |request| async move {
            let forwarded = std::panic::AssertUnwindSafe(forward_to_upstream(state, app, request))
                .catch_unwind()
                .await;
            match forwarded {
                Ok(response) => response.unwrap_or_else(IntoResponse::into_response),
                Err(panic) => crate::request_id::panic_response(panic),
            }
        })
        .await,
    )
}

/// Routes every request: dedicated applications' traffic is forwarded; on an instance, only its
/// own application (and health) is served.
pub async fn dispatch(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(ForwardRefused(why)) = request.extensions().get::<ForwardRefused>() {
        return ApiError::unauthorized(why.clone()).into_response();
    }
    let path = request.uri().path();
    let app_id = customer_app(path).map(str::to_owned);
    if let Some(only) = &state.http.only_app {
        return match app_id {
            Some(app) if app == only.as_str() => next.run(request).await,
            Some(_) => ApiError::not_found("application").into_response(),
            None if matches!(path, "/health" | "/ready" | "/metrics" | "/openapi.json") => {
                next.run(request).await
            }
            None => crate::routes::not_found().await.into_response(),
        };
    }
    let Some(app_id) = app_id else {
        return next.run(request).await;
    };
    match state.control.public_application(&app_id).await {
        Ok(app) if app.tenancy == Tenancy::Dedicated => {
            let mut response = forward_to_upstream(&state, app, request)
                .await
                .unwrap_or_else(IntoResponse::into_response);
            response.extensions_mut().insert(ForwardedResponse);
            response
        }
        // Shared, unknown or malformed: the in-process routes answer (404 for the last two).
        _ => next.run(request).await,
    }
}

async fn forward_to_upstream(
    state: &AppState,
    app: Arc<Application>,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let app_id = app.id.to_string();
    check_target(parts.uri.path())?;
    if is_our_own_forward(state, &parts) {
        // An upstream of this application is a gateway, not `serve --app`: forwarding again
        // would go round forever.
        tracing::error!(app = %app_id, "forwarding loop: an upstream is not an instance");
        return Err(forwarding_loop());
    }
    // The same entry point as in process: a key is verified with the request's own credential
    // (rate limit, quota and metering included); keyless routes need a serving application in
    // good standing.
    let key_hash = if customer::credential(&parts).is_some() || customer::is_signed(&parts) {
        let admitted = customer::keyed(state, &app_id, &parts).await?;
        debug_assert_eq!(admitted.application.id.as_str(), app_id);
        Some(admitted.key.hash.hex())
    } else {
        customer::public(state, &app_id).await?;
        None
    };
    // The request context has both already (the peer address as text, the request id).
    let context = crate::request_id::context();
    let client_ip = context
        .as_ref()
        .and_then(|c| c.ip.clone())
        .unwrap_or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(
                    || "unknown".to_owned(),
                    |c| crate::request_id::ip_text(c.0.ip()),
                )
        });
    let request_id = context.map_or_else(crate::request_id::current_request_id, |c| c.id.clone());
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // The body's length as the connection declared it (`Content-Length`, or none at all);
    // `None` for a chunked body of unknown size. A body held whole is bound to the assertion.
    let length = http_body::Body::size_hint(&body).exact();
    if length.is_some_and(|l| l > state.http.max_body_bytes as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let outgoing = match length {
        Some(0) => Outgoing::Buffered(axum::body::Bytes::new()),
        Some(l) if l <= REPLAYABLE_BODY_BYTES => Outgoing::Buffered(
            axum::body::to_bytes(body, REPLAYABLE_BODY_BYTES as usize)
                .await
                .map_err(|_| ApiError::bad_request("the request body could not be read"))?,
        ),
        _ => Outgoing::Streamed(body),
    };
    let body_sha256 = match &outgoing {
        Outgoing::Buffered(bytes) => Some(forward::body_sha256(bytes)),
        Outgoing::Streamed(_) => None,
    };
    if parts.headers.contains_key(crate::dpop::DPOP_HEADER) {
        let proof = parts
            .headers
            .get(crate::dpop::DPOP_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        crate::dpop::use_proof_at_gateway(
            state,
            &app_id,
            parts.method.as_str(),
            parts.uri.path(),
            proof,
        )
        .await?;
    }
    let claims = Claims {
        issued_at: authsome_domain::unix_seconds(),
        app_id: &app_id,
        request_id: &request_id,
        client_ip: &client_ip,
        key_hash: key_hash.as_ref().map(|h| h.as_str()),
        body_sha256: body_sha256.as_deref(),
    };
    let signed = state
        .forward_key
        .sign(&claims, parts.method.as_str(), &path);
    let original_host = parts.headers.get(header::HOST).cloned();
    let headers = &mut parts.headers;
    forward::strip_hop_by_hop(headers);
    forward::strip_client_identity(headers);
    let fields = ForwardedFields {
        app_id: &app_id,
        request_id: &request_id,
        assertion: &signed,
        client_ip: &client_ip,
        proto: forwarded_proto(state),
        host: original_host.as_ref().map(HeaderValue::as_bytes),
    };
    fields.each(|name, value| {
        let value = HeaderValue::from_bytes(value).map_err(|_| ApiError::internal())?;
        headers.insert(HeaderName::from_static(name), value);
        Ok::<_, ApiError>(())
    })?;

    let response = state
        .proxy
        .forward(&app.upstreams, parts, outgoing)
        .await
        .map_err(|e| forward_failure(&app_id, e))?;
    let (mut parts, body) = response.into_parts();
    // Framed again here, from the body's own length (hyper writes it).
    forward::strip_response_framing(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The scheme clients reach the deployment by, as forwarded to instances.
pub(crate) fn forwarded_proto(state: &AppState) -> &'static str {
    if state.identity.public_url().starts_with("https:") {
        "https"
    } else {
        "http"
    }
}

/// A path that an instance could read as another ([`forward::check_target`]) is not forwarded.
pub(crate) fn check_target(path: &str) -> Result<(), ApiError> {
    forward::check_target(path)
        .map_err(|why| ApiError::bad_request(format!("the request path {why}")))
}

/// The answer to a request that already carries this deployment's assertion: an upstream of
/// its application is a gateway, and forwarding again would go round forever.
pub(crate) fn forwarding_loop() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "forwarding loop: an upstream of this application is a gateway, not an instance",
    )
}

/// The answer to a request that could not be forwarded (logged and counted).
pub(crate) fn forward_failure(app_id: &str, e: ProxyError) -> ApiError {
    tracing::warn!(app = %app_id, error = %e, "forwarding failed");
    let reason = match e {
        ProxyError::NoHealthyUpstream => "no_healthy_upstream",
        ProxyError::Timeout(_) => "timeout",
        ProxyError::Upstream(_) | ProxyError::BadUpstream(_) => "upstream_error",
    };
    metrics::counter!(crate::metrics::FORWARD_FAILURES, "reason" => reason).increment(1);
    match e {
        ProxyError::NoHealthyUpstream => ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no instance of this application is available",
            )
        },
        ProxyError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "the application's instance did not answer in time",
        ),
        ProxyError::Upstream(_) | ProxyError::BadUpstream(_) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "the application's instance could not be reached",
        ),
    }
}

/// Whether the request already carries a valid assertion of this deployment's gateways.
fn is_our_own_forward(state: &AppState, parts: &axum::http::request::Parts) -> bool {
    parts
        .headers
        .get(FORWARDED_HEADER)
        .is_some_and(|value| verify_assertion(state, value, &parts.method, &parts.uri).is_ok())
}

/// Checks an `X-AuthSome-Forwarded` value against the request it came with, now.
fn verify_assertion(
    state: &AppState,
    value: &HeaderValue,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
) -> Result<Assertion, forward::ForwardError> {
    let value = value
        .to_str()
        .map_err(|_| forward::ForwardError::Malformed)?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    state.forward_key.verify(
        value,
        method.as_str(),
        path,
        authsome_domain::unix_seconds(),
    )
}

/// On an instance: checks the gateway's assertion, if the request carries one, and then trusts
/// its client address and request id. A forged or stale assertion is refused (401, by
/// [`dispatch`]); the header is removed either way. Runs outside the request-id layer, which
/// then adopts the gateway's request id.
pub async fn trust_forwarded(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(only) = &state.http.only_app else {
        return next.run(request).await;
    };
    let Some(value) = request.headers_mut().remove(FORWARDED_HEADER) else {
        return next.run(request).await;
    };
    let checked = match verify_assertion(&state, &value, request.method(), request.uri()) {
        Ok(assertion) if assertion.app_id == only.as_str() => {
            assertion_holds(&state, &assertion, request)
                .await
                .map(|request| (assertion, request))
        }
        Ok(_) => Err((
            "forwarding assertion for another application".to_owned(),
            request,
        )),
        Err(e) => Err((e.to_string(), request)),
    };
    match checked {
        Ok((assertion, mut request)) => {
            if let Ok(ip) = assertion.client_ip.parse::<IpAddr>() {
                request
                    .extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(ip, 0)));
            }
            request.extensions_mut().insert(Forwarded(assertion));
            next.run(request).await
        }
        Err((why, mut request)) => {
            tracing::warn!(reason = %why, "forwarded request refused");
            // Refused by [`dispatch`], inside the request-id layer, so the refusal carries one.
            request.extensions_mut().insert(ForwardRefused(why));
            next.run(request).await
        }
    }
}

/// What a verified assertion binds beyond its signature: the body that came with it is the one
/// the gateway held and hashed, and it is used once (its request id is the one-time id).
async fn assertion_holds(
    state: &AppState,
    assertion: &Assertion,
    request: Request,
) -> Result<Request, (String, Request)> {
    let request = match &assertion.body_sha256 {
        // A body the gateway streamed through (over 64 KiB, or chunked): bound by the
        // assertion's one use, method and path only.
        None => request,
        Some(expected) => {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, REPLAYABLE_BODY_BYTES as usize)
                .await
                .unwrap_or_default();
            let matches = forward::body_sha256(&bytes) == expected.as_str();
            let request = Request::from_parts(parts, Body::from(bytes));
            if !matches {
                return Err((
                    "the body is not the one the assertion names".to_owned(),
                    request,
                ));
            }
            request
        }
    };
    let once = authsome_domain::shared_state::app_scoped(
        &assertion.app_id,
        "forwarded",
        &assertion.request_id,
    );
    // Kept for as long as the assertion's time would still pass.
    let window = std::time::Duration::from_secs(2 * forward::MAX_SKEW_SECONDS + 5);
    match state.replay.first_use(&once, window).await {
        Ok(true) => Ok(request),
        Ok(false) => Err(("forwarding assertion already used".to_owned(), request)),
        Err(e) => {
            tracing::error!(error = %e, "replay cache unavailable; forwarded request refused");
            Err((
                "forwarding assertions cannot be checked now".to_owned(),
                request,
            ))
        }
    }
}

/// A forwarding assertion that did not verify.
#[derive(Clone, Debug)]
struct ForwardRefused(String);

#[cfg(test)]
mod tests {
    use super::customer_app;

    #[test]
    fn application_of_a_path() {
        assert_eq!(customer_app("/v1/app_1"), Some("app_1"));
        assert_eq!(customer_app("/v1/app_1/users/x"), Some("app_1"));
        assert_eq!(customer_app("/v1/"), None);
        assert_eq!(customer_app("/v1"), None);
        assert_eq!(customer_app("/control/v1/x"), None);
    }
}
