//! The composition root: every service of a serving process built from one [`Settings`]
//! ([`App::build`], which connects to what is configured and starts nothing), its background
//! work started in one place ([`App::start`]) and stopped in one place ([`App::stop`]).
//! `authsome serve`, the integration tests and the benchmarks all build their servers here, so a
//! new service or background task is added once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authsome_control::hashing::HashPool;
use authsome_control::mail::Mailer;
use authsome_control::throttle::{
    CredentialThrottle, ACCOUNT_FORGIVE_AFTER, ACCOUNT_FREE_ATTEMPTS, ADDRESS_FORGIVE_AFTER,
    ADDRESS_FREE_ATTEMPTS,
};
use authsome_control::{ControlPlane, ControlSettings};
use authsome_domain::clock::Clock;
use authsome_domain::master_key::MasterKey;
use authsome_domain::password::{Argon2Params, PasswordPolicy};
use authsome_gateway::{
    InProcessLimiter, InProcessReplayCache, RateLimiter, RedisAppUsers, RedisChannel, RedisLimiter,
    RedisReplayCache, RedisThrottle, ReplayCache,
};
use authsome_identity::Identity;
use authsome_storage::app::{AppDatabaseConfig, AppDatabases};
use authsome_storage::Store;
use tokio::task::JoinHandle;

use crate::{AppState, HttpSettings, RedisInvalidations, ServerState, SharedThrottle};

/// Everything a serving process is made of.
pub struct Settings {
    /// The control plane's database, opened and migrated.
    pub store: Arc<dyn Store>,
    /// Where applications' databases live.
    pub apps: AppDatabaseConfig,
    /// Application databases kept open at once (idle ones are closed).
    pub open_applications: usize,
    /// On Postgres, connections all applications' pools together may hold.
    pub app_db_connections: u32,
    pub master_key: MasterKey,
    /// The deployment's externally visible URL (token issuer, links in mail).
    pub public_url: String,
    pub control: ControlSettings,
    pub password_policy: PasswordPolicy,
    /// The memory password hashes may hold at once (sizes the one hashing pool), in KiB.
    pub hashing_memory_kib: u64,
    pub http: HttpSettings,
    /// Where the state replicas share lives.
    pub shared: SharedState,
    pub mailer: Option<Arc<dyn Mailer>>,
    /// The time every service decides by: the system's, or a test's manual clock.
    pub clock: Clock,
    /// How often the maintenance loop runs.
    pub maintenance_every: Duration,
    /// Where outbound calls to URLs customers give (identity issuers' key sets) may go.
    pub outbound: authsome_domain::egress::EgressPolicy,
    /// Keep the vault's envelopes in the shared Redis (`AUTHSOME_VAULT_BACKEND=redis`).
    pub vault_in_redis: bool,
    /// The deployment's AWS identity, for customers' KMS keys; none: KMS is not called.
    pub aws: Option<authsome_connect::aws::AwsSettings>,
    /// Where rotation's connectors call each provider (the providers' public APIs by default).
    pub targets: authsome_connect::targets::Endpoints,
    /// Carry the durable jobs over NATS JetStream (`AUTHSOME_NATS_URL`); none: workers claim
    /// them from the database.
    pub jobs: Option<authsome_nats::JetStreamSettings>,
    /// Stripe (`AUTHSOME_STRIPE_*`): customers, subscriptions and usage, and its webhook.
    pub stripe: authsome_connect::stripe::StripeSettings,
}

impl Settings {
    /// A single process's defaults around `store` and its applications' databases.
    pub fn new(store: Arc<dyn Store>, apps: AppDatabaseConfig, public_url: String) -> Self {
        Self {
            store,
            apps,
            open_applications: authsome_storage::app::DEFAULT_OPEN_APPLICATIONS,
            app_db_connections: authsome_storage::app::DEFAULT_POSTGRES_CONNECTION_BUDGET,
            master_key: MasterKey::generate(),
            control: ControlSettings {
                public_url: public_url.clone(),
                ..ControlSettings::default()
            },
            public_url,
            password_policy: PasswordPolicy::default(),
            hashing_memory_kib: authsome_control::hashing::DEFAULT_MEMORY_BUDGET_KIB,
            http: HttpSettings::default(),
            shared: SharedState::InProcess,
            mailer: None,
            clock: Clock::system(),
            maintenance_every: Duration::from_secs(5),
            outbound: authsome_domain::egress::EgressPolicy::open().without_private(),
            vault_in_redis: false,
            aws: None,
            targets: authsome_connect::targets::Endpoints::default(),
            jobs: None,
            stripe: Default::default(),
        }
    }
}

/// Where rate limits, sign-in throttles, replay memories and cache invalidations live.
#[derive(Debug, Clone)]
pub enum SharedState {
    /// In this process: one replica.
    InProcess,
    /// In Redis, shared by every replica: `prefix` starts every key; with `app_users` a
    /// dedicated application's instance connects as that application's own Redis user.
    Redis {
        url: url::Url,
        prefix: String,
        app_users: bool,
    },
}

/// A setting whose service could not be reached or used; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct BuildError {
    pub setting: &'static str,
    pub message: String,
}

fn redis_error(e: impl std::fmt::Display) -> BuildError {
    BuildError {
        setting: "AUTHSOME_REDIS_URL",
        message: e.to_string(),
    }
}

/// A serving process: its state (what the router serves) and its background work.
pub struct App {
    pub state: AppState,
    channel: Option<RedisChannel>,
    maintenance_every: Duration,
    /// Background loops that hold nothing unwritten: ended at once on [`App::stop`].
    loops: Mutex<Vec<JoinHandle<()>>>,
    /// The maintenance loop, which writes what is batched when told to stop: awaited.
    maintenance: Mutex<Option<JoinHandle<()>>>,
    stop_maintenance: Arc<tokio::sync::Notify>,
}

impl App {
    /// Builds every service from `settings`, connecting to the shared state when configured.
    /// Nothing runs until [`App::start`].
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        let Settings {
            store,
            apps,
            open_applications,
            app_db_connections,
            master_key,
            public_url,
            control,
            password_policy,
            hashing_memory_kib,
            http,
            shared,
            mailer,
            clock,
            maintenance_every,
            outbound,
            vault_in_redis,
            aws,
            mut targets,
            jobs,
            stripe,
        } = settings;
        // One bound on hashing for the whole process, sized for the costliest hash it makes.
        let hashers = HashPool::for_machine(
            hashing_memory_kib,
            password_policy
                .argon2
                .memory_kib
                .max(Argon2Params::default().memory_kib),
        );
        let mut identity = Identity::new(
            AppDatabases::new(apps, open_applications).with_connection_budget(app_db_connections),
            master_key,
            public_url,
        )
        .with_password_policy(password_policy)
        .with_hash_pool(hashers.clone())
        .with_clock(clock.clone());
        let outbound_policy = outbound.clone();
        let mut control = ControlPlane::new(store, control)
            .with_clock(clock.clone())
            .with_hash_pool(hashers)
            .with_key_set_source(Arc::new(authsome_connect::HttpKeySets::new(
                outbound.clone(),
            )))
            .with_alert_sender(Arc::new(authsome_connect::alerts::AlertDelivery::new(
                authsome_connect::Outbound::new(outbound.clone()),
            )))
            .with_rotation_ports(Arc::new(authsome_connect::targets::RotationTargets::new(
                {
                    // Secrets Manager is where the operator's AWS endpoint is, as KMS.
                    if targets.aws.is_none() {
                        targets.aws = aws.as_ref().and_then(|a| a.endpoint.clone());
                    }
                    targets
                },
                authsome_connect::Outbound::new(outbound.clone()),
            )))
            .with_credential_sources(Arc::new(authsome_connect::Connector::new(outbound, aws)));
        if let Some(secret) = stripe.webhook_secret.clone() {
            control = control.with_stripe_webhook_secret(secret);
        }
        if let Some(client) = authsome_connect::stripe::StripeClient::new(&stripe, outbound_policy)
        {
            control = control.with_payment_provider(Arc::new(client));
        }
        if let Some(jobs) = jobs {
            let transport = authsome_nats::JetStreamJobs::connect(&jobs)
                .await
                .map_err(|e| BuildError {
                    setting: "AUTHSOME_NATS_URL",
                    message: e.to_string(),
                })?;
            control = control.with_job_transport(Arc::new(transport));
        }
        // One credential throttle for both APIs (replaced by Redis's below when shared).
        identity = identity.with_credential_throttle(control.credential_throttle());
        if let Some(mailer) = mailer {
            control = control.with_mailer(mailer);
        }
        if vault_in_redis && matches!(shared, SharedState::InProcess) {
            return Err(BuildError {
                setting: "AUTHSOME_VAULT_BACKEND",
                message: "`redis` needs AUTHSOME_REDIS_URL".into(),
            });
        }
        let (limiter, replay, channel, app_users): (
            Arc<dyn RateLimiter>,
            Arc<dyn ReplayCache>,
            _,
            _,
        ) = match &shared {
            SharedState::InProcess => (
                Arc::new(InProcessLimiter::default().with_clock(clock.clone())),
                Arc::new(InProcessReplayCache::default()),
                None,
                None,
            ),
            SharedState::Redis {
                url,
                prefix,
                app_users,
            } => {
                let url = instance_redis_url(url, prefix, *app_users, &http, &identity)?;
                let throttle = |free: u32, forgive: Duration| {
                    let url = url.clone();
                    async move {
                        RedisThrottle::connect(url.as_str(), prefix, free, forgive)
                            .await
                            .map_err(redis_error)
                    }
                };
                let credentials = Arc::new(CredentialThrottle::new(
                    Arc::new(SharedThrottle(
                        throttle(ACCOUNT_FREE_ATTEMPTS, ACCOUNT_FORGIVE_AFTER).await?,
                    )),
                    Arc::new(SharedThrottle(
                        throttle(ADDRESS_FREE_ATTEMPTS, ADDRESS_FORGIVE_AFTER).await?,
                    )),
                ));
                identity = identity.with_credential_throttle(credentials.clone());
                control = control.with_credential_throttle(credentials);
                let limiter = RedisLimiter::connect(url.as_str(), prefix)
                    .await
                    .map_err(redis_error)?;
                let replay = RedisReplayCache::connect(url.as_str(), prefix)
                    .await
                    .map_err(redis_error)?;
                if vault_in_redis {
                    let blobs = authsome_gateway::RedisBlobs::connect(url.as_str(), prefix)
                        .await
                        .map_err(|e| BuildError {
                            setting: "AUTHSOME_VAULT_BACKEND",
                            message: format!("Redis cannot be reached: {e}"),
                        })?;
                    control = control.with_envelope_store(Arc::new(blobs));
                }
                let channel =
                    RedisChannel::connect(url.as_str(), &format!("{prefix}invalidations"))
                        .await
                        .map_err(redis_error)?;
                control =
                    control.with_invalidation_bus(Arc::new(RedisInvalidations(channel.clone())));
                // Gateways create and remove dedicated applications' Redis users.
                let users = match (*app_users, &http.only_app) {
                    (true, None) => Some(
                        RedisAppUsers::connect(url.as_str(), prefix)
                            .await
                            .map_err(|e| BuildError {
                                setting: "AUTHSOME_REDIS_APP_USERS",
                                message: e.to_string(),
                            })?,
                    ),
                    _ => None,
                };
                (
                    Arc::new(limiter) as Arc<dyn RateLimiter>,
                    Arc::new(replay) as Arc<dyn ReplayCache>,
                    Some(channel),
                    users,
                )
            }
        };
        let state = ServerState::assemble(control, identity, http, limiter, replay);
        if let Some(users) = app_users {
            state.use_redis_app_users(users);
        }
        Ok(Self {
            state,
            channel,
            maintenance_every,
            loops: Mutex::new(Vec::new()),
            maintenance: Mutex::new(None),
            stop_maintenance: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Starts the background work: the audit log's writer and its start-up recovery (`/ready`
    /// waits for it), the health checks of dedicated applications' upstreams (not on an
    /// instance), cache invalidations from the other replicas, and the maintenance loop.
    pub fn start(&self) {
        let state = &self.state;
        // The audit writer runs for as long as the process: the last flush needs it.
        let _writer = state.audit.spawn_writer();
        let mut loops = vec![spawn_audit_recovery(state)];
        if state.http.only_app.is_none() {
            loops.push(spawn_upstream_health_checks(state));
        }
        if let Some(channel) = &self.channel {
            loops.push(crate::listen_for_invalidations(state, channel));
        }
        if let Ok(mut running) = self.loops.lock() {
            running.extend(loops);
        }
        let stop = self.stop_maintenance.clone();
        let maintenance = tokio::spawn(crate::run_maintenance(
            state.clone(),
            self.maintenance_every,
            async move { stop.notified().await },
        ));
        if let Ok(mut slot) = self.maintenance.lock() {
            *slot = Some(maintenance);
        }
    }

    /// Stops the background work and writes what is batched in memory (key use, request
    /// counts, monthly active users, the audit queue, a last checkpoint). The maintenance loop
    /// is let finish what it is writing, never cut off in the middle of it.
    pub async fn stop(&self) {
        let loops = self
            .loops
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for task in loops {
            task.abort();
        }
        let maintenance = self.maintenance.lock().ok().and_then(|mut m| m.take());
        if let Some(maintenance) = maintenance {
            self.stop_maintenance.notify_one();
            let _ = maintenance.await;
        }
        // What requests in flight at the stop batched meanwhile.
        crate::flush_batched(&self.state).await;
    }
}

/// An instance of a dedicated application with per-application Redis users connects as its
/// application's user, which reaches only that application's keys.
fn instance_redis_url(
    url: &url::Url,
    prefix: &str,
    app_users: bool,
    http: &HttpSettings,
    identity: &Identity,
) -> Result<url::Url, BuildError> {
    let (true, Some(app)) = (app_users, &http.only_app) else {
        return Ok(url.clone());
    };
    let mut url = url.clone();
    let user = RedisAppUsers::username(prefix, app.as_str());
    let password = crate::redis_app_password(&identity.master_key(), app.as_str());
    url.set_username(&user)
        .and_then(|()| url.set_password(Some(&password)))
        .map_err(|()| redis_error("cannot carry a user name"))?;
    Ok(url)
}

/// Takes what a stopped process left in the control plane's audit outbox into the log, retrying
/// until the database answers; `/ready` answers 200 only after.
fn spawn_audit_recovery(state: &AppState) -> JoinHandle<()> {
    let (audit, done) = (state.audit.clone(), state.audit_recovered.clone());
    let started = authsome_domain::now();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = audit.recover_at_start(started).await {
            tracing::warn!(error = %e, "audit outbox recovery at start-up failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        done.store(true, Ordering::SeqCst);
    })
}

/// Checks the instances of every live dedicated application, every health interval: the set
/// is read again each round, so the instances of an application that moved or was deleted are
/// no longer contacted.
fn spawn_upstream_health_checks(state: &AppState) -> JoinHandle<()> {
    let weak = Arc::downgrade(state);
    let every = state.proxy.health_interval();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            match state.control.serving_upstreams().await {
                Ok(current) => state.proxy.check_health(&current).await,
                Err(e) => tracing::warn!(error = %e, "cannot read the upstreams to check"),
            }
        }
    })
}
