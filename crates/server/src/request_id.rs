//! Request ids: every request gets a `req_…` id, carried in a task-local for error bodies and
//! logs, and returned as `X-AuthSome-Request-ID`. Also the safety net that turns any error
//! response not produced by [`crate::error`] (a panic, a layer's rejection) into the error body.

use std::sync::Arc;
use std::time::Instant;

use authsome_domain::event::EventActor;
use authsome_domain::id::RequestId;
use authsome_domain::tenancy::Application;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use smallvec::SmallVec;

use crate::error::error_response;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-authsome-request-id");

/// What the server knows about the request being served.
pub struct RequestContext {
    pub id: String,
    /// The peer address, for audit entries and forwarding.
    pub ip: Option<String>,
    /// The `User-Agent` as sent; read (and cut to [`USER_AGENT_CHARS`]) only when an audit
    /// entry asks, which most requests never do.
    user_agent: Option<HeaderValue>,
    actor: std::sync::Mutex<Option<EventActor>>,
    customer: std::sync::Mutex<CustomerHeaders>,
}

/// Headers every customer-API response carries once the application (and the key's rate
/// limit) is known.
#[derive(Default, Clone)]
pub(crate) struct CustomerHeaders {
    app: Option<Arc<Application>>,
    rate_limit: Option<authsome_gateway::Decision>,
    dpop_nonce: Option<String>,
}

/// `dpop::NONCE_HEADER`, as text.
const NONCE: &str = "dpop-nonce";
const APP_ID: &str = "x-authsome-app-id";
const LIMIT: &str = "x-ratelimit-limit";
const REMAINING: &str = "x-ratelimit-remaining";
const RESET: &str = "x-ratelimit-reset";

impl CustomerHeaders {
    /// Each field as name and value bytes (the forms of [`RequestContext::take_customer_headers`]).
    /// The values are the server's own (a parsed id, numbers, a generated nonce): field text.
    pub(crate) fn each(&self, mut f: impl FnMut(&'static str, &[u8])) {
        if let Some(nonce) = &self.dpop_nonce {
            f(NONCE, nonce.as_bytes());
        }
        if let Some(app) = &self.app {
            f(APP_ID, app.id.as_str().as_bytes());
        }
        if let Some(d) = self.rate_limit {
            let mut n = itoa::Buffer::new();
            f(LIMIT, n.format(d.limit).as_bytes());
            f(REMAINING, n.format(d.remaining).as_bytes());
            let reset = d.reset_after.as_secs_f64().ceil() as u64;
            f(RESET, n.format(reset).as_bytes());
        }
    }

    /// Whether one of these fields is named `name` (any case).
    #[cfg(feature = "direct-path")]
    pub(crate) fn names(&self, name: &[u8]) -> bool {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        (self.dpop_nonce.is_some() && is(NONCE))
            || (self.app.is_some() && is(APP_ID))
            || (self.rate_limit.is_some() && (is(LIMIT) || is(REMAINING) || is(RESET)))
    }
}

/// Records the `DPoP-Nonce` the response offers.
pub fn set_dpop_nonce(nonce: String) {
    if let Some(context) = context() {
        if let Ok(mut c) = context.customer.lock() {
            c.dpop_nonce = Some(nonce);
        }
    }
}

/// Records the application of a customer-API request (`X-AuthSome-App-ID`).
pub fn set_app(app: &Arc<Application>) {
    if let Some(context) = context() {
        if let Ok(mut c) = context.customer.lock() {
            c.app = Some(app.clone());
        }
    }
}

/// Records the rate-limit decision (`X-RateLimit-*`).
pub fn set_rate_limit(decision: authsome_gateway::Decision) {
    if let Some(context) = context() {
        if let Ok(mut c) = context.customer.lock() {
            c.rate_limit = Some(decision);
        }
    }
}

/// The longest `User-Agent` an audit entry keeps, in characters.
const USER_AGENT_CHARS: usize = 512;

impl RequestContext {
    pub(crate) fn new(id: String, ip: Option<String>, user_agent: Option<HeaderValue>) -> Self {
        Self {
            id,
            ip,
            user_agent,
            actor: std::sync::Mutex::new(None),
            customer: std::sync::Mutex::new(CustomerHeaders::default()),
        }
    }

    /// The customer-API response headers recorded while the request was served
    /// (`DPoP-Nonce`, `X-AuthSome-App-ID`, `X-RateLimit-*`), taken once.
    pub(crate) fn take_customer_headers(&self) -> SmallVec<[(HeaderName, HeaderValue); 5]> {
        let mut headers = SmallVec::new();
        self.take_customer().each(|name, value| {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.push((HeaderName::from_static(name), value));
            }
        });
        headers
    }

    /// The same headers, as recorded (for the gateway's own path, which writes bytes).
    pub(crate) fn take_customer(&self) -> CustomerHeaders {
        self.customer
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// The client's `User-Agent` (at most [`USER_AGENT_CHARS`] characters), if it sent one
    /// in text.
    pub fn user_agent(&self) -> Option<String> {
        // `to_str` takes visible ASCII only, so characters are bytes here.
        let agent = self.user_agent.as_ref()?.to_str().ok()?;
        Some(agent.get(..USER_AGENT_CHARS).unwrap_or(agent).to_owned())
    }

    pub fn actor(&self) -> Option<EventActor> {
        self.actor.lock().ok().and_then(|a| a.clone())
    }
}

tokio::task_local! {
    static REQUEST: std::sync::Arc<RequestContext>;
}

/// Runs `f` as the request of `context`.
pub(crate) async fn scope<F: std::future::Future>(
    context: std::sync::Arc<RequestContext>,
    f: F,
) -> F::Output {
    REQUEST.scope(context, f).await
}

/// The context of the request being served, if any.
pub fn context() -> Option<std::sync::Arc<RequestContext>> {
    REQUEST.try_with(Clone::clone).ok()
}

/// Records who is calling, once their credential is verified (for events and logs).
pub fn set_actor(actor: EventActor) {
    if let Some(context) = context() {
        if let Ok(mut slot) = context.actor.lock() {
            *slot = Some(actor);
        }
    }
}

/// The id of the request being served, or a fresh one outside any request.
pub fn current_request_id() -> String {
    context()
        .map(|c| c.id.clone())
        .unwrap_or_else(|| RequestId::for_request().into_string())
}

pub async fn layer(request: Request, next: Next) -> Response {
    instrument(request, |request| next.run(request)).await
}

/// What [`layer`] does around the rest of the stack, here `handler`: the request id and
/// context, the error-body safety net, the customer-API response headers, metrics and the
/// request log line.
pub async fn instrument<F, Fut>(request: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    instrument_as(request, peer, None, handler).await
}

/// The longest request target the server reads (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names, values and their separators) a request may carry.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields a request may carry.
pub const MAX_HEADER_FIELDS: usize = 100;

/// A request head over the server's own limits: 414 or 431 with the contract's body. (These
/// sit below hyper's hard cut-offs, which answer without a body: see `serve.rs`.)
fn oversized_head(request: &Request) -> Option<crate::error::ApiError> {
    use crate::error::ApiError;
    use axum::http::StatusCode;
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADER_FIELDS {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("more than {MAX_HEADER_FIELDS} header fields"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the header fields are longer than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    None
}

/// [`instrument`] for the server's direct forwarding path, which skips the router: the peer
/// address is given rather than read from the request's extensions, and the metrics route
/// label is fixed (neither needs an extension, which would be an allocation per request).
pub async fn instrument_as<F, Fut>(
    request: Request,
    peer: Option<std::net::SocketAddr>,
    route_label: Option<&'static str>,
    handler: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    // A request the gateway forwarded keeps the gateway's id, so both logs tell one story.
    let id = request
        .extensions()
        .get::<crate::gateway::Forwarded>()
        .map_or_else(
            || RequestId::for_request().into_string(),
            |f| f.0.request_id.clone(),
        );
    let started = Instant::now();
    let method = request.method().clone();
    let path = tracing::enabled!(tracing::Level::INFO).then(|| request.uri().path().to_owned());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let ip = peer.map(|p| ip_text(p.ip()));
    let user_agent = request.headers().get(header::USER_AGENT).cloned();
    let context = std::sync::Arc::new(RequestContext::new(id.clone(), ip, user_agent));
    let mut response = scope(context.clone(), async move {
        if let Some(refused) = oversized_head(&request) {
            return axum::response::IntoResponse::into_response(refused);
        }
        let response = handler(request).await;
        ensure_error_body(response)
    })
    .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let headers = response.headers_mut();
    for (name, value) in context.take_customer_headers() {
        headers.insert(name, value);
    }
    let route = match route_label {
        Some(label) => label,
        None if response
            .extensions()
            .get::<crate::gateway::ForwardedResponse>()
            .is_some() =>
        {
            crate::metrics::FORWARDED_ROUTE
        }
        None => route.as_deref().unwrap_or("unmatched"),
    };
    crate::metrics::request(
        &method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    if let Some(path) = path {
        tracing::info!(
            request_id = %id,
            %method,
            path,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    response
}

fn ensure_error_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_owned(),
        StatusCode::NOT_FOUND => "route not found".to_owned(),
        s if s.is_server_error() => "internal error".to_owned(),
        s => s.canonical_reason().unwrap_or("error").to_owned(),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut fixed = error_response(status, message, None);
    if let Some(allow) = allow {
        fixed.headers_mut().insert(header::ALLOW, allow);
    }
    fixed
}

/// Turns a panic in a handler into a logged 500 with the error body.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error".into(),
        None,
    )
}

/// An address as text. On every request: an IPv4 address is pieced together from its four
/// numbers instead of going through `Display` (which supports padding and costs several times
/// more); IPv6 keeps the standard form.
pub(crate) fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(itoa::Buffer::new().format(octet));
            }
            text
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_with_agent(agent: Option<HeaderValue>) -> RequestContext {
        RequestContext::new("req_1".into(), None, agent)
    }

    #[test]
    fn the_user_agent_is_kept_to_its_first_512_characters() {
        let short = context_with_agent(Some(HeaderValue::from_static("curl/8.5.0")));
        assert_eq!(short.user_agent().as_deref(), Some("curl/8.5.0"));

        // Not visible ASCII is not text: no agent rather than a garbled one.
        let bytes = HeaderValue::from_bytes("é".repeat(600).as_bytes()).unwrap();
        assert_eq!(context_with_agent(Some(bytes)).user_agent(), None);
        let ascii = "a".repeat(600);
        let cut = context_with_agent(Some(HeaderValue::from_str(&ascii).unwrap()))
            .user_agent()
            .unwrap();
        assert_eq!(cut.len(), USER_AGENT_CHARS);
        assert!(ascii.starts_with(&cut));

        assert_eq!(context_with_agent(None).user_agent(), None);
    }

    #[test]
    fn addresses_read_as_the_standard_library_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
