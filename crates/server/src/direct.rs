//! The gateway's own HTTP/1.1 path for dedicated applications, as nginx forwards: each request
//! of a connection is read with `httparse` and, while it is a plain customer-API request of a
//! dedicated application (HTTP/1.1; no body signature; no `Transfer-Encoding`, `Upgrade` or
//! `Expect`; a body of at most 64 KiB given by `Content-Length`; an `Idempotency-Key` is the
//! instance's to record), checked and forwarded here with its header fields copied as bytes: no
//! header map, request or response object is built on either side of the hop.
//!
//! Anything else goes to hyper and the router, with the bytes already read: the first request
//! that is not for this path, and every request after it on that connection. This path never
//! answers a request it is not sure of; a malformed head is hyper's to refuse.
//!
//! A request here gets what [`crate::gateway`] gives one after the router: the same entry point
//! (key, standing, rate limit, quota, metering: [`customer::keyed_by`], [`customer::public`]),
//! the same fields removed ([`forward::request_field_crosses`]) and added, the same signed
//! assertion and loop check, the same answers when forwarding fails, and what
//! [`crate::request_id`] gives every request: its id (in the task-local context, for error
//! bodies and audit events), the customer-API response headers, the metrics and the log line.
//! A connection that sends no complete head within the header read timeout is closed, as
//! hyper's are; so is an idle one when the server stops.
//!
//! This module must not know what a route does: like the gateway, it looks at the path's
//! application and the request's credential, never at bodies.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use authsome_control::ConnectionMemo;
use authsome_domain::id::RequestId;
use authsome_domain::tenancy::{ApiKey, Application, Tenancy};
use authsome_gateway::forward::{self, Claims, ForwardedFields};
use authsome_gateway::h1::{list_has, parse_length, values_of, write_chunk, Span, LAST_CHUNK};
use authsome_gateway::proxy::{ProxyBody, ResponseHead, ResponseTimer};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http_body::Body as _;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::error::ApiError;
use crate::request_id::{CustomerHeaders, RequestContext};
use crate::routes::customer;
use crate::AppState;

/// The longest request head read here; a longer one is hyper's (to serve or refuse).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most header fields of a request read here.
const MAX_FIELDS: usize = 64;

/// How a connection left this path.
pub(crate) enum Left {
    /// Closed: the client went away or asked to close, the head did not come in time, an
    /// answer could not be written whole, or the server is stopping.
    Closed,
    /// For hyper, with the bytes read and not served (the start of the next request).
    Handoff(Bytes),
}

/// Serves the connection's requests while they are for this path.
pub(crate) async fn serve(
    state: &AppState,
    tcp: &mut TcpStream,
    peer: SocketAddr,
    stopping: &mut watch::Receiver<bool>,
) -> Left {
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(1024);
    let max_body = (crate::gateway::REPLAYABLE_BODY_BYTES as usize).min(state.http.max_body_bytes);
    let mut head = Head::default();
    let mut kept = Kept::default();
    let ip = crate::request_id::ip_text(peer.ip());
    // Made once per connection, not per request: the server's stop signal, and the header
    // read timer (moved only when the deadline it holds is too early: see `read_head`).
    let mut stop = {
        let mut stopping = stopping.clone();
        Box::pin(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
    };
    let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
    loop {
        let waits = Waits {
            stop: stop.as_mut(),
            timer: timer.as_mut(),
        };
        match read_head(state, tcp, &mut buf, max_body, waits, &mut head).await {
            Read::Head => {}
            Read::Other => return Left::Handoff(buf.freeze()),
            Read::Closed => return Left::Closed,
        }
        let app = match state
            .control
            .memo_application(&mut kept.memo, head.app(&buf))
            .await
        {
            Ok(app) if app.tenancy == Tenancy::Dedicated => app,
            // Shared, unknown, or the control plane could not say: the router's to answer.
            _ => return Left::Handoff(buf.freeze()),
        };
        let total = head.len + head.body_len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            let deadline = tokio::time::Instant::now() + state.http.header_read_timeout;
            while buf.len() < total {
                match tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Left::Closed,
                }
            }
        }
        let message = buf.split_to(total).freeze();
        let open = serve_one(state, tcp, &ip, &message, &head, app, &mut kept, &mut out).await;
        if !open || head.close || *stopping.borrow() {
            return Left::Closed;
        }
    }
}

/// What a connection keeps from one request to the next.
#[derive(Default)]
struct Kept {
    /// What the previous request resolved (its application, its key).
    memo: ConnectionMemo,
    /// The wait for the instance's response heads.
    timer: ResponseTimer,
    /// The previous request's key and its hash in hex, which every forwarded request's
    /// assertion names: encoded once per key, not per request.
    key_hex: Option<(Arc<ApiKey>, String)>,
}

enum Read {
    /// The head is in (parsed into the caller's [`Head`]).
    Head,
    /// A request for hyper.
    Other,
    Closed,
}

/// What this path needs of a request head whose bytes are at the start of the buffer: ranges
/// of it, not copies.
#[derive(Default)]
struct Head {
    len: usize,
    body_len: usize,
    method: Method,
    /// The request target (path and query).
    target: Span,
    /// The application id in the path.
    app: Span,
    fields: SmallVec<[(Span, Span); 12]>,
    /// The client asked to close the connection after this request.
    close: bool,
    /// The request carries a `DPoP` proof (checked and used at the gateway).
    dpop: bool,
}

impl Head {
    fn text<'a>(&self, buf: &'a [u8], span: Span) -> &'a str {
        // httparse gave these spans as text (the target and the application in it).
        std::str::from_utf8(span.of(buf)).unwrap_or_default()
    }

    fn target<'a>(&self, buf: &'a [u8]) -> &'a str {
        self.text(buf, self.target)
    }

    fn app<'a>(&self, buf: &'a [u8]) -> &'a str {
        self.text(buf, self.app)
    }

    fn fields<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.fields.iter().map(move |(n, v)| (n.of(buf), v.of(buf)))
    }

    fn all<'a>(&'a self, buf: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        values_of(&self.fields, buf, name)
    }

    /// The first value of field `name` as text, if it is.
    fn get<'a>(&'a self, buf: &'a [u8], name: &'a str) -> Option<&'a str> {
        self.all(buf, name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// What a connection waits on besides its reads.
struct Waits<'a, S> {
    /// Done when the server stops.
    stop: Pin<&'a mut S>,
    timer: Pin<&'a mut Sleep>,
}

/// Reads until a whole head is in `buf` (or the connection is not for this path), within the
/// header read timeout; an idle connection closes when the server stops.
///
/// The timer is set to half a timeout past the deadline and moved only when it would go off
/// before the deadline, so on a busy keep-alive connection it moves about twice per timeout
/// rather than once per request; going off early, it is set to the deadline.
async fn read_head<S: std::future::Future<Output = ()>>(
    state: &AppState,
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    max_body: usize,
    mut waits: Waits<'_, S>,
    head: &mut Head,
) -> Read {
    let timeout = state.http.header_read_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    if waits.timer.deadline() < deadline {
        waits.timer.as_mut().reset(deadline + timeout / 2);
    }
    loop {
        if !buf.is_empty() {
            match parse(buf, max_body, head) {
                Parsed::Head => return Read::Head,
                Parsed::Other => return Read::Other,
                Parsed::Partial if buf.len() >= MAX_HEAD_BYTES => return Read::Other,
                Parsed::Partial => {}
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let read = tokio::select! {
            biased;
            read = tcp.read_buf(buf) => read,
            () = waits.timer.as_mut() => {
                if tokio::time::Instant::now() >= deadline {
                    // Too slow.
                    return Read::Closed;
                }
                waits.timer.as_mut().reset(deadline);
                continue;
            }
            () = waits.stop.as_mut(), if buf.is_empty() => return Read::Closed,
        };
        match read {
            Ok(n) if n > 0 => {}
            // Gone or broken.
            _ => return Read::Closed,
        }
    }
}

enum Parsed {
    Head,
    Partial,
    Other,
}

/// Parses the head at the start of `buf` into `head`.
fn parse(buf: &[u8], max_body: usize, head: &mut Head) -> Parsed {
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(1), Some(method), Some(target)) = (request.version, request.method, request.path)
    else {
        return Parsed::Other;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    // Over the server's limit: the router's path answers 414 with the contract's body.
    if target.len() > crate::request_id::MAX_URI_BYTES {
        return Parsed::Other;
    }
    let path = target.split('?').next().unwrap_or_default();
    let Some(app) = crate::gateway::customer_app(path) else {
        return Parsed::Other;
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| Span::new(s.as_ptr() as usize - base, s.len());
    head.len = len;
    head.body_len = 0;
    head.target = range(target.as_bytes());
    head.app = range(app.as_bytes());
    head.fields.clear();
    head.close = false;
    head.dpop = false;
    head.method = method;
    let mut length: Option<usize> = None;
    for field in request.headers.iter() {
        let name = field.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            match parse_length(field.value).and_then(|n| usize::try_from(n).ok()) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Parsed::Other,
            }
        } else if is("transfer-encoding")
            || is("upgrade")
            || is("expect")
            || is(customer::SIGNATURE_HEADER.as_str())
            || is(customer::KEY_ID_HEADER.as_str())
        {
            return Parsed::Other;
        } else if is("connection") {
            if list_has(field.value, "upgrade") {
                return Parsed::Other;
            }
            head.close |= list_has(field.value, "close");
        } else if is("dpop") {
            head.dpop = true;
        }
        head.fields.push((range(name), range(field.value)));
    }
    head.body_len = length.unwrap_or(0);
    if head.body_len > max_body {
        return Parsed::Other;
    }
    Parsed::Head
}

/// What a request came to.
enum Reply {
    Forwarded(ResponseHead, ProxyBody),
    /// The gateway's own answer (a refusal, or why forwarding failed).
    Answer(Response),
}

/// Serves one request whose head and body are `message`; whether the connection may go on.
#[allow(clippy::too_many_arguments)]
async fn serve_one(
    state: &AppState,
    tcp: &mut TcpStream,
    ip: &str,
    message: &Bytes,
    head: &Head,
    app: Arc<Application>,
    kept: &mut Kept,
    out: &mut Vec<u8>,
) -> bool {
    let started = Instant::now();
    // The user agent as a view of the request's bytes, not a copy.
    let user_agent = head
        .all(message, "user-agent")
        .next()
        .and_then(|v| HeaderValue::from_maybe_shared(message.slice_ref(v)).ok());
    let context = Arc::new(RequestContext::new(
        RequestId::for_request().into_string(),
        Some(ip.to_owned()),
        user_agent,
    ));
    let id = context.id.as_str();
    let reply = crate::request_id::scope(context.clone(), async {
        // Boxed once: the future is large, and every layer around it would copy it.
        match AssertUnwindSafe(Box::pin(forward_request(state, message, head, app, kept)))
            .catch_unwind()
            .await
        {
            Ok(Ok((head, body))) => Reply::Forwarded(head, body),
            Ok(Err(e)) => Reply::Answer(e.into_response()),
            Err(panic) => Reply::Answer(crate::request_id::panic_response(panic)),
        }
    })
    .await;
    let ours = context.take_customer();
    out.clear();
    let (status, kept) = match reply {
        Reply::Forwarded(response, body) => {
            write_forwarded(tcp, out, &response, body, id, &ours).await
        }
        // Boxed: the rare path, whose future would otherwise enlarge every request's.
        Reply::Answer(response) => Box::pin(write_answer(tcp, out, response, id, &ours)).await,
    };
    crate::metrics::request(
        &head.method,
        crate::metrics::FORWARDED_ROUTE,
        status,
        started.elapsed().as_secs_f64(),
    );
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!(
            request_id = %id,
            method = %head.method,
            path = head.target(message).split('?').next().unwrap_or_default(),
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
    }
    kept
}

/// The checks and the hop: what `gateway::forward_to_upstream` does, on the raw request.
async fn forward_request(
    state: &AppState,
    message: &Bytes,
    head: &Head,
    app: Arc<Application>,
    kept: &mut Kept,
) -> Result<(ResponseHead, ProxyBody), ApiError> {
    let app_id = app.id.as_str();
    let target = head.target(message);
    crate::gateway::check_target(target.split('?').next().unwrap_or_default())?;
    let method = head.method.as_str();
    let now = authsome_domain::unix_seconds();
    if let Some(value) = head.get(message, "x-authsome-forwarded") {
        if state.forward_key.verify(value, method, target, now).is_ok() {
            tracing::error!(app = %app_id, "forwarding loop: an upstream is not an instance");
            return Err(crate::gateway::forwarding_loop());
        }
    }
    let bearer = head
        .get(message, "authorization")
        .and_then(crate::extract::bearer_of);
    let credential =
        customer::credential_of(bearer, || head.get(message, customer::PUBLISHABLE_KEY));
    let key_hash = match credential {
        Some(credential) => {
            let key = customer::keyed_by(state, app_id, credential, &mut kept.memo)
                .await?
                .key;
            if !kept
                .key_hex
                .as_ref()
                .is_some_and(|(known, _)| Arc::ptr_eq(known, &key))
            {
                kept.key_hex = Some((key.clone(), key.hash.to_hex()));
            }
            kept.key_hex.as_ref().map(|(_, hex)| hex.as_str())
        }
        None => {
            customer::admit_public(state, app.clone()).await?;
            None
        }
    };
    if let Some(proof) = head.dpop.then(|| head.get(message, "dpop")).flatten() {
        crate::dpop::use_proof_at_gateway(
            state,
            app_id,
            method,
            target.split('?').next().unwrap_or_default(),
            Some(proof),
        )
        .await?;
    }
    let body = message.slice(head.len..);
    let body_sha256 = forward::body_sha256(&body);
    let context = crate::request_id::context();
    let (request_id, client_ip) = context
        .as_deref()
        .map(|c| (c.id.as_str(), c.ip.as_deref().unwrap_or_default()))
        .unwrap_or_default();
    let claims = Claims {
        issued_at: now,
        app_id,
        request_id,
        client_ip,
        key_hash,
        body_sha256: Some(&body_sha256),
    };
    let signed = state.forward_key.sign(&claims, method, target);

    let listed = forward::connection_tokens(head.all(message, "connection"));
    // The client's fields, ours (the assertion the longest) and their names: never grown.
    let mut fields = Vec::with_capacity(head.len + signed.len() + 320);
    let mut host = None;
    for (name, value) in head.fields(message) {
        if name.eq_ignore_ascii_case(b"host") {
            host = Some(value);
        }
        if forward::request_field_crosses(name, &listed) {
            field(&mut fields, name, value);
        }
    }
    let forwarded = ForwardedFields {
        app_id,
        request_id: claims.request_id,
        assertion: &signed,
        client_ip: claims.client_ip,
        proto: crate::gateway::forwarded_proto(state),
        host,
    };
    let _ = forwarded.each(|name, value| {
        field(&mut fields, name.as_bytes(), value);
        Ok::<_, std::convert::Infallible>(())
    });
    state
        .proxy
        .forward_encoded(
            &app.upstreams,
            &head.method,
            target,
            &fields,
            body,
            &mut kept.timer,
        )
        .await
        .map_err(|e| crate::gateway::forward_failure(app_id, e))
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The fields the gateway sets on every answer: the request id and the customer-API headers
/// (they replace any the instance sent).
fn our_fields(out: &mut Vec<u8>, id: &str, ours: &CustomerHeaders) {
    field(out, b"x-authsome-request-id", id.as_bytes());
    ours.each(|name, value| field(out, name.as_bytes(), value));
}

fn is_ours(name: &[u8], ours: &CustomerHeaders) -> bool {
    name.eq_ignore_ascii_case(b"x-authsome-request-id") || ours.names(name)
}

/// Writes the instance's response: its fields less the hop-by-hop ones, the gateway's, and the
/// body as it comes (chunked to the client when the instance gave no length). Returns the
/// status and whether the connection may go on.
async fn write_forwarded(
    tcp: &mut TcpStream,
    out: &mut Vec<u8>,
    response: &ResponseHead,
    mut body: ProxyBody,
    id: &str,
    ours: &CustomerHeaders,
) -> (u16, bool) {
    let status = response.status.as_u16();
    status_line(out, response.status);
    let listed = forward::connection_tokens(
        response
            .fields()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .map(|(_, v)| v),
    );
    for (name, value) in response.fields() {
        if forward::response_field_crosses(name, &listed) && !is_ours(name, ours) {
            field(out, name, value);
        }
    }
    our_fields(out, id, ours);
    // Framed by this hop from what the instance's framing said the body is (its
    // `Content-Length` does not cross): a length, chunks, or nothing at all.
    let chunked = !response.is_bodiless() && response.content_length().is_none();
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if let Some(n) = response.content_length() {
        field(
            out,
            b"content-length",
            itoa::Buffer::new().format(n).as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    if let Some(whole) = body.take_whole() {
        // The usual answer: head and body in one write.
        let data = whole.unwrap_or_default();
        if chunked {
            write_chunk(out, &data);
            out.extend_from_slice(LAST_CHUNK);
        } else {
            out.extend_from_slice(&data);
        }
        return (status, tcp.write_all(out).await.is_ok());
    }
    if tcp.write_all(out).await.is_err() {
        return (status, false);
    }
    // Boxed, as the gateway's answers are: the usual answer's future stays small.
    (status, Box::pin(stream_body(tcp, body, chunked)).await)
}

/// Writes a body that did not come whole with its head, as it comes; whether the connection
/// may go on.
async fn stream_body(tcp: &mut TcpStream, mut body: ProxyBody, chunked: bool) -> bool {
    let mut chunk = Vec::new();
    loop {
        let frame = match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break,
            Some(Ok(frame)) => frame,
            // The instance broke off: the client can only learn it from the close.
            Some(Err(_)) => return false,
        };
        let written = match frame.into_data() {
            Ok(data) if chunked => {
                chunk.clear();
                write_chunk(&mut chunk, &data);
                tcp.write_all(&chunk).await
            }
            Ok(data) => tcp.write_all(&data).await,
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) if chunked => {
                    chunk.clear();
                    chunk.extend_from_slice(b"0\r\n");
                    for (name, value) in &trailers {
                        field(&mut chunk, name.as_str().as_bytes(), value.as_bytes());
                    }
                    chunk.extend_from_slice(b"\r\n");
                    let written = tcp.write_all(&chunk).await;
                    return written.is_ok();
                }
                _ => Ok(()),
            },
        };
        if written.is_err() {
            return false;
        }
    }
    !(chunked && tcp.write_all(LAST_CHUNK).await.is_err())
}

/// Writes the gateway's own answer (its body is always in memory).
async fn write_answer(
    tcp: &mut TcpStream,
    out: &mut Vec<u8>,
    response: Response,
    id: &str,
    ours: &CustomerHeaders,
) -> (u16, bool) {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    status_line(out, parts.status);
    for (name, value) in &parts.headers {
        let name = name.as_str().as_bytes();
        if !name.eq_ignore_ascii_case(b"content-length") && !is_ours(name, ours) {
            field(out, name, value.as_bytes());
        }
    }
    our_fields(out, id, ours);
    field(
        out,
        b"date",
        httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes(),
    );
    field(
        out,
        b"content-length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    (parts.status.as_u16(), tcp.write_all(out).await.is_ok())
}

/// A connection handed to hyper: what this path read of it comes first.
pub(crate) struct Rewind {
    read: Bytes,
    tcp: TcpStream,
}

impl Rewind {
    pub(crate) fn new(tcp: TcpStream, read: Bytes) -> Self {
        Self { read, tcp }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Option<Head> {
        let mut head = Head::default();
        match parse(text.as_bytes(), 64 * 1024, &mut head) {
            Parsed::Head => Some(head),
            _ => None,
        }
    }

    #[test]
    fn plain_customer_api_requests_are_for_this_path() {
        let text = "POST /v1/app_1/users?limit=2 HTTP/1.1\r\nHost: gw\r\n\
                    Authorization: Bearer sk_test_x\r\nContent-Length: 5\r\n\r\nhello";
        let head = parsed(text).unwrap();
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.target(text.as_bytes()), "/v1/app_1/users?limit=2");
        assert_eq!(head.app(text.as_bytes()), "app_1");
        assert_eq!(head.body_len, 5);
        assert_eq!(&text[head.len..], "hello");
        assert!(!head.close);
        assert_eq!(
            head.get(text.as_bytes(), "authorization"),
            Some("Bearer sk_test_x")
        );
        // The instance records an Idempotency-Key; the gateway forwards it like any field.
        assert!(parsed("POST /v1/app_1/users HTTP/1.1\r\nIdempotency-Key: k\r\n\r\n").is_some());
        let head = parsed("GET /v1/app_2 HTTP/1.1\r\nConnection: Close\r\n\r\n").unwrap();
        assert!(head.close);
        assert_eq!(head.body_len, 0);
    }

    #[test]
    fn everything_else_is_hypers() {
        for text in [
            "GET /v1/app_1 HTTP/1.0\r\n\r\n",
            "GET /control/v1/workspaces HTTP/1.1\r\n\r\n",
            "GET /health HTTP/1.1\r\n\r\n",
            "GET /v1/ HTTP/1.1\r\n\r\n",
            "POST /v1/app_1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/app_1/x HTTP/1.1\r\nContent-Length: 70000\r\n\r\n",
            "POST /v1/app_1/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST /v1/app_1/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST /v1/app_1/x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /v1/app_1/x HTTP/1.1\r\nX-Signature: s\r\n\r\n",
            "GET /v1/app_1/x HTTP/1.1\r\nX-Api-Key-Id: k\r\n\r\n",
            "GET /v1/app_1/x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET /v1/app_1/x HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse(text.as_bytes(), 64 * 1024, &mut Head::default()),
                    Parsed::Other
                ),
                "{text:?}"
            );
        }
        // An Idempotency-Key on a GET records nothing: it stays here.
        assert!(parsed("GET /v1/app_1/x HTTP/1.1\r\nIdempotency-Key: k\r\n\r\n").is_some());
        assert!(matches!(
            parse(
                b"GET /v1/app_1/x HTTP/1.1\r\nHost: a",
                64 * 1024,
                &mut Head::default()
            ),
            Parsed::Partial
        ));
        // A body above the server's own limit is hyper's to refuse.
        assert!(matches!(
            parse(
                b"POST /v1/app_1/x HTTP/1.1\r\nContent-Length: 11\r\n\r\n",
                10,
                &mut Head::default()
            ),
            Parsed::Other
        ));
    }
}
