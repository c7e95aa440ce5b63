//! API keys: application publishable/secret keys and workspace management keys — create (shown
//! once), list, roll with a grace period, revoke — and their verification, which is the hot path
//! of every authenticated request.
//!
//! Verification is parse + checksum (no I/O for garbage) + SHA-256 + a cache lookup. The cache
//! holds keys and applications for [`POSITIVE_TTL`]; a revocation, roll or deletion on this
//! replica takes effect at once, on other replicas within that TTL (at once with an invalidation
//! bus). `lastUsedAt` is collected in memory (the metering ledger's, where the entry point notes
//! each request's key once for both) and written in batches by
//! [`ControlPlane::flush_key_usage`], never per request. A [`ConnectionMemo`] lets a caller that
//! sees the same credential again (a keep-alive connection) skip all of it for a second, until
//! any invalidation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authsome_domain::event::DomainEvent;
use authsome_domain::id::{ApplicationId, KeyId, PrincipalId, VaultId, WorkspaceId};
use authsome_domain::vault::{Principal, Vault, VaultPermission};

use crate::cache::TtlMap;
use authsome_domain::keys::{
    generate_key, parse_key, same_secret, signing, KeyHash, KeyKind, KeyMode,
};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{
    parse_name, Actor, ApiKey, Application, KeyScope, Permission, Role, Workspace,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::{ControlError, ControlPlane, Result};

pub const POSITIVE_TTL: Duration = Duration::from_secs(30);
/// How stale the entry point's view of a workspace's standing may be.
pub const WORKSPACE_TTL: Duration = Duration::from_secs(1);
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Longest grace period a rolled key may keep.
pub const MAX_ROLL_GRACE_SECONDS: i64 = 30 * 24 * 3600;
pub const DEFAULT_ROLL_GRACE_SECONDS: i64 = 24 * 3600;

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAppKey {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(schema_with = app_key_kind))]
    pub kind: KeyKind,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
    /// Secret keys only; absent or empty means the full admin API.
    pub scopes: Option<Vec<KeyScope>>,
}

/// An application's key kinds (management keys belong to workspaces).
#[cfg(feature = "openapi")]
fn app_key_kind() -> utoipa::openapi::Object {
    authsome_domain::schema::one_of(&["publishable", "secret"], "The key's kind")
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewManagementKey {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
    /// The role the key acts with (default `admin`; never `owner`).
    pub role: Option<Role>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollKey {
    /// How long the old key keeps working: 0 to 2592000 seconds (30 days), default 86400.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2_592_000))]
    pub expires_in_seconds: Option<i64>,
}

/// A key just created: `plaintext` is returned to the caller once and never stored.
pub struct CreatedKey {
    pub key: ApiKey,
    pub plaintext: String,
}

pub struct RolledKey {
    pub old: ApiKey,
    pub new: CreatedKey,
}

/// A cache entry that changed: forgotten here at once, and announced to the other replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    Key(KeyHash),
    Application(ApplicationId),
    Workspace(WorkspaceId),
    /// A machine principal deleted, or its bindings changed.
    Principal(PrincipalId),
    /// A vault changed or deleted (what principals' bindings reach).
    Vault(VaultId),
}

impl Invalidation {
    /// `k:<hash hex>`, `a:<app id>`, `w:<workspace id>`, `p:<principal id>`, `v:<vault id>`.
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Key(h) => format!("k:{}", h.to_hex()),
            Invalidation::Application(id) => format!("a:{id}"),
            Invalidation::Workspace(id) => format!("w:{id}"),
            Invalidation::Principal(id) => format!("p:{id}"),
            Invalidation::Vault(id) => format!("v:{id}"),
        }
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (kind, value) = s.split_once(':')?;
        match kind {
            "k" => KeyHash::from_hex(value).map(Invalidation::Key),
            "a" => ApplicationId::parse(value)
                .ok()
                .map(Invalidation::Application),
            "w" => WorkspaceId::parse(value).ok().map(Invalidation::Workspace),
            "p" => PrincipalId::parse(value).ok().map(Invalidation::Principal),
            "v" => VaultId::parse(value).ok().map(Invalidation::Vault),
            _ => None,
        }
    }
}

/// Carries invalidations to the other replicas (Redis pub/sub when configured).
pub trait InvalidationBus: Send + Sync {
    fn publish(&self, invalidation: &Invalidation);
}

/// A single process has nobody to tell.
pub struct LocalOnly;

impl InvalidationBus for LocalOnly {
    fn publish(&self, _: &Invalidation) {}
}

/// In-process cache of verified credentials: API keys and their applications and workspaces,
/// machine principals and their vault bindings; plus pending `lastUsedAt` writes.
pub struct KeyCache {
    keys: TtlMap<KeyHash, ApiKey>,
    workspaces: TtlMap<WorkspaceId, Workspace>,
    apps: TtlMap<ApplicationId, Application>,
    pub(crate) principals: TtlMap<PrincipalId, Principal>,
    /// A principal's binding to a vault: the vault and what the binding allows there.
    pub(crate) bindings: TtlMap<(PrincipalId, VaultId), BoundVault>,
    /// Bumped by every invalidation: what a [`ConnectionMemo`] filled before it no longer holds.
    generation: AtomicU64,
    /// What the entries' ages are read on.
    pub(crate) clock: authsome_domain::clock::Clock,
}

/// A vault as a principal's binding reaches it.
pub(crate) type BoundVault = (Vault, Vec<VaultPermission>);

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            keys: TtlMap::new(POSITIVE_TTL, NEGATIVE_TTL),
            workspaces: TtlMap::new(WORKSPACE_TTL, WORKSPACE_TTL),
            apps: TtlMap::new(POSITIVE_TTL, NEGATIVE_TTL),
            principals: TtlMap::new(POSITIVE_TTL, NEGATIVE_TTL),
            bindings: TtlMap::new(POSITIVE_TTL, NEGATIVE_TTL),
            generation: AtomicU64::default(),
            clock: Default::default(),
        }
    }
}

impl KeyCache {
    pub(crate) fn set_clock(&mut self, clock: authsome_domain::clock::Clock) {
        self.clock = clock;
    }

    /// `Some(entry)` on a fresh hit (the entry itself may be a cached "no such key").
    pub fn key(&self, hash: &KeyHash) -> Option<Option<Arc<ApiKey>>> {
        self.keys.get(&self.clock, hash)
    }

    pub fn put_key(&self, hash: KeyHash, value: Option<Arc<ApiKey>>) {
        self.keys.put(&self.clock, hash, value);
    }

    pub fn forget_key(&self, hash: &KeyHash) {
        self.keys.remove(hash);
    }

    fn application(&self, id: &ApplicationId) -> Option<Option<Arc<Application>>> {
        self.apps.get(&self.clock, id)
    }

    fn put_application(&self, id: ApplicationId, value: Option<Arc<Application>>) {
        self.apps.put(&self.clock, id, value);
    }

    pub fn forget_application(&self, id: &ApplicationId) {
        self.apps.remove(id);
    }
}

/// How long a [`ConnectionMemo`] vouches for what it holds without the caches.
const MEMO_TTL: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// What a client connection's previous customer-API request resolved: its application and,
/// when it carried one, its credential and key. The gateway keeps one per connection, so a
/// keep-alive connection that sends the same key again skips the parse, the hash and the cache
/// lookups. It vouches for at most [`MEMO_TTL`], and only while no cache entry was invalidated
/// since it was filled: a revocation, roll or deletion on any replica ends every memo at once,
/// as it ends the cache entries. The key's expiry is checked, and its use recorded, on every
/// request. The credential is kept (for a constant-time comparison) as long as the memo, and
/// wiped when it is dropped or replaced.
#[derive(Default)]
pub struct ConnectionMemo {
    generation: u64,
    at: Option<DateTime<Utc>>,
    app: Option<Arc<Application>>,
    key: Option<(zeroize::Zeroizing<String>, Arc<ApiKey>)>,
}

impl ConnectionMemo {
    fn fresh(&self, cache: &KeyCache, now: DateTime<Utc>) -> bool {
        self.generation == cache.generation.load(Ordering::Acquire)
            && self.at.is_some_and(|at| now >= at && now - at < MEMO_TTL)
    }

    fn app(&self, id: &str) -> Option<&Arc<Application>> {
        self.app.as_ref().filter(|a| a.id.as_str() == id)
    }
}

impl ControlPlane {
    /// [`ControlPlane::public_application`], answered from `memo` while it holds that application.
    pub async fn memo_application(
        &self,
        memo: &mut ConnectionMemo,
        id: &str,
    ) -> Result<Arc<Application>> {
        let now = self.clock.coarse_now();
        if memo.fresh(&self.keys, now) {
            if let Some(app) = memo.app(id) {
                return Ok(app.clone());
            }
        }
        // Read before the lookup: an invalidation during it leaves the memo stale, not wrong.
        let generation = self.keys.generation.load(Ordering::Acquire);
        let app = self.public_application(id).await?;
        *memo = ConnectionMemo {
            generation,
            at: Some(now),
            app: Some(app.clone()),
            key: None,
        };
        Ok(app)
    }

    /// [`ControlPlane::verify_app_key`], answered from `memo` while it holds the same credential
    /// for the same application (compared in constant time); the key must still be usable now.
    pub(crate) async fn memo_app_key(
        &self,
        memo: &mut ConnectionMemo,
        app_id: &str,
        credential: &str,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Application>, Arc<ApiKey>)> {
        if memo.fresh(&self.keys, now) {
            if let (Some(app), Some((known, key))) = (memo.app(app_id), &memo.key) {
                let same = same_secret(known.as_bytes(), credential.as_bytes());
                if same && key.is_usable_at(now) {
                    return Ok((app.clone(), key.clone()));
                }
            }
        }
        let generation = self.keys.generation.load(Ordering::Acquire);
        let found = self.verify_app_key_at(app_id, credential, now).await;
        *memo = match &found {
            Ok((app, key)) => ConnectionMemo {
                generation,
                at: Some(now),
                app: Some(app.clone()),
                key: Some((zeroize::Zeroizing::new(credential.to_owned()), key.clone())),
            },
            Err(_) => ConnectionMemo::default(),
        };
        found
    }
}

impl ControlPlane {
    /// Forgets a changed entry here and tells the other replicas to do the same.
    pub(crate) fn invalidate(&self, what: Invalidation) {
        self.apply_invalidation(&what);
        self.invalidation.publish(&what);
    }

    /// Applies an invalidation (local, or received from another replica).
    pub fn apply_invalidation(&self, what: &Invalidation) {
        self.keys.generation.fetch_add(1, Ordering::AcqRel);
        match what {
            Invalidation::Key(hash) => self.keys.forget_key(hash),
            Invalidation::Application(id) => self.keys.forget_application(id),
            Invalidation::Workspace(id) => {
                self.keys.workspaces.remove(id);
                self.keys
                    .principals
                    .retain(|_, p| p.is_none_or(|p| &p.workspace_id != id));
                self.keys
                    .bindings
                    .retain(|_, b| b.is_none_or(|(v, _)| &v.workspace_id != id));
            }
            Invalidation::Principal(id) => {
                self.keys.principals.remove(id);
                self.keys.bindings.retain(|(p, _), _| p != id);
            }
            Invalidation::Vault(id) => self.keys.bindings.retain(|(_, v), _| v != id),
        }
    }

    /// The stored key for a credential hash, if it exists and is neither revoked nor expired at
    /// `now`. The caller records the use (once the request is decided, with its metering).
    pub(crate) async fn usable_key(
        &self,
        hash: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<ApiKey>>> {
        let key = match self.keys.key(hash) {
            Some(hit) => hit,
            None => {
                let loaded = self.store.key_by_hash(hash).await?.map(Arc::new);
                self.keys.put_key(*hash, loaded.clone());
                loaded
            }
        };
        // The lookup was by hash; compare again in constant time as defence in depth.
        Ok(key.filter(|k| k.hash.ct_eq(hash) && k.is_usable_at(now)))
    }

    /// Seals a new secret key under the master key, so it can sign requests.
    fn with_signing_secret(&self, mut created: CreatedKey) -> CreatedKey {
        if let (KeyKind::Secret, Some(master)) = (created.key.kind, &self.master_key) {
            let sealed = master.seal(
                &signing_context(&created.key.id),
                created.plaintext.as_bytes(),
            );
            created.key.signing_secret = Some(B64.encode(sealed));
        }
        created
    }

    /// Resolves an HMAC-signed customer-API request (CONTRACT.md): the key it names must be a
    /// live secret key of the application in the path, the timestamp within ±300 s, and the
    /// signature (over method, path with query, timestamp and body digest) its own. The caller
    /// then refuses a signature it has seen before (replay).
    #[allow(clippy::too_many_arguments)]
    pub async fn verify_signed_request(
        &self,
        app_id: &str,
        key_id: &str,
        timestamp: &str,
        signature: &str,
        method: &str,
        path_with_query: &str,
        body_digest: &str,
    ) -> Result<(Arc<Application>, Arc<ApiKey>)> {
        let bad = || ControlError::Unauthenticated("invalid request signature");
        let app_id =
            ApplicationId::parse(app_id).map_err(|_| ControlError::NotFound("application"))?;
        let key_id = KeyId::parse(key_id.trim()).map_err(|_| bad())?;
        let sent: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| ControlError::Unauthenticated("X-Timestamp must be Unix seconds"))?;
        let now = self.clock.now();
        if (now.timestamp() - sent).abs() > signing::MAX_SKEW_SECONDS {
            return Err(ControlError::Unauthenticated(
                "the request's X-Timestamp is more than 300 s from the server's clock",
            ));
        }
        // Unscoped by id: nothing about the key is revealed unless the signature is its own.
        let key = self
            .store
            .key_by_id(&key_id)
            .await?
            .filter(|k| k.kind == KeyKind::Secret && k.is_usable_at(now))
            .ok_or_else(bad)?;
        let (Some(sealed), Some(master)) = (&key.signing_secret, &self.master_key) else {
            return Err(ControlError::Unauthenticated(
                "this key cannot sign requests (created before signing existed: roll it)",
            ));
        };
        let secret = B64
            .decode(sealed)
            .ok()
            .and_then(|b| master.open(&signing_context(&key.id), &b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(ControlError::Storage(
                authsome_storage::StorageError::Corrupt("api_keys.signing_secret"),
            ))?;
        if !signing::verify(
            &secret,
            signature,
            method,
            path_with_query,
            timestamp.trim(),
            body_digest,
        ) {
            return Err(bad());
        }
        if key.application_id.as_ref() != Some(&app_id) {
            return Err(ControlError::NotFound("application"));
        }
        let app = self
            .cached_application(&app_id, Some(&key.workspace_id))
            .await?
            .filter(|a| !a.is_deleted())
            .ok_or(ControlError::NotFound("application"))?;
        Ok((app, Arc::new(key)))
    }

    /// Resolves a customer-API credential against the application in the path: which
    /// application and which kind of key. A key of another application is `NotFound`.
    pub async fn verify_app_key(
        &self,
        app_id: &str,
        credential: &str,
    ) -> Result<(Arc<Application>, Arc<ApiKey>)> {
        self.verify_app_key_at(app_id, credential, self.clock.now())
            .await
    }

    /// [`ControlPlane::verify_app_key`] for a request that arrived at `now`.
    pub(crate) async fn verify_app_key_at(
        &self,
        app_id: &str,
        credential: &str,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Application>, Arc<ApiKey>)> {
        let parsed =
            parse_key(credential).map_err(|_| ControlError::Unauthenticated("invalid API key"))?;
        if parsed.kind == KeyKind::Management {
            return Err(ControlError::Unauthenticated(
                "management keys cannot call the customer API",
            ));
        }
        self.app_key_by_hash(app_id, &parsed.hash(), now).await
    }

    /// As [`ControlPlane::verify_app_key`], for a key the gateway already verified and names by
    /// its hash (hex) in a forwarding assertion: a dedicated instance still refuses a key revoked
    /// or rolled out since.
    pub async fn verify_forwarded_key(
        &self,
        app_id: &str,
        key_hash: &str,
    ) -> Result<(Arc<Application>, Arc<ApiKey>)> {
        let hash =
            KeyHash::from_hex(key_hash).ok_or(ControlError::Unauthenticated("invalid API key"))?;
        self.app_key_by_hash(app_id, &hash, self.clock.now()).await
    }

    async fn app_key_by_hash(
        &self,
        app_id: &str,
        hash: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Application>, Arc<ApiKey>)> {
        let app_id =
            ApplicationId::parse(app_id).map_err(|_| ControlError::NotFound("application"))?;
        let key = self
            .usable_key(hash, now)
            .await?
            .ok_or(ControlError::Unauthenticated("invalid API key"))?;
        if key.application_id.as_ref() != Some(&app_id) {
            return Err(ControlError::NotFound("application"));
        }
        let app = self
            .cached_application(&app_id, Some(&key.workspace_id))
            .await?
            .filter(|a| !a.is_deleted())
            .ok_or(ControlError::NotFound("application"))?;
        Ok((app, key))
    }

    /// The application from the cache or storage; scoped to `workspace` when the caller's
    /// credential names one.
    pub(crate) async fn cached_application(
        &self,
        id: &ApplicationId,
        workspace: Option<&WorkspaceId>,
    ) -> Result<Option<Arc<Application>>> {
        let app = match self.keys.application(id) {
            Some(hit) => hit,
            None => {
                let loaded = self.store.any_application(id).await?.map(Arc::new);
                self.keys.put_application(id.clone(), loaded.clone());
                loaded
            }
        };
        Ok(app.filter(|a| workspace.is_none_or(|ws| &a.workspace_id == ws)))
    }

    /// A machine principal from the cache or storage: one deleted, or whose bindings changed,
    /// is forgotten at once here and on every replica the invalidation bus reaches.
    pub(crate) async fn cached_principal(
        &self,
        id: &PrincipalId,
    ) -> Result<Option<Arc<Principal>>> {
        let cache = &self.keys;
        if let Some(hit) = cache.principals.get(&cache.clock, id) {
            return Ok(hit);
        }
        let since = cache.generation.load(Ordering::Acquire);
        let loaded = self.store.principal_by_id(id).await?.map(Arc::new);
        cache
            .principals
            .put_if(&cache.clock, id.clone(), loaded.clone(), || {
                cache.generation.load(Ordering::Acquire) == since
            });
        Ok(loaded)
    }

    /// The vault `principal` is bound to, with what the binding allows, from the cache or
    /// storage (forgotten like [`ControlPlane::cached_principal`], and when the vault changes).
    pub(crate) async fn cached_binding(
        &self,
        principal: &Principal,
        vault: &VaultId,
    ) -> Result<Option<Arc<BoundVault>>> {
        let cache = &self.keys;
        let key = (principal.id.clone(), vault.clone());
        if let Some(hit) = cache.bindings.get(&cache.clock, &key) {
            return Ok(hit);
        }
        let since = cache.generation.load(Ordering::Acquire);
        let loaded = self
            .store
            .bound_vault(&principal.workspace_id, &principal.id, vault)
            .await?
            .map(Arc::new);
        cache
            .bindings
            .put_if(&cache.clock, key, loaded.clone(), || {
                cache.generation.load(Ordering::Acquire) == since
            });
        Ok(loaded)
    }

    /// The workspace's standing and plan as the customer API's entry point sees it: cached for
    /// one second, so a status change reaches every replica within that.
    pub async fn workspace_view(&self, id: &WorkspaceId) -> Result<Arc<Workspace>> {
        if let Some(Some(ws)) = self.keys.workspaces.get(&self.keys.clock, id) {
            return Ok(ws);
        }
        let ws = self
            .store
            .any_workspace(id)
            .await?
            .map(Arc::new)
            .ok_or(ControlError::NotFound("workspace"))?;
        self.keys
            .workspaces
            .put(&self.keys.clock, id.clone(), Some(ws.clone()));
        Ok(ws)
    }

    /// Writes the batched `lastUsedAt` values. On failure they are kept for the next flush.
    pub async fn flush_key_usage(&self) -> Result<usize> {
        let uses = self.meter.take_uses();
        if uses.is_empty() {
            return Ok(0);
        }
        match self.store.record_key_use(&uses).await {
            Ok(()) => Ok(uses.len()),
            Err(e) => {
                self.meter.restore_uses(uses);
                Err(e.into())
            }
        }
    }

    pub async fn list_app_keys(
        &self,
        actor: &Actor,
        app: &ApplicationId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let (app, _, _) = self
            .application_for(actor, app, Permission::KeysRead)
            .await?;
        Ok(self
            .store
            .keys(&app.workspace_id, Some(&app.id), page)
            .await?)
    }

    pub async fn create_app_key(
        &self,
        actor: &Actor,
        app: &ApplicationId,
        input: NewAppKey,
    ) -> Result<CreatedKey> {
        let (app, ws, _) = self
            .application_for(actor, app, Permission::KeysCreate)
            .await?;
        ws.may_write()?;
        if app.is_deleted() {
            return Err(ControlError::Conflict("the application is deleted".into()));
        }
        let scopes = input.scopes.unwrap_or_default();
        match input.kind {
            KeyKind::Management => {
                return Err(authsome_domain::ValidationError::new(
                    "type",
                    "must be publishable or secret",
                )
                .into())
            }
            KeyKind::Publishable if !scopes.is_empty() => {
                return Err(authsome_domain::ValidationError::new(
                    "scopes",
                    "apply to secret keys only",
                )
                .into())
            }
            _ => {}
        }
        let name = input
            .name
            .as_deref()
            .map(|n| parse_name("name", n))
            .transpose()?;
        let mut scopes = scopes;
        scopes.sort_by_key(|s| s.as_str());
        scopes.dedup();
        let cap = ws.keys_per_application();
        if self.store.live_key_count(&app.id, self.clock.now()).await? >= cap {
            return Err(ControlError::PaymentRequired(format!(
                "the {} plan allows {cap} live keys per application; revoke one or upgrade",
                ws.plan.as_str()
            )));
        }
        let created = self.with_signing_secret(new_key(
            &ws.id,
            Some(&app.id),
            input.kind,
            app.environment.key_mode(),
            name,
            scopes,
            None,
        ));
        self.audited(
            Some(actor),
            vec![DomainEvent::new("application.key.created")
                .workspace(&ws.id)
                .application(&app.id)
                .target(&created.key.id)
                .change("type", created.key.kind.as_str())],
            async |outbox| self.store.insert_key(&created.key, outbox).await,
        )
        .await?;
        Ok(created)
    }

    pub async fn roll_app_key(
        &self,
        actor: &Actor,
        app: &ApplicationId,
        id: &KeyId,
        input: RollKey,
    ) -> Result<RolledKey> {
        let (app, ws, _) = self
            .application_for(actor, app, Permission::KeysRoll)
            .await?;
        if app.is_deleted() {
            return Err(ControlError::Conflict("the application is deleted".into()));
        }
        let event = DomainEvent::new("application.key.rolled")
            .workspace(&ws.id)
            .application(&app.id)
            .target(id);
        let rolled = self
            .roll(actor, event, &ws.id, Some(&app.id), id, input)
            .await?;
        Ok(rolled)
    }

    pub async fn revoke_app_key(
        &self,
        actor: &Actor,
        app: &ApplicationId,
        id: &KeyId,
    ) -> Result<ApiKey> {
        let (app, ws, _) = self
            .application_for(actor, app, Permission::KeysRevoke)
            .await?;
        let event = DomainEvent::new("application.key.revoked")
            .workspace(&ws.id)
            .application(&app.id)
            .target(id);
        let revoked = self.revoke(actor, event, &ws.id, Some(&app.id), id).await?;
        Ok(revoked)
    }

    pub async fn list_management_keys(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        self.workspace_for(actor, ws, Permission::ManagementKeysManage)
            .await?;
        Ok(self.store.keys(ws, None, page).await?)
    }

    pub async fn create_management_key(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewManagementKey,
    ) -> Result<CreatedKey> {
        // Only owners and admins manage keys, and no key is an owner: a key never holds more
        // than its creator.
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::ManagementKeysManage)
            .await?;
        workspace.may_write()?;
        let role = input.role.unwrap_or(Role::Admin);
        if role == Role::Owner {
            return Err(authsome_domain::ValidationError::new(
                "role",
                "a management key cannot be an owner",
            )
            .into());
        }
        let name = input
            .name
            .as_deref()
            .map(|n| parse_name("name", n))
            .transpose()?;
        let mut created = new_key(
            ws,
            None,
            KeyKind::Management,
            KeyMode::Live,
            name,
            Vec::new(),
            Some(role),
        );
        // The key is the person's: made by a member, theirs; made by a key, its member's.
        created.key.created_by = self.account_of(actor).await?;
        self.audited(
            Some(actor),
            vec![DomainEvent::new("workspace.key.created")
                .workspace(ws)
                .target(&created.key.id)
                .change("role", role.as_str())],
            async |outbox| self.store.insert_key(&created.key, outbox).await,
        )
        .await?;
        Ok(created)
    }

    /// The member's account behind an actor: a management key stands for the member who made
    /// it (`None` for a key made before keys remembered that).
    pub(crate) async fn account_of(
        &self,
        actor: &Actor,
    ) -> Result<Option<authsome_domain::id::AccountId>> {
        Ok(match actor {
            Actor::Account(id) => Some(id.clone()),
            Actor::ManagementKey {
                key_id,
                workspace_id,
                ..
            } => self
                .store
                .key(workspace_id, None, key_id)
                .await?
                .and_then(|k| k.created_by),
        })
    }

    pub async fn roll_management_key(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &KeyId,
        input: RollKey,
    ) -> Result<RolledKey> {
        self.workspace_for(actor, ws, Permission::ManagementKeysManage)
            .await?;
        let event = DomainEvent::new("workspace.key.rolled")
            .workspace(ws)
            .target(id);
        let rolled = self.roll(actor, event, ws, None, id, input).await?;
        Ok(rolled)
    }

    pub async fn revoke_management_key(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &KeyId,
    ) -> Result<ApiKey> {
        self.workspace_for(actor, ws, Permission::ManagementKeysManage)
            .await?;
        let event = DomainEvent::new("workspace.key.revoked")
            .workspace(ws)
            .target(id);
        let revoked = self.revoke(actor, event, ws, None, id).await?;
        Ok(revoked)
    }

    async fn roll(
        &self,
        actor: &Actor,
        event: DomainEvent,
        ws: &WorkspaceId,
        app: Option<&ApplicationId>,
        id: &KeyId,
        input: RollKey,
    ) -> Result<RolledKey> {
        let grace = input
            .expires_in_seconds
            .unwrap_or(DEFAULT_ROLL_GRACE_SECONDS);
        if !(0..=MAX_ROLL_GRACE_SECONDS).contains(&grace) {
            return Err(authsome_domain::ValidationError::new(
                "expiresInSeconds",
                "must be between 0 and 2592000",
            )
            .into());
        }
        let old = self
            .store
            .key(ws, app, id)
            .await?
            .ok_or(ControlError::NotFound("key"))?;
        let now = self.clock.now();
        if !old.is_usable_at(now) || old.rolled_to.is_some() {
            return Err(ControlError::Conflict(
                "only a live key that was not rolled before can be rolled".into(),
            ));
        }
        let mut new = self.with_signing_secret(new_key(
            ws,
            app,
            old.kind,
            old.mode,
            old.name.clone(),
            old.scopes.clone(),
            old.role,
        ));
        new.key.created_by = old.created_by.clone();
        let old_expires_at = now + chrono::Duration::seconds(grace);
        self.audited(
            Some(actor),
            vec![event.change("successor", new.key.id.to_string())],
            async |outbox| {
                self.store
                    .roll_key(&old, old_expires_at, &new.key, outbox)
                    .await
            },
        )
        .await?;
        self.invalidate(Invalidation::Key(old.hash));
        let old = self
            .store
            .key(ws, app, id)
            .await?
            .ok_or(ControlError::NotFound("key"))?;
        Ok(RolledKey { old, new })
    }

    async fn revoke(
        &self,
        actor: &Actor,
        event: DomainEvent,
        ws: &WorkspaceId,
        app: Option<&ApplicationId>,
        id: &KeyId,
    ) -> Result<ApiKey> {
        let old = self
            .store
            .key(ws, app, id)
            .await?
            .ok_or(ControlError::NotFound("key"))?;
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store.revoke_key(&old, self.clock.now(), outbox).await
        })
        .await?;
        self.invalidate(Invalidation::Key(old.hash));
        self.store
            .key(ws, app, id)
            .await?
            .ok_or(ControlError::NotFound("key"))
    }
}

fn signing_context(key: &KeyId) -> Vec<u8> {
    format!("authsome:key-signing-secret:v1:{key}").into_bytes()
}

pub(crate) fn new_key(
    ws: &WorkspaceId,
    app: Option<&ApplicationId>,
    kind: KeyKind,
    mode: KeyMode,
    name: Option<String>,
    scopes: Vec<KeyScope>,
    role: Option<Role>,
) -> CreatedKey {
    let generated = generate_key(kind, mode);
    let key = ApiKey {
        id: KeyId::new(),
        workspace_id: ws.clone(),
        application_id: app.cloned(),
        kind,
        mode: generated.mode,
        name,
        scopes,
        role,
        hash: generated.hash,
        last4: generated.last4(),
        created_at: authsome_domain::now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        rolled_to: None,
        signing_secret: None,
        created_by: None,
    };
    CreatedKey {
        key,
        plaintext: generated.plaintext,
    }
}
