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
//!   request that a kept-alive connection gave back unsent (it had just closed) goes out again
//!   on a fresh connection to the same upstream.
//! - Every attempt waits at most [`ProxySettings::response_timeout`] for the response head; the
//!   bodies then stream both ways without being buffered.
//!
//! Connections: each upstream keeps its idle HTTP/1.1 connections on a stack (at most
//! [`MAX_IDLE_PER_UPSTREAM`], for [`IDLE_TIMEOUT`]); a request takes the most recently used
//! one that is ready, or opens a new one, and gives it back once the response head is in.
//! Each connection's I/O runs in a task of its own.
//!
//! The caller (the server) decides what to forward and which headers cross; see
//! [`crate::forward`].

use authsome_domain::FastMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use authsome_domain::error_chain;
use bytes::Bytes;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;

/// Idle connections kept per upstream for client connections to come.
pub const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// How long an idle upstream connection is kept: below the 75 s after which an instance closes
/// an idle connection (`AUTHSOME_HEADER_TIMEOUT_SECONDS`), so the gateway gives a connection up
/// before the instance can close it under a request just sent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(2),
            unhealthy_after: 2,
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

struct Upstream<B> {
    base: String,
    /// `host:port`, to connect to.
    address: String,
    /// The base's path, put before every forwarded path (empty for an upstream at `/`).
    prefix: String,
    host: HeaderValue,
    healthy: AtomicBool,
    failed_checks: AtomicU32,
    idle: Mutex<Vec<(Instant, SendRequest<B>)>>,
}

impl<B> Upstream<B> {
    fn out_of_rotation(&self, why: &str) {
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!(upstream = %self.base, reason = why, "upstream left rotation");
        }
    }

    /// Keeps a connection that may serve another request.
    fn park(&self, send: SendRequest<B>) {
        if send.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_PER_UPSTREAM {
                idle.push((Instant::now(), send));
            }
        }
    }

    /// Drops the idle connections that closed or waited too long (closing those).
    fn prune(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|(since, send)| still_open(*since, send));
        }
    }

    /// The most recently parked connection that can take a request now. Closed and expired
    /// ones are dropped on the way; one still receiving its last response stays.
    fn unpark(&self) -> Option<SendRequest<B>> {
        let mut idle = self.idle.lock().ok()?;
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let (since, send) = &idle[i];
            if !still_open(*since, send) {
                idle.swap_remove(i);
            } else if send.is_ready() {
                return Some(idle.swap_remove(i).1);
            }
        }
        None
    }
}

/// The forwarding client, shared by every dedicated application.
pub struct Proxy<B> {
    upstreams: RwLock<FastMap<String, Arc<Upstream<B>>>>,
    next: AtomicUsize,
    settings: ProxySettings,
}

impl<B> Proxy<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(settings: ProxySettings) -> Arc<Self> {
        Arc::new(Self {
            upstreams: RwLock::new(FastMap::default()),
            next: AtomicUsize::new(0),
            settings,
        })
    }

    /// Checks the health of every upstream seen so far, every `health_interval`, until the
    /// proxy is dropped.
    pub fn spawn_health_checks(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.settings.health_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(proxy) = weak.upgrade() else { return };
                proxy.check_health().await;
            }
        })
    }

    /// One round of health checks, each on a connection of its own; idle connections that
    /// closed or expired are dropped on the way.
    pub async fn check_health(&self) {
        let all: Vec<Arc<Upstream<B>>> = match self.upstreams.read() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => return,
        };
        for up in &all {
            up.prune();
        }
        let timeout = self.settings.health_interval.min(Duration::from_secs(2));
        let checks = all.iter().map(|up| async move {
            let check = async {
                let mut send = self.connect(up).await.ok()?;
                let uri = Uri::try_from(format!("{}/health", up.prefix)).ok()?;
                let mut request = Request::new(B::from(Bytes::new()));
                *request.uri_mut() = uri;
                request.headers_mut().insert(HOST, up.host.clone());
                let response = send.send_request(request).await.ok()?;
                Some(response.status().is_success())
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

    /// Whether each known upstream is in rotation, for `/metrics` and tests.
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

    fn upstream(&self, base: &str) -> Result<Arc<Upstream<B>>, ProxyError> {
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
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let up = Arc::new(Upstream {
            base: base.trim_end_matches('/').to_owned(),
            address,
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

    /// A new HTTP/1.1 connection to `up`, its I/O driven by a task of its own.
    async fn connect(&self, up: &Upstream<B>) -> Result<SendRequest<B>, String> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&up.address)
                .await
                .map_err(|e| e.to_string())?;
            tcp.set_nodelay(true).map_err(|e| e.to_string())?;
            let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| error_chain(&e))?;
            let base = up.base.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(upstream = %base, error = %error_chain(&e), "upstream connection ended");
                }
            });
            Ok(send)
        };
        tokio::time::timeout(self.settings.connect_timeout, connect)
            .await
            .map_err(|_| "connection timed out".to_owned())?
    }

    /// Sends the request (whose headers the caller has already prepared) to one of `upstreams`
    /// and returns the upstream's response head with its body still streaming.
    pub async fn forward(
        &self,
        upstreams: &[String],
        parts: http::request::Parts,
        body: Outgoing<B>,
    ) -> Result<Response<Incoming>, ProxyError> {
        // On the stack for the usual handful of upstreams (this runs on every request).
        let all = upstreams
            .iter()
            .map(|u| self.upstream(u))
            .collect::<Result<SmallVec<[_; 4]>, _>>()?;
        let healthy: SmallVec<[&Arc<Upstream<B>>; 4]> = all
            .iter()
            .filter(|u| u.healthy.load(Ordering::SeqCst))
            .collect();
        if healthy.is_empty() {
            return Err(ProxyError::NoHealthyUpstream);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let (buffered, mut streamed) = match body {
            Outgoing::Buffered(b) => (Some(b), None),
            Outgoing::Streamed(b) => (None, Some(b)),
        };
        let replayable = buffered.is_some();
        let attempts = if replayable { healthy.len().min(3) } else { 1 };
        let mut headers = Some(parts.headers);
        let mut last = ProxyError::NoHealthyUpstream;
        for attempt in 0..attempts {
            let up = healthy[(start + attempt) % healthy.len()];
            let body = match (&buffered, streamed.take()) {
                (Some(bytes), _) => B::from(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => break,
            };
            let uri = if up.prefix.is_empty() {
                Uri::from(path.clone())
            } else {
                Uri::try_from(format!("{}{}", up.prefix, path))
                    .map_err(|_| ProxyError::BadUpstream(up.base.clone()))?
            };
            let mut request = Request::new(body);
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            // The last attempt takes the headers; earlier ones copy them.
            *request.headers_mut() = match &headers {
                Some(h) if attempt + 1 < attempts => h.clone(),
                _ => headers.take().unwrap_or_default(),
            };
            request.headers_mut().insert(HOST, up.host.clone());
            let sent =
                tokio::time::timeout(self.settings.response_timeout, self.send(up, request)).await;
            match sent {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(Failure::Connect(e))) => {
                    // Nothing was sent: the upstream is simply not there.
                    up.out_of_rotation("connection failed");
                    last = ProxyError::NoHealthyUpstream;
                    tracing::debug!(upstream = %up.base, error = %e, "connection failed");
                    if !replayable {
                        break;
                    }
                }
                Ok(Err(Failure::Upstream(e))) => {
                    last = ProxyError::Upstream(e);
                    if !(replayable && idempotent) {
                        break;
                    }
                }
                Err(_) => {
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

    /// One attempt on `up`, on an idle connection or a new one. A request that a kept-alive
    /// connection gives back unsent (it had just closed) goes out once more on a new one.
    async fn send(
        &self,
        up: &Upstream<B>,
        mut request: Request<B>,
    ) -> Result<Response<Incoming>, Failure> {
        if let Some(mut send) = up.unpark() {
            match send.try_send_request(request).await {
                Ok(response) => {
                    up.park(send);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(Failure::Upstream(error_chain(&e.into_error()))),
                },
            }
        }
        let mut send = self.connect(up).await.map_err(Failure::Connect)?;
        match send.send_request(request).await {
            Ok(response) => {
                up.park(send);
                Ok(response)
            }
            Err(e) => Err(Failure::Upstream(error_chain(&e))),
        }
    }
}

/// Whether an idle connection parked at `since` may still be used.
fn still_open<B>(since: Instant, send: &SendRequest<B>) -> bool {
    !send.is_closed() && since.elapsed() < IDLE_TIMEOUT
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
    use http_body_util::Full;
    use std::convert::Infallible;

    type Body = Full<Bytes>;

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

    fn get() -> http::request::Parts {
        Request::get("/v1/app/x").body(()).unwrap().into_parts().0
    }

    async fn drain(response: Response<Incoming>) {
        use http_body_util::BodyExt;
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    }

    /// `n` requests one after the other, each answered and read to the end.
    async fn one_by_one(proxy: &Proxy<Body>, upstreams: &[String], n: usize) {
        for _ in 0..n {
            let response = proxy
                .forward(upstreams, get(), Outgoing::Buffered(Bytes::new()))
                .await
                .unwrap();
            drain(response).await;
        }
    }

    #[tokio::test]
    async fn kept_alive_connections_are_reused_and_grow_only_with_concurrency() {
        let (base, accepted) = upstream().await;
        let proxy = Proxy::<Body>::new(ProxySettings::default());
        let upstreams = [base];
        one_by_one(&proxy, &upstreams, 10).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection, kept alive"
        );

        // Four at once need four connections; afterwards they are all reused.
        let responses = futures_util::future::join_all(
            (0..4).map(|_| proxy.forward(&upstreams, get(), Outgoing::Buffered(Bytes::new()))),
        )
        .await;
        for response in responses {
            drain(response.unwrap()).await;
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
        proxy.check_health().await;
        for up in proxy.upstreams.read().unwrap().values() {
            assert!(up.idle.lock().unwrap().is_empty());
        }
        let before = accepted.load(Ordering::SeqCst);
        one_by_one(&proxy, &upstreams, 1).await;
        assert_eq!(accepted.load(Ordering::SeqCst), before + 1);
    }
}
