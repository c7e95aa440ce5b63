//! The credential vault's storage: workspace KEKs (sealed), vaults, secrets and their versions'
//! envelopes. Every query carries the workspace; values exist here only as envelope bytes.

use async_trait::async_trait;
use authsome_domain::id::PrincipalId;
use authsome_domain::id::TrustedIssuerId;
use authsome_domain::id::{AccountId, MemberId};
use authsome_domain::id::{VaultId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::provider::{CredentialMode, Provider, ProviderConfig};
use authsome_domain::vault::{Binding, Principal, Secret, StoredKek, TrustedIssuer, Vault};
use chrono::{DateTime, Utc};

use crate::outbox::Outbox;
use crate::Result;

/// Where a version's envelope is kept: in its row, or in the vault's external store
/// (`AUTHSOME_VAULT_BACKEND=redis`) under a reference unique to the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredEnvelope {
    Inline(Vec<u8>),
    External(String),
}

impl StoredEnvelope {
    pub(crate) fn columns(&self) -> (Option<&[u8]>, Option<&str>) {
        match self {
            Self::Inline(bytes) => (Some(bytes), None),
            Self::External(reference) => (None, Some(reference)),
        }
    }

    /// The envelope of a row's two columns; `None` when it has neither (destroyed).
    pub fn from_columns(inline: Option<Vec<u8>>, reference: Option<String>) -> Option<Self> {
        match (inline, reference) {
            (Some(bytes), _) => Some(Self::Inline(bytes)),
            (None, Some(reference)) => Some(Self::External(reference)),
            (None, None) => None,
        }
    }
}

/// A new version of a secret, as the control plane sealed it.
pub struct SecretWrite<'a> {
    /// The secret's metadata after the write: `version` is the new version's number, one past
    /// the stored latest (none stored: 1, and the secret is created with `id`).
    pub secret: &'a Secret,
    pub kek_version: u32,
    pub envelope: &'a StoredEnvelope,
    pub created_by: Option<&'a str>,
    /// Versions beyond the newest this many are removed in the same transaction.
    pub max_versions: u32,
}

#[async_trait]
pub trait VaultRepository {
    /// The workspace's KEK versions, oldest first.
    async fn keks(&self, workspace: &WorkspaceId) -> Result<Vec<StoredKek>>;
    /// Stores a KEK version unless that version exists; whether it was stored.
    async fn insert_kek(&self, workspace: &WorkspaceId, kek: &StoredKek) -> Result<bool>;
    /// Stores the next KEK version (a rotation), with its audit rows; `Duplicate` when that
    /// version was made meanwhile.
    async fn rotate_kek(
        &self,
        workspace: &WorkspaceId,
        kek: &StoredKek,
        outbox: &Outbox,
    ) -> Result<()>;
    /// Asks for every value of the workspace sealed before `at` to be sealed again.
    async fn request_rekey(
        &self,
        workspace: &WorkspaceId,
        at: DateTime<Utc>,
        outbox: &Outbox,
    ) -> Result<()>;
    /// Removes the key material of every KEK version of the workspace: what they wrapped can
    /// never be opened again.
    async fn destroy_keks(
        &self,
        workspace: &WorkspaceId,
        at: DateTime<Utc>,
        outbox: &Outbox,
    ) -> Result<()>;
    /// `Duplicate` when the workspace has a principal of that name.
    async fn insert_principal(&self, principal: &Principal, outbox: &Outbox) -> Result<()>;
    async fn principals(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Principal>>;
    async fn principal(
        &self,
        workspace: &WorkspaceId,
        id: &PrincipalId,
    ) -> Result<Option<Principal>>;
    /// The principal a proof names, whatever its workspace: the proof's signature decides.
    async fn principal_by_id(&self, id: &PrincipalId) -> Result<Option<Principal>>;
    async fn delete_principal(
        &self,
        workspace: &WorkspaceId,
        id: &PrincipalId,
        outbox: &Outbox,
    ) -> Result<()>;
    /// Sets a principal's permissions in a vault (both of `workspace`; `NotFound` otherwise).
    async fn put_binding(
        &self,
        workspace: &WorkspaceId,
        binding: &Binding,
        outbox: &Outbox,
    ) -> Result<()>;
    async fn bindings(
        &self,
        workspace: &WorkspaceId,
        principal: &PrincipalId,
    ) -> Result<Vec<Binding>>;
    async fn binding(
        &self,
        workspace: &WorkspaceId,
        principal: &PrincipalId,
        vault: &VaultId,
    ) -> Result<Option<Binding>>;
    /// A vault of `workspace` with what `principal` may do there, if it is bound to it (one
    /// query: the hot path of a principal's read).
    async fn bound_vault(
        &self,
        workspace: &WorkspaceId,
        principal: &PrincipalId,
        vault: &VaultId,
    ) -> Result<Option<(Vault, Vec<authsome_domain::vault::VaultPermission>)>>;
    /// A secret (without its version list) and one live version's envelope with the stored
    /// KEK that wraps it, the latest version unless `version` is given (one query: the hot
    /// path of a value read).
    async fn secret_with_envelope(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<(Secret, Option<(StoredKek, StoredEnvelope)>)>>;

    async fn insert_trusted_issuer(&self, trusted: &TrustedIssuer, outbox: &Outbox) -> Result<()>;
    async fn trusted_issuers(&self, workspace: &WorkspaceId) -> Result<Vec<TrustedIssuer>>;
    async fn delete_trusted_issuer(
        &self,
        workspace: &WorkspaceId,
        id: &TrustedIssuerId,
        outbox: &Outbox,
    ) -> Result<()>;
    /// Every registration of `issuer`, whatever its workspace (at most `limit`): the token's
    /// signature, audience and claims decide which, if any, it is.
    async fn trusted_by_issuer(&self, issuer: &str, limit: u32) -> Result<Vec<TrustedIssuer>>;

    /// Binds a member of the workspace to one of its vaults as an operator (reading values);
    /// binding again changes nothing. The caller checked that both are the workspace's.
    async fn bind_vault_operator(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        member: &MemberId,
        at: DateTime<Utc>,
        outbox: &Outbox,
    ) -> Result<()>;
    /// `NotFound` when the member is not bound to the vault.
    async fn unbind_vault_operator(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        member: &MemberId,
        outbox: &Outbox,
    ) -> Result<()>;
    /// The members bound to the vault, with when.
    async fn vault_operators(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
    ) -> Result<Vec<(MemberId, DateTime<Utc>)>>;
    /// Whether `account`'s membership of `workspace` is bound to `vault`.
    async fn is_vault_operator(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        account: &AccountId,
    ) -> Result<bool>;

    /// Stores a provider's configuration with its audit rows: created, or replacing the
    /// stored one; the stored revision (one past the replaced one's).
    async fn put_provider(&self, config: &ProviderConfig, outbox: &Outbox) -> Result<u32>;
    async fn provider(
        &self,
        workspace: &WorkspaceId,
        provider: Provider,
    ) -> Result<Option<ProviderConfig>>;
    async fn providers(&self, workspace: &WorkspaceId) -> Result<Vec<ProviderConfig>>;
    /// `NotFound` when the workspace has no configuration of `provider`.
    async fn delete_provider(
        &self,
        workspace: &WorkspaceId,
        provider: Provider,
        outbox: &Outbox,
    ) -> Result<()>;

    /// Where the workspace's background key work stands.
    async fn keyring_progress(&self, workspace: &WorkspaceId) -> Result<KeyringProgress>;
    /// Up to `limit` live versions, of any workspace, wrapped by an older KEK than their
    /// workspace's newest live one or sealed before a rekey was asked for.
    async fn pending_key_work(&self, limit: u32) -> Result<Vec<PendingEnvelope>>;
    /// Replaces a version's envelope if it is still the one `pending` read (a concurrent
    /// worker's replacement wins); whether it was replaced.
    async fn replace_envelope(
        &self,
        pending: &PendingEnvelope,
        kek_version: u32,
        envelope: &StoredEnvelope,
        sealed_at: Option<DateTime<Utc>>,
    ) -> Result<bool>;

    /// `Duplicate` when the workspace has a vault of that name.
    async fn insert_vault(&self, vault: &Vault, outbox: &Outbox) -> Result<()>;
    async fn vaults(&self, workspace: &WorkspaceId, page: &PageRequest) -> Result<Page<Vault>>;
    async fn vault(&self, workspace: &WorkspaceId, id: &VaultId) -> Result<Option<Vault>>;
    /// The workspace a vault id belongs to, for the caller's access check that must follow
    /// (a route names only the vault); reveals nothing else.
    async fn vault_workspace(&self, id: &VaultId) -> Result<Option<WorkspaceId>>;
    async fn update_vault(&self, vault: &Vault, outbox: &Outbox) -> Result<()>;
    /// `State` while the vault holds secrets (deleted ones included).
    async fn delete_vault(
        &self,
        workspace: &WorkspaceId,
        id: &VaultId,
        outbox: &Outbox,
    ) -> Result<()>;

    /// A vault's secrets by name, without their version lists.
    async fn secrets(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        page: &PageRequest,
    ) -> Result<Page<Secret>>;
    /// A secret with its versions.
    async fn secret(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        name: &str,
    ) -> Result<Option<Secret>>;
    /// Stores a new version if the stored latest is still the one before it (`State("stale")`
    /// otherwise, nothing written), updates the metadata and prunes old versions, atomically.
    /// Returns the external references of the versions it pruned (for their store to forget).
    async fn put_secret_version(
        &self,
        write: &SecretWrite<'_>,
        outbox: &Outbox,
    ) -> Result<Vec<String>>;
    /// A version's envelope and KEK version; `None` for an unknown or destroyed version.
    async fn secret_envelope(
        &self,
        secret: &Secret,
        version: u32,
    ) -> Result<Option<(u32, StoredEnvelope)>>;
    /// Soft-deletes (`Some(time)`) or restores (`None`) a secret.
    async fn set_secret_deleted(
        &self,
        secret: &Secret,
        deleted_at: Option<DateTime<Utc>>,
        outbox: &Outbox,
    ) -> Result<()>;
    /// Removes a version's envelope for good (`State` when already destroyed); its external
    /// reference, if it had one, for the store to forget.
    async fn destroy_secret_version(
        &self,
        secret: &Secret,
        version: u32,
        at: DateTime<Utc>,
        outbox: &Outbox,
    ) -> Result<Option<String>>;
}

/// Where a workspace's keyring stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyringProgress {
    /// The newest KEK version (0: none yet).
    pub version: u32,
    /// Live (not destroyed) secret versions.
    pub total: u64,
    /// Of them, those wrapped by the newest KEK.
    pub rewrapped: u64,
    /// When a rekey was last asked for, and how many values were sealed since.
    pub rekey_requested_at: Option<DateTime<Utc>>,
    pub rekeyed: u64,
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// A live secret version whose envelope needs background work.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingEnvelope {
    pub workspace_id: String,
    pub vault_id: String,
    pub secret_id: String,
    pub name: String,
    pub version: i64,
    pub kek_version: i64,
    pub envelope: Option<Vec<u8>>,
    pub envelope_ref: Option<String>,
    pub sealed_at: i64,
    /// The workspace's newest live KEK version.
    pub current_kek: i64,
    /// Set when the value must be sealed again under a fresh data key.
    pub rekey_requested_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct PrincipalRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub public_key: Option<Vec<u8>>,
    pub created_at: i64,
}

impl PrincipalRow {
    pub(crate) fn into_domain(self) -> Result<Principal> {
        use crate::StorageError::Corrupt;
        Ok(Principal {
            id: PrincipalId::parse(&self.id).map_err(|_| Corrupt("principals.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| Corrupt("principals.workspace_id"))?,
            name: self.name,
            public_key_jwk: self.public_key.as_deref().map(Principal::jwk_of),
            public_key: self.public_key,
            created_at: crate::rows::time(self.created_at, "principals.created_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct BindingRow {
    pub principal_id: String,
    pub vault_id: String,
    pub permissions: String,
    pub created_at: i64,
}

impl BindingRow {
    pub(crate) fn into_domain(self) -> Result<Binding> {
        use crate::StorageError::Corrupt;
        Ok(Binding {
            principal_id: PrincipalId::parse(&self.principal_id)
                .map_err(|_| Corrupt("principal_bindings.principal_id"))?,
            vault_id: VaultId::parse(&self.vault_id)
                .map_err(|_| Corrupt("principal_bindings.vault_id"))?,
            permissions: crate::rows::json(&self.permissions, "principal_bindings.permissions")?,
            created_at: crate::rows::time(self.created_at, "principal_bindings.created_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TrustedIssuerRow {
    pub id: String,
    pub workspace_id: String,
    pub issuer: String,
    pub jwks_uri: String,
    pub audience: String,
    pub principal_id: String,
    pub claims: String,
    pub created_at: i64,
}

impl TrustedIssuerRow {
    pub(crate) fn into_domain(self) -> Result<TrustedIssuer> {
        use crate::StorageError::Corrupt;
        Ok(TrustedIssuer {
            id: TrustedIssuerId::parse(&self.id).map_err(|_| Corrupt("trusted_issuers.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| Corrupt("trusted_issuers.workspace_id"))?,
            issuer: self.issuer,
            jwks_uri: self.jwks_uri,
            audience: self.audience,
            principal_id: PrincipalId::parse(&self.principal_id)
                .map_err(|_| Corrupt("trusted_issuers.principal_id"))?,
            claims: crate::rows::json(&self.claims, "trusted_issuers.claims")?,
            created_at: crate::rows::time(self.created_at, "trusted_issuers.created_at")?,
        })
    }
}

pub(crate) const PROVIDER_COLUMNS: &str =
    "workspace_id, provider, mode, config, ciphertext, revision, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ProviderRow {
    pub workspace_id: String,
    pub provider: String,
    pub mode: String,
    pub config: String,
    pub ciphertext: Option<Vec<u8>>,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ProviderRow {
    pub(crate) fn into_domain(self) -> Result<ProviderConfig> {
        use crate::StorageError::Corrupt;
        Ok(ProviderConfig {
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| Corrupt("provider_configs.workspace_id"))?,
            provider: Provider::parse(&self.provider)
                .ok_or(Corrupt("provider_configs.provider"))?,
            mode: CredentialMode::parse(&self.mode).ok_or(Corrupt("provider_configs.mode"))?,
            config: crate::rows::json(&self.config, "provider_configs.config")?,
            ciphertext: self.ciphertext,
            revision: u32::try_from(self.revision)
                .map_err(|_| Corrupt("provider_configs.revision"))?,
            created_at: crate::rows::time(self.created_at, "provider_configs.created_at")?,
            updated_at: crate::rows::time(self.updated_at, "provider_configs.updated_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecretEnvelopeRow {
    #[sqlx(flatten)]
    pub secret: SecretRow,
    pub kek_version: Option<i64>,
    pub envelope: Option<Vec<u8>>,
    pub envelope_ref: Option<String>,
    pub kek_sealed: Option<Vec<u8>>,
    pub kek_kms_key_id: Option<String>,
    pub kek_created_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct BoundVaultRow {
    #[sqlx(flatten)]
    pub vault: VaultRow,
    pub permissions: String,
}

pub(crate) const TRUSTED_ISSUER_COLUMNS: &str =
    "id, workspace_id, issuer, jwks_uri, audience, principal_id, claims, created_at";

pub(crate) const PRINCIPAL_COLUMNS: &str = "id, workspace_id, name, public_key, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct VaultRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub description: Option<String>,
    pub max_versions: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl VaultRow {
    pub(crate) fn into_domain(self) -> Result<Vault> {
        use crate::rows::time;
        Ok(Vault {
            id: VaultId::parse(&self.id).map_err(|_| crate::StorageError::Corrupt("vaults.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| crate::StorageError::Corrupt("vaults.workspace_id"))?,
            name: self.name,
            description: self.description,
            max_versions: u32::try_from(self.max_versions)
                .map_err(|_| crate::StorageError::Corrupt("vaults.max_versions"))?,
            created_at: time(self.created_at, "vaults.created_at")?,
            updated_at: time(self.updated_at, "vaults.updated_at")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecretRow {
    pub id: String,
    pub workspace_id: String,
    pub vault_id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: String,
    pub expires_at: Option<i64>,
    pub latest_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

impl SecretRow {
    pub(crate) fn into_domain(self) -> Result<Secret> {
        use crate::rows::{json, time};
        use crate::StorageError::Corrupt;
        Ok(Secret {
            id: authsome_domain::id::SecretId::parse(&self.id)
                .map_err(|_| Corrupt("vault_secrets.id"))?,
            vault_id: VaultId::parse(&self.vault_id)
                .map_err(|_| Corrupt("vault_secrets.vault_id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| Corrupt("vault_secrets.workspace_id"))?,
            name: self.name,
            description: self.description,
            tags: json(&self.tags, "vault_secrets.tags")?,
            expires_at: self
                .expires_at
                .map(|t| time(t, "vault_secrets.expires_at"))
                .transpose()?,
            version: u32::try_from(self.latest_version)
                .map_err(|_| Corrupt("vault_secrets.latest_version"))?,
            versions: Vec::new(),
            created_at: time(self.created_at, "vault_secrets.created_at")?,
            updated_at: time(self.updated_at, "vault_secrets.updated_at")?,
            deleted_at: self
                .deleted_at
                .map(|t| time(t, "vault_secrets.deleted_at"))
                .transpose()?,
        })
    }
}

pub(crate) const VAULT_COLUMNS: &str =
    "id, workspace_id, name, description, max_versions, created_at, updated_at";
pub(crate) const SECRET_COLUMNS: &str = "id, workspace_id, vault_id, name, description, tags, \
     expires_at, latest_version, created_at, updated_at, deleted_at";

/// One page of a workspace's rows of `$table` in id order, as domain values (`$row` has
/// `into_domain` and the values an `id`).
macro_rules! scoped_page {
    ($self:ident, $row:ty, $columns:expr, $table:literal, $workspace:expr, $page:expr) => {{
        let sql = format!(
            "SELECT {} FROM {} WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            $columns, $table
        );
        let rows = sqlx::query_as::<_, $row>(&sql)
            .bind($workspace.as_str())
            .bind($page.after.as_deref().unwrap_or(""))
            .bind(i64::from($page.limit) + 1)
            .fetch_all(&$self.pool)
            .await?
            .into_iter()
            .map(<$row>::into_domain)
            .collect::<$crate::Result<Vec<_>>>()?;
        Ok(authsome_domain::page::Page::from_rows(
            rows,
            $page.limit,
            |r| r.id.as_str(),
        ))
    }};
}

/// A workspace's row of `$table` by id, as a domain value.
macro_rules! scoped_row {
    ($self:ident, $row:ty, $columns:expr, $table:literal, $workspace:expr, $id:expr) => {{
        let sql = format!(
            "SELECT {} FROM {} WHERE workspace_id = $1 AND id = $2",
            $columns, $table
        );
        sqlx::query_as::<_, $row>(&sql)
            .bind($workspace.as_str())
            .bind($id.as_str())
            .fetch_optional(&$self.pool)
            .await?
            .map(<$row>::into_domain)
            .transpose()
    }};
}

/// Implements [`VaultRepository`] for a store, after `crate::sql::impl_repositories!` (whose
/// `commit_with_outbox` it uses).
macro_rules! impl_vault {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::vault::VaultRepository for $store {
            async fn keks(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<Vec<authsome_domain::vault::StoredKek>> {
                let rows: Vec<(i64, Option<Vec<u8>>, Option<String>, i64)> = sqlx::query_as(
                    "SELECT version, sealed, kms_key_id, created_at FROM vault_keks \
                     WHERE workspace_id = $1 ORDER BY version",
                )
                .bind(workspace.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(version, sealed, kms_key_id, created_at)| {
                        Ok(authsome_domain::vault::StoredKek {
                            version: u32::try_from(version)
                                .map_err(|_| $crate::StorageError::Corrupt("vault_keks.version"))?,
                            sealed,
                            kms_key_id,
                            created_at: $crate::rows::time(created_at, "vault_keks.created_at")?,
                        })
                    })
                    .collect()
            }

            async fn insert_kek(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                kek: &authsome_domain::vault::StoredKek,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO vault_keks (workspace_id, version, sealed, kms_key_id, created_at) \
                     VALUES ($1, $2, $3, $5, $4) ON CONFLICT (workspace_id, version) DO NOTHING",
                )
                .bind(workspace.as_str())
                .bind(i64::from(kek.version))
                .bind(kek.sealed.as_deref())
                .bind($crate::rows::ms(kek.created_at))
                .bind(kek.kms_key_id.as_deref())
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn rotate_kek(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                kek: &authsome_domain::vault::StoredKek,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query(
                    "INSERT INTO vault_keks (workspace_id, version, sealed, kms_key_id, created_at) \
                     VALUES ($1, $2, $3, $5, $4)",
                )
                .bind(workspace.as_str())
                .bind(i64::from(kek.version))
                .bind(kek.sealed.as_deref())
                .bind($crate::rows::ms(kek.created_at))
                .bind(kek.kms_key_id.as_deref())
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::unique)?;
                commit_with_outbox(tx, outbox).await
            }

            async fn request_rekey(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                at: chrono::DateTime<chrono::Utc>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query(
                    "INSERT INTO vault_keyrings (workspace_id, rekey_requested_at) VALUES ($1, $2) \
                     ON CONFLICT (workspace_id) DO UPDATE SET rekey_requested_at = $2",
                )
                .bind(workspace.as_str())
                .bind($crate::rows::ms(at))
                .execute(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await
            }

            async fn destroy_keks(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                at: chrono::DateTime<chrono::Utc>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query(
                    "INSERT INTO vault_keyrings (workspace_id, destroyed_at) VALUES ($1, $2) \
                     ON CONFLICT (workspace_id) DO UPDATE SET destroyed_at = $2",
                )
                .bind(workspace.as_str())
                .bind($crate::rows::ms(at))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE vault_keks SET sealed = NULL, destroyed_at = $2 \
                     WHERE workspace_id = $1 AND sealed IS NOT NULL",
                )
                .bind(workspace.as_str())
                .bind($crate::rows::ms(at))
                .execute(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await
            }

            async fn insert_principal(
                &self,
                principal: &authsome_domain::vault::Principal,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query(
                    "INSERT INTO principals (id, workspace_id, name, public_key, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(principal.id.as_str())
                .bind(principal.workspace_id.as_str())
                .bind(&principal.name)
                .bind(principal.public_key.as_deref())
                .bind($crate::rows::ms(principal.created_at))
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::unique)?;
                commit_with_outbox(tx, outbox).await
            }

            async fn principals(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                page: &authsome_domain::page::PageRequest,
            ) -> $crate::Result<authsome_domain::page::Page<authsome_domain::vault::Principal>> {
                $crate::vault::scoped_page!(
                    self,
                    $crate::vault::PrincipalRow,
                    $crate::vault::PRINCIPAL_COLUMNS,
                    "principals",
                    workspace,
                    page
                )
            }

            async fn principal(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::PrincipalId,
            ) -> $crate::Result<Option<authsome_domain::vault::Principal>> {
                $crate::vault::scoped_row!(
                    self,
                    $crate::vault::PrincipalRow,
                    $crate::vault::PRINCIPAL_COLUMNS,
                    "principals",
                    workspace,
                    id
                )
            }

            async fn principal_by_id(
                &self,
                id: &authsome_domain::id::PrincipalId,
            ) -> $crate::Result<Option<authsome_domain::vault::Principal>> {
                let sql = format!(
                    "SELECT {} FROM principals WHERE id = $1",
                    $crate::vault::PRINCIPAL_COLUMNS
                );
                sqlx::query_as::<_, $crate::vault::PrincipalRow>(&sql)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::vault::PrincipalRow::into_domain)
                    .transpose()
            }

            async fn delete_principal(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::PrincipalId,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query("DELETE FROM principals WHERE workspace_id = $1 AND id = $2")
                    .bind(workspace.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn put_binding(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                binding: &authsome_domain::vault::Binding,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let permissions =
                    serde_json::to_string(&binding.permissions).unwrap_or_else(|_| "[]".into());
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                // Both the principal and the vault must be the workspace's.
                let done = sqlx::query(
                    "INSERT INTO principal_bindings (principal_id, vault_id, workspace_id, \
                     permissions, created_at) \
                     SELECT p.id, v.id, p.workspace_id, $4, $5 FROM principals p \
                     JOIN vaults v ON v.workspace_id = p.workspace_id \
                     WHERE p.workspace_id = $1 AND p.id = $2 AND v.id = $3 \
                     ON CONFLICT (principal_id, vault_id) DO UPDATE SET permissions = $4",
                )
                .bind(workspace.as_str())
                .bind(binding.principal_id.as_str())
                .bind(binding.vault_id.as_str())
                .bind(&permissions)
                .bind($crate::rows::ms(binding.created_at))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn bindings(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                principal: &authsome_domain::id::PrincipalId,
            ) -> $crate::Result<Vec<authsome_domain::vault::Binding>> {
                sqlx::query_as::<_, $crate::vault::BindingRow>(
                    "SELECT principal_id, vault_id, permissions, created_at \
                     FROM principal_bindings WHERE workspace_id = $1 AND principal_id = $2 \
                     ORDER BY vault_id",
                )
                .bind(workspace.as_str())
                .bind(principal.as_str())
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map($crate::vault::BindingRow::into_domain)
                .collect()
            }

            async fn binding(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                principal: &authsome_domain::id::PrincipalId,
                vault: &authsome_domain::id::VaultId,
            ) -> $crate::Result<Option<authsome_domain::vault::Binding>> {
                sqlx::query_as::<_, $crate::vault::BindingRow>(
                    "SELECT principal_id, vault_id, permissions, created_at \
                     FROM principal_bindings WHERE workspace_id = $1 AND principal_id = $2 \
                     AND vault_id = $3",
                )
                .bind(workspace.as_str())
                .bind(principal.as_str())
                .bind(vault.as_str())
                .fetch_optional(&self.pool)
                .await?
                .map($crate::vault::BindingRow::into_domain)
                .transpose()
            }

            async fn insert_trusted_issuer(
                &self,
                t: &authsome_domain::vault::TrustedIssuer,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let claims = serde_json::to_string(&t.claims).unwrap_or_else(|_| "{}".into());
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                // The principal must be the workspace's.
                let done = sqlx::query(
                    "INSERT INTO trusted_issuers (id, workspace_id, issuer, jwks_uri, audience, \
                     principal_id, claims, created_at) \
                     SELECT $1, p.workspace_id, $3, $4, $5, p.id, $7, $8 FROM principals p \
                     WHERE p.workspace_id = $2 AND p.id = $6",
                )
                .bind(t.id.as_str())
                .bind(t.workspace_id.as_str())
                .bind(&t.issuer)
                .bind(&t.jwks_uri)
                .bind(&t.audience)
                .bind(t.principal_id.as_str())
                .bind(&claims)
                .bind($crate::rows::ms(t.created_at))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn trusted_issuers(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<Vec<authsome_domain::vault::TrustedIssuer>> {
                let sql = format!(
                    "SELECT {} FROM trusted_issuers WHERE workspace_id = $1 ORDER BY id LIMIT 1000",
                    $crate::vault::TRUSTED_ISSUER_COLUMNS
                );
                sqlx::query_as::<_, $crate::vault::TrustedIssuerRow>(&sql)
                    .bind(workspace.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::vault::TrustedIssuerRow::into_domain)
                    .collect()
            }

            async fn delete_trusted_issuer(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::TrustedIssuerId,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done =
                    sqlx::query("DELETE FROM trusted_issuers WHERE workspace_id = $1 AND id = $2")
                        .bind(workspace.as_str())
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn bind_vault_operator(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                member: &authsome_domain::id::MemberId,
                at: chrono::DateTime<chrono::Utc>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                // Both must be the workspace's, checked in the statement itself.
                sqlx::query(
                    "INSERT INTO vault_operators (workspace_id, vault_id, member_id, created_at) \
                     SELECT m.workspace_id, v.id, m.id, $4 FROM members m \
                     JOIN vaults v ON v.workspace_id = m.workspace_id \
                     WHERE m.workspace_id = $1 AND v.id = $2 AND m.id = $3 \
                     ON CONFLICT (vault_id, member_id) DO NOTHING",
                )
                .bind(workspace.as_str())
                .bind(vault.as_str())
                .bind(member.as_str())
                .bind($crate::rows::ms(at))
                .execute(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await
            }

            async fn unbind_vault_operator(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                member: &authsome_domain::id::MemberId,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "DELETE FROM vault_operators WHERE workspace_id = $1 AND vault_id = $2 \
                     AND member_id = $3",
                )
                .bind(workspace.as_str())
                .bind(vault.as_str())
                .bind(member.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn vault_operators(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
            ) -> $crate::Result<Vec<(authsome_domain::id::MemberId, chrono::DateTime<chrono::Utc>)>>
            {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT member_id, created_at FROM vault_operators \
                     WHERE workspace_id = $1 AND vault_id = $2 ORDER BY member_id LIMIT 1000",
                )
                .bind(workspace.as_str())
                .bind(vault.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(member, at)| {
                        Ok((
                            authsome_domain::id::MemberId::parse(&member)
                                .map_err(|_| $crate::StorageError::Corrupt("vault_operators.member_id"))?,
                            $crate::rows::time(at, "vault_operators.created_at")?,
                        ))
                    })
                    .collect()
            }

            async fn is_vault_operator(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                account: &authsome_domain::id::AccountId,
            ) -> $crate::Result<bool> {
                let (found,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM vault_operators o JOIN members m ON m.id = o.member_id \
                     WHERE o.workspace_id = $1 AND o.vault_id = $2 AND m.workspace_id = $1 \
                     AND m.account_id = $3",
                )
                .bind(workspace.as_str())
                .bind(vault.as_str())
                .bind(account.as_str())
                .fetch_one(&self.pool)
                .await?;
                Ok(found > 0)
            }

            async fn put_provider(
                &self,
                c: &authsome_domain::provider::ProviderConfig,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<u32> {
                let config = serde_json::to_string(&c.config).unwrap_or_else(|_| "{}".into());
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let (revision,): (i64,) = sqlx::query_as(
                    "INSERT INTO provider_configs (workspace_id, provider, mode, config, \
                     ciphertext, revision, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $6) \
                     ON CONFLICT (workspace_id, provider) DO UPDATE SET mode = $3, config = $4, \
                     ciphertext = $5, revision = provider_configs.revision + 1, updated_at = $6 \
                     RETURNING revision",
                )
                .bind(c.workspace_id.as_str())
                .bind(c.provider.as_str())
                .bind(c.mode.as_str())
                .bind(&config)
                .bind(c.ciphertext.as_deref())
                .bind($crate::rows::ms(c.updated_at))
                .fetch_one(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await?;
                u32::try_from(revision)
                    .map_err(|_| $crate::StorageError::Corrupt("provider_configs.revision"))
            }

            async fn provider(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                provider: authsome_domain::provider::Provider,
            ) -> $crate::Result<Option<authsome_domain::provider::ProviderConfig>> {
                let sql = format!(
                    "SELECT {} FROM provider_configs WHERE workspace_id = $1 AND provider = $2",
                    $crate::vault::PROVIDER_COLUMNS
                );
                sqlx::query_as::<_, $crate::vault::ProviderRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(provider.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::vault::ProviderRow::into_domain)
                    .transpose()
            }

            async fn providers(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<Vec<authsome_domain::provider::ProviderConfig>> {
                let sql = format!(
                    "SELECT {} FROM provider_configs WHERE workspace_id = $1 ORDER BY provider",
                    $crate::vault::PROVIDER_COLUMNS
                );
                sqlx::query_as::<_, $crate::vault::ProviderRow>(&sql)
                    .bind(workspace.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::vault::ProviderRow::into_domain)
                    .collect()
            }

            async fn delete_provider(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                provider: authsome_domain::provider::Provider,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "DELETE FROM provider_configs WHERE workspace_id = $1 AND provider = $2",
                )
                .bind(workspace.as_str())
                .bind(provider.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn trusted_by_issuer(
                &self,
                issuer: &str,
                limit: u32,
            ) -> $crate::Result<Vec<authsome_domain::vault::TrustedIssuer>> {
                let sql = format!(
                    "SELECT {} FROM trusted_issuers WHERE issuer = $1 ORDER BY id LIMIT $2",
                    $crate::vault::TRUSTED_ISSUER_COLUMNS
                );
                sqlx::query_as::<_, $crate::vault::TrustedIssuerRow>(&sql)
                    .bind(issuer)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::vault::TrustedIssuerRow::into_domain)
                    .collect()
            }

            async fn bound_vault(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                principal: &authsome_domain::id::PrincipalId,
                vault: &authsome_domain::id::VaultId,
            ) -> $crate::Result<
                Option<(
                    authsome_domain::vault::Vault,
                    Vec<authsome_domain::vault::VaultPermission>,
                )>,
            > {
                let row = sqlx::query_as::<_, $crate::vault::BoundVaultRow>(
                    "SELECT v.id, v.workspace_id, v.name, v.description, v.max_versions, \
                     v.created_at, v.updated_at, b.permissions \
                     FROM principal_bindings b JOIN vaults v ON v.id = b.vault_id \
                     AND v.workspace_id = b.workspace_id \
                     WHERE b.workspace_id = $1 AND b.principal_id = $2 AND b.vault_id = $3",
                )
                .bind(workspace.as_str())
                .bind(principal.as_str())
                .bind(vault.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| {
                    Ok((
                        r.vault.into_domain()?,
                        $crate::rows::json(&r.permissions, "principal_bindings.permissions")?,
                    ))
                })
                .transpose()
            }

            async fn secret_with_envelope(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                name: &str,
                version: Option<u32>,
            ) -> $crate::Result<
                Option<(
                    authsome_domain::vault::Secret,
                    Option<(
                        authsome_domain::vault::StoredKek,
                        $crate::vault::StoredEnvelope,
                    )>,
                )>,
            > {
                let row = sqlx::query_as::<_, $crate::vault::SecretEnvelopeRow>(
                    "SELECT s.id, s.workspace_id, s.vault_id, s.name, s.description, s.tags, \
                     s.expires_at, s.latest_version, s.created_at, s.updated_at, s.deleted_at, \
                     v.kek_version, v.envelope, v.envelope_ref, k.sealed AS kek_sealed, \
                     k.kms_key_id AS kek_kms_key_id, k.created_at AS kek_created_at \
                     FROM vault_secrets s LEFT JOIN vault_secret_versions v \
                     ON v.workspace_id = s.workspace_id AND v.secret_id = s.id \
                     AND v.version = COALESCE($4, s.latest_version) AND v.destroyed_at IS NULL \
                     LEFT JOIN vault_keks k \
                     ON k.workspace_id = v.workspace_id AND k.version = v.kek_version \
                     WHERE s.workspace_id = $1 AND s.vault_id = $2 AND s.name = $3",
                )
                .bind(workspace.as_str())
                .bind(vault.as_str())
                .bind(name)
                .bind(version.map(i64::from))
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let envelope = match (row.kek_version, row.kek_created_at) {
                    (Some(kek), Some(created_at)) => $crate::vault::StoredEnvelope::from_columns(
                        row.envelope,
                        row.envelope_ref,
                    )
                    .map(|e| {
                        Ok::<_, $crate::StorageError>((
                            authsome_domain::vault::StoredKek {
                                version: u32::try_from(kek)
                                    .map_err(|_| $crate::StorageError::Corrupt("kek_version"))?,
                                sealed: row.kek_sealed,
                                kms_key_id: row.kek_kms_key_id,
                                created_at: $crate::rows::time(created_at, "vault_keks.created_at")?,
                            },
                            e,
                        ))
                    })
                    .transpose()?,
                    // A version whose KEK row is missing is corrupt data.
                    (Some(_), None) => return Err($crate::StorageError::Corrupt("vault_keks")),
                    (None, _) => None,
                };
                Ok(Some((row.secret.into_domain()?, envelope)))
            }

            async fn keyring_progress(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<$crate::vault::KeyringProgress> {
                let (version, total, rewrapped, requested, rekeyed, destroyed): (
                    Option<i64>,
                    i64,
                    i64,
                    Option<i64>,
                    i64,
                    Option<i64>,
                ) = sqlx::query_as(
                    "SELECT (SELECT MAX(version) FROM vault_keks WHERE workspace_id = $1), \
                     (SELECT COUNT(*) FROM vault_secret_versions \
                      WHERE workspace_id = $1 AND destroyed_at IS NULL), \
                     (SELECT COUNT(*) FROM vault_secret_versions v WHERE v.workspace_id = $1 \
                      AND v.destroyed_at IS NULL AND v.kek_version = \
                      (SELECT MAX(version) FROM vault_keks WHERE workspace_id = $1)), \
                     (SELECT rekey_requested_at FROM vault_keyrings WHERE workspace_id = $1), \
                     (SELECT COUNT(*) FROM vault_secret_versions v WHERE v.workspace_id = $1 \
                      AND v.destroyed_at IS NULL AND v.sealed_at >= COALESCE( \
                      (SELECT rekey_requested_at FROM vault_keyrings WHERE workspace_id = $1), 0)), \
                     (SELECT destroyed_at FROM vault_keyrings WHERE workspace_id = $1)",
                )
                .bind(workspace.as_str())
                .fetch_one(&self.pool)
                .await?;
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok($crate::vault::KeyringProgress {
                    version: version.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
                    total: count(total),
                    rewrapped: count(rewrapped),
                    rekey_requested_at: requested
                        .map(|t| $crate::rows::time(t, "vault_keyrings.rekey_requested_at"))
                        .transpose()?,
                    rekeyed: count(rekeyed),
                    destroyed_at: destroyed
                        .map(|t| $crate::rows::time(t, "vault_keyrings.destroyed_at"))
                        .transpose()?,
                })
            }

            async fn pending_key_work(
                &self,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::vault::PendingEnvelope>> {
                // Per workspace: its newest live KEK, and the time of its latest rekey request.
                Ok(sqlx::query_as::<_, $crate::vault::PendingEnvelope>(
                    "WITH rings AS (SELECT k.workspace_id, MAX(k.version) AS current_kek, \
                       (SELECT r.rekey_requested_at FROM vault_keyrings r \
                        WHERE r.workspace_id = k.workspace_id) AS rekey_requested_at \
                       FROM vault_keks k WHERE k.sealed IS NOT NULL GROUP BY k.workspace_id) \
                     SELECT v.workspace_id, s.vault_id, v.secret_id, s.name, v.version, \
                       v.kek_version, v.envelope, v.envelope_ref, v.sealed_at, r.current_kek, \
                       r.rekey_requested_at \
                     FROM rings r \
                     JOIN vault_secret_versions v ON v.workspace_id = r.workspace_id \
                     JOIN vault_secrets s ON s.id = v.secret_id \
                     WHERE v.destroyed_at IS NULL \
                       AND (v.kek_version < r.current_kek \
                            OR v.sealed_at < COALESCE(r.rekey_requested_at, 0)) \
                       AND EXISTS (SELECT 1 FROM vault_keks o WHERE o.workspace_id = v.workspace_id \
                            AND o.version = v.kek_version AND o.sealed IS NOT NULL) \
                     LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn replace_envelope(
                &self,
                pending: &$crate::vault::PendingEnvelope,
                kek_version: u32,
                envelope: &$crate::vault::StoredEnvelope,
                sealed_at: Option<chrono::DateTime<chrono::Utc>>,
            ) -> $crate::Result<bool> {
                let (inline, reference) = envelope.columns();
                let done = sqlx::query(
                    "UPDATE vault_secret_versions SET kek_version = $1, envelope = $2, \
                     sealed_at = COALESCE($3, sealed_at), envelope_ref = $9 \
                     WHERE workspace_id = $4 AND secret_id = $5 AND version = $6 \
                     AND kek_version = $7 AND sealed_at = $8 AND destroyed_at IS NULL",
                )
                .bind(i64::from(kek_version))
                .bind(inline)
                .bind($crate::rows::opt_ms(sealed_at))
                .bind(&pending.workspace_id)
                .bind(&pending.secret_id)
                .bind(pending.version)
                .bind(pending.kek_version)
                .bind(pending.sealed_at)
                .bind(reference)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_vault(
                &self,
                vault: &authsome_domain::vault::Vault,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query(
                    "INSERT INTO vaults (id, workspace_id, name, description, max_versions, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(vault.id.as_str())
                .bind(vault.workspace_id.as_str())
                .bind(&vault.name)
                .bind(vault.description.as_deref())
                .bind(i64::from(vault.max_versions))
                .bind($crate::rows::ms(vault.created_at))
                .bind($crate::rows::ms(vault.updated_at))
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::unique)?;
                commit_with_outbox(tx, outbox).await
            }

            async fn vaults(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                page: &authsome_domain::page::PageRequest,
            ) -> $crate::Result<authsome_domain::page::Page<authsome_domain::vault::Vault>> {
                $crate::vault::scoped_page!(
                    self,
                    $crate::vault::VaultRow,
                    $crate::vault::VAULT_COLUMNS,
                    "vaults",
                    workspace,
                    page
                )
            }

            async fn vault(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::VaultId,
            ) -> $crate::Result<Option<authsome_domain::vault::Vault>> {
                $crate::vault::scoped_row!(
                    self,
                    $crate::vault::VaultRow,
                    $crate::vault::VAULT_COLUMNS,
                    "vaults",
                    workspace,
                    id
                )
            }

            async fn vault_workspace(
                &self,
                id: &authsome_domain::id::VaultId,
            ) -> $crate::Result<Option<authsome_domain::id::WorkspaceId>> {
                let ws: Option<String> =
                    sqlx::query_scalar("SELECT workspace_id FROM vaults WHERE id = $1")
                        .bind(id.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                ws.map(|w| {
                    authsome_domain::id::WorkspaceId::parse(&w)
                        .map_err(|_| $crate::StorageError::Corrupt("vaults.workspace_id"))
                })
                .transpose()
            }

            async fn update_vault(
                &self,
                vault: &authsome_domain::vault::Vault,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE vaults SET name = $1, description = $2, max_versions = $3, \
                     updated_at = $4 WHERE workspace_id = $5 AND id = $6",
                )
                .bind(&vault.name)
                .bind(vault.description.as_deref())
                .bind(i64::from(vault.max_versions))
                .bind($crate::rows::ms(vault.updated_at))
                .bind(vault.workspace_id.as_str())
                .bind(vault.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::unique)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn delete_vault(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::VaultId,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "DELETE FROM vaults WHERE workspace_id = $1 AND id = $2 \
                     AND NOT EXISTS (SELECT 1 FROM vault_secrets WHERE vault_id = $2)",
                )
                .bind(workspace.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    return commit_with_outbox(tx, outbox).await;
                }
                drop(tx);
                drop(w);
                match self.vault(workspace, id).await? {
                    Some(_) => Err($crate::StorageError::State("the vault still holds secrets")),
                    None => Err($crate::StorageError::NotFound),
                }
            }

            async fn secrets(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                page: &authsome_domain::page::PageRequest,
            ) -> $crate::Result<authsome_domain::page::Page<authsome_domain::vault::Secret>> {
                let sql = format!(
                    "SELECT {} FROM vault_secrets WHERE workspace_id = $1 AND vault_id = $2 \
                     AND name > $3 ORDER BY name LIMIT $4",
                    $crate::vault::SECRET_COLUMNS
                );
                let rows = sqlx::query_as::<_, $crate::vault::SecretRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(vault.as_str())
                    .bind(page.after.as_deref().unwrap_or(""))
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::vault::SecretRow::into_domain)
                    .collect::<$crate::Result<Vec<_>>>()?;
                Ok(authsome_domain::page::Page::from_rows(rows, page.limit, |s| s.name.as_str()))
            }

            async fn secret(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                name: &str,
            ) -> $crate::Result<Option<authsome_domain::vault::Secret>> {
                let sql = format!(
                    "SELECT {} FROM vault_secrets WHERE workspace_id = $1 AND vault_id = $2 \
                     AND name = $3",
                    $crate::vault::SECRET_COLUMNS
                );
                let Some(row) = sqlx::query_as::<_, $crate::vault::SecretRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(vault.as_str())
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let mut secret = row.into_domain()?;
                let versions: Vec<(i64, i64, Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT version, created_at, created_by, destroyed_at \
                     FROM vault_secret_versions WHERE workspace_id = $1 AND secret_id = $2 \
                     ORDER BY version",
                )
                .bind(workspace.as_str())
                .bind(secret.id.as_str())
                .fetch_all(&self.pool)
                .await?;
                secret.versions = versions
                    .into_iter()
                    .map(|(version, created_at, created_by, destroyed_at)| {
                        Ok(authsome_domain::vault::SecretVersion {
                            version: u32::try_from(version).map_err(|_| {
                                $crate::StorageError::Corrupt("vault_secret_versions.version")
                            })?,
                            created_at: $crate::rows::time(
                                created_at,
                                "vault_secret_versions.created_at",
                            )?,
                            created_by,
                            destroyed_at: destroyed_at
                                .map(|t| $crate::rows::time(t, "vault_secret_versions.destroyed_at"))
                                .transpose()?,
                        })
                    })
                    .collect::<$crate::Result<Vec<_>>>()?;
                Ok(Some(secret))
            }

            async fn put_secret_version(
                &self,
                write: &$crate::vault::SecretWrite<'_>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<Vec<String>> {
                let s = write.secret;
                let stale = $crate::StorageError::State("stale");
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let tags = serde_json::to_string(&s.tags).unwrap_or_else(|_| "[]".into());
                if s.version == 1 {
                    sqlx::query(
                        "INSERT INTO vault_secrets (id, workspace_id, vault_id, name, \
                         description, tags, expires_at, latest_version, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9)",
                    )
                    .bind(s.id.as_str())
                    .bind(s.workspace_id.as_str())
                    .bind(s.vault_id.as_str())
                    .bind(&s.name)
                    .bind(s.description.as_deref())
                    .bind(&tags)
                    .bind($crate::rows::opt_ms(s.expires_at))
                    .bind($crate::rows::ms(s.created_at))
                    .bind($crate::rows::ms(s.updated_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match $crate::rows::unique(e) {
                        $crate::StorageError::Duplicate => $crate::StorageError::State("stale"),
                        other => other,
                    })?;
                } else {
                    let done = sqlx::query(
                        "UPDATE vault_secrets SET latest_version = $1, description = $2, \
                         tags = $3, expires_at = $4, updated_at = $5 \
                         WHERE workspace_id = $6 AND id = $7 AND latest_version = $8 \
                         AND deleted_at IS NULL",
                    )
                    .bind(i64::from(s.version))
                    .bind(s.description.as_deref())
                    .bind(&tags)
                    .bind($crate::rows::opt_ms(s.expires_at))
                    .bind($crate::rows::ms(s.updated_at))
                    .bind(s.workspace_id.as_str())
                    .bind(s.id.as_str())
                    .bind(i64::from(s.version - 1))
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(stale);
                    }
                }
                sqlx::query(
                    "INSERT INTO vault_secret_versions (secret_id, workspace_id, version, \
                     kek_version, envelope, created_by, created_at, sealed_at, envelope_ref) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
                )
                .bind(s.id.as_str())
                .bind(s.workspace_id.as_str())
                .bind(i64::from(s.version))
                .bind(i64::from(write.kek_version))
                .bind(write.envelope.columns().0)
                .bind(write.created_by)
                .bind($crate::rows::ms(s.updated_at))
                .bind(write.envelope.columns().1)
                .execute(&mut *tx)
                .await?;
                let pruned: Vec<Option<String>> = sqlx::query_scalar(
                    "DELETE FROM vault_secret_versions WHERE workspace_id = $1 \
                     AND secret_id = $2 AND version <= $3 RETURNING envelope_ref",
                )
                .bind(s.workspace_id.as_str())
                .bind(s.id.as_str())
                .bind(i64::from(s.version) - i64::from(write.max_versions))
                .fetch_all(&mut *tx)
                .await?;
                commit_with_outbox(tx, outbox).await?;
                Ok(pruned.into_iter().flatten().collect())
            }

            async fn secret_envelope(
                &self,
                secret: &authsome_domain::vault::Secret,
                version: u32,
            ) -> $crate::Result<Option<(u32, $crate::vault::StoredEnvelope)>> {
                let row: Option<(i64, Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
                    "SELECT kek_version, envelope, envelope_ref FROM vault_secret_versions \
                     WHERE workspace_id = $1 AND secret_id = $2 AND version = $3 \
                     AND destroyed_at IS NULL",
                )
                .bind(secret.workspace_id.as_str())
                .bind(secret.id.as_str())
                .bind(i64::from(version))
                .fetch_optional(&self.pool)
                .await?;
                let Some((kek, inline, reference)) = row else {
                    return Ok(None);
                };
                let kek = u32::try_from(kek)
                    .map_err(|_| $crate::StorageError::Corrupt("kek_version"))?;
                Ok($crate::vault::StoredEnvelope::from_columns(inline, reference)
                    .map(|envelope| (kek, envelope)))
            }

            async fn set_secret_deleted(
                &self,
                secret: &authsome_domain::vault::Secret,
                deleted_at: Option<chrono::DateTime<chrono::Utc>>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE vault_secrets SET deleted_at = $1 WHERE workspace_id = $2 AND id = $3 \
                     AND (deleted_at IS NULL) = ($1 IS NOT NULL)",
                )
                .bind($crate::rows::opt_ms(deleted_at))
                .bind(secret.workspace_id.as_str())
                .bind(secret.id.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::State(if deleted_at.is_some() {
                        "the secret is already deleted"
                    } else {
                        "the secret is not deleted"
                    }));
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn destroy_secret_version(
                &self,
                secret: &authsome_domain::vault::Secret,
                version: u32,
                at: chrono::DateTime<chrono::Utc>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<Option<String>> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let reference: Option<Option<String>> = sqlx::query_scalar(
                    "UPDATE vault_secret_versions SET destroyed_at = $1 \
                     WHERE workspace_id = $2 AND secret_id = $3 AND version = $4 \
                     AND destroyed_at IS NULL RETURNING envelope_ref",
                )
                .bind($crate::rows::ms(at))
                .bind(secret.workspace_id.as_str())
                .bind(secret.id.as_str())
                .bind(i64::from(version))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(reference) = reference else {
                    return Err($crate::StorageError::State("the version is already destroyed"));
                };
                let done = sqlx::query(
                    "UPDATE vault_secret_versions SET envelope = NULL, envelope_ref = NULL \
                     WHERE workspace_id = $2 AND secret_id = $3 AND version = $4 \
                     AND destroyed_at = $1",
                )
                .bind($crate::rows::ms(at))
                .bind(secret.workspace_id.as_str())
                .bind(secret.id.as_str())
                .bind(i64::from(version))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StorageError::State("the version is already destroyed"));
                }
                commit_with_outbox(tx, outbox).await?;
                Ok(reference)
            }
        }
    };
}

pub(crate) use {impl_vault, scoped_page, scoped_row};
