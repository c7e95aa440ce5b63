//! Control-plane storage: narrow repository traits, and their SQLite and Postgres
//! implementations generated from one set of SQL (see `sql.rs`).
//!
//! **Architecture invariant:** every query on a tenant-owned row (members, applications, keys,
//! invitations) carries a `workspace_id` predicate, either given by the caller after an access
//! check or derived, in the same statement, from the caller's own membership
//! ([`WorkspaceRepository::workspace_access`], [`ApplicationRepository::application_access`]).
//! There is no method that returns another tenant's row to a tenant-scoped caller. The only
//! unscoped lookups are the ones a credential itself decides ([`KeyRepository::key_by_hash`],
//! sessions by token hash) and the platform-operator reads, which say so in their names.
//!
//! This crate knows nothing of HTTP or of permissions: it stores what the control layer decided.

pub mod alerts;
pub mod app;
pub mod audit;
pub mod billing;
mod held;
pub mod outbox;
mod pool;
mod postgres;
pub mod rotation;
mod rows;
mod script;
mod sql;
mod sqlite;
pub mod vault;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use authsome_domain::id::{AccountId, ApplicationId, InvitationId, KeyId, MemberId, WorkspaceId};
use authsome_domain::keys::KeyHash;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{Account, Actor, ApiKey, Application, Member, Role, Workspace};
use chrono::{DateTime, Utc};

pub use alerts::AlertRepository;
pub use audit::{
    AuditFilter, AuditHead, AuditRepository, AuditRow, AuditSigningKey, StoredCheckpoint,
};
pub use billing::{BillingRepository, StorageSample, StripeCustomer};
pub use postgres::PostgresStore;
pub use rotation::{JobRepository, RotationHistory, RotationRepository};
pub use sqlite::SqliteStore;
pub use vault::{KeyringProgress, PendingEnvelope, SecretWrite, StoredEnvelope, VaultRepository};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A unique constraint was violated (slug, email, membership, …).
    #[error("a record with the same unique value already exists")]
    Duplicate,
    /// The row to change does not exist (or not in this workspace).
    #[error("record not found")]
    NotFound,
    /// The change would leave a workspace without an active owner.
    #[error("a workspace must keep at least one owner")]
    LastOwner,
    /// The row is not in a state that allows the change (already rolled, revoked, accepted…).
    #[error("the record is not in a state that allows this change: {0}")]
    State(&'static str),
    /// A stored value that does not parse: a bug or tampering, never user input.
    #[error("corrupt stored value in {0}")]
    Corrupt(&'static str),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Creating or removing an application's database failed.
    #[error("provisioning failed: {0}")]
    Provisioning(String),
}

impl StorageError {
    /// The database could not be reached or dropped the connection (a restart, a failover, a
    /// full pool): nothing was decided, and the same request may succeed when retried.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // Postgres: class 08 connection exceptions; 57P01-57P03 shutting down or
                // not yet accepting connections. SQLite: still busy or locked after the busy
                // timeout (5, 6 and their extended codes).
                sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("08")
                        || matches!(
                            code.as_ref(),
                            "57P01" | "57P02" | "57P03" | "5" | "6" | "261" | "517" | "773"
                        )
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Database-wide operations: health, migrations, settings the deployment keeps about itself.
#[async_trait]
pub trait SystemRepository {
    fn backend(&self) -> Backend;
    async fn ping(&self) -> Result<()>;
    /// Applies pending migrations; safe when several processes start at once.
    async fn migrate(&self) -> Result<()>;
    /// Whether every embedded migration has been applied.
    async fn is_migrated(&self) -> Result<bool>;
    async fn setting(&self, name: &str) -> Result<Option<String>>;
    /// Stores a setting unless one with that name exists; returns whether it was stored.
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool>;
    /// Creates the root workspace, its owner and a management key, once.
    async fn bootstrap(&self, root: &RootBootstrap) -> Result<BootstrapOutcome>;
    /// The root (platform operators') workspace, if `init` has run.
    async fn root_workspace_id(&self) -> Result<Option<WorkspaceId>>;
}

/// Everything `authsome init` writes, in one transaction.
pub struct RootBootstrap {
    pub account: Account,
    pub password_hash: String,
    pub workspace: Workspace,
    pub member: Member,
    pub key: ApiKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapOutcome {
    Created,
    AlreadyDone {
        workspace_id: WorkspaceId,
        owner_email: Option<String>,
    },
}

/// Team-member accounts and their dashboard sessions.
#[async_trait]
pub trait AccountRepository {
    /// `Duplicate` when the email is taken.
    async fn create_account(&self, account: &Account, password_hash: Option<&str>) -> Result<()>;
    /// The account with this (lowercased) email and its password hash, if it has one.
    async fn account_by_email(&self, email: &str) -> Result<Option<(Account, Option<String>)>>;
    async fn create_session(
        &self,
        token_hash: &KeyHash,
        account: &AccountId,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// The account behind an unexpired session token.
    async fn session_account(
        &self,
        token_hash: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>>;
    async fn delete_session(&self, token_hash: &KeyHash) -> Result<()>;
    async fn purge_sessions(&self, now: DateTime<Utc>) -> Result<u64>;
    /// The account's memberships, every workspace.
    async fn memberships(&self, account: &AccountId) -> Result<Vec<Member>>;
}

#[async_trait]
pub trait WorkspaceRepository {
    /// Creates a workspace with its first owner (an existing account) in one transaction.
    async fn create_workspace(
        &self,
        workspace: &Workspace,
        owner: &Member,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// The workspace and the caller's role in it, or `None` when the caller is not an active
    /// member (or its management key belongs elsewhere).
    async fn workspace_access(
        &self,
        actor: &Actor,
        workspace: &WorkspaceId,
    ) -> Result<Option<(Workspace, Role)>>;
    /// The workspaces the caller belongs to, with its role in each.
    async fn workspaces_of(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<(Workspace, Role)>>;
    /// Platform operators only: any workspace.
    async fn any_workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>>;
    /// Platform operators only: all workspaces.
    async fn all_workspaces(&self, page: &PageRequest) -> Result<Page<Workspace>>;
    async fn update_workspace(
        &self,
        workspace: &Workspace,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// Deletes a workspace that has no applications left (deleted ones included); `State` otherwise.
    async fn delete_workspace(
        &self,
        id: &WorkspaceId,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
}

/// An invitation found by its token, with what accepting it needs to know.
#[derive(Debug, Clone)]
pub struct PendingInvitation {
    pub id: InvitationId,
    pub workspace_id: WorkspaceId,
    pub member_id: MemberId,
    pub account: Account,
    pub password_hash: Option<String>,
}

#[async_trait]
pub trait MemberRepository {
    async fn members(&self, workspace: &WorkspaceId, page: &PageRequest) -> Result<Page<Member>>;
    async fn member(&self, workspace: &WorkspaceId, id: &MemberId) -> Result<Option<Member>>;
    /// Adds an invited member for `email` (creating its account if new) with a one-time
    /// invitation. `Duplicate` when that person is already a member.
    async fn invite_member(
        &self,
        member: &Member,
        invitation_id: &InvitationId,
        token_hash: &KeyHash,
        expires_at: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Member>;
    /// Changes a role; `LastOwner` if that would leave no active owner. In the same
    /// transaction, the member's management keys in the workspace that could do more than the
    /// new role are given it; their hashes come back (for the key caches).
    async fn update_member_role(
        &self,
        workspace: &WorkspaceId,
        id: &MemberId,
        role: Role,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<(Member, Vec<KeyHash>)>;
    /// Removes a member; `LastOwner` if that would leave no active owner. In the same
    /// transaction, the member's live management keys in the workspace are revoked; their
    /// hashes come back.
    async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        id: &MemberId,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Vec<KeyHash>>;
    /// Makes `account` the member a management key belongs to. `NotFound` when there is no
    /// such live management key in the workspace.
    async fn reassign_management_key(
        &self,
        workspace: &WorkspaceId,
        id: &KeyId,
        account: &AccountId,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn pending_invitation(
        &self,
        token_hash: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingInvitation>>;
    /// Gives an invitation not yet accepted a new token and expiry (the old token stops
    /// working), whatever its workspace: for platform operators relaying it. The invited member,
    /// or `None` when there is no such pending invitation.
    async fn reissue_invitation(
        &self,
        id: &InvitationId,
        token_hash: &KeyHash,
        expires_at: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Option<Member>>;
    /// Consumes the invitation (once), activates the membership, and sets the password and name
    /// when given. `State` when it was consumed concurrently.
    async fn accept_invitation(
        &self,
        invitation: &PendingInvitation,
        password_hash: Option<&str>,
        name: Option<&str>,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Member>;
}

#[async_trait]
pub trait ApplicationRepository {
    async fn create_application(
        &self,
        app: &Application,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// [`Self::create_application`] unless the workspace has `max_live` applications that are
    /// not deleted already (`State("application limit")`); decided under a lock on the
    /// workspace, so concurrent creations cannot both pass the limit.
    async fn create_application_within(
        &self,
        app: &Application,
        max_live: u64,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// The application with its workspace and the caller's role there, or `None` when the caller
    /// has no access to its workspace. Deleted applications are included.
    async fn application_access(
        &self,
        actor: &Actor,
        id: &ApplicationId,
    ) -> Result<Option<(Application, Workspace, Role)>>;
    async fn application(
        &self,
        workspace: &WorkspaceId,
        id: &ApplicationId,
    ) -> Result<Option<Application>>;
    async fn applications(
        &self,
        workspace: &WorkspaceId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<Application>>;
    /// Writes every mutable field of an existing application of `app.workspace_id`.
    async fn update_application(
        &self,
        app: &Application,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// Any application by id, whatever its workspace. For the public customer-API routes (JWKS,
    /// discovery, token checks), where the application id in the path is the whole claim.
    async fn any_application(&self, id: &ApplicationId) -> Result<Option<Application>>;
    /// Applications still waiting for their database (for the provisioning retry loop).
    async fn applications_to_provision(&self, limit: u32) -> Result<Vec<Application>>;
    /// The applications of `workspace` whose databases exist (provisioned, not yet purged;
    /// deleted ones included), for reading their audit outboxes.
    async fn application_ids_of(&self, workspace: &WorkspaceId) -> Result<Vec<ApplicationId>>;
    /// The upstreams of every dedicated application that is not deleted, whatever its
    /// workspace, each once: the instances gateways keep health-checking.
    async fn all_upstreams(&self) -> Result<Vec<String>>;
    /// Deleted applications whose undelete window has passed.
    async fn expired_applications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApplicationId>>;
    /// Removes a deleted application's record for good (its database must be gone already).
    async fn remove_application(
        &self,
        id: &ApplicationId,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
}

#[async_trait]
pub trait KeyRepository {
    async fn insert_key(&self, key: &ApiKey, outbox: &crate::outbox::Outbox) -> Result<()>;
    /// The key a credential hashes to, whatever its tenant: the credential decides.
    async fn key_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>>;
    /// The key a signed request names, whatever its tenant: the signature decides (checked
    /// by the caller against the sealed secret before anything is revealed).
    async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>>;
    /// Keys of an application, or the workspace's management keys when `application` is `None`.
    async fn keys(
        &self,
        workspace: &WorkspaceId,
        application: Option<&ApplicationId>,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>>;
    async fn key(
        &self,
        workspace: &WorkspaceId,
        application: Option<&ApplicationId>,
        id: &KeyId,
    ) -> Result<Option<ApiKey>>;
    /// Keys of `application` that still work at `now` (neither revoked nor expired).
    async fn live_key_count(&self, application: &ApplicationId, now: DateTime<Utc>) -> Result<u64>;
    /// Stores `replacement` and gives the old key `old_expires_at`, atomically; `State` when the
    /// old key was already rolled or revoked.
    async fn roll_key(
        &self,
        old: &ApiKey,
        old_expires_at: DateTime<Utc>,
        replacement: &ApiKey,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn revoke_key(
        &self,
        old: &ApiKey,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// Batched `lastUsedAt` updates (never moves a timestamp backwards).
    async fn record_key_use(&self, uses: &[(KeyId, DateTime<Utc>)]) -> Result<()>;
}

/// Request metering: counts per application, key and hour.
#[async_trait]
pub trait UsageRepository {
    /// Adds the batch `batch` of counts `(application, key, unix hour, requests)`, at `now`,
    /// unless a batch of that id was applied already; whether it was applied now.
    async fn add_request_counts(
        &self,
        batch: &str,
        counts: &[(ApplicationId, KeyId, i64, u64)],
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Requests of each of a workspace's applications in `[from_hour, to_hour)`.
    async fn workspace_requests_between(
        &self,
        workspace: &WorkspaceId,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<Vec<(ApplicationId, u64)>>;
    /// Forgets the ids of batches applied before `older_than` (a retry comes within minutes).
    async fn purge_usage_batches(&self, older_than: DateTime<Utc>) -> Result<u64>;
    /// Requests of an application from `from_hour` (inclusive) on.
    async fn requests_since(&self, application: &ApplicationId, from_hour: i64) -> Result<u64>;
    /// Requests of all of a workspace's applications from `from_hour` (inclusive) on.
    async fn workspace_requests_since(
        &self,
        workspace: &WorkspaceId,
        from_hour: i64,
    ) -> Result<u64>;
}

/// The first outcome of an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyBegin {
    /// First use: run the request, then `idempotency_finish`.
    Started,
    /// Same key, same request: replay this response.
    Replay { status: u16, body: String },
    /// Same key, different request body.
    Mismatch,
    /// Same key, the first request has not finished.
    InProgress,
}

#[async_trait]
pub trait IdempotencyRepository {
    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<IdempotencyBegin>;
    async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()>;
    /// Forgets a record whose request failed unexpectedly, so a retry runs again.
    async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()>;
    async fn purge_idempotency(&self, older_than: DateTime<Utc>) -> Result<u64>;
}

/// Every repository of the control plane, as one object the server holds.
pub trait Store:
    SystemRepository
    + AccountRepository
    + WorkspaceRepository
    + MemberRepository
    + ApplicationRepository
    + KeyRepository
    + IdempotencyRepository
    + UsageRepository
    + AuditRepository
    + VaultRepository
    + RotationRepository
    + JobRepository
    + AlertRepository
    + BillingRepository
    + Send
    + Sync
{
}

impl<T> Store for T where
    T: SystemRepository
        + AccountRepository
        + WorkspaceRepository
        + MemberRepository
        + ApplicationRepository
        + KeyRepository
        + IdempotencyRepository
        + UsageRepository
        + AuditRepository
        + VaultRepository
        + RotationRepository
        + JobRepository
        + AlertRepository
        + BillingRepository
        + Send
        + Sync
{
}

/// Opens the control-plane database: Postgres for a `postgres://` or `postgresql://` URL,
/// otherwise SQLite in `data_dir/authsome.db` (or the `sqlite:` URL given).
pub async fn connect(database_url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(url).await?))
        }
        Some(url) => Ok(Arc::new(SqliteStore::connect_url(url).await?)),
        None => Ok(Arc::new(
            SqliteStore::open(&data_dir.join("authsome.db")).await?,
        )),
    }
}
