//! The control plane's use cases: who may do what to which workspace, application or key, and in
//! what order it happens. Each public method of [`ControlPlane`] is one API operation.
//!
//! **Architecture invariant:** permissions are decided here and only here, from the caller's role
//! as the storage layer reports it for the workspace in question; storage never decides, and the
//! HTTP layer never looks past this API. Nothing here knows about HTTP.
//!
//! **Architecture invariant:** a resource of a workspace the caller cannot see is `NotFound`,
//! exactly as if it did not exist; `Forbidden` is only for callers who can see it.

mod admin;
pub mod admission;
pub mod alerts;
mod applications;
pub mod audit;
mod audit_fold;
mod auth;
pub mod billing;
mod bootstrap;
mod cache;
pub mod federation;
pub mod hashing;
pub mod jobs;
mod keys;
pub mod mail;
mod members;
mod metering;
pub mod payments;
mod providers;
mod provisioning;
pub mod rotation;
pub mod throttle;
pub mod usage;
mod vault;
mod workspaces;

use std::sync::Arc;

use authsome_domain::event::{DomainEvent, EventActor, EventSink, NoEvents, StoredIn};
use authsome_domain::tenancy::workspace::StandingError;
use authsome_domain::tenancy::{Actor, Permission, Role, Workspace};
use authsome_domain::ValidationError;
use authsome_storage::outbox::{Outbox, OutboxRow};
use authsome_storage::{StorageError, Store};

pub use admin::{AdminApplicationPatch, AdminWorkspacePatch};
pub use applications::{ApplicationPatch, NewApplication};
pub use auth::{AcceptInvitation, LoginResult};
pub use bootstrap::BootstrapResult;
pub use federation::{KeySetSource, NewTrustedIssuer, PrincipalToken, TokenExchange};
pub use keys::{
    ConnectionMemo, CreatedKey, Invalidation, InvalidationBus, KeyCache, LocalOnly, NewAppKey,
    NewManagementKey, RollKey, RolledKey,
};
pub use members::{Delivery, Invitation, MemberPatch, NewMember};
pub use metering::month_bounds;
pub use providers::{
    CredentialSources, FetchRequest, KmsKey, ProviderTest, ProviderView, PutProvider,
    RefreshRequest, ResolveError, Resolved, SourceError, TokenGrant,
};
pub use provisioning::Provisioner;
pub use vault::{
    CustomerKey, DestroyKeyring, EnvelopeStore, KeyringStatus, NewBinding, NewPrincipal, NewVault,
    PopRequest, Progress, PutSecret, RevealedSecret, VaultActor, VaultOperator, VaultPatch,
};
pub use workspaces::{NewWorkspace, WorkspacePatch};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The workspace's plan does not allow it (a limit named in the message).
    #[error("{0}")]
    PaymentRequired(String),
    /// A service this operation needs (the mail server) did not take it; nothing was stored.
    #[error("{0}")]
    Unavailable(String),
    /// A condition the caller set (`If-Match`) no longer holds: nothing was written.
    #[error("{0}")]
    PreconditionFailed(String),
    /// Password hashing is at capacity (see [`hashing`]): nothing was done; retry shortly.
    #[error(transparent)]
    Busy(#[from] hashing::Busy),
    #[error("storage failure")]
    Storage(#[source] StorageError),
}

impl From<StorageError> for ControlError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::LastOwner => {
                Self::Conflict("a workspace must keep at least one active owner".into())
            }
            StorageError::State(why) => Self::Conflict(why.into()),
            other => Self::Storage(other),
        }
    }
}

impl From<StandingError> for ControlError {
    fn from(e: StandingError) -> Self {
        Self::Forbidden(e.to_string())
    }
}

pub type Result<T, E = ControlError> = std::result::Result<T, E>;

/// Tunables of the control plane.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Lifetime of a dashboard session token.
    pub session_ttl: chrono::Duration,
    /// Region recorded on applications created without one.
    pub default_region: String,
    /// Where dedicated applications' upstreams may point (`AUTHSOME_UPSTREAM_ALLOW`); the
    /// server sets it from the gateway's, which checks it again at every connection.
    pub upstream_policy: authsome_domain::egress::EgressPolicy,
    /// The deployment's externally visible URL, for links in mail.
    pub public_url: String,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            session_ttl: chrono::Duration::hours(1),
            default_region: "local".into(),
            upstream_policy: authsome_domain::egress::EgressPolicy::open(),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

/// The control plane: the one entry point the HTTP layer and the CLI call.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    keys: KeyCache,
    credentials: Arc<throttle::CredentialThrottle>,
    hashers: hashing::HashPool,
    provisioner: Option<Arc<dyn Provisioner>>,
    events: Arc<dyn EventSink>,
    invalidation: Arc<dyn InvalidationBus>,
    meter: metering::RequestMeter,
    settings: ControlSettings,
    master_key: Option<Arc<authsome_domain::master_key::MasterKey>>,
    mailer: Option<Arc<dyn mail::Mailer>>,
    /// The customer API's per-key rate limits (in process or in Redis); none: unlimited.
    limiter: Option<Arc<dyn authsome_gateway::RateLimiter>>,
    /// One-time values already used (request signatures); none: signed requests are refused.
    replay: Option<Arc<dyn authsome_gateway::ReplayCache>>,
    clock: authsome_domain::clock::Clock,
    /// Outbound HTTP for identity issuers' key sets (workload identity federation).
    key_sets: Option<Arc<dyn federation::KeySetSource>>,
    key_set_cache: federation::KeySetCache,
    /// Where the vault keeps envelopes when not in the database.
    envelopes: Option<Arc<dyn vault::EnvelopeStore>>,
    /// Outbound calls for provider credentials (AWS KMS, token endpoints, customers' endpoints).
    credential_sources: Option<Arc<dyn providers::CredentialSources>>,
    resolver: providers::ResolverState,
    kek_cache: vault::KekCache,
    /// Connectors and the health probe for rotations.
    rotation_ports: Option<Arc<dyn rotation::RotationPorts>>,
    /// Delivers alerts to Slack and webhooks.
    alert_sender: Option<Arc<dyn alerts::AlertSender>>,
    /// This process's name when it claims jobs.
    worker: String,
    /// Carries jobs to workers; none: workers claim them from the database.
    job_transport: Option<Arc<dyn jobs::JobTransport>>,
    /// Answers for the applications' users (the identity engine).
    application_usage: Option<Arc<dyn usage::ApplicationUsage>>,
    /// When this process last looked for credentials that expire soon.
    expiry_scanned: std::sync::Mutex<Option<authsome_domain::clock::CoarseInstant>>,
    /// The last month this process closed.
    month_closed: std::sync::Mutex<Option<String>>,
    /// Workspaces to look at for usage thresholds.
    thresholds: usage::ThresholdScan,
    /// Workspaces' monthly active users, for the free plan's sign-up limit.
    mau_counts: billing::MauCounts,
    /// Stripe: customers, subscriptions and usage; none: nothing is sent.
    payments: Option<Arc<dyn payments::PaymentProvider>>,
    /// Stripe's webhook endpoint secret; none: the webhook route does not exist.
    stripe_webhook_secret: Option<zeroize::Zeroizing<String>>,
    #[cfg(feature = "unaudited-baseline")]
    unaudited: bool,
    #[cfg(feature = "unmetered-baseline")]
    unmetered: bool,
}

impl ControlPlane {
    pub fn new(store: Arc<dyn Store>, settings: ControlSettings) -> Self {
        Self {
            store,
            keys: KeyCache::default(),
            credentials: Arc::new(throttle::CredentialThrottle::in_process(
                &authsome_domain::clock::Clock::system(),
            )),
            hashers: hashing::HashPool::for_machine(
                hashing::DEFAULT_MEMORY_BUDGET_KIB,
                authsome_domain::password::Argon2Params::default().memory_kib,
            ),
            provisioner: None,
            events: Arc::new(NoEvents),
            invalidation: Arc::new(LocalOnly),
            meter: metering::RequestMeter::default(),
            settings,
            master_key: None,
            mailer: None,
            limiter: None,
            replay: None,
            clock: authsome_domain::clock::Clock::system(),
            key_sets: None,
            key_set_cache: Default::default(),
            envelopes: None,
            credential_sources: None,
            resolver: Default::default(),
            kek_cache: Default::default(),
            rotation_ports: None,
            alert_sender: None,
            worker: format!("worker-{}", hex::encode(rand::random::<[u8; 8]>())),
            job_transport: None,
            application_usage: None,
            expiry_scanned: std::sync::Mutex::new(None),
            month_closed: std::sync::Mutex::new(None),
            mau_counts: Default::default(),
            thresholds: Default::default(),
            stripe_webhook_secret: None,
            payments: None,
            #[cfg(feature = "unaudited-baseline")]
            unaudited: false,
            #[cfg(feature = "unmetered-baseline")]
            unmetered: false,
        }
    }

    /// Decides by `clock`'s time (expiries, lock-outs, backoffs, cache ages): a test's
    /// manual clock, moved forward instead of sleeping.
    pub fn with_clock(mut self, clock: authsome_domain::clock::Clock) -> Self {
        self.credentials = Arc::new(throttle::CredentialThrottle::in_process(&clock));
        self.keys.set_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// Hashes team members' passwords on `pool`, shared with the identity engine so that the
    /// process has one bound on hashing work.
    pub fn with_hash_pool(mut self, pool: hashing::HashPool) -> Self {
        self.hashers = pool;
        self
    }

    /// Counts credential failures in `throttle` (shared with the identity engine; in Redis
    /// when replicas share state).
    pub fn with_credential_throttle(mut self, throttle: Arc<throttle::CredentialThrottle>) -> Self {
        self.credentials = throttle;
        self
    }

    /// The credential throttle, for the identity engine to share.
    pub fn credential_throttle(&self) -> Arc<throttle::CredentialThrottle> {
        self.credentials.clone()
    }

    /// The pool passwords are hashed on.
    pub fn hash_pool(&self) -> &hashing::HashPool {
        &self.hashers
    }

    /// The time this control plane decides by.
    pub fn clock(&self) -> &authsome_domain::clock::Clock {
        &self.clock
    }

    /// Benchmarks only (the cargo feature `unaudited-baseline`, which no build of the server
    /// has): writes store no audit event, the baseline that the cost of auditing is measured
    /// against.
    #[cfg(feature = "unaudited-baseline")]
    pub fn unaudited_baseline(mut self) -> Self {
        self.unaudited = true;
        self
    }

    /// Benchmarks only (the cargo feature `unmetered-baseline`, which no build of the server
    /// has): the entry point neither counts requests nor checks the monthly quota, the
    /// baseline that the cost of metering is measured against.
    #[cfg(feature = "unmetered-baseline")]
    pub fn unmetered_baseline(mut self) -> Self {
        self.unmetered = true;
        self
    }

    /// Whether the entry point meters (always, outside the metering benchmark's baseline).
    fn metered(&self) -> bool {
        #[cfg(feature = "unmetered-baseline")]
        if self.unmetered {
            return false;
        }
        true
    }

    /// The state the customer API's entry point shares between replicas: rate limits and used
    /// request signatures.
    pub fn with_entry_state(
        mut self,
        limiter: Arc<dyn authsome_gateway::RateLimiter>,
        replay: Arc<dyn authsome_gateway::ReplayCache>,
    ) -> Self {
        self.limiter = Some(limiter);
        self.replay = Some(replay);
        self
    }

    /// Fetches identity issuers' key sets through `source` (workload identity federation).
    pub fn with_key_set_source(mut self, source: Arc<dyn federation::KeySetSource>) -> Self {
        self.key_sets = Some(source);
        self
    }

    /// Resolves provider credentials through `sources` (AWS KMS, OAuth token endpoints,
    /// customers' credential endpoints).
    pub fn with_credential_sources(
        mut self,
        sources: Arc<dyn providers::CredentialSources>,
    ) -> Self {
        self.credential_sources = Some(sources);
        self
    }

    /// Keeps the vault's envelopes in `store` (Redis) instead of the database.
    pub fn with_envelope_store(mut self, store: Arc<dyn vault::EnvelopeStore>) -> Self {
        self.envelopes = Some(store);
        self
    }

    /// Sends the control plane's mail (invitations) through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<dyn mail::Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// The master key, to seal new secret keys so they can sign requests.
    pub fn with_master_key(mut self, key: Arc<authsome_domain::master_key::MasterKey>) -> Self {
        self.master_key = Some(key);
        self
    }

    /// Where dedicated applications' upstreams may point: the policy the gateway enforces at
    /// every connection, checked here when an operator sets them.
    pub fn with_upstream_policy(mut self, policy: authsome_domain::egress::EgressPolicy) -> Self {
        self.settings.upstream_policy = policy;
        self
    }

    /// Announces cache invalidations to the other replicas through `bus`.
    pub fn with_invalidation_bus(mut self, bus: Arc<dyn InvalidationBus>) -> Self {
        self.invalidation = bus;
        self
    }

    /// Sends the control plane's domain events to `sink`.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = sink;
        self
    }

    /// Announces something done by `actor` that is not a write (a denial, a failed sign-in).
    fn emit(&self, actor: &Actor, event: DomainEvent) {
        self.events.emit(event.actor(event_actor(actor)));
    }

    /// Performs `write` with its `events` committed to the control-plane audit outbox in the
    /// write's own transaction, then hands them to the audit log. Fail closed: when the outbox
    /// row cannot be stored, the write rolls back with it and the caller gets the error.
    /// `actor` is `None` for AuthSome's own work (events already say `System`). A process
    /// without an audit log (a tool) leaves its rows for the server's log to recover.
    async fn audited<T, E>(
        &self,
        actor: Option<&Actor>,
        events: Vec<DomainEvent>,
        write: impl AsyncFnOnce(&Outbox) -> std::result::Result<T, E>,
    ) -> Result<T>
    where
        ControlError: From<E>,
    {
        let events: Vec<DomainEvent> = events
            .into_iter()
            .map(|e| {
                let mut e = match actor {
                    Some(a) => e.actor(event_actor(a)),
                    None => e,
                };
                self.events.stamp(&mut e);
                e
            })
            .collect();
        #[cfg(feature = "unaudited-baseline")]
        if self.unaudited {
            let value = write(&Outbox::empty()).await?;
            for event in events {
                self.events.emit(event);
            }
            return Ok(value);
        }
        let outbox = Outbox::new(events.iter().map(OutboxRow::of).collect());
        let value = write(&outbox).await?;
        let stored = outbox.stored();
        for event in events {
            if stored {
                self.events.emit_stored(event, StoredIn::ControlPlane);
            } else {
                // The storage method took the outbox and did not store it: a bug, which the
                // event still reaches the log despite (from memory, not fail-closed).
                tracing::error!(action = %event.action, "an audited write stored no outbox row");
                debug_assert!(
                    false,
                    "audited write without an outbox row: {}",
                    event.action
                );
                self.events.emit(event);
            }
        }
        Ok(value)
    }

    fn app_event(action: &'static str, app: &authsome_domain::tenancy::Application) -> DomainEvent {
        DomainEvent::new(action)
            .workspace(&app.workspace_id)
            .application(&app.id)
            .target(&app.id)
    }

    /// Gives the control plane the engine that creates and removes applications' resources.
    pub fn with_provisioner(mut self, provisioner: Arc<dyn Provisioner>) -> Self {
        self.provisioner = Some(provisioner);
        self
    }

    /// Delivers alerts to Slack and signed webhooks.
    pub fn with_alert_sender(mut self, sender: Arc<dyn alerts::AlertSender>) -> Self {
        self.alert_sender = Some(sender);
        self
    }

    /// Connectors (and the health probe) for rotations.
    pub fn with_rotation_ports(mut self, ports: Arc<dyn rotation::RotationPorts>) -> Self {
        self.rotation_ports = Some(ports);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn key_cache(&self) -> &KeyCache {
        &self.keys
    }

    /// The workspace as the caller sees it, if the caller holds `permission` there.
    async fn workspace_for(
        &self,
        actor: &Actor,
        workspace: &authsome_domain::id::WorkspaceId,
        permission: Permission,
    ) -> Result<(Workspace, Role)> {
        let (ws, role) = self
            .store
            .workspace_access(actor, workspace)
            .await?
            .ok_or(ControlError::NotFound("workspace"))?;
        self.require_for(actor, workspace, role, permission)?;
        Ok((ws, role))
    }

    /// Periodic housekeeping: flushes batched key usage and removes what has expired.
    pub async fn maintain(&self) -> Result<()> {
        let now = self.clock.now();
        self.flush_key_usage().await?;
        self.flush_request_counts().await?;
        self.credentials.prune();
        self.retry_provisioning().await?;
        self.purge_expired().await?;
        self.vault_key_work_for(std::time::Duration::from_secs(1))
            .await?;
        self.store.purge_sessions(now).await?;
        self.store
            .purge_idempotency(now - chrono::Duration::hours(24))
            .await?;
        // A batch is retried within minutes of its first try; a week is ample.
        self.store
            .purge_usage_batches(now - chrono::Duration::days(7))
            .await?;
        // Stripe retries a webhook event for three days; a month is ample.
        self.store
            .purge_stripe_events(now - chrono::Duration::days(30))
            .await?;
        self.sample_storage().await?;
        self.scan_usage_thresholds().await?;
        self.close_past_month().await?;
        // Rotation's background work last: a provider's trouble never holds up the rest.
        self.expire_approvals().await?;
        self.schedule_rotations().await?;
        if self.expiry_scan_due() {
            self.alert_expiring_credentials().await?;
        }
        self.run_jobs(&self.worker, std::time::Duration::from_secs(5))
            .await?;
        Ok(())
    }
}

impl ControlPlane {
    /// Whether the maintenance loop should look for expiring credentials now: at most once
    /// every ten minutes per process (alerts are deduplicated across replicas anyway).
    fn expiry_scan_due(&self) -> bool {
        self.due_every(&self.expiry_scanned, std::time::Duration::from_secs(600))
    }

    /// Whether `every` has passed since `last` (noting now as the last time when it has): the
    /// maintenance loop's "at most this often per process".
    pub(crate) fn due_every(
        &self,
        last: &std::sync::Mutex<Option<authsome_domain::clock::CoarseInstant>>,
        every: std::time::Duration,
    ) -> bool {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|at| self.clock.elapsed(at) >= every);
        if due {
            *last = Some(self.clock.instant());
        }
        due
    }

    /// [`require`], recording a denial in the workspace's audit log.
    fn require_for(
        &self,
        actor: &Actor,
        workspace: &authsome_domain::id::WorkspaceId,
        role: Role,
        permission: Permission,
    ) -> Result<()> {
        let decided = require(role, permission);
        if decided.is_err() {
            self.record_denial(actor, workspace, role, permission);
        }
        decided
    }

    /// Records in the workspace's audit log that `role` was refused `permission` (here or by a
    /// rule narrower than the role matrix, such as a policy's approver roles).
    fn record_denial(
        &self,
        actor: &Actor,
        workspace: &authsome_domain::id::WorkspaceId,
        role: Role,
        permission: Permission,
    ) {
        self.emit(
            actor,
            DomainEvent::new("permission.denied")
                .workspace(workspace)
                .outcome(authsome_domain::event::Outcome::Denied)
                .change("permission", format!("{permission:?}"))
                .change("role", role.as_str()),
        );
    }
}

fn event_actor(actor: &Actor) -> EventActor {
    match actor {
        Actor::Account(id) => EventActor::Account(id.clone()),
        Actor::ManagementKey { key_id, .. } => EventActor::Key(key_id.clone()),
    }
}

fn require(role: Role, permission: Permission) -> Result<()> {
    if role.allows(permission) {
        Ok(())
    } else {
        Err(ControlError::Forbidden(format!(
            "the {} role may not do this",
            role.as_str()
        )))
    }
}

/// A row that vanished between the access check and the write (deleted meanwhile): `NotFound`
/// naming it, like any unknown resource.
fn gone(what: &'static str) -> impl Fn(StorageError) -> ControlError {
    move |e| match e {
        StorageError::NotFound => ControlError::NotFound(what),
        other => other.into(),
    }
}

/// Turns a unique-constraint violation into a conflict that names what collided.
fn duplicate(what: &'static str) -> impl Fn(StorageError) -> ControlError {
    move |e| match e {
        StorageError::Duplicate => ControlError::Conflict(format!("{what} is already taken")),
        other => other.into(),
    }
}
