//! The HTTP surface of `authsome serve`: the control plane (`/control/v1`), the customer API
//! (`/v1/{appId}`), health (`/health`, `/ready`) and the OpenAPI document (`/openapi.json`).
//!
//! **Architecture invariant:** handlers are thin. They parse the request into control-plane
//! inputs, call one [`authsome_control::ControlPlane`] method, and render the result; they never
//! touch storage directly except for the `/ready` probe and `Idempotency-Key` records. All error
//! rendering goes through [`error`], so every response has the contract's error body.

pub mod app;
#[cfg(feature = "direct-path")]
mod direct;
pub mod dpop;
pub mod error;
pub mod events;
mod extract;
pub mod gateway;
pub mod idempotency;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod request_id;
mod routes;
pub mod serve;
mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use app::{App, BuildError, Settings, SharedState};
use authsome_control::audit::{AuditLog, AuditSettings};
use authsome_control::{ControlPlane, Provisioner};
use authsome_domain::error_chain;
use authsome_domain::id::ApplicationId;
use authsome_domain::master_key::MasterKey;
use authsome_domain::tenancy::{Application, Tenancy};
use authsome_gateway::forward::ForwardKey;
use authsome_gateway::proxy::{Proxy, ProxySettings};
use authsome_gateway::{RateLimiter, ReplayCache};
use authsome_identity::Identity;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use events::EventBus;
pub use serve::serve;
use tower_http::catch_panic::CatchPanicLayer;

/// What the HTTP layer needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Every DPoP proof must carry a current server nonce (RFC 9449 §8).
    pub dpop_require_nonce: bool,
    /// Forwarding to dedicated applications' instances: timeouts and health checks.
    pub proxy: ProxySettings,
    /// Run as one dedicated application's instance (`authsome serve --app`): serve only its
    /// customer API and health.
    pub only_app: Option<ApplicationId>,
    /// Longest wait for a request head, counted from when a connection is ready for one (so
    /// also how long a kept-alive connection may stay idle).
    pub header_read_timeout: Duration,
    /// `/metrics` answers only requests bearing this token (`AUTHSOME_METRICS_TOKEN`).
    pub metrics_token: Option<String>,
    /// `/metrics` is served on a listener of its own ([`metrics_router`]), not by [`router`].
    pub metrics_elsewhere: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            dpop_require_nonce: false,
            proxy: ProxySettings::default(),
            only_app: None,
            header_read_timeout: Duration::from_secs(75),
            metrics_token: None,
            metrics_elsewhere: false,
        }
    }
}

pub struct ServerState {
    pub control: ControlPlane,
    /// The tamper-evident audit log every event is recorded in.
    pub audit: Arc<AuditLog>,
    pub identity: Arc<Identity>,
    pub events: Arc<EventBus>,
    /// Per-key request limits of the customer API (in process, or shared through Redis).
    pub limiter: Arc<dyn RateLimiter>,
    /// One-time values already used (request signatures), in process or shared in Redis.
    pub replay: Arc<dyn ReplayCache>,
    pub http: HttpSettings,
    /// The client that forwards dedicated applications' traffic to their instances.
    pub proxy: Arc<Proxy>,
    /// Signs (gateway) and checks (instance) the assertion on forwarded requests.
    pub forward_key: ForwardKey,
    /// Creates dedicated applications' Redis users, when enabled.
    redis_users: RedisUsersSlot,
    draining: AtomicBool,
    /// Set once the outbox rows left by a stopped process are in the audit log.
    audit_recovered: Arc<AtomicBool>,
}

pub type AppState = Arc<ServerState>;

impl ServerState {
    /// Wires the control plane to the identity engine (which provisions applications), the
    /// audit log and the gateway: the state the router serves. Starts nothing ([`App::start`]
    /// does); build it with [`App::build`].
    pub(crate) fn assemble(
        control: ControlPlane,
        identity: Identity,
        http: HttpSettings,
        limiter: Arc<dyn RateLimiter>,
        replay: Arc<dyn ReplayCache>,
    ) -> AppState {
        let audit = AuditLog::new(
            control.store().clone(),
            identity.master_key(),
            AuditSettings {
                clock: control.clock().clone(),
                ..AuditSettings::for_public_url(identity.public_url())
            },
        );
        let events = Arc::new(EventBus::new(4096).with_audit(audit.clone()));
        let identity = Arc::new(identity.with_events(events.clone()));
        audit.set_app_outbox(Arc::new(IdentityOutbox(identity.clone())));
        metrics::handle();
        let forward_key =
            ForwardKey::new(identity.master_key().derive(b"authsome.gateway.forward.v1"));
        let proxy = Proxy::new(http.proxy.clone());
        let redis_users = RedisUsersSlot::default();
        let control = control
            .with_entry_state(limiter.clone(), replay.clone())
            .with_upstream_policy(http.proxy.policy.clone())
            .with_master_key(identity.master_key())
            .with_application_usage(Arc::new(IdentityUsage(identity.clone())))
            .with_provisioner(Arc::new(IdentityProvisioner {
                identity: identity.clone(),
                redis_users: redis_users.clone(),
            }))
            .with_events(events.clone());
        Arc::new(Self {
            control,
            audit,
            identity,
            events,
            limiter,
            replay,
            http,
            proxy,
            forward_key,
            redis_users,
            draining: AtomicBool::new(false),
            audit_recovered: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether the audit log holds every outbox row a stopped process left (`/ready` waits).
    pub fn audit_recovered(&self) -> bool {
        self.audit_recovered.load(Ordering::SeqCst)
    }

    /// From now on, provisioning a dedicated application also creates its Redis user (confined
    /// to the application's keys) and destroying one deletes it
    /// (`AUTHSOME_REDIS_APP_USERS=true`).
    pub(crate) fn use_redis_app_users(&self, users: authsome_gateway::RedisAppUsers) {
        let _ = self.redis_users.set(Arc::new(users));
    }

    /// From now on `/ready` answers 503, so load balancers stop sending traffic.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (router, _) = openapi::router_and_spec();
    let max_body = state.http.max_body_bytes;
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gateway::dispatch,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::customer::digest_signed_body,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(request_id::panic_response))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gateway::trust_forwarded,
        ))
        .with_state(state)
}

/// `/metrics` alone, for a listener of its own (`AUTHSOME_METRICS_LISTEN`): with the request-id
/// layer, so its refusals have the contract's body, and nothing else of the API.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(routes::health::metrics_on_own_listener),
        )
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}

/// Runs the background housekeeping (key-usage flushes, purges) until `shutdown` resolves, then
/// flushes once more.
pub(crate) async fn run_maintenance(
    state: AppState,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = state.control.maintain().await {
                    tracing::warn!(error = %e, "maintenance failed; will retry");
                }
                state.identity.maintain().await;
                state.audit.release_folds(false);
                if let Err(e) = state.audit.prune_if_due().await {
                    tracing::warn!(error = %e, "audit retention failed; will retry");
                }
            }
            _ = &mut shutdown => break,
        }
    }
    flush_batched(&state).await;
}

/// Writes everything batched in memory (key `lastUsedAt`, request counts, monthly active users). Called when
/// the maintenance loop stops and again once the server has drained its last requests.
pub(crate) async fn flush_batched(state: &AppState) {
    if let Err(e) = state.control.flush_key_usage().await {
        tracing::error!(error = %e, "key-usage flush failed");
    }
    if let Err(e) = state.control.flush_request_counts().await {
        tracing::error!(error = %e, "request-count flush failed");
    }
    if let Err(e) = state.identity.flush_active_users().await {
        tracing::error!(error = %e, "monthly-active-users flush failed");
    }
    // Counts of repeated refusals still being folded are written now, not lost.
    state.audit.release_folds(true);
    // The audit writer retries until its database takes the queue; shutdown waits a bounded
    // time for it, then signs a checkpoint over what was written.
    if tokio::time::timeout(Duration::from_secs(10), state.audit.flush())
        .await
        .is_err()
    {
        tracing::error!("audit log flush timed out; queued entries were not written");
    }
    if let Err(e) = state.audit.checkpoint_all().await {
        tracing::error!(error = %e, "audit checkpoint failed");
    }
}

/// Sign-in failure counters in Redis, shared by every replica.
pub(crate) struct SharedThrottle(pub authsome_gateway::RedisThrottle);

#[async_trait::async_trait]
impl authsome_control::throttle::SignInThrottle for SharedThrottle {
    async fn check(
        &self,
        subject: &str,
    ) -> Result<Option<Duration>, authsome_control::throttle::ThrottleUnavailable> {
        self.0
            .check(subject)
            .await
            .map_err(|e| authsome_control::throttle::ThrottleUnavailable(e.to_string()))
    }

    async fn attempt(
        &self,
        subject: &str,
    ) -> Result<Option<Duration>, authsome_control::throttle::ThrottleUnavailable> {
        self.0
            .attempt(subject)
            .await
            .map_err(|e| authsome_control::throttle::ThrottleUnavailable(e.to_string()))
    }

    async fn failed(
        &self,
        subject: &str,
    ) -> Result<(), authsome_control::throttle::ThrottleUnavailable> {
        self.0
            .failed(subject)
            .await
            .map_err(|e| authsome_control::throttle::ThrottleUnavailable(e.to_string()))
    }

    async fn succeeded(
        &self,
        subject: &str,
    ) -> Result<(), authsome_control::throttle::ThrottleUnavailable> {
        self.0
            .succeeded(subject)
            .await
            .map_err(|e| authsome_control::throttle::ThrottleUnavailable(e.to_string()))
    }
}

/// The applications' audit outboxes, which live in their databases (the identity engine's).
struct IdentityOutbox(Arc<Identity>);

#[async_trait::async_trait]
impl authsome_control::audit::AppOutbox for IdentityOutbox {
    async fn delete(&self, app: &ApplicationId, ids: &[String]) -> Result<(), String> {
        self.0
            .delete_outbox(app, ids)
            .await
            .map_err(|e| error_chain(&e))
    }

    async fn stale(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(ApplicationId, Vec<authsome_storage::outbox::OutboxRow>)> {
        self.0.stale_outboxes(before).await
    }

    async fn pending(
        &self,
        apps: &[ApplicationId],
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(ApplicationId, Vec<authsome_storage::outbox::OutboxRow>)> {
        self.0.pending_outboxes(apps, before).await
    }
}

/// What the control plane's usage reads from the applications' own databases: their users.
struct IdentityUsage(Arc<Identity>);

fn usage_error(e: authsome_identity::IdentityError) -> authsome_control::ControlError {
    match e {
        authsome_identity::IdentityError::NotFound(what) => {
            authsome_control::ControlError::NotFound(what)
        }
        authsome_identity::IdentityError::Invalid(v) => v.into(),
        other => authsome_control::ControlError::Unavailable(other.to_string()),
    }
}

#[async_trait::async_trait]
impl authsome_control::usage::ApplicationUsage for IdentityUsage {
    async fn monthly_active_users(
        &self,
        app: &authsome_domain::id::ApplicationId,
        month: &str,
    ) -> authsome_control::Result<u64> {
        self.0
            .monthly_active_users(app, month)
            .await
            .map_err(usage_error)
    }

    async fn active_user_ids(
        &self,
        app: &authsome_domain::id::ApplicationId,
        month: &str,
        after: Option<&str>,
        limit: u32,
    ) -> authsome_control::Result<Vec<String>> {
        self.0
            .active_user_ids(app, month, after, limit)
            .await
            .map_err(usage_error)
    }

    async fn database_sizes(
        &self,
        apps: &[authsome_domain::id::ApplicationId],
    ) -> authsome_control::Result<Vec<u64>> {
        self.0.database_sizes(apps).await.map_err(usage_error)
    }
}

/// The control plane's provisioner: an application's database and signing key (the identity
/// engine's), and for a dedicated application its Redis user when those are enabled.
struct IdentityProvisioner {
    identity: Arc<Identity>,
    redis_users: RedisUsersSlot,
}

type RedisUsersSlot = Arc<std::sync::OnceLock<Arc<authsome_gateway::RedisAppUsers>>>;

#[async_trait::async_trait]
impl Provisioner for IdentityProvisioner {
    async fn provision(&self, app: &Application) -> Result<(), String> {
        self.identity
            .provision(&app.id)
            .await
            .map_err(|e| error_chain(&e))?;
        if let (Some(users), Tenancy::Dedicated) = (self.redis_users.get(), app.tenancy) {
            let password = redis_app_password(&self.identity.master_key(), app.id.as_str());
            users
                .ensure(app.id.as_str(), &password)
                .await
                .map_err(|e| format!("Redis user: {e}"))?;
        }
        Ok(())
    }

    async fn destroy(&self, app: &ApplicationId) -> Result<(), String> {
        if let Some(users) = self.redis_users.get() {
            users
                .remove(app.as_str())
                .await
                .map_err(|e| format!("Redis user: {e}"))?;
        }
        self.identity
            .destroy(app)
            .await
            .map_err(|e| error_chain(&e))
    }
}

/// The password of a dedicated application's Redis user: derived from the master key, so the
/// gateways that create the user and the instance that logs in as it agree without storing or
/// handing out anything.
pub fn redis_app_password(master: &MasterKey, app: &str) -> String {
    let mut context = b"authsome.redis.app-user.v1:".to_vec();
    context.extend_from_slice(app.as_bytes());
    hex_lower(&master.derive(&context))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cache invalidations carried to the other replicas over a Redis channel.
pub(crate) struct RedisInvalidations(pub authsome_gateway::RedisChannel);

impl authsome_control::InvalidationBus for RedisInvalidations {
    fn publish(&self, invalidation: &authsome_control::Invalidation) {
        self.0.publish(invalidation.encode());
    }
}

/// Applies the invalidations other replicas publish on `channel` to this replica's caches, so a
/// revoked key or a changed workspace standing takes effect everywhere within milliseconds.
pub(crate) fn listen_for_invalidations(
    state: &AppState,
    channel: &authsome_gateway::RedisChannel,
) -> tokio::task::JoinHandle<()> {
    let state = Arc::downgrade(state);
    channel.subscribe(Arc::new(move |message: String| {
        let decoded = authsome_control::Invalidation::decode(&message);
        if let (Some(state), Some(invalidation)) = (state.upgrade(), decoded) {
            state.control.apply_invalidation(&invalidation);
        }
    }))
}
