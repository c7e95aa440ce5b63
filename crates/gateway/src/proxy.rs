//! Forwarding to dedicated instances: a pooled HTTP/1.1 client, round-robin over the healthy
//! upstreams of an application, active health checks, retries and timeouts.
//!
//! Rules, chosen to match what operators expect of nginx's `proxy_next_upstream error timeout`:
//! - An upstream that refuses a connection or times out leaves rotation at once; it comes back
//!   when its `GET /health` answers 2xx, checked every [`ProxySettings::health_interval`]. One
//!   that fails [`ProxySettings::unhealthy_after`] health checks in a row leaves rotation too.
//! - A request whose body is held in memory is retried on the next healthy upstream when the
//!   connection could not be made (nothing was sent). Idempotent methods are also retried after
//!   a timeout or a broken connection. A streamed body is sent once and never replayed.
//! - Every attempt waits at most [`ProxySettings::response_timeout`] for the response head; the
//!   bodies then stream both ways without being buffered.
//!
//! The caller (the server) decides what to forward and which headers cross; see
//! [`crate::forward`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use authsome_domain::error_chain;
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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

struct Upstream {
    base: String,
    host: HeaderValue,
    healthy: AtomicBool,
    failed_checks: AtomicU32,
}

impl Upstream {
    fn out_of_rotation(&self, why: &str) {
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!(upstream = %self.base, reason = why, "upstream left rotation");
        }
    }
}

/// The forwarding client, shared by every dedicated application.
pub struct Proxy<B> {
    client: Client<HttpConnector, B>,
    upstreams: RwLock<HashMap<String, Arc<Upstream>>>,
    next: AtomicUsize,
    settings: ProxySettings,
}

impl<B> Proxy<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(settings: ProxySettings) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(connector);
        Arc::new(Self {
            client,
            upstreams: RwLock::new(HashMap::new()),
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

    /// One round of health checks.
    pub async fn check_health(&self) {
        let all: Vec<Arc<Upstream>> = match self.upstreams.read() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => return,
        };
        let timeout = self.settings.health_interval.min(Duration::from_secs(2));
        let checks = all.iter().map(|up| async move {
            let ok = match format!("{}/health", up.base).parse::<Uri>() {
                Ok(uri) => {
                    let mut request = Request::new(B::from(Bytes::new()));
                    *request.uri_mut() = uri;
                    request.headers_mut().insert(HOST, up.host.clone());
                    matches!(
                        tokio::time::timeout(timeout, self.client.request(request)).await,
                        Ok(Ok(r)) if r.status().is_success()
                    )
                }
                Err(_) => false,
            };
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

    fn upstream(&self, base: &str) -> Result<Arc<Upstream>, ProxyError> {
        if let Some(up) = self
            .upstreams
            .read()
            .ok()
            .and_then(|m| m.get(base).cloned())
        {
            return Ok(up);
        }
        let uri: Uri = base
            .parse()
            .map_err(|_| ProxyError::BadUpstream(base.to_owned()))?;
        if uri.scheme_str() != Some("http") {
            return Err(ProxyError::BadUpstream(base.to_owned()));
        }
        let host = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or_else(|| ProxyError::BadUpstream(base.to_owned()))?;
        let up = Arc::new(Upstream {
            base: base.trim_end_matches('/').to_owned(),
            host,
            healthy: AtomicBool::new(true),
            failed_checks: AtomicU32::new(0),
        });
        if let Ok(mut map) = self.upstreams.write() {
            return Ok(map.entry(base.to_owned()).or_insert(up).clone());
        }
        Ok(up)
    }

    /// Sends the request (whose headers the caller has already prepared) to one of `upstreams`
    /// and returns the upstream's response head with its body still streaming.
    pub async fn forward(
        &self,
        upstreams: &[String],
        parts: http::request::Parts,
        body: Outgoing<B>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let all = upstreams
            .iter()
            .map(|u| self.upstream(u))
            .collect::<Result<Vec<_>, _>>()?;
        let healthy: Vec<&Arc<Upstream>> = all
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
            .map_or("/", |p| p.as_str())
            .to_owned();
        let (buffered, mut streamed) = match body {
            Outgoing::Buffered(b) => (Some(b), None),
            Outgoing::Streamed(b) => (None, Some(b)),
        };
        let mut last = ProxyError::NoHealthyUpstream;
        for attempt in 0..healthy.len().min(3) {
            let up = healthy[(start + attempt) % healthy.len()];
            let body = match (&buffered, streamed.take()) {
                (Some(bytes), _) => B::from(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => break,
            };
            let uri: Uri = format!("{}{}", up.base, path)
                .parse()
                .map_err(|_| ProxyError::BadUpstream(up.base.clone()))?;
            let mut request = Request::new(body);
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.headers_mut() = parts.headers.clone();
            request.headers_mut().insert(HOST, up.host.clone());
            let replayable = buffered.is_some();
            match tokio::time::timeout(self.settings.response_timeout, self.client.request(request))
                .await
            {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) if e.is_connect() => {
                    // Nothing was sent: the upstream is simply not there.
                    up.out_of_rotation("connection failed");
                    last = ProxyError::NoHealthyUpstream;
                    tracing::debug!(upstream = %up.base, error = %error_chain(&e), "connection failed");
                    if !replayable {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    last = ProxyError::Upstream(error_chain(&e));
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
}
