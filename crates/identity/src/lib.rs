//! The identity engine of every application: its users, sign-up and sign-in, sessions, rotating
//! refresh tokens with reuse detection, and EdDSA access tokens signed by the application's own
//! key (published as JWKS). One [`Identity`] serves all applications of the process, each in its
//! own database through [`authsome_storage::app::AppDatabases`].
//!
//! **Architecture invariant:** this crate never sees the control plane's tables or credentials.
//! It is handed an application that the caller already resolved (and whose key it verified), and
//! works only inside that application's database.

mod auth;
pub mod dpop;
mod organizations;
pub mod tokens;
mod usage;
mod users;

use authsome_storage::outbox::Outbox;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use authsome_control::hashing::{HashPool, HashTenant};
use authsome_domain::clock::{Clock, CoarseInstant};

use authsome_control::throttle::CredentialThrottle;
use authsome_domain::event::{DomainEvent, EventActor, EventSink, NoEvents, StoredIn};
use authsome_domain::id::ApplicationId;
use authsome_domain::identity::SigningKeyRecord;
use authsome_domain::master_key::MasterKey;
use authsome_domain::password::PasswordPolicy;

use authsome_domain::ValidationError;
use authsome_storage::app::{AppDatabases, AppRepository};
use authsome_storage::StorageError;
use ed25519_dalek::SigningKey;
use rand::RngCore;

pub use auth::{
    AccessToken, ClientInfo, IssuedSession, Presented, SignIn, SignUp, SwitchOrganization,
};
pub use organizations::{
    AcceptOrgInvitation, CreatedOrgInvitation, MembershipPatch, NewMembership, NewOrgInvitation,
    NewOrganization, OrganizationPatch,
};
pub use tokens::{Claims, KeySet};
pub use users::{NewUser, UserPatch};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Password hashing is at capacity: nothing was done; retry shortly.
    #[error(transparent)]
    Busy(#[from] authsome_control::hashing::Busy),
    #[error("storage failure")]
    Storage(#[source] StorageError),
}

impl From<StorageError> for IdentityError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// The identity engine shared by all applications of this process.
pub struct Identity {
    databases: AppDatabases,
    master_key: Arc<MasterKey>,
    /// Derives a refresh token's successor from it (see `auth::refresh_with_proof`).
    successor_key: [u8; 32],
    /// What expiries, grace periods, lock-outs and cache ages are read on.
    clock: Clock,
    public_url: String,
    keys: RwLock<HashMap<ApplicationId, (Arc<KeySet>, CoarseInstant)>>,
    /// Failures per account and per client address (shared with the control plane).
    credentials: Arc<CredentialThrottle>,
    active_users: Mutex<usage::ActiveUsers>,
    events: Arc<dyn EventSink>,
    policy: PasswordPolicy,
    hashers: HashPool,
}

/// Hands memory that is free inside the allocator back to the system. On glibc, freed blocks
/// (argon2id's 19 MiB, closed pools' page caches, spread over many threads' arenas) otherwise
/// stay resident; trimming from the maintenance loop keeps resident memory near what is in use.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS; it is safe at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long unsealed keys are cached before the key table is read again (rotations made by
/// another replica become visible within this time).
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Longest lead a rotation may give verifiers to fetch the next key before it signs.
pub const MAX_ROTATION_LEAD_SECONDS: i64 = 24 * 3600;

fn signing_key_context(app: &ApplicationId, kid: &str) -> Vec<u8> {
    format!("authsome:signing-key:v1:{app}:{kid}").into_bytes()
}

impl Identity {
    pub fn new(databases: AppDatabases, master_key: MasterKey, public_url: String) -> Self {
        Self {
            databases,
            successor_key: master_key.derive(b"authsome.refresh.successor.v1"),
            clock: Clock::system(),
            master_key: Arc::new(master_key),
            public_url: public_url.trim_end_matches('/').to_owned(),
            keys: RwLock::new(HashMap::new()),
            credentials: Arc::new(CredentialThrottle::in_process(&Clock::system())),
            active_users: Mutex::new(usage::ActiveUsers::default()),
            events: Arc::new(NoEvents),
            policy: PasswordPolicy::default(),
            hashers: HashPool::for_machine(
                authsome_control::hashing::DEFAULT_MEMORY_BUDGET_KIB,
                authsome_domain::password::Argon2Params::default().memory_kib,
            ),
        }
    }

    /// The master key, shared with the other services of the process that seal data (the
    /// audit log's keys).
    pub fn master_key(&self) -> Arc<MasterKey> {
        self.master_key.clone()
    }

    /// The deployment's public base URL (issuer prefix).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Counts sign-in, sign-up and refresh failures in `throttle` (the process's one, shared
    /// with the control plane; in Redis when replicas share state).
    pub fn with_credential_throttle(mut self, throttle: Arc<CredentialThrottle>) -> Self {
        self.credentials = throttle;
        self
    }

    /// Decides by `clock`'s time: a test's manual clock, moved forward instead of sleeping. The
    /// in-process sign-in throttles go by it too (shared ones go by Redis's clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.credentials = Arc::new(CredentialThrottle::in_process(&clock));
        self.clock = clock;
        self
    }

    /// The deployment's password rules and argon2id cost for application users.
    pub fn with_password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Hashes on `pool`, the process's one (shared with the control plane).
    pub fn with_hash_pool(mut self, pool: HashPool) -> Self {
        self.hashers = pool;
        self
    }

    /// argon2id takes tens of milliseconds of CPU and megabytes of memory: it runs on the
    /// process's bounded hashing pool in `app`'s turn, so a burst of one application's sign-ins
    /// queues behind its own share, and beyond its queue is refused at once ([`IdentityError::Busy`]).
    pub(crate) async fn hashing<T: Send + 'static>(
        &self,
        app: &ApplicationId,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        Ok(self
            .hashers
            .run(HashTenant::Application(app.to_string()), work)
            .await?)
    }

    pub(crate) async fn hash_password(
        &self,
        app: &ApplicationId,
        password: String,
    ) -> Result<String> {
        let policy = self.policy.clone();
        self.hashing(app, move || policy.hash(&password)).await
    }

    /// Sends the identity engine's domain events to `sink`.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = sink;
        self
    }

    /// An event of `app`; `user` is the actor when an end user did it (otherwise the sink
    /// takes the caller from the request).
    pub(crate) fn event(
        app: &ApplicationId,
        action: &'static str,
        target: impl std::fmt::Display,
        user: Option<&authsome_domain::id::UserId>,
    ) -> DomainEvent {
        let actor = user.map_or(EventActor::Unknown, |u| EventActor::User(u.clone()));
        DomainEvent::new(action)
            .application(app)
            .target(target)
            .actor(actor)
    }

    /// Performs `write` with `event` committed to the application's audit outbox in the
    /// write's own transaction, then hands the event to the audit log. Fail closed: when the
    /// outbox row cannot be stored, the write rolls back with it and the caller gets the error.
    pub(crate) async fn audited<T, E>(
        &self,
        app: &ApplicationId,
        event: DomainEvent,
        write: impl AsyncFnOnce(&Outbox) -> std::result::Result<T, E>,
    ) -> Result<T>
    where
        IdentityError: From<E>,
    {
        let (value, stored) = self.audited_if_written(app, event, write).await?;
        if !stored {
            tracing::error!(app = %app, "an audited write stored no outbox row");
            debug_assert!(false, "audited write without an outbox row");
        }
        Ok(value)
    }

    /// As [`Identity::audited`], for a write that may legitimately write nothing (a refresh
    /// that lost the race): the event is announced only when it was stored.
    pub(crate) async fn audited_if_written<T, E>(
        &self,
        app: &ApplicationId,
        mut event: DomainEvent,
        write: impl AsyncFnOnce(&Outbox) -> std::result::Result<T, E>,
    ) -> Result<(T, bool)>
    where
        IdentityError: From<E>,
    {
        self.events.stamp(&mut event);
        let outbox = Outbox::new(vec![authsome_storage::outbox::OutboxRow::of(&event)]);
        let value = write(&outbox).await?;
        let stored = outbox.stored();
        if stored {
            self.events
                .emit_stored(event, StoredIn::Application(app.clone()));
        }
        Ok((value, stored))
    }

    /// Deletes audit outbox rows of `app` that the audit log now holds, if its database is
    /// open in this process. Never opens one: the application may have been purged meanwhile,
    /// and a row left behind is found (already held) and deleted when it is next opened.
    pub async fn delete_outbox(&self, app: &ApplicationId, ids: &[String]) -> Result<()> {
        match self.databases.if_open(app) {
            Some(store) => Ok(store.delete_outbox(ids).await?),
            None => Ok(()),
        }
    }

    /// Audit outbox rows older than `before` in the applications this process has open
    /// (those whose hand-over to the audit log never happened).
    pub async fn stale_outboxes(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(ApplicationId, Vec<authsome_storage::outbox::OutboxRow>)> {
        let mut found = Vec::new();
        for app in self.databases.open_applications() {
            let Some(store) = self.databases.if_open(&app) else {
                continue;
            };
            match store.outbox(before, 1_000).await {
                Ok(rows) if !rows.is_empty() => found.push((app, rows)),
                Ok(_) => {}
                Err(e) => tracing::warn!(app = %app, error = %e, "cannot read the audit outbox"),
            }
        }
        found
    }

    /// Rows committed before `before` in the outboxes of `apps`, each opened for it.
    pub async fn pending_outboxes(
        &self,
        apps: &[ApplicationId],
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(ApplicationId, Vec<authsome_storage::outbox::OutboxRow>)> {
        let mut found = Vec::new();
        for app in apps {
            let rows = match self.databases.open(app).await {
                Ok(store) => store.outbox(before, 1_000).await,
                Err(e) => Err(e),
            };
            match rows {
                Ok(rows) if !rows.is_empty() => found.push((app.clone(), rows)),
                Ok(_) => {}
                Err(e) => tracing::warn!(app = %app, error = %e, "cannot read the audit outbox"),
            }
        }
        found
    }

    pub fn databases(&self) -> &AppDatabases {
        &self.databases
    }

    /// `{publicUrl}/v1/{appId}`: the issuer of the application's tokens.
    pub fn issuer(&self, app: &ApplicationId) -> String {
        format!("{}/v1/{app}", self.public_url)
    }

    async fn store(&self, app: &ApplicationId) -> Result<Arc<dyn AppRepository>> {
        Ok(self.databases.open(app).await?)
    }

    /// Creates the application's database and its first signing key. Idempotent.
    pub async fn provision(&self, app: &ApplicationId) -> Result<()> {
        self.databases.provision(app).await?;
        let store = self.store(app).await?;
        if store.signing_keys().await?.is_empty() {
            let now = self.clock.now();
            store
                .insert_signing_key(&self.new_signing_key(app, now, now), &Outbox::empty())
                .await?;
        }
        drop(store);
        // Provisioning is not use: the pool opens again when traffic comes.
        self.databases.release(app).await;
        Ok(())
    }

    fn new_signing_key(
        &self,
        app: &ApplicationId,
        created_at: chrono::DateTime<chrono::Utc>,
        activates_at: chrono::DateTime<chrono::Utc>,
    ) -> SigningKeyRecord {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let kid = authsome_domain::keys::random_base62()[..16].to_owned();
        SigningKeyRecord {
            sealed_private: self.master_key.seal(&signing_key_context(app, &kid), &seed),
            public: key.verifying_key().to_bytes(),
            kid,
            created_at,
            activates_at,
            retired_at: None,
        }
    }

    /// Rotates the application's signing key: the next key is published in JWKS now and signs
    /// from `lead_seconds` on, when the current one retires (it keeps verifying until its last
    /// token has expired). Returns the key table after the change.
    pub async fn rotate_signing_key(
        &self,
        app: &ApplicationId,
        lead_seconds: i64,
    ) -> Result<Vec<SigningKeyRecord>> {
        if !(0..=MAX_ROTATION_LEAD_SECONDS).contains(&lead_seconds) {
            return Err(
                ValidationError::new("activateInSeconds", "must be between 0 and 86400").into(),
            );
        }
        let store = self.store(app).await?;
        let now = self.clock.now();
        let switch_at = now + chrono::Duration::seconds(lead_seconds);
        let keys = store.signing_keys().await?;
        if keys.iter().any(|k| k.activates_at > now) {
            return Err(IdentityError::Conflict(
                "a rotation is already pending; wait until the next key signs".into(),
            ));
        }
        self.audited(
            app,
            Self::event(app, "application.signing_key.rotated", app, None),
            async |outbox| {
                store
                    .insert_signing_key(&self.new_signing_key(app, now, switch_at), outbox)
                    .await
            },
        )
        .await?;
        for old in keys.iter().filter(|k| k.retired_at.is_none()) {
            store
                .retire_signing_key(&old.kid, switch_at, &Outbox::empty())
                .await?;
        }
        if let Ok(mut cache) = self.keys.write() {
            cache.remove(app);
        }
        Ok(store.signing_keys().await?)
    }

    /// The application's signing keys as stored (public halves only are meaningful outside).
    pub async fn signing_keys(&self, app: &ApplicationId) -> Result<Vec<SigningKeyRecord>> {
        Ok(self.store(app).await?.signing_keys().await?)
    }

    /// Removes the application's database for good.
    pub async fn destroy(&self, app: &ApplicationId) -> Result<()> {
        if let Ok(mut keys) = self.keys.write() {
            keys.remove(app);
        }
        Ok(self.databases.destroy(app).await?)
    }

    /// The application's keys, unsealed once and cached for a short while. Only keys that may
    /// still verify a live token are in the set; the newest key whose time has come signs.
    pub async fn key_set(&self, app: &ApplicationId) -> Result<Arc<KeySet>> {
        let cached = self.keys.read().ok().and_then(|k| k.get(app).cloned());
        if let Some((keys, at)) = cached {
            let switching = keys.next_switch.is_some_and(|t| self.clock.now() >= t);
            if self.clock.elapsed(at) < KEY_CACHE_TTL && !switching {
                return Ok(keys);
            }
        }
        let records = self.store(app).await?.signing_keys().await?;
        let now = self.clock.now();
        let corrupt = |what| IdentityError::Storage(StorageError::Corrupt(what));
        let mut verifying = Vec::new();
        let mut active = None;
        let mut next_switch = None;
        for record in records.iter().filter(|r| r.verifies_at(now)) {
            let public = ed25519_dalek::VerifyingKey::from_bytes(&record.public)
                .map_err(|_| corrupt("signing_keys.public_key"))?;
            verifying.push((record.kid.clone(), public));
            if record.activates_at > now {
                next_switch = Some(record.activates_at);
            }
            if record.signs_at(now) {
                let seed = self
                    .master_key
                    .open(
                        &signing_key_context(app, &record.kid),
                        &record.sealed_private,
                    )
                    .map_err(|_| corrupt("signing_keys.sealed_private"))?;
                let seed: [u8; 32] = seed
                    .try_into()
                    .map_err(|_| corrupt("signing_keys.sealed_private"))?;
                // Records come in activation order: the last one that signs wins.
                active = Some((record.kid.clone(), SigningKey::from_bytes(&seed)));
            }
        }
        if verifying.is_empty() {
            return Err(IdentityError::Unavailable(
                "the application has no signing key yet".into(),
            ));
        }
        let set = Arc::new(KeySet {
            active,
            verifying,
            next_switch,
        });
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(app.clone(), (set.clone(), self.clock.instant()));
        }
        Ok(set)
    }

    /// Housekeeping: writes batched MAU records, closes idle application pools, forgets stale
    /// throttle entries.
    pub async fn maintain(&self) {
        if let Err(e) = self.flush_active_users().await {
            tracing::warn!(error = %e, "could not record monthly active users; will retry");
        }
        self.databases.close_idle(Duration::from_secs(300)).await;
        self.credentials.prune();
        release_free_memory();
    }
}
