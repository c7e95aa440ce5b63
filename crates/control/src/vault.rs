//! The credential vault's use cases: vaults, secrets and their versions, for team members and
//! management keys. Who may do what is decided here ([`Permission`]s of the caller's role);
//! sealing and opening is `authsome-vault`'s; storage keeps envelopes only. Every write, every
//! value read and every denial is an audit entry naming the secret and version, never the value.

use std::sync::Arc;

use authsome_domain::clock::CoarseInstant;
use authsome_domain::event::{DomainEvent, EventActor};
use authsome_domain::id::{MemberId, SecretId, VaultId, WorkspaceId};
use authsome_domain::master_key::MasterKey;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{Actor, Permission, Role, Workspace};
use authsome_domain::vault::{Principal, Secret, StoredKek, Vault, VaultPermission};
use authsome_storage::{SecretWrite, StorageError, StoredEnvelope};
use authsome_vault::rules::{
    check_max_versions, check_value, parse_secret_name, parse_tags, parse_vault_name,
    DEFAULT_MAX_VERSIONS,
};
use authsome_vault::{Envelope, Kek, SecretContext, VaultError};
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::keys::Invalidation;
use crate::{ControlError, ControlPlane, Result};

/// Attempts at a write without `If-Match` that keeps meeting concurrent writers.
const WRITE_ATTEMPTS: usize = 5;

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewVault {
    #[cfg_attr(feature = "openapi", schema(schema_with = vault_name_schema))]
    pub name: String,
    pub description: Option<String>,
    /// Versions kept of each secret (1-1000, default 10); older ones are removed on write.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub max_versions: Option<u32>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultPatch {
    #[cfg_attr(feature = "openapi", schema(schema_with = optional_vault_name_schema))]
    pub name: Option<String>,
    pub description: Option<String>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub max_versions: Option<u32>,
}

/// A new version of a secret. The value is wiped from memory once sealed.
#[derive(serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutSecret {
    /// At most 64 KiB (UTF-8).
    #[cfg_attr(feature = "openapi", schema(value_type = String, max_length = 16384))]
    pub value: Zeroizing<String>,
    /// Replaces the description when given.
    pub description: Option<String>,
    /// Replaces the tags when given: at most 32 names of 1-64 characters.
    pub tags: Option<Vec<String>>,
    /// When the credential stops being valid at its source; replaces the date when given.
    pub expires_at: Option<DateTime<Utc>>,
}

impl PutSecret {
    /// Just a value: description, tags and expiry stay as they are.
    pub fn with_value(value: Zeroizing<String>) -> Self {
        Self {
            value,
            description: None,
            tags: None,
            expires_at: None,
        }
    }
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSecret").finish_non_exhaustive()
    }
}

/// A secret's value, as read by someone allowed to.
#[derive(serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RevealedSecret {
    pub name: String,
    pub version: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub value: Zeroizing<String>,
}

impl std::fmt::Debug for RevealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedSecret")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "openapi")]
fn vault_name_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some("^[A-Za-z0-9_.-]{1,64}$"))
        .description(Some("1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-'"))
        .build()
}

#[cfg(feature = "openapi")]
fn optional_vault_name_schema() -> utoipa::openapi::Object {
    let mut schema = vault_name_schema();
    schema.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    schema
}

/// Work done at most per call of [`ControlPlane::vault_key_work`].
const KEY_WORK_BATCH: u32 = 256;

/// Progress of background work over a workspace's secret versions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// A workspace's keyring: its newest key-encryption key and the background work under way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyringStatus {
    /// The newest key-encryption key version (0: none made yet).
    pub version: u32,
    /// Live secret versions whose data key is wrapped by the newest version.
    pub rewrap: Progress,
    /// The customer's KMS key (an ARN) that wraps the newest version (enterprise); absent: the
    /// deployment's master key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Live secret versions sealed again under fresh data keys since the last rekey request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rekey: Option<Progress>,
    /// When the workspace's keys were destroyed (what was sealed before cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// A member with the operator role bound to a vault: it reads the vault's values.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VaultOperator {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub member_id: MemberId,
    pub created_at: DateTime<Utc>,
}

/// `PUT …/keyring/kms`: the customer's KMS key that wraps the workspace's keys from now on.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerKey {
    /// A KMS key ARN; null: the deployment's master key again.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub key_id: Option<String>,
}

/// A customer key that cannot be used while it is being set is the request's problem (400),
/// unless KMS could not be reached (503).
fn as_input(e: ControlError) -> ControlError {
    match e {
        ControlError::Conflict(m) => authsome_domain::ValidationError::new("keyId", m).into(),
        other => other,
    }
}

/// Confirms destroying a workspace's keys by typing its name.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestroyKeyring {
    /// The workspace's name, exactly.
    pub confirm: String,
}

fn vault_event(action: &'static str, vault: &Vault) -> DomainEvent {
    DomainEvent::new(action)
        .workspace(&vault.workspace_id)
        .target(&vault.id)
}

fn secret_event(action: &'static str, secret: &Secret, version: u32) -> DomainEvent {
    DomainEvent::new(action)
        .workspace(&secret.workspace_id)
        .target(&secret.id)
        .change("vault", secret.vault_id.as_str())
        .change("name", secret.name.as_str())
        .change("version", version)
}

/// Who acts on a vault's secrets: a team member (a session or a management key, deciding by
/// role) or a machine principal (deciding by its bindings).
#[derive(Debug, Clone)]
pub enum VaultActor {
    Team(Actor),
    Principal(Principal),
    /// AuthSome itself, within one workspace: resolving a provider's credential, storing an
    /// OAuth provider's rotated refresh token. Never built from a request.
    System(WorkspaceId),
    /// AuthSome running a rotation in the workspace: versions it writes name the rotation.
    Rotation(WorkspaceId, authsome_domain::id::RotationId),
}

impl VaultActor {
    fn id(&self) -> &str {
        match self {
            Self::Team(Actor::Account(id)) => id.as_str(),
            Self::Team(Actor::ManagementKey { key_id, .. }) => key_id.as_str(),
            Self::Principal(p) => p.id.as_str(),
            Self::System(_) => "system",
            Self::Rotation(_, rotation) => rotation.as_str(),
        }
    }

    /// The team actor `audited` stamps events with; a principal's events are stamped here.
    fn team(&self) -> Option<&Actor> {
        match self {
            Self::Team(actor) => Some(actor),
            Self::Principal(_) | Self::System(_) | Self::Rotation(..) => None,
        }
    }

    fn stamp(&self, event: DomainEvent) -> DomainEvent {
        match self {
            Self::Team(_) => event,
            Self::Principal(p) => event.actor(EventActor::Principal(p.id.clone())),
            Self::System(_) | Self::Rotation(..) => event.actor(EventActor::System),
        }
    }
}

fn description(d: Option<String>) -> Result<Option<String>> {
    match d {
        Some(d) if d.chars().count() > 1000 => Err(authsome_domain::ValidationError::new(
            "description",
            "must be at most 1000 characters",
        )
        .into()),
        Some(d) if d.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// How long a KEK opened by the customer's KMS is used before KMS is asked again: revoking
/// the key's grant in KMS stops reads within this time.
pub const CUSTOMER_KEY_CACHE: std::time::Duration = std::time::Duration::from_secs(300);
/// The most opened KEKs kept in process.
const KEK_CACHE_ENTRIES: usize = 10_000;

/// KEKs opened in this process, by workspace and version, with the sealed bytes they were
/// opened from.
#[derive(Default)]
pub(crate) struct KekCache {
    keys: std::sync::Mutex<std::collections::HashMap<(WorkspaceId, u32), OpenedKek>>,
}

/// The sealed bytes a KEK was opened from, the key, and when.
type OpenedKek = (Vec<u8>, Arc<Kek>, CoarseInstant);

impl KekCache {
    fn get(
        &self,
        slot: &(WorkspaceId, u32),
        sealed: &[u8],
        now: CoarseInstant,
        customer_key: bool,
    ) -> Option<Arc<Kek>> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let (bytes, kek, opened) = keys.get(slot)?;
        let fresh = !customer_key || now.since(*opened) < CUSTOMER_KEY_CACHE;
        (bytes.as_slice() == sealed && fresh).then(|| kek.clone())
    }

    fn put(&self, slot: (WorkspaceId, u32), sealed: Vec<u8>, kek: Arc<Kek>, now: CoarseInstant) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= KEK_CACHE_ENTRIES {
            keys.clear();
        }
        keys.insert(slot, (sealed, kek, now));
    }
}

/// The encryption context of a KEK wrapped by a customer's KMS key.
fn kek_context(ws: &WorkspaceId, version: u32) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        ("authsome:workspace".to_owned(), ws.to_string()),
        ("authsome:kek-version".to_owned(), version.to_string()),
    ])
}

/// The customer's KMS key refusing is the key's state (409, the message says why); KMS out of
/// reach is 503.
fn customer_key_fault(e: crate::providers::SourceError) -> ControlError {
    match e {
        crate::providers::SourceError::Refused(m) => {
            ControlError::Conflict(format!("the workspace's customer-managed key refused: {m}"))
        }
        crate::providers::SourceError::Unavailable(m) => {
            ControlError::Unavailable(format!("the workspace's customer-managed key: {m}"))
        }
    }
}

/// A sealed or opened value that does not fit here is a fault of stored data, never input.
fn vault_fault(e: VaultError) -> ControlError {
    tracing::error!(error = %e, "a vault envelope or key does not open");
    ControlError::Storage(StorageError::Corrupt("vault envelope"))
}

impl ControlPlane {
    fn vault_master(&self) -> Result<&MasterKey> {
        self.master_key.as_deref().ok_or_else(|| {
            ControlError::Unavailable("the vault needs the deployment's master key".into())
        })
    }

    /// Seals a new KEK for storage: under the customer's KMS key when `kms_key_id` names one,
    /// else under the master key.
    async fn seal_kek(
        &self,
        ws: &WorkspaceId,
        kek: &Kek,
        kms_key_id: Option<&str>,
    ) -> Result<StoredKek> {
        let sealed = match kms_key_id {
            None => kek.seal(self.vault_master()?),
            Some(key_id) => self
                .sources()
                .map_err(customer_key_fault)?
                .kms_encrypt(
                    crate::providers::KmsKey {
                        key_id,
                        region: None,
                    },
                    &kek_context(ws, kek.version()),
                    kek.expose_for_wrapping(),
                )
                .await
                .map_err(customer_key_fault)?,
        };
        Ok(StoredKek {
            version: kek.version(),
            sealed: Some(sealed),
            kms_key_id: kms_key_id.map(str::to_owned),
            created_at: self.clock.now(),
        })
    }

    /// Opens a stored KEK: from this process's cache while the stored row is unchanged (a
    /// destroyed key is never served: the row says so first) and, for a customer-managed key,
    /// younger than [`CUSTOMER_KEY_CACHE`] (so revoking the key in KMS takes effect).
    async fn open_kek(&self, ws: &WorkspaceId, stored: &StoredKek) -> Result<Arc<Kek>> {
        let sealed = stored.sealed.as_deref().ok_or_else(|| {
            ControlError::Conflict("the workspace's vault keys were destroyed".into())
        })?;
        let slot = (ws.clone(), stored.version);
        let now = self.clock.instant();
        if let Some(hit) = self
            .kek_cache
            .get(&slot, sealed, now, stored.kms_key_id.is_some())
        {
            return Ok(hit);
        }
        let kek = match &stored.kms_key_id {
            None => {
                Kek::open(self.vault_master()?, ws, stored.version, sealed).map_err(vault_fault)?
            }
            Some(_) => self.unwrap_customer_kek(ws, stored, sealed).await?,
        };
        let kek = Arc::new(kek);
        self.kek_cache.put(slot, sealed.to_vec(), kek.clone(), now);
        Ok(kek)
    }

    /// The workspace's current key-encryption key, made at its first use (and, after its keys
    /// were destroyed, a fresh one for what is written next, wrapped as the last one was).
    async fn current_kek(&self, ws: &WorkspaceId) -> Result<Arc<Kek>> {
        let latest = self.store.keks(ws).await?.pop();
        if let Some(latest) = &latest {
            if latest.sealed.is_some() {
                return self.open_kek(ws, latest).await;
            }
        }
        let version = latest.as_ref().map_or(1, |k| k.version + 1);
        let kek = Kek::generate(ws, version);
        let wrapping = latest.as_ref().and_then(|k| k.kms_key_id.as_deref());
        let stored = self.seal_kek(ws, &kek, wrapping).await?;
        if self.store.insert_kek(ws, &stored).await? {
            return Ok(Arc::new(kek));
        }
        // Another request made it first: use theirs.
        match self.store.keks(ws).await?.last() {
            Some(latest) => self.open_kek(ws, latest).await,
            None => Err(ControlError::Storage(StorageError::NotFound)),
        }
    }

    async fn kek_version(&self, ws: &WorkspaceId, version: u32) -> Result<Arc<Kek>> {
        let keks = self.store.keks(ws).await?;
        let stored = keks
            .iter()
            .find(|k| k.version == version)
            .ok_or_else(|| vault_fault(VaultError::UnknownKey(version)))?;
        self.open_kek(ws, stored).await
    }

    /// The vault as the caller may use it: `NotFound` unless it is in a workspace the caller
    /// belongs to, then the permission (a denial is audited).
    pub(crate) async fn vault_for(
        &self,
        actor: &Actor,
        id: &VaultId,
        permission: Permission,
    ) -> Result<(Vault, Workspace, Role)> {
        let ws = self
            .store
            .vault_workspace(id)
            .await?
            .ok_or(ControlError::NotFound("vault"))?;
        let (workspace, role) = self
            .store
            .workspace_access(actor, &ws)
            .await?
            .ok_or(ControlError::NotFound("vault"))?;
        // An operator reads the values of the vaults it is bound to.
        let bound = match actor {
            Actor::Account(account) if role.needs_vault_binding(permission) => {
                self.store.is_vault_operator(&ws, id, account).await?
            }
            _ => false,
        };
        if !role.allows_in_vault(permission, bound) {
            self.require_for(actor, &ws, role, permission)?;
        }
        let vault = self
            .store
            .vault(&ws, id)
            .await?
            .ok_or(ControlError::NotFound("vault"))?;
        Ok((vault, workspace, role))
    }

    /// [`ControlPlane::vault_for`] for team members; for a principal, the vault must be in its
    /// workspace and bound to it with the permission (reading values or metadata: `read`;
    /// writing versions: `write`), else `NotFound`, as if it did not exist.
    async fn vault_as(
        &self,
        actor: &VaultActor,
        id: &VaultId,
        permission: Permission,
    ) -> Result<(Vault, Option<Workspace>)> {
        let principal = match actor {
            VaultActor::Team(team) => {
                let (vault, workspace, _) = self.vault_for(team, id, permission).await?;
                return Ok((vault, Some(workspace)));
            }
            VaultActor::Principal(p) => p,
            VaultActor::System(ws) | VaultActor::Rotation(ws, _) => {
                let vault = self
                    .store
                    .vault(ws, id)
                    .await?
                    .ok_or(ControlError::NotFound("vault"))?;
                let workspace = self
                    .store
                    .any_workspace(ws)
                    .await?
                    .ok_or(ControlError::NotFound("vault"))?;
                return Ok((vault, Some(workspace)));
            }
        };
        let needed = match permission {
            Permission::VaultsRead | Permission::SecretsReveal => VaultPermission::Read,
            Permission::SecretsWrite => VaultPermission::Write,
            _ => return Err(ControlError::NotFound("vault")),
        };
        let found = self.cached_binding(principal, id).await?;
        let Some(vault) = found
            .filter(|bound| bound.1.contains(&needed))
            .map(|bound| bound.0.clone())
        else {
            self.events.emit(
                DomainEvent::new("permission.denied")
                    .workspace(&principal.workspace_id)
                    .target(id)
                    .outcome(authsome_domain::event::Outcome::Denied)
                    .change("permission", format!("{needed:?}").to_lowercase())
                    .actor(EventActor::Principal(principal.id.clone())),
            );
            return Err(ControlError::NotFound("vault"));
        };
        // The workspace's standing matters to writes only.
        let workspace = match needed {
            VaultPermission::Write => Some(
                self.store
                    .any_workspace(&principal.workspace_id)
                    .await?
                    .ok_or(ControlError::NotFound("vault"))?,
            ),
            VaultPermission::Read => None,
        };
        Ok((vault, workspace))
    }

    /// Announces a non-write event of `actor`.
    fn emit_as(&self, actor: &VaultActor, event: DomainEvent) {
        match actor {
            VaultActor::Team(team) => self.emit(team, event),
            VaultActor::Principal(_) | VaultActor::System(_) | VaultActor::Rotation(..) => {
                self.events.emit(actor.stamp(event))
            }
        }
    }

    async fn secret_in(&self, vault: &Vault, name: &str) -> Result<Secret> {
        self.store
            .secret(&vault.workspace_id, &vault.id, name)
            .await?
            .ok_or(ControlError::NotFound("secret"))
    }

    pub async fn create_vault(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewVault,
    ) -> Result<Vault> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let now = self.clock.now();
        let vault = Vault {
            id: VaultId::new(),
            workspace_id: ws.clone(),
            name: parse_vault_name(&input.name)?,
            description: description(input.description)?,
            max_versions: check_max_versions(input.max_versions.unwrap_or(DEFAULT_MAX_VERSIONS))?,
            created_at: now,
            updated_at: now,
        };
        let event = vault_event("vault.created", &vault)
            .change("name", vault.name.as_str())
            .change("maxVersions", vault.max_versions);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .insert_vault(&vault, outbox)
                .await
                .map_err(crate::duplicate("vault name"))
        })
        .await?;
        Ok(vault)
    }

    pub async fn vaults(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Vault>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.vaults(ws, page).await?)
    }

    pub async fn vault(&self, actor: &Actor, id: &VaultId) -> Result<Vault> {
        Ok(self.vault_for(actor, id, Permission::VaultsRead).await?.0)
    }

    pub async fn update_vault(
        &self,
        actor: &Actor,
        id: &VaultId,
        patch: VaultPatch,
    ) -> Result<Vault> {
        let (mut vault, workspace, _) = self.vault_for(actor, id, Permission::VaultsManage).await?;
        workspace.may_write()?;
        let mut event = vault_event("vault.updated", &vault);
        if let Some(name) = patch.name {
            let name = parse_vault_name(&name)?;
            event = event.changed("name", &vault.name, &name);
            vault.name = name;
        }
        if let Some(d) = patch.description {
            let d = description(Some(d))?;
            event = event.changed("description", &vault.description, &d);
            vault.description = d;
        }
        if let Some(n) = patch.max_versions {
            let n = check_max_versions(n)?;
            event = event.changed("maxVersions", &vault.max_versions, &n);
            vault.max_versions = n;
        }
        vault.updated_at = self.clock.now();
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .update_vault(&vault, outbox)
                .await
                .map_err(|e| match e {
                    StorageError::NotFound => ControlError::NotFound("vault"),
                    other => crate::duplicate("vault name")(other),
                })
        })
        .await?;
        self.invalidate(Invalidation::Vault(vault.id.clone()));
        Ok(vault)
    }

    /// Binds a member with the operator role to the vault: it then reads the vault's values
    /// (operators read no other vault's). Binding again changes nothing.
    pub async fn bind_vault_operator(
        &self,
        actor: &Actor,
        id: &VaultId,
        member: &MemberId,
    ) -> Result<VaultOperator> {
        let (vault, workspace, _) = self.vault_for(actor, id, Permission::VaultsManage).await?;
        workspace.may_write()?;
        let found = self
            .store
            .member(&vault.workspace_id, member)
            .await?
            .ok_or(ControlError::NotFound("member"))?;
        if found.role != Role::Operator {
            return Err(authsome_domain::ValidationError::new(
                "memberId",
                format!(
                    "has the {} role: only operators are bound to vaults (owners and admins read every vault)",
                    found.role.as_str()
                ),
            )
            .into());
        }
        let at = self.clock.now();
        self.audited(
            Some(actor),
            vec![vault_event("vault.operator.bound", &vault).change("member", member.as_str())],
            async |outbox| {
                self.store
                    .bind_vault_operator(&vault.workspace_id, &vault.id, member, at, outbox)
                    .await
            },
        )
        .await?;
        Ok(self
            .vault_operators(actor, id)
            .await?
            .into_iter()
            .find(|o| &o.member_id == member)
            .unwrap_or(VaultOperator {
                member_id: member.clone(),
                created_at: at,
            }))
    }

    pub async fn unbind_vault_operator(
        &self,
        actor: &Actor,
        id: &VaultId,
        member: &MemberId,
    ) -> Result<()> {
        let (vault, workspace, _) = self.vault_for(actor, id, Permission::VaultsManage).await?;
        workspace.may_write()?;
        self.audited(
            Some(actor),
            vec![vault_event("vault.operator.unbound", &vault).change("member", member.as_str())],
            async |outbox| {
                self.store
                    .unbind_vault_operator(&vault.workspace_id, &vault.id, member, outbox)
                    .await
                    .map_err(crate::gone("vault operator"))
            },
        )
        .await
    }

    /// The operators bound to the vault.
    pub async fn vault_operators(&self, actor: &Actor, id: &VaultId) -> Result<Vec<VaultOperator>> {
        let (vault, _, _) = self.vault_for(actor, id, Permission::VaultsRead).await?;
        Ok(self
            .store
            .vault_operators(&vault.workspace_id, &vault.id)
            .await?
            .into_iter()
            .map(|(member_id, created_at)| VaultOperator {
                member_id,
                created_at,
            })
            .collect())
    }

    /// Deletes an empty vault (its secrets deleted and destroyed first are still its own).
    pub async fn delete_vault(&self, actor: &Actor, id: &VaultId) -> Result<()> {
        let (vault, workspace, _) = self.vault_for(actor, id, Permission::VaultsManage).await?;
        workspace.may_write()?;
        self.audited(
            Some(actor),
            vec![vault_event("vault.deleted", &vault)],
            async |outbox| {
                self.store
                    .delete_vault(&vault.workspace_id, &vault.id, outbox)
                    .await
                    .map_err(crate::gone("vault"))
            },
        )
        .await?;
        self.invalidate(Invalidation::Vault(vault.id));
        Ok(())
    }

    pub async fn secrets(
        &self,
        actor: &VaultActor,
        vault: &VaultId,
        page: &PageRequest,
    ) -> Result<Page<Secret>> {
        let (vault, _) = self.vault_as(actor, vault, Permission::VaultsRead).await?;
        Ok(self
            .store
            .secrets(&vault.workspace_id, &vault.id, page)
            .await?)
    }

    pub async fn secret(&self, actor: &VaultActor, vault: &VaultId, name: &str) -> Result<Secret> {
        let (vault, _) = self.vault_as(actor, vault, Permission::VaultsRead).await?;
        self.secret_in(&vault, name).await
    }

    /// Writes a new version: 1 creates the secret. With `if_match`, only if the latest version
    /// is still that one (`PreconditionFailed` otherwise); without, after whatever concurrent
    /// writes landed first. Returns the secret and whether it was created.
    pub async fn put_secret(
        &self,
        actor: &VaultActor,
        vault: &VaultId,
        name: &str,
        input: PutSecret,
        if_match: Option<u32>,
    ) -> Result<(Secret, bool)> {
        let (vault, workspace) = self
            .vault_as(actor, vault, Permission::SecretsWrite)
            .await?;
        workspace
            .ok_or(ControlError::NotFound("vault"))?
            .may_write()?;
        let name = parse_secret_name(name)?;
        check_value(&input.value)?;
        let description = description(input.description)?;
        let tags = input.tags.map(parse_tags).transpose()?;
        for _ in 0..WRITE_ATTEMPTS {
            let existing = self
                .store
                .secret(&vault.workspace_id, &vault.id, &name)
                .await?;
            if existing.as_ref().is_some_and(|s| s.deleted_at.is_some()) {
                return Err(ControlError::Conflict(
                    "the secret is deleted; restore it first".into(),
                ));
            }
            let latest = existing.as_ref().map_or(0, |s| s.version);
            if let Some(expected) = if_match {
                if expected != latest {
                    return Err(ControlError::PreconditionFailed(format!(
                        "the latest version is {latest}, not {expected}"
                    )));
                }
            }
            let now = self.clock.now();
            let created = existing.is_none();
            let mut secret = existing.unwrap_or_else(|| Secret {
                id: SecretId::new(),
                vault_id: vault.id.clone(),
                workspace_id: vault.workspace_id.clone(),
                name: name.clone(),
                description: None,
                tags: Vec::new(),
                expires_at: None,
                version: 0,
                versions: Vec::new(),
                created_at: now,
                updated_at: now,
                deleted_at: None,
            });
            secret.version = latest + 1;
            secret.updated_at = now;
            if let Some(d) = &description {
                secret.description = Some(d.clone());
            }
            if let Some(t) = &tags {
                secret.tags = t.clone();
            }
            if let Some(e) = input.expires_at {
                secret.expires_at = Some(e);
            }
            let kek = self.current_kek(&vault.workspace_id).await?;
            let ctx = SecretContext {
                workspace: &vault.workspace_id,
                vault: &vault.id,
                name: &name,
                version: secret.version,
            };
            let sealed = Envelope::seal(&kek, ctx, input.value.as_bytes())
                .map_err(vault_fault)?
                .to_bytes();
            let envelope = self.keep_envelope(&secret, secret.version, sealed).await?;
            let write = SecretWrite {
                secret: &secret,
                kek_version: kek.version(),
                envelope: &envelope,
                created_by: Some(actor.id()),
                max_versions: vault.max_versions,
            };
            let event = actor.stamp(secret_event(
                "vault.secret.written",
                &secret,
                secret.version,
            ));
            let written = self
                .audited(actor.team(), vec![event], async |outbox| {
                    match self.store.put_secret_version(&write, outbox).await {
                        Err(StorageError::State("stale")) => Err(ControlError::PreconditionFailed(
                            "another version was written first".into(),
                        )),
                        other => other.map_err(ControlError::from),
                    }
                })
                .await;
            match written {
                Ok(pruned) => {
                    for reference in pruned {
                        self.forget_envelope(&reference).await;
                    }
                    let stored = self.secret_in(&vault, &name).await?;
                    return Ok((stored, created));
                }
                Err(e) => {
                    // Nothing names what was stored for the failed write: forget it.
                    if let StoredEnvelope::External(reference) = &envelope {
                        self.forget_envelope(reference).await;
                    }
                    match e {
                        ControlError::PreconditionFailed(_) if if_match.is_none() => continue,
                        e => return Err(e),
                    }
                }
            }
        }
        Err(ControlError::Conflict(
            "the secret kept changing; retry".into(),
        ))
    }

    /// A version's value (the latest by default). The read is audited.
    pub async fn secret_value(
        &self,
        actor: &VaultActor,
        vault: &VaultId,
        name: &str,
        version: Option<u32>,
    ) -> Result<RevealedSecret> {
        let (vault, _) = self
            .vault_as(actor, vault, Permission::SecretsReveal)
            .await?;
        let (secret, envelope) = self
            .store
            .secret_with_envelope(&vault.workspace_id, &vault.id, name, version)
            .await?
            .ok_or(ControlError::NotFound("secret"))?;
        if secret.deleted_at.is_some() {
            return Err(ControlError::NotFound("secret"));
        }
        let version = version.unwrap_or(secret.version);
        let (stored_kek, stored) = envelope.ok_or(ControlError::NotFound("secret version"))?;
        let bytes = self.envelope_bytes(&stored).await?;
        let kek = match self.open_kek(&vault.workspace_id, &stored_kek).await {
            Ok(kek) => kek,
            Err(e) => {
                self.emit_as(
                    actor,
                    secret_event("vault.secret.read", &secret, version)
                        .outcome(authsome_domain::event::Outcome::Failure)
                        .change("reason", e.to_string()),
                );
                return Err(e);
            }
        };
        let ctx = SecretContext {
            workspace: &vault.workspace_id,
            vault: &vault.id,
            name: &secret.name,
            version,
        };
        let plain = match Envelope::from_bytes(&bytes).and_then(|e| e.open(&kek, ctx)) {
            Ok(plain) => plain,
            Err(e) => {
                self.emit_as(
                    actor,
                    secret_event("vault.secret.read", &secret, version)
                        .outcome(authsome_domain::event::Outcome::Failure)
                        .change("reason", "the stored envelope does not open here"),
                );
                return Err(vault_fault(e));
            }
        };
        let value = String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| vault_fault(VaultError::Malformed))?;
        self.emit_as(actor, secret_event("vault.secret.read", &secret, version));
        Ok(RevealedSecret {
            name: secret.name,
            version,
            value,
        })
    }

    /// Soft-deletes a secret: no value is served until it is restored.
    pub async fn delete_secret(&self, actor: &Actor, vault: &VaultId, name: &str) -> Result<()> {
        self.set_secret_deleted(actor, vault, name, true).await
    }

    pub async fn restore_secret(
        &self,
        actor: &Actor,
        vault: &VaultId,
        name: &str,
    ) -> Result<Secret> {
        self.set_secret_deleted(actor, vault, name, false).await?;
        let (vault, _, _) = self.vault_for(actor, vault, Permission::VaultsRead).await?;
        self.secret_in(&vault, name).await
    }

    async fn set_secret_deleted(
        &self,
        actor: &Actor,
        vault: &VaultId,
        name: &str,
        deleted: bool,
    ) -> Result<()> {
        let (vault, workspace, _) = self
            .vault_for(actor, vault, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let secret = self.secret_in(&vault, name).await?;
        let (action, at) = if deleted {
            ("vault.secret.deleted", Some(self.clock.now()))
        } else {
            ("vault.secret.restored", None)
        };
        let event = secret_event(action, &secret, secret.version);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store.set_secret_deleted(&secret, at, outbox).await
        })
        .await
    }

    /// Destroys a version's value for good (its metadata stays, marked destroyed).
    pub async fn destroy_secret_version(
        &self,
        actor: &Actor,
        vault: &VaultId,
        name: &str,
        version: u32,
    ) -> Result<Secret> {
        let (vault, workspace, _) = self
            .vault_for(actor, vault, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let secret = self.secret_in(&vault, name).await?;
        if !secret.versions.iter().any(|v| v.version == version) {
            return Err(ControlError::NotFound("secret version"));
        }
        let at = self.clock.now();
        let event = secret_event("vault.secret.version_destroyed", &secret, version);
        let reference = self
            .audited(Some(actor), vec![event], async |outbox| {
                self.store
                    .destroy_secret_version(&secret, version, at, outbox)
                    .await
            })
            .await?;
        if let Some(reference) = reference {
            self.forget_envelope(&reference).await;
        }
        self.secret_in(&vault, name).await
    }

    pub async fn keyring(&self, actor: &Actor, ws: &WorkspaceId) -> Result<KeyringStatus> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        self.keyring_status(ws).await
    }

    async fn keyring_status(&self, ws: &WorkspaceId) -> Result<KeyringStatus> {
        let p = self.store.keyring_progress(ws).await?;
        let kms_key_id = self.store.keks(ws).await?.pop().and_then(|k| k.kms_key_id);
        Ok(KeyringStatus {
            version: p.version,
            kms_key_id,
            rewrap: Progress {
                done: p.rewrapped,
                total: p.total,
            },
            rekey: p.rekey_requested_at.map(|_| Progress {
                done: p.rekeyed,
                total: p.total,
            }),
            destroyed_at: p.destroyed_at,
        })
    }

    /// Makes a new key-encryption key version: new writes use it at once, and the background
    /// work rewraps every existing data key under it (readable throughout).
    pub async fn rotate_keyring(&self, actor: &Actor, ws: &WorkspaceId) -> Result<KeyringStatus> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::KeyringManage)
            .await?;
        workspace.may_write()?;
        let wrapping = self.store.keks(ws).await?.pop().and_then(|k| k.kms_key_id);
        self.rotate_wrapped(actor, ws, wrapping, "vault.keyring.rotated")
            .await
    }

    /// Wraps the workspace's keys with the customer's AWS KMS key from now on (`keyId` an ARN),
    /// or with the master key again (`keyId` null): a new KEK version wrapped so, and the
    /// background work rewraps every data key under it. Enterprise plan; owners only, since
    /// whoever controls the KMS key can make every secret unreadable. The key is tried first
    /// (an encryption and a decryption with the workspace's context).
    pub async fn set_customer_key(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: CustomerKey,
    ) -> Result<KeyringStatus> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::KeyringDestroy)
            .await?;
        workspace.may_write()?;
        if let Some(key_id) = &input.key_id {
            if workspace.plan != authsome_domain::tenancy::Plan::Enterprise {
                return Err(ControlError::PaymentRequired(
                    "customer-managed keys are part of the enterprise plan".into(),
                ));
            }
            if authsome_domain::provider::kms_region(key_id).is_none() {
                return Err(authsome_domain::ValidationError::new(
                    "keyId",
                    "must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/…)",
                )
                .into());
            }
            // Probe: the deployment may encrypt and decrypt with it, in this context.
            let probe = Kek::generate(ws, 0);
            let sealed = self
                .seal_kek(ws, &probe, Some(key_id))
                .await
                .map_err(as_input)?;
            let bytes = sealed.sealed.as_deref().unwrap_or_default();
            self.unwrap_customer_kek(ws, &sealed, bytes)
                .await
                .map_err(as_input)?;
        }
        self.rotate_wrapped(actor, ws, input.key_id, "vault.keyring.customer_key_set")
            .await
    }

    async fn rotate_wrapped(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        kms_key_id: Option<String>,
        action: &'static str,
    ) -> Result<KeyringStatus> {
        let version = self
            .store
            .keks(ws)
            .await?
            .last()
            .map_or(1, |k| k.version + 1);
        let kek = Kek::generate(ws, version);
        let stored = self.seal_kek(ws, &kek, kms_key_id.as_deref()).await?;
        let mut event = DomainEvent::new(action)
            .workspace(ws)
            .target(ws)
            .change("version", version);
        if let Some(key) = &kms_key_id {
            event = event.change("kmsKeyId", key.as_str());
        }
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .rotate_kek(ws, &stored, outbox)
                .await
                .map_err(crate::duplicate("that key version"))
        })
        .await?;
        self.keyring_status(ws).await
    }

    /// Asks the customer's KMS to unwrap a stored KEK (no cache).
    async fn unwrap_customer_kek(
        &self,
        ws: &WorkspaceId,
        stored: &StoredKek,
        sealed: &[u8],
    ) -> Result<Kek> {
        let key_id = stored.kms_key_id.as_deref().unwrap_or_default();
        let plain = self
            .sources()
            .map_err(customer_key_fault)?
            .kms_decrypt(
                crate::providers::KmsKey {
                    key_id,
                    region: None,
                },
                &kek_context(ws, stored.version),
                sealed,
            )
            .await
            .map_err(customer_key_fault)?;
        Kek::from_unwrapped(ws, stored.version, &plain).map_err(vault_fault)
    }

    /// Asks for every value to be sealed again under a fresh data key, in the background.
    pub async fn rekey_keyring(&self, actor: &Actor, ws: &WorkspaceId) -> Result<KeyringStatus> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::KeyringManage)
            .await?;
        workspace.may_write()?;
        let at = self.clock.now();
        let event = DomainEvent::new("vault.keyring.rekey_requested")
            .workspace(ws)
            .target(ws);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store.request_rekey(ws, at, outbox).await
        })
        .await?;
        self.keyring_status(ws).await
    }

    /// Crypto-shredding: removes every key-encryption key of the workspace, so that nothing
    /// sealed under them can be opened by anyone, this server included. Owners only, confirmed
    /// by the workspace's name.
    pub async fn destroy_keyring(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: DestroyKeyring,
    ) -> Result<KeyringStatus> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::KeyringDestroy)
            .await?;
        if input.confirm != workspace.name {
            return Err(authsome_domain::ValidationError::new(
                "confirm",
                "must be the workspace's name, exactly",
            )
            .into());
        }
        let at = self.clock.now();
        let event = DomainEvent::new("vault.keyring.destroyed")
            .workspace(ws)
            .target(ws);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store.destroy_keks(ws, at, outbox).await
        })
        .await?;
        self.keyring_status(ws).await
    }

    /// One batch of background key work over every workspace: data keys rewrapped under their
    /// workspace's newest KEK, values sealed again where a rekey was asked for. Resumable (the
    /// state is the rows themselves) and safe beside other replicas doing the same (each
    /// replacement checks the row is still as read). Returns how many envelopes it replaced.
    pub async fn vault_key_work(&self) -> Result<usize> {
        if self.master_key.is_none() {
            return Ok(0);
        }
        let pending = self.store.pending_key_work(KEY_WORK_BATCH).await?;
        let mut keks: std::collections::HashMap<(String, u32), Arc<Kek>> = Default::default();
        // A workspace whose keys cannot be opened now (its KMS key out of reach) waits for a
        // later round; the others go on.
        let mut unavailable: std::collections::HashSet<String> = Default::default();
        let mut replaced = 0;
        for row in pending {
            let (Ok(ws), Ok(vault), Ok(from), Ok(to), Ok(version)) = (
                WorkspaceId::parse(&row.workspace_id),
                VaultId::parse(&row.vault_id),
                u32::try_from(row.kek_version),
                u32::try_from(row.current_kek),
                u32::try_from(row.version),
            ) else {
                tracing::error!(secret = %row.secret_id, "a stored vault row does not parse");
                continue;
            };
            if unavailable.contains(&row.workspace_id) {
                continue;
            }
            for v in [from, to] {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    keks.entry((row.workspace_id.clone(), v))
                {
                    match self.kek_version(&ws, v).await {
                        Ok(kek) => {
                            slot.insert(kek);
                        }
                        Err(ControlError::Storage(e)) => return Err(e.into()),
                        Err(e) => {
                            tracing::warn!(workspace = %ws, error = %e, "vault key work: the workspace's keys cannot be opened now");
                            unavailable.insert(row.workspace_id.clone());
                        }
                    }
                }
            }
            let (Some(old), Some(new)) = (
                keks.get(&(row.workspace_id.clone(), from)),
                keks.get(&(row.workspace_id.clone(), to)),
            ) else {
                continue;
            };
            let ctx = SecretContext {
                workspace: &ws,
                vault: &vault,
                name: &row.name,
                version,
            };
            let Some(stored) =
                StoredEnvelope::from_columns(row.envelope.clone(), row.envelope_ref.clone())
            else {
                continue;
            };
            let bytes = self.envelope_bytes(&stored).await?;
            let Ok(envelope) = Envelope::from_bytes(&bytes) else {
                tracing::error!(secret = %row.secret_id, version, "a stored envelope is malformed");
                continue;
            };
            let rekey = row
                .rekey_requested_at
                .is_some_and(|asked| row.sealed_at < asked);
            let (next, sealed_at) = if rekey {
                let value = match envelope.open(old, ctx) {
                    Ok(value) => value,
                    Err(e) => {
                        tracing::error!(secret = %row.secret_id, version, error = %e, "rekey: envelope does not open");
                        continue;
                    }
                };
                let now = self.clock.now();
                (Envelope::seal(new, ctx, &value), Some(now))
            } else {
                (envelope.rewrap(old, new, ctx), None)
            };
            match next {
                Ok(next) => {
                    let secret_id = SecretId::parse(&row.secret_id).map_err(|_| {
                        ControlError::Storage(StorageError::Corrupt("vault_secret_versions"))
                    })?;
                    let kept = self
                        .keep_envelope_of(&vault, &secret_id, version, next.to_bytes())
                        .await?;
                    if self
                        .store
                        .replace_envelope(&row, to, &kept, sealed_at)
                        .await?
                    {
                        replaced += 1;
                        if let StoredEnvelope::External(old) = &stored {
                            self.forget_envelope(old).await;
                        }
                    } else if let StoredEnvelope::External(new) = &kept {
                        self.forget_envelope(new).await;
                    }
                }
                Err(e) => {
                    tracing::error!(secret = %row.secret_id, version, error = %e, "rewrap: envelope does not open");
                }
            }
        }
        Ok(replaced)
    }
}

impl ControlPlane {
    /// [`ControlPlane::vault_key_work`] batch after batch until none is left or `budget` is
    /// spent (the maintenance loop's share; the rest waits for its next tick).
    pub async fn vault_key_work_for(&self, budget: std::time::Duration) -> Result<usize> {
        let started = std::time::Instant::now();
        let mut total = 0;
        loop {
            let done = self.vault_key_work().await?;
            total += done;
            if done == 0 || started.elapsed() >= budget {
                return Ok(total);
            }
        }
    }
}

/// A new machine principal.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPrincipal {
    #[cfg_attr(feature = "openapi", schema(schema_with = vault_name_schema))]
    pub name: String,
    /// The Ed25519 public key it signs its proofs with, as an OKP JWK
    /// (`{"kty": "OKP", "crv": "Ed25519", "x": …}`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub public_key: Option<serde_json::Value>,
}

/// A principal's permissions in one vault (replacing any it had there).
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewBinding {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub vault_id: VaultId,
    pub permissions: Vec<VaultPermission>,
}

/// The request a principal's proof must match.
pub struct PopRequest<'a> {
    pub method: &'a str,
    /// Scheme, host and path of the request URL, as the deployment's public URL spells them.
    pub url: &'a str,
    /// Lowercase hex SHA-256 of the body bytes.
    pub body_sha256: &'a str,
}

impl ControlPlane {
    pub async fn create_principal(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewPrincipal,
    ) -> Result<Principal> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let public_key = input
            .public_key
            .as_ref()
            .map(authsome_vault::pop::public_key_from_jwk)
            .transpose()
            .map_err(|e| authsome_domain::ValidationError::new("publicKey", e.0))?
            .map(|k| k.as_bytes().to_vec());
        let principal = Principal {
            id: authsome_domain::id::PrincipalId::new(),
            workspace_id: ws.clone(),
            name: parse_vault_name(&input.name)?,
            public_key_jwk: public_key.as_deref().map(Principal::jwk_of),
            public_key,
            created_at: self.clock.now(),
        };
        let event = DomainEvent::new("vault.principal.created")
            .workspace(ws)
            .target(&principal.id)
            .change("name", principal.name.as_str())
            .change("publicKey", principal.public_key.is_some());
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .insert_principal(&principal, outbox)
                .await
                .map_err(crate::duplicate("principal name"))
        })
        .await?;
        Ok(principal)
    }

    pub async fn principals(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Principal>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.principals(ws, page).await?)
    }

    /// The principal, if it is of a workspace where the caller holds `permission`.
    async fn principal_for(
        &self,
        actor: &Actor,
        id: &authsome_domain::id::PrincipalId,
        permission: Permission,
    ) -> Result<(Principal, Workspace)> {
        let principal = self
            .store
            .principal_by_id(id)
            .await?
            .ok_or(ControlError::NotFound("principal"))?;
        let (workspace, role) = self
            .store
            .workspace_access(actor, &principal.workspace_id)
            .await?
            .ok_or(ControlError::NotFound("principal"))?;
        self.require_for(actor, &workspace.id, role, permission)?;
        Ok((principal, workspace))
    }

    pub async fn principal(
        &self,
        actor: &Actor,
        id: &authsome_domain::id::PrincipalId,
    ) -> Result<Principal> {
        Ok(self
            .principal_for(actor, id, Permission::VaultsRead)
            .await?
            .0)
    }

    pub async fn delete_principal(
        &self,
        actor: &Actor,
        id: &authsome_domain::id::PrincipalId,
    ) -> Result<()> {
        let (principal, workspace) = self
            .principal_for(actor, id, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let event = DomainEvent::new("vault.principal.deleted")
            .workspace(&workspace.id)
            .target(&principal.id);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .delete_principal(&workspace.id, &principal.id, outbox)
                .await
                .map_err(crate::gone("principal"))
        })
        .await?;
        self.invalidate(Invalidation::Principal(principal.id));
        Ok(())
    }

    /// Binds a principal to a vault of its workspace with `permissions` (an empty list keeps
    /// the binding but allows nothing).
    pub async fn bind_principal(
        &self,
        actor: &Actor,
        id: &authsome_domain::id::PrincipalId,
        input: NewBinding,
    ) -> Result<authsome_domain::vault::Binding> {
        let (principal, workspace) = self
            .principal_for(actor, id, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let mut permissions = input.permissions;
        permissions.sort_by_key(|p| *p as u8);
        permissions.dedup();
        let binding = authsome_domain::vault::Binding {
            principal_id: principal.id.clone(),
            vault_id: input.vault_id,
            permissions,
            created_at: self.clock.now(),
        };
        let event = DomainEvent::new("vault.principal.bound")
            .workspace(&workspace.id)
            .target(&principal.id)
            .change("vault", binding.vault_id.as_str())
            .change(
                "permissions",
                serde_json::to_value(&binding.permissions).unwrap_or_default(),
            );
        self.audited(Some(actor), vec![event], async |outbox| {
            match self
                .store
                .put_binding(&workspace.id, &binding, outbox)
                .await
            {
                Err(StorageError::NotFound) => Err(ControlError::NotFound("vault")),
                other => other.map_err(ControlError::from),
            }
        })
        .await?;
        self.invalidate(Invalidation::Principal(principal.id));
        Ok(binding)
    }

    pub async fn principal_bindings(
        &self,
        actor: &Actor,
        id: &authsome_domain::id::PrincipalId,
    ) -> Result<Vec<authsome_domain::vault::Binding>> {
        let (principal, workspace) = self
            .principal_for(actor, id, Permission::VaultsRead)
            .await?;
        Ok(self.store.bindings(&workspace.id, &principal.id).await?)
    }

    /// A principal's proof of possession (`Authorization: PoP <JWS>`): signed by its registered
    /// key, for this request, within the window, and its `jti` never seen before (in Redis when
    /// replicas share state; refused when that cannot be asked). A proof that names a known
    /// principal and fails is an audit entry of its workspace.
    pub async fn authenticate_principal(
        &self,
        proof: &str,
        request: &PopRequest<'_>,
    ) -> Result<Principal> {
        use authsome_vault::pop;
        let refused = |why: &'static str| ControlError::Unauthenticated(why);
        let kid = pop::key_id(proof).map_err(|e| refused(e.0))?;
        let id = authsome_domain::id::PrincipalId::parse(&kid)
            .map_err(|_| refused("invalid PoP proof: kid is not a principal id"))?;
        let principal = self
            .cached_principal(&id)
            .await?
            .ok_or(refused("invalid PoP proof: unknown principal"))?;
        let checked = (|| {
            let key = principal
                .public_key
                .as_deref()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
                .ok_or(pop::PopError("the principal has no public key"))?;
            let verified = pop::verify(proof, &key)?;
            verified.check(&pop::Expected {
                method: request.method,
                url: request.url,
                now: self.clock.now().timestamp(),
                body_sha256: request.body_sha256,
            })?;
            Ok::<_, pop::PopError>(verified)
        })();
        let verified = match checked {
            Ok(v) => v,
            Err(e) => {
                self.principal_refused(&principal, e.0);
                return Err(refused(e.0));
            }
        };
        let replay = self.replay.as_ref().ok_or_else(|| {
            ControlError::Unavailable("no replay cache for proofs of possession".into())
        })?;
        let once = format!("pop:{}:{}", principal.id, verified.jti);
        let ttl = std::time::Duration::from_secs(2 * pop::WINDOW_SECONDS as u64);
        match replay.first_use(&once, ttl).await {
            Ok(true) => Ok(Principal::clone(&principal)),
            Ok(false) => {
                self.principal_refused(&principal, "invalid PoP proof: jti already used");
                Err(refused("invalid PoP proof: jti already used"))
            }
            Err(e) => {
                tracing::error!(error = %e, "PoP refused: replay cache unavailable");
                Err(ControlError::Unavailable(
                    "cannot check the proof's jti; retry".into(),
                ))
            }
        }
    }

    fn principal_refused(&self, principal: &Principal, why: &'static str) {
        self.events.emit(
            DomainEvent::new("vault.principal.auth_failed")
                .workspace(&principal.workspace_id)
                .target(&principal.id)
                .outcome(authsome_domain::event::Outcome::Failure)
                .change("reason", why)
                .actor(EventActor::Principal(principal.id.clone())),
        );
    }
}

/// Where the vault keeps envelopes when not in the database (`AUTHSOME_VAULT_BACKEND=redis`):
/// opaque bytes under names, encrypted before they get here; the master key never goes there.
#[async_trait::async_trait]
pub trait EnvelopeStore: Send + Sync {
    async fn put(&self, name: &str, value: &[u8]) -> std::result::Result<(), String>;
    async fn get(&self, name: &str) -> std::result::Result<Option<Vec<u8>>, String>;
    async fn delete(&self, name: &str) -> std::result::Result<(), String>;
}

#[async_trait::async_trait]
impl EnvelopeStore for authsome_gateway::RedisBlobs {
    async fn put(&self, name: &str, value: &[u8]) -> std::result::Result<(), String> {
        authsome_gateway::RedisBlobs::put(self, name, value)
            .await
            .map_err(|e| e.to_string())
    }

    async fn get(&self, name: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        authsome_gateway::RedisBlobs::get(self, name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn delete(&self, name: &str) -> std::result::Result<(), String> {
        authsome_gateway::RedisBlobs::delete(self, name)
            .await
            .map_err(|e| e.to_string())
    }
}

fn backend_down(e: String) -> ControlError {
    tracing::error!(error = %e, "vault backend unavailable");
    ControlError::Unavailable("the vault's backend is unavailable; retry".into())
}

impl ControlPlane {
    /// Keeps a sealed envelope where the vault's backend says: in the row (returned inline), or
    /// stored now in the external store under a name unique to this write.
    async fn keep_envelope(
        &self,
        secret: &Secret,
        version: u32,
        sealed: Vec<u8>,
    ) -> Result<StoredEnvelope> {
        self.keep_envelope_of(&secret.vault_id, &secret.id, version, sealed)
            .await
    }

    async fn keep_envelope_of(
        &self,
        vault: &VaultId,
        secret: &SecretId,
        version: u32,
        sealed: Vec<u8>,
    ) -> Result<StoredEnvelope> {
        let Some(store) = &self.envelopes else {
            return Ok(StoredEnvelope::Inline(sealed));
        };
        let unique = hex::encode(rand::random::<[u8; 12]>());
        let name = format!("vault:{vault}:{secret}:{version}:{unique}");
        store.put(&name, &sealed).await.map_err(backend_down)?;
        Ok(StoredEnvelope::External(name))
    }

    async fn envelope_bytes(&self, stored: &StoredEnvelope) -> Result<Vec<u8>> {
        match stored {
            StoredEnvelope::Inline(bytes) => Ok(bytes.clone()),
            StoredEnvelope::External(name) => {
                let store = self.envelopes.as_ref().ok_or_else(|| {
                    ControlError::Unavailable(
                        "this secret is kept in Redis, which this server is not configured for"
                            .into(),
                    )
                })?;
                store
                    .get(name)
                    .await
                    .map_err(backend_down)?
                    .ok_or_else(|| vault_fault(VaultError::Malformed))
            }
        }
    }

    /// Forgets an envelope nothing names any more (best effort: what is left is ciphertext).
    async fn forget_envelope(&self, name: &str) {
        if let Some(store) = &self.envelopes {
            if let Err(e) = store.delete(name).await {
                tracing::warn!(error = %e, "an unused vault envelope stays in the backend");
            }
        }
    }
}
