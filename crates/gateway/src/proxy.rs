//! Forwarding to dedicated instances: HTTP/1.1 connections to each upstream, round-robin over
//! the healthy upstreams of an application, active health checks, retries and timeouts.
//!
//! Rules, chosen to match what operators expect of nginx's `proxy_next_upstream error timeout`:
//! - An upstream that refuses a connection or times out leaves rotation at once; it comes back
//!   when its `GET /health` answers 2xx, checked every [`ProxySettings::health_interval`]. One
//!   that fails [`ProxySettings::unhealthy_after`] health checks in a row leaves rotation too.
//! - A request whose body is held in memory is retried on the next healthy upstream when the
//!   connection could not be made (nothing was sent). Idempotent methods are also retried after
//!   a timeout or a broken connection. A streamed body is sent once and never replayed. A
//!   request on a kept-alive connection that the upstream had just closed (the write failed,
//!   or, for an idempotent method, the connection ended before any byte of a response) goes out
//!   again on a fresh connection to the same upstream.
//! - Every attempt waits at most [`ProxySettings::response_timeout`] for the response head; the
//!   bodies then stream both ways without being buffered. A caller that forwards request after
//!   request (a client connection) keeps one [`ResponseTimer`] for all of them.
//!
//! Connections: each upstream keeps its idle HTTP/1.1 connections on a stack (at most
//! [`MAX_IDLE_PER_UPSTREAM`], for [`IDLE_TIMEOUT`]); a request takes the most recently used
//! one that nothing has arrived on since (no close, no stray bytes), or opens a new one. The
//! connection is driven by the task that forwards the request: the head is written and the
//! response read in that task, and the response body ([`ProxyBody`]) owns the connection until
//! its last byte, when it goes back on the stack. A response that arrived whole with its head
//! (the usual small answer) gives the connection back at once. The wire format is [`crate::h1`].
//!
//! The caller (the server) decides what to forward and which headers cross; see
//! [`crate::forward`].

use authsome_domain::FastMap;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use authsome_domain::clock::CoarseInstant;
use authsome_domain::egress::EgressPolicy;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use crate::h1::ResponseHead;
use crate::h1::{self, BodyFraming, ChunkedDecoder, Decoded, Fields, RequestFraming};

/// Idle connections kept per upstream for client connections to come.
pub const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// How long an idle upstream connection is kept: below the 75 s after which an instance closes
/// an idle connection (`AUTHSOME_HEADER_TIMEOUT_SECONDS`), so the gateway gives a connection up
/// before the instance can close it under a request just sent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Request bodies up to this size travel in the same write as the head.
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// The timer of the waits for response heads, reused from one request to the next: it stays
/// registered with Tokio's timer between them, at the end of an earlier wait, and is moved only
/// when it goes off before the end of the wait in progress (once per timeout on a busy
/// connection), rather than registered and cancelled for every request. A wait still ends
/// exactly at its own end.
#[derive(Default)]
pub struct ResponseTimer {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ResponseTimer {
    /// `work`'s output, or `None` once `limit` has passed.
    async fn limit<F: std::future::Future>(
        &mut self,
        limit: Duration,
        work: F,
    ) -> Option<F::Output> {
        let end = tokio::time::Instant::now() + limit;
        let sleep = match &mut self.sleep {
            // Later than this wait's end (a shorter limit than before): moved now.
            Some(sleep) if sleep.deadline() > end => {
                sleep.as_mut().reset(end);
                sleep
            }
            Some(sleep) => sleep,
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(end))),
        };
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return Some(out),
                () = sleep.as_mut() => {
                    if tokio::time::Instant::now() >= end {
                        return None;
                    }
                    // Set for an earlier wait: now for this one.
                    sleep.as_mut().reset(end);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Longest wait for a TCP connection to an upstream.
    pub connect_timeout: Duration,
    /// Longest wait for an upstream's response head, per attempt.
    pub response_timeout: Duration,
    /// How often each upstream's `/health` is checked.
    pub health_interval: Duration,
    /// Failed health checks in a row that take an upstream out of rotation.
    pub unhealthy_after: u32,
    /// Where upstreams may point (`AUTHSOME_UPSTREAM_ALLOW`): checked on every address a new
    /// connection may go to, after resolution, and the connection made to that address.
    pub policy: EgressPolicy,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(2),
            unhealthy_after: 2,
            policy: EgressPolicy::open(),
        }
    }
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    /// None in rotation, or none of those tried would take a connection.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream failed: {0}")]
    Upstream(String),
    #[error("invalid upstream address {0}")]
    BadUpstream(String),
}

/// A request body as the proxy receives it.
pub enum Outgoing<B> {
    /// Held in memory: may be sent again on another upstream.
    Buffered(Bytes),
    /// Streamed through once.
    Streamed(B),
}

/// One HTTP/1.1 connection to an upstream.
struct Conn {
    tcp: TcpStream,
    /// Bytes read from the upstream and not used yet.
    buf: BytesMut,
}

impl Conn {
    fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// Whether an idle connection can take a request: nothing has arrived on it since its last
    /// response (neither the upstream's close nor stray bytes). Read from the readiness the
    /// runtime already tracks, so usually without a system call.
    fn usable(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.tcp.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness can be left over from a read that filled its buffer exactly: look.
            Poll::Ready(Ok(())) => matches!(
                self.tcp.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 4 * 1024 {
            self.buf.reserve(16 * 1024);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.buf)
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_more(cx)).await
    }

    /// Reads until a whole response head is in; `Ok(None)`: the connection ended before any
    /// byte of a response.
    async fn read_head(&mut self, method: &Method) -> Result<Option<ResponseHead>, String> {
        loop {
            if let Some(head) =
                h1::parse_response_head(&mut self.buf, method).map_err(|e| e.to_string())?
            {
                return Ok(Some(head));
            }
            match self.read_more().await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err("the upstream closed the connection mid-head".into()),
                Ok(_) => {}
                Err(e) if self.buf.is_empty() && is_reset(&e) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

struct Upstream {
    base: String,
    /// The host as written (an IP literal, or a name to resolve at each new connection).
    host_name: String,
    port: u16,
    /// The base's path, put before every forwarded path (empty for an upstream at `/`).
    prefix: String,
    host: HeaderValue,
    healthy: AtomicBool,
    failed_checks: AtomicU32,
    idle: Mutex<Vec<(CoarseInstant, Conn)>>,
}

impl Upstream {
    fn out_of_rotation(&self, why: &str) {
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!(upstream = %self.base, reason = why, "upstream left rotation");
        }
    }

    /// Keeps a connection that has finished its exchange and may serve another request.
    fn park(&self, conn: Conn) {
        if !conn.buf.is_empty() {
            // The upstream sent more than its response: the connection is out of step.
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_PER_UPSTREAM {
                idle.push((CoarseInstant::now(), conn));
            }
        }
    }

    /// Drops the idle connections that closed or waited too long (closing those).
    fn prune(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|(since, conn)| since.elapsed() < IDLE_TIMEOUT && conn.usable());
        }
    }

    /// The most recently parked connection that can take a request now; closed and expired
    /// ones are dropped on the way.
    fn unpark(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((since, conn)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT && conn.usable() {
                return Some(conn);
            }
        }
        None
    }
}

/// The forwarding client, shared by every dedicated application.
pub struct Proxy {
    upstreams: RwLock<FastMap<String, Arc<Upstream>>>,
    next: AtomicUsize,
    settings: ProxySettings,
}

/// The parts of a request every attempt sends alike.
struct Prepared<'a> {
    method: &'a Method,
    path: &'a str,
    fields: Fields<'a>,
    /// The `Content-Length` the client declared for a streamed body.
    declared_length: Option<u64>,
}

impl Proxy {
    pub fn new(settings: ProxySettings) -> Arc<Self> {
        Arc::new(Self {
            upstreams: RwLock::new(FastMap::default()),
            next: AtomicUsize::new(0),
            settings,
        })
    }

    /// How often the caller should run [`Proxy::check_health`].
    pub fn health_interval(&self) -> Duration {
        self.settings.health_interval
    }

    /// One round of health checks over `current`, the upstreams of the applications served
    /// now, each on a connection of its own. Upstreams no longer among them are forgotten
    /// (their idle connections closed, no more checks); idle connections that closed or
    /// expired are dropped on the way.
    pub async fn check_health(&self, current: &[String]) {
        if let Ok(mut map) = self.upstreams.write() {
            map.retain(|base, _| current.iter().any(|c| c == base));
        }
        for base in current {
            if let Err(e) = self.upstream(base) {
                tracing::warn!(error = %e, "an upstream cannot be checked");
            }
        }
        let all: Vec<Arc<Upstream>> = match self.upstreams.read() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => return,
        };
        for up in &all {
            up.prune();
        }
        let timeout = self.settings.health_interval.min(Duration::from_secs(2));
        let checks = all.iter().map(|up| async move {
            let check = async {
                let mut conn = self.connect(up).await.ok()?;
                let request = format!(
                    "GET {}/health HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
                    up.prefix,
                    up.host.to_str().ok()?
                );
                conn.tcp.write_all(request.as_bytes()).await.ok()?;
                let head = conn.read_head(&Method::GET).await.ok()??;
                Some(head.status.is_success())
            };
            let ok = matches!(tokio::time::timeout(timeout, check).await, Ok(Some(true)));
            if ok {
                up.failed_checks.store(0, Ordering::SeqCst);
                if !up.healthy.swap(true, Ordering::SeqCst) {
                    tracing::info!(upstream = %up.base, "upstream back in rotation");
                }
            } else if up.failed_checks.fetch_add(1, Ordering::SeqCst) + 1
                >= self.settings.unhealthy_after
            {
                up.out_of_rotation("health check failed");
            }
        });
        futures_util::future::join_all(checks).await;
    }

    /// How many known upstreams are in rotation and how many are not (`/metrics`).
    pub fn health_counts(&self) -> (usize, usize) {
        let health = self.health();
        let healthy = health.iter().filter(|(_, ok)| *ok).count();
        (healthy, health.len() - healthy)
    }

    /// Whether each known upstream is in rotation (for tests and operators' tools; its
    /// addresses are not for `/metrics`).
    pub fn health(&self) -> Vec<(String, bool)> {
        let mut all: Vec<_> = self
            .upstreams
            .read()
            .map(|m| {
                m.values()
                    .map(|u| (u.base.clone(), u.healthy.load(Ordering::SeqCst)))
                    .collect()
            })
            .unwrap_or_default();
        all.sort();
        all
    }

    fn upstream(&self, base: &str) -> Result<Arc<Upstream>, ProxyError> {
        if let Some(up) = self
            .upstreams
            .read()
            .ok()
            .and_then(|m| m.get(base).cloned())
        {
            return Ok(up);
        }
        let bad = || ProxyError::BadUpstream(base.to_owned());
        let uri: Uri = base.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        let up = Arc::new(Upstream {
            base: base.trim_end_matches('/').to_owned(),
            host_name: authority.host().to_owned(),
            port: authority.port_u16().unwrap_or(80),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            host,
            healthy: AtomicBool::new(true),
            failed_checks: AtomicU32::new(0),
            idle: Mutex::new(Vec::new()),
        });
        if let Ok(mut map) = self.upstreams.write() {
            return Ok(map.entry(base.to_owned()).or_insert(up).clone());
        }
        Ok(up)
    }

    /// A new connection to `up`: its host resolved now, each address checked against the
    /// policy, and the connection made to an address that passed (never to the name, which
    /// could resolve elsewhere by then).
    async fn connect(&self, up: &Upstream) -> Result<Conn, String> {
        let connect = async {
            let host = up.host_name.trim_start_matches('[').trim_end_matches(']');
            let addresses = tokio::net::lookup_host((host, up.port))
                .await
                .map_err(|e| format!("{}: {e}", up.host_name))?;
            let mut last = format!("{} resolves to no address", up.host_name);
            for address in addresses {
                if let Err(refused) = self.settings.policy.check(&up.host_name, address.ip()) {
                    tracing::warn!(upstream = %up.base, %refused, "upstream address refused");
                    last = refused.to_string();
                    continue;
                }
                match TcpStream::connect(address).await {
                    Ok(tcp) => {
                        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
                        return Ok(Conn::new(tcp));
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(last)
        };
        tokio::time::timeout(self.settings.connect_timeout, connect)
            .await
            .map_err(|_| "connection timed out".to_owned())?
    }

    /// Sends the request (whose headers the caller has already prepared) to one of `upstreams`
    /// and returns the upstream's response head with its body still streaming.
    pub async fn forward<B>(
        &self,
        upstreams: &[String],
        parts: http::request::Parts,
        body: Outgoing<B>,
    ) -> Result<Response<ProxyBody>, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let request = Prepared {
            method: &parts.method,
            path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            fields: Fields::Map(&parts.headers),
            declared_length: parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        };
        let (head, body) = self
            .forward_prepared(upstreams, request, body, &mut ResponseTimer::default())
            .await?;
        let headers = head
            .header_map()
            .map_err(|e| ProxyError::Upstream(e.to_string()))?;
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.headers_mut() = headers;
        Ok(response)
    }

    /// [`Proxy::forward`] for a caller that has written the request's header fields itself
    /// (`name: value\r\n` lines, without `Host`, `Content-Length`, `Transfer-Encoding` and
    /// `Connection`, which this hop writes) and holds its whole body: the response head comes
    /// back as read, not as a header map. `timer` is the caller's for all its requests.
    pub async fn forward_encoded(
        &self,
        upstreams: &[String],
        method: &Method,
        path_and_query: &str,
        fields: &[u8],
        body: Bytes,
        timer: &mut ResponseTimer,
    ) -> Result<(ResponseHead, ProxyBody), ProxyError> {
        let request = Prepared {
            method,
            path: path_and_query,
            fields: Fields::Encoded(fields),
            declared_length: None,
        };
        self.forward_prepared::<Held>(upstreams, request, Outgoing::Buffered(body), timer)
            .await
    }

    async fn forward_prepared<B>(
        &self,
        upstreams: &[String],
        request: Prepared<'_>,
        body: Outgoing<B>,
        timer: &mut ResponseTimer,
    ) -> Result<(ResponseHead, ProxyBody), ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        // On the stack for the usual handful of upstreams (this runs on every request).
        let all = upstreams
            .iter()
            .map(|u| self.upstream(u))
            .collect::<Result<SmallVec<[_; 4]>, _>>()?;
        let healthy: SmallVec<[&Arc<Upstream>; 4]> = all
            .iter()
            .filter(|u| u.healthy.load(Ordering::SeqCst))
            .collect();
        if healthy.is_empty() {
            return Err(ProxyError::NoHealthyUpstream);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let idempotent = is_idempotent(request.method);
        let (buffered, mut streamed) = match body {
            Outgoing::Buffered(b) => (Some(b), None),
            Outgoing::Streamed(b) => (None, Some(b)),
        };
        let replayable = buffered.is_some();
        let attempts = if replayable { healthy.len().min(3) } else { 1 };
        let mut last = ProxyError::NoHealthyUpstream;
        for attempt in 0..attempts {
            let up = healthy[(start + attempt) % healthy.len()];
            let body = match (&buffered, streamed.take()) {
                (Some(bytes), _) => Sending::Buffered(bytes),
                (None, Some(body)) => Sending::Streamed(body),
                (None, None) => break,
            };
            let sent = timer
                .limit(
                    self.settings.response_timeout,
                    // Boxed: the exchange's future is large, and the wait around it would copy it.
                    Box::pin(self.send(up, &request, body)),
                )
                .await;
            match sent {
                Some(Ok(response)) => return Ok(response),
                Some(Err(Failure::Connect(e))) => {
                    // Nothing was sent: the upstream is simply not there.
                    up.out_of_rotation("connection failed");
                    last = ProxyError::NoHealthyUpstream;
                    tracing::debug!(upstream = %up.base, error = %e, "connection failed");
                    if !replayable {
                        break;
                    }
                }
                Some(Err(Failure::Upstream(e))) => {
                    last = ProxyError::Upstream(e);
                    if !(replayable && idempotent) {
                        break;
                    }
                }
                None => {
                    up.out_of_rotation("timed out");
                    last = ProxyError::Timeout(self.settings.response_timeout);
                    if !(replayable && idempotent) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// One attempt on `up`, on an idle connection or a new one. A held body goes out once more
    /// on a new connection when a kept-alive one turns out to have just closed.
    async fn send<B>(
        &self,
        up: &Arc<Upstream>,
        request: &Prepared<'_>,
        body: Sending<'_, B>,
    ) -> Result<(ResponseHead, ProxyBody), Failure>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let body = match (up.unpark(), body) {
            (Some(mut conn), Sending::Buffered(bytes)) => {
                match exchange(&mut conn, up, request, Sending::<B>::Buffered(bytes)).await {
                    Ok(head) => return Ok(respond(conn, up, head)),
                    // The upstream had closed it: again on a new connection, if that cannot
                    // run the request twice.
                    Err(Exchange::Stale { written })
                        if !written || is_idempotent(request.method) =>
                    {
                        Sending::Buffered(bytes)
                    }
                    Err(e) => return Err(Failure::Upstream(e.to_string())),
                }
            }
            (Some(mut conn), streamed) => {
                return match exchange(&mut conn, up, request, streamed).await {
                    Ok(head) => Ok(respond(conn, up, head)),
                    Err(e) => Err(Failure::Upstream(e.to_string())),
                };
            }
            (None, body) => body,
        };
        let mut conn = self.connect(up).await.map_err(Failure::Connect)?;
        match exchange(&mut conn, up, request, body).await {
            Ok(head) => Ok(respond(conn, up, head)),
            Err(e) => Err(Failure::Upstream(e.to_string())),
        }
    }
}

/// The streamed-body type of a request whose body is held in memory: there is none.
enum Held {}

impl Body for Held {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match *self.get_mut() {}
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// The body of the attempt being made.
enum Sending<'a, B> {
    Buffered(&'a Bytes),
    Streamed(B),
}

/// How one exchange on a connection failed.
#[derive(Debug)]
enum Exchange {
    /// The connection had ended before anything of a response came (`written`: the request
    /// reached the connection).
    Stale {
        written: bool,
    },
    Failed(String),
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exchange::Stale { .. } => f.write_str("the upstream closed the connection"),
            Exchange::Failed(e) => f.write_str(e),
        }
    }
}

/// Writes the request on `conn` and reads the response head.
async fn exchange<B>(
    conn: &mut Conn,
    up: &Upstream,
    request: &Prepared<'_>,
    body: Sending<'_, B>,
) -> Result<ResponseHead, Exchange>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let framing = match &body {
        Sending::Buffered(bytes) if !bytes.is_empty() => RequestFraming::Length(bytes.len() as u64),
        Sending::Buffered(_)
            if request.declared_length.is_some()
                || matches!(*request.method, Method::POST | Method::PUT | Method::PATCH) =>
        {
            RequestFraming::Length(0)
        }
        Sending::Buffered(_) => RequestFraming::None,
        Sending::Streamed(_) => match request.declared_length {
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        },
    };
    // Sized for the whole head (and a small body sent with it), so that it is never grown.
    let fields_len = match request.fields {
        Fields::Encoded(lines) => lines.len(),
        Fields::Map(headers) => headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum(),
    };
    let inline_body = match &body {
        Sending::Buffered(bytes) if bytes.len() <= INLINE_BODY_BYTES => bytes.len(),
        _ => 0,
    };
    let mut out = Vec::with_capacity(
        96 + up.prefix.len() + request.path.len() + up.host.len() + fields_len + inline_body,
    );
    h1::write_request_head(
        &mut out,
        request.method,
        &up.prefix,
        request.path,
        &up.host,
        request.fields,
        framing,
    );
    let stale_write = |e: io::Error| {
        if is_reset(&e) {
            Exchange::Stale { written: false }
        } else {
            Exchange::Failed(e.to_string())
        }
    };
    match body {
        Sending::Buffered(bytes) => {
            if bytes.len() <= INLINE_BODY_BYTES {
                out.extend_from_slice(bytes);
                conn.tcp.write_all(&out).await.map_err(stale_write)?;
            } else {
                conn.tcp.write_all(&out).await.map_err(stale_write)?;
                conn.tcp
                    .write_all(bytes)
                    .await
                    .map_err(|e| Exchange::Failed(e.to_string()))?;
            }
        }
        Sending::Streamed(mut body) => {
            conn.tcp.write_all(&out).await.map_err(stale_write)?;
            match stream_body(conn, &mut body, framing).await {
                Ok(()) => {}
                Err(BodyFailure::Client(e)) => return Err(Exchange::Failed(e)),
                // The upstream may have answered early (and stopped reading): its answer, if
                // one came, is the response.
                Err(BodyFailure::Upstream(e)) => {
                    return match conn.read_head(request.method).await {
                        Ok(Some(mut head)) => {
                            head.keep_alive = false;
                            Ok(head)
                        }
                        _ => Err(Exchange::Failed(e)),
                    };
                }
            }
        }
    }
    match conn.read_head(request.method).await {
        Ok(Some(head)) => Ok(head),
        Ok(None) => Err(Exchange::Stale { written: true }),
        Err(e) => Err(Exchange::Failed(e)),
    }
}

/// Why a streamed request body did not get through.
enum BodyFailure {
    /// The client's body: unreadable, or not the length it declared.
    Client(String),
    /// Writing to the upstream.
    Upstream(String),
}

/// Copies a streamed request body to the upstream as it arrives, framed as announced.
async fn stream_body<B>(
    conn: &mut Conn,
    body: &mut B,
    framing: RequestFraming,
) -> Result<(), BodyFailure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut sent: u64 = 0;
    let mut chunk = Vec::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|e| BodyFailure::Client(format!("the request body could not be read: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        sent += data.len() as u64;
        let written = match framing {
            RequestFraming::Chunked => {
                chunk.clear();
                h1::write_chunk(&mut chunk, &data);
                conn.tcp.write_all(&chunk).await
            }
            RequestFraming::Length(n) if sent > n => {
                return Err(BodyFailure::Client(
                    "the request body is longer than its Content-Length".into(),
                ))
            }
            _ => conn.tcp.write_all(&data).await,
        };
        written.map_err(|e| BodyFailure::Upstream(e.to_string()))?;
    }
    match framing {
        RequestFraming::Chunked => conn
            .tcp
            .write_all(h1::LAST_CHUNK)
            .await
            .map_err(|e| BodyFailure::Upstream(e.to_string())),
        RequestFraming::Length(n) if sent != n => Err(BodyFailure::Client(
            "the request body is shorter than its Content-Length".into(),
        )),
        _ => Ok(()),
    }
}

/// The response to hand on: its body taken from what is already read when it is all there
/// (the connection goes back at once), or streamed from the connection.
fn respond(mut conn: Conn, up: &Arc<Upstream>, head: ResponseHead) -> (ResponseHead, ProxyBody) {
    let body = match head.framing {
        BodyFraming::Empty => {
            if head.keep_alive {
                up.park(conn);
            }
            ProxyBody(Kind::Full(None))
        }
        BodyFraming::Length(n) if conn.buf.len() as u64 >= n => {
            let data = conn.buf.split_to(n as usize).freeze();
            if head.keep_alive {
                up.park(conn);
            }
            ProxyBody(Kind::Full((n > 0).then_some(data)))
        }
        framing => ProxyBody(Kind::Streaming(Box::new(Streaming {
            conn: Some(conn),
            reading: match framing {
                BodyFraming::Length(n) => Reading::Length(n),
                BodyFraming::Chunked => Reading::Chunked(ChunkedDecoder::default()),
                _ => Reading::UntilClose,
            },
            upstream: up.clone(),
            keep_alive: head.keep_alive,
        }))),
    };
    (head, body)
}

/// A response body from an upstream.
pub struct ProxyBody(Kind);

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Kind::Full(_) => "read",
            Kind::Streaming(_) => "streaming",
        };
        f.debug_tuple("ProxyBody").field(&kind).finish()
    }
}

enum Kind {
    Full(Option<Bytes>),
    Streaming(Box<Streaming>),
}

/// A body still arriving on its connection.
struct Streaming {
    /// `None` once the body has ended (the connection parked or closed).
    conn: Option<Conn>,
    reading: Reading,
    upstream: Arc<Upstream>,
    keep_alive: bool,
}

enum Reading {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// A response body broke off.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's response body broke off: {0}")]
pub struct ProxyBodyError(String);

impl Streaming {
    /// The body is complete: the connection goes back for another request if it may.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep_alive {
                self.upstream.park(conn);
            }
        }
    }

    fn fail(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, ProxyBodyError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(ProxyBodyError(why))))
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyBodyError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut self.reading {
                Reading::Length(left) => {
                    if *left == 0 {
                        self.finish();
                        return Poll::Ready(None);
                    }
                    if !conn.buf.is_empty() {
                        let take = (*left).min(conn.buf.len() as u64);
                        let data = conn.buf.split_to(take as usize).freeze();
                        *left -= take;
                        if *left == 0 {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End(trailers)) => {
                        self.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(Decoded::More) => {}
                    Err(e) => return self.fail(e.to_string()),
                },
                Reading::UntilClose => {
                    if !conn.buf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(conn.buf.split().freeze()))));
                    }
                }
            }
            match ready!(conn.poll_read_more(cx)) {
                Ok(0) if matches!(self.reading, Reading::UntilClose) => {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return self.fail("the connection closed before the body's end".into()),
                Ok(_) => {}
                Err(e) => return self.fail(e.to_string()),
            }
        }
    }
}

impl ProxyBody {
    /// The whole body, when it was read with the head (`Some(None)`: empty); `None` while it
    /// still streams from the upstream.
    pub fn take_whole(&mut self) -> Option<Option<Bytes>> {
        match &mut self.0 {
            Kind::Full(data) => Some(data.take()),
            Kind::Streaming(_) => None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = ProxyBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyBodyError>>> {
        match &mut self.get_mut().0 {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Streaming(s) => s.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(data) => data.is_none(),
            Kind::Streaming(s) => s.conn.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Streaming(s) => match (&s.conn, &s.reading) {
                (None, _) => SizeHint::with_exact(0),
                (Some(_), Reading::Length(n)) => SizeHint::with_exact(*n),
                _ => SizeHint::default(),
            },
        }
    }
}

/// How one attempt failed.
enum Failure {
    /// No connection could be made: nothing was sent.
    Connect(String),
    /// The request (or part of it) may have reached the upstream.
    Upstream(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Request};
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use tokio::io::AsyncReadExt;

    /// The test upstreams listen on loopback, which the policy must list to reach.
    fn loopback() -> ProxySettings {
        ProxySettings {
            policy: EgressPolicy::parse("127.0.0.0/8").unwrap(),
            ..ProxySettings::default()
        }
    }

    type TestBody = Full<Bytes>;

    /// Takes `secs` seconds (of Tokio's clock) to answer `answer`.
    async fn after(secs: u64, answer: u32) -> u32 {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        answer
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_response_timer_gives_every_wait_its_whole_limit() {
        let limit = Duration::from_secs(30);
        let mut timer = ResponseTimer::default();
        // Three answers in time; the timer stays set for the first wait's end (30 s).
        for i in 0..3 {
            assert_eq!(timer.limit(limit, after(10, i)).await, Some(i));
        }
        // At 30 s, a wait until 60 s: the timer goes off at 30 s, is moved, and the answer at
        // 55 s is in time.
        assert_eq!(timer.limit(limit, after(25, 7)).await, Some(7));
        // An answer that never comes: the wait ends at its own end, no sooner, no later.
        let started = tokio::time::Instant::now();
        assert_eq!(
            timer.limit(limit, std::future::pending::<u32>()).await,
            None
        );
        let waited = started.elapsed();
        assert!(
            waited >= limit && waited < limit + Duration::from_millis(10),
            "{waited:?}"
        );
        // A shorter limit after a longer one: the timer set further out is brought forward.
        assert_eq!(timer.limit(limit, after(1, 8)).await, Some(8));
        let started = tokio::time::Instant::now();
        let short = Duration::from_secs(5);
        assert_eq!(timer.limit(short, after(6, 9)).await, None);
        let waited = started.elapsed();
        assert!(
            waited >= short && waited < short + Duration::from_millis(10),
            "{waited:?}"
        );
    }

    /// An upstream on a random port answering 200 to everything; counts the connections it
    /// accepted.
    async fn upstream() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        (base, accepted)
    }

    /// An upstream that reads each request head and answers with `response`, then closes the
    /// connection when `close` says so (whatever the response claims); counts connections.
    async fn raw_upstream(response: &'static [u8], close: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if tcp.write_all(response).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    fn get() -> http::request::Parts {
        Request::get("/v1/app/x").body(()).unwrap().into_parts().0
    }

    async fn fetch(proxy: &Proxy, upstreams: &[String]) -> (u16, Bytes, Option<HeaderMap>) {
        let response = proxy
            .forward::<TestBody>(upstreams, get(), Outgoing::Buffered(Bytes::new()))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (status, collected.to_bytes(), trailers)
    }

    /// `n` requests one after the other, each answered and read to the end.
    async fn one_by_one(proxy: &Proxy, upstreams: &[String], n: usize) {
        for _ in 0..n {
            let (status, body, _) = fetch(proxy, upstreams).await;
            assert_eq!((status, &body[..]), (200, &b"ok"[..]));
        }
    }

    #[tokio::test]
    async fn kept_alive_connections_are_reused_and_grow_only_with_concurrency() {
        let (base, accepted) = upstream().await;
        let proxy = Proxy::new(loopback());
        let upstreams = [base];
        one_by_one(&proxy, &upstreams, 10).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection, kept alive"
        );

        // Four at once need four connections; afterwards they are all reused.
        let responses = futures_util::future::join_all((0..4).map(|_| {
            proxy.forward::<TestBody>(&upstreams, get(), Outgoing::Buffered(Bytes::new()))
        }))
        .await;
        for response in responses {
            let body = response.unwrap().into_body().collect().await.unwrap();
            assert_eq!(&body.to_bytes()[..], b"ok");
        }
        let after_burst = accepted.load(Ordering::SeqCst);
        assert!((2..=4).contains(&after_burst), "{after_burst}");
        one_by_one(&proxy, &upstreams, 10).await;
        assert_eq!(accepted.load(Ordering::SeqCst), after_burst);

        // Expired idle connections are dropped at the next health round, not reused.
        for up in proxy.upstreams.read().unwrap().values() {
            for (since, _) in up.idle.lock().unwrap().iter_mut() {
                *since = since
                    .checked_sub(IDLE_TIMEOUT)
                    .expect("uptime above a minute");
            }
        }
        proxy.check_health(&upstreams).await;
        for up in proxy.upstreams.read().unwrap().values() {
            assert!(up.idle.lock().unwrap().is_empty());
        }
        let before = accepted.load(Ordering::SeqCst);
        one_by_one(&proxy, &upstreams, 1).await;
        assert_eq!(accepted.load(Ordering::SeqCst), before + 1);
    }

    #[tokio::test]
    async fn every_connection_is_checked_against_the_policy() {
        let (base, accepted) = upstream().await;
        // The default policy lists nothing: loopback is never reached, for a request or a
        // health check, however it is written.
        let closed = Proxy::new(ProxySettings::default());
        let port = base.rsplit(':').next().unwrap();
        for written in [
            base.clone(),
            format!("http://localhost:{port}"),
            format!("http://[::ffff:127.0.0.1]:{port}"),
        ] {
            let refused = closed
                .forward::<TestBody>(
                    std::slice::from_ref(&written),
                    get(),
                    Outgoing::Buffered(Bytes::new()),
                )
                .await;
            assert_eq!(
                refused.unwrap_err(),
                ProxyError::NoHealthyUpstream,
                "{written}"
            );
        }
        for _ in 0..2 {
            closed.check_health(std::slice::from_ref(&base)).await;
        }
        assert_eq!(closed.health(), [(base.clone(), false)]);
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        // Listed: reached.
        let open = Proxy::new(loopback());
        one_by_one(&open, std::slice::from_ref(&base), 1).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn health_checks_follow_the_current_upstreams_only() {
        let (first, first_seen) = upstream().await;
        let (second, second_seen) = upstream().await;
        let proxy = Proxy::new(loopback());
        proxy.check_health(&[first.clone(), second.clone()]).await;
        assert_eq!(proxy.health_counts(), (2, 0));
        let seen = first_seen.load(Ordering::SeqCst);
        // The first one's application moved away: no longer checked, no longer known.
        proxy.check_health(std::slice::from_ref(&second)).await;
        proxy.check_health(std::slice::from_ref(&second)).await;
        assert_eq!(proxy.health(), [(second.clone(), true)]);
        assert_eq!(first_seen.load(Ordering::SeqCst), seen);
        assert!(second_seen.load(Ordering::SeqCst) >= 3);
        proxy.check_health(&[]).await;
        assert!(proxy.health().is_empty());
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_used_again() {
        // Claims keep-alive, closes after every response.
        let (base, accepted) =
            raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
        let proxy = Proxy::new(loopback());
        let upstreams = [base];
        for i in 1..=5 {
            // Whether the close is seen before the next request or only by it, the request
            // is answered, on a new connection.
            one_by_one(&proxy, &upstreams, 1).await;
            assert_eq!(accepted.load(Ordering::SeqCst), i);
            if i == 3 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    #[tokio::test]
    async fn chunked_and_close_delimited_bodies_are_read_to_their_end() {
        let (base, accepted) = raw_upstream(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nx-sum: 7\r\n\r\n",
            false,
        )
        .await;
        let proxy = Proxy::new(loopback());
        let upstreams = [base];
        for _ in 0..3 {
            let (status, body, trailers) = fetch(&proxy, &upstreams).await;
            assert_eq!((status, &body[..]), (200, &b"abcdefg"[..]));
            assert_eq!(trailers.unwrap()["x-sum"], "7");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "chunked bodies keep the connection"
        );

        let (base, accepted) = raw_upstream(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", true).await;
        let upstreams = [base];
        for i in 1..=2 {
            let (status, body, _) = fetch(&proxy, &upstreams).await;
            assert_eq!((status, &body[..]), (200, &b"until the end"[..]));
            assert_eq!(accepted.load(Ordering::SeqCst), i);
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_or_a_garbled_head_is_an_error() {
        let proxy = Proxy::new(loopback());
        let (base, _) =
            raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", true).await;
        let response = proxy
            .forward::<TestBody>(&[base], get(), Outgoing::Buffered(Bytes::new()))
            .await
            .unwrap();
        assert!(response.into_body().collect().await.is_err());

        let (base, _) = raw_upstream(b"220 smtp.example ESMTP\r\n\r\n", true).await;
        let refused = proxy
            .forward::<TestBody>(&[base], get(), Outgoing::Buffered(Bytes::new()))
            .await;
        assert!(
            matches!(refused, Err(ProxyError::Upstream(ref e)) if e.contains("malformed")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn streamed_request_bodies_are_framed_by_their_length_or_in_chunks() {
        // An upstream that echoes the bytes it received after the head, once it has them all.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |r: Request<hyper::body::Incoming>| async move {
                            let chunked = r.headers().contains_key("transfer-encoding");
                            let body = r.into_body().collect().await.unwrap().to_bytes();
                            let mut echo = if chunked {
                                b"chunked:".to_vec()
                            } else {
                                b"length:".to_vec()
                            };
                            echo.extend_from_slice(&body);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(echo))))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        let proxy = Proxy::new(loopback());
        let upstreams = [base];
        let post = |length: Option<usize>| {
            let mut r = Request::post("/v1/app/upload");
            if let Some(n) = length {
                r = r.header("content-length", n);
            }
            r.body(()).unwrap().into_parts().0
        };
        for (length, expected) in [
            (Some(11), "length:hello world"),
            (None, "chunked:hello world"),
        ] {
            let body = Full::new(Bytes::from_static(b"hello world"));
            let response = proxy
                .forward(&upstreams, post(length), Outgoing::Streamed(body))
                .await
                .unwrap();
            let echoed = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(std::str::from_utf8(&echoed).unwrap(), expected);
        }
        // A body longer than it declared is not sent as something else.
        let body = Full::new(Bytes::from_static(b"hello world"));
        assert!(proxy
            .forward(&upstreams, post(Some(5)), Outgoing::Streamed(body))
            .await
            .is_err());
    }
}
