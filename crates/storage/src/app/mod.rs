//! Application data plane storage: one database per application (a SQLite file under
//! `data_dir/apps/`, or a Postgres database `authsome_app_<id>` on the control plane's server),
//! each with its own identity schema, and the pool manager that keeps one process able to serve
//! thousands of them.
//!
//! **Architecture invariant:** the control-plane connection never reads these tables and an
//! application's pool never reaches another application's database. Every method of
//! [`IdentityRepository`] is scoped to one application by construction: the store *is* that
//! application's database.

mod sql;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use authsome_domain::id::{
    ApplicationId, InvitationId, OrgMembershipId, OrganizationId, SessionId, UserId,
};
use authsome_domain::identity::{
    OrgInvitation, OrgMembership, Organization, RefreshRecord, Session, SigningKeyRecord, User,
};
use authsome_domain::keys::KeyHash;
use authsome_domain::page::{Page, PageRequest};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::{Result, StorageError};

pub use sql::{PostgresAppStore, SqliteAppStore};

/// How to find users in a listing.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Exact (case-insensitive) email.
    pub email: Option<String>,
    /// Substring of email or name, case-insensitive.
    pub query: Option<String>,
}

/// What happened when a refresh token was presented for rotation.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// This call rotated it; the successor is stored.
    Rotated,
    /// It had already been rotated at this time (by a concurrent call, or it is being replayed).
    AlreadyRotated(DateTime<Utc>),
    /// No such live token.
    Unknown,
}

/// Users, sessions, refresh tokens and signing keys of one application.
#[async_trait]
pub trait IdentityRepository: Send + Sync {
    async fn ping(&self) -> Result<()>;
    /// `Duplicate` when the email (case-insensitively) is taken.
    async fn create_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn user(&self, id: &UserId) -> Result<Option<User>>;
    /// The user with this (lowercased) email and their password hash.
    async fn user_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>>;
    async fn users(&self, filter: &UserFilter, page: &PageRequest) -> Result<Page<User>>;
    /// Writes profile, metadata, disabled state; `Duplicate` on an email clash.
    async fn update_user(&self, user: &User, outbox: &crate::outbox::Outbox) -> Result<()>;
    async fn set_password(
        &self,
        id: &UserId,
        password_hash: &str,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn delete_user(&self, id: &UserId, outbox: &crate::outbox::Outbox) -> Result<()>;
    async fn record_sign_in(&self, id: &UserId, at: DateTime<Utc>) -> Result<()>;

    /// A new session with its first refresh token.
    async fn create_session(
        &self,
        session: &Session,
        refresh: &RefreshRecord,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn session(&self, id: &SessionId) -> Result<Option<Session>>;
    /// The session and its user in one round trip (the hot path of every token check).
    async fn session_with_user(&self, id: &SessionId) -> Result<Option<(Session, User)>>;
    async fn sessions_of(&self, user: &UserId, page: &PageRequest) -> Result<Page<Session>>;
    /// Revokes one session (idempotent); `NotFound` if it does not exist.
    async fn revoke_session(
        &self,
        id: &SessionId,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn revoke_user_sessions(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<u64>;

    /// A refresh token with its session and user, in one round trip.
    async fn refresh_with_session(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<(RefreshRecord, Session, User)>>;
    /// Atomically marks `old` rotated and stores `successor`, unless `old` was rotated already.
    /// `touch_session` also records the session as active now (callers skip it when it was
    /// recorded recently, to save a write).
    async fn rotate_refresh(
        &self,
        old: &KeyHash,
        successor: &RefreshRecord,
        now: DateTime<Utc>,
        touch_session: bool,
        outbox: &crate::outbox::Outbox,
    ) -> Result<Rotation>;
    /// Stores an extra live token for a session (a double-submit inside the grace window).
    async fn add_refresh(
        &self,
        record: &RefreshRecord,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;

    /// Sets (or clears) the organization a session acts in.
    async fn set_active_organization(
        &self,
        session: &SessionId,
        organization: Option<&OrganizationId>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    async fn insert_signing_key(
        &self,
        key: &SigningKeyRecord,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn retire_signing_key(
        &self,
        kid: &str,
        at: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;

    /// Records first authentications of the month (`(month, user, at)`); repeats are ignored.
    /// Outbox rows created before `before`, oldest first (see `crate::outbox`).
    async fn outbox(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::outbox::OutboxRow>>;
    /// Deletes outbox rows the audit log now holds.
    async fn delete_outbox(&self, ids: &[String]) -> Result<()>;
    async fn record_active_users(&self, entries: &[(String, UserId, DateTime<Utc>)]) -> Result<()>;
    /// Distinct users who authenticated in `month` (`YYYY-MM`).
    async fn active_users(&self, month: &str) -> Result<u64>;
    /// The ids of those users, in id order after `after`, at most `limit`.
    async fn active_user_ids(
        &self,
        month: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>>;
}

/// Organizations, memberships and invitations of one application; every membership and
/// invitation query is scoped by its organization.
#[async_trait]
pub trait OrganizationRepository: Send + Sync {
    /// `Duplicate` on a slug clash. `first_member` (the creator, usually) joins atomically.
    async fn create_organization(
        &self,
        org: &Organization,
        first_member: Option<&OrgMembership>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn organization(&self, id: &OrganizationId) -> Result<Option<Organization>>;
    async fn organizations(&self, page: &PageRequest) -> Result<Page<Organization>>;
    async fn update_organization(
        &self,
        org: &Organization,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn delete_organization(
        &self,
        id: &OrganizationId,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;

    /// `Duplicate` when the user is already a member.
    async fn add_membership(
        &self,
        membership: &OrgMembership,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    async fn membership(
        &self,
        org: &OrganizationId,
        id: &OrgMembershipId,
    ) -> Result<Option<OrgMembership>>;
    async fn membership_of(
        &self,
        org: &OrganizationId,
        user: &UserId,
    ) -> Result<Option<OrgMembership>>;
    async fn memberships(
        &self,
        org: &OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<OrgMembership>>;
    async fn user_memberships(&self, user: &UserId) -> Result<Vec<OrgMembership>>;
    async fn update_membership_role(
        &self,
        org: &OrganizationId,
        id: &OrgMembershipId,
        role: &str,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<OrgMembership>;
    async fn remove_membership(
        &self,
        org: &OrganizationId,
        id: &OrgMembershipId,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;

    async fn create_invitation(
        &self,
        invitation: &OrgInvitation,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
    /// A live (unaccepted, unexpired) invitation.
    async fn invitation_by_token(
        &self,
        token_hash: &KeyHash,
        now: DateTime<Utc>,
    ) -> Result<Option<OrgInvitation>>;
    /// Consumes the invitation once and adds the membership, atomically; `State` when it was
    /// consumed already, `Duplicate` when the user is a member already.
    async fn accept_org_invitation(
        &self,
        invitation: &InvitationId,
        membership: &OrgMembership,
        now: DateTime<Utc>,
        outbox: &crate::outbox::Outbox,
    ) -> Result<()>;
}

/// Everything one application's database holds.
pub trait AppRepository: IdentityRepository + OrganizationRepository {}
impl<T: IdentityRepository + OrganizationRepository> AppRepository for T {}

/// Where application databases live.
#[derive(Debug, Clone)]
pub enum AppDatabaseConfig {
    /// `dir/<appId>.db`.
    Sqlite { dir: PathBuf },
    /// One schema (owned by a role of its own) per application, all in one shared database
    /// `<control-plane database>_apps` on the same server: for thousands of applications, where a
    /// database each would cost too much.
    PostgresSchema { server_url: String },
    /// A database per application on the server of this (control-plane) URL.
    Postgres { server_url: String },
}

struct OpenStore {
    store: Arc<dyn AppRepository>,
    closer: Closer,
    last_used: Instant,
}

#[derive(Clone)]
enum Closer {
    Sqlite(Arc<SqliteAppStore>),
    Postgres(sqlx::PgPool),
}

impl Closer {
    async fn close(&self) {
        match self {
            Closer::Sqlite(store) => store.close().await,
            Closer::Postgres(p) => p.close().await,
        }
    }

    /// Brings the application's schema up to date.
    async fn migrate(&self) -> Result<()> {
        match self {
            Closer::Sqlite(store) => store.migrate().await,
            Closer::Postgres(pool) => Ok(sql::POSTGRES_APP_MIGRATOR.run(pool).await?),
        }
    }
}

/// Pools a server keeps open unless configured otherwise: the bound on memory that does not
/// grow with the number of applications.
pub const DEFAULT_OPEN_APPLICATIONS: usize = 512;

/// Opens application databases lazily and keeps at most `max_open` pools; idle pools close.
pub struct AppDatabases {
    config: AppDatabaseConfig,
    open: Mutex<HashMap<ApplicationId, OpenStore>>,
    max_open: usize,
    connections_per_app: u32,
}

/// Creates a database unless it exists (concurrent callers are fine).
async fn ensure_database(server_url: &str, name: &str) -> Result<()> {
    let mut admin = PgConnectOptions::from_str(server_url)?.connect().await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        // The name is derived from a validated id: lowercase base32 only.
        match admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
        {
            Ok(_) => {}
            // 42P04 duplicate_database, 23505 unique_violation: a concurrent caller won.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04") | Some("23505")) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let _ = admin.close().await;
    Ok(())
}

/// Connections an application's pool may hold; with `max_open` pools this bounds the total.
const CONNECTIONS_PER_APP: u32 = 4;

/// Connections all applications' pools together may hold on Postgres unless configured
/// otherwise: well under Postgres's default `max_connections` (100), which the control plane
/// and other replicas share.
pub const DEFAULT_POSTGRES_CONNECTION_BUDGET: u32 = 64;

impl AppDatabases {
    /// At most `max_open` pools at once (the least recently used closes when one more opens);
    /// on Postgres also no more than [`DEFAULT_POSTGRES_CONNECTION_BUDGET`] connections in all
    /// (see [`AppDatabases::with_connection_budget`]).
    pub fn new(config: AppDatabaseConfig, max_open: usize) -> Self {
        Self {
            config,
            open: Mutex::new(HashMap::new()),
            max_open: max_open.max(1),
            connections_per_app: CONNECTIONS_PER_APP,
        }
        .with_connection_budget(DEFAULT_POSTGRES_CONNECTION_BUDGET)
    }

    /// On Postgres, the applications' pools hold at most `budget` connections together: so
    /// many pools stay open as the budget allows at their size, however many applications
    /// serve. (A SQLite application holds one connection to its own file, bounded by
    /// `max_open` alone.)
    pub fn with_connection_budget(mut self, budget: u32) -> Self {
        if !matches!(self.config, AppDatabaseConfig::Sqlite { .. }) {
            let per_app = CONNECTIONS_PER_APP.min(budget.max(1));
            self.connections_per_app = per_app;
            let pools = usize::try_from(budget.max(1) / per_app).unwrap_or(1).max(1);
            self.max_open = self.max_open.min(pools);
        }
        self
    }

    /// The most pools open at once.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// The Postgres database name of an application.
    pub fn database_name(app: &ApplicationId) -> String {
        format!("authsome_app_{}", &app.as_str()[4..])
    }

    /// Schema mode: the application's schema.
    pub fn schema_name(app: &ApplicationId) -> String {
        format!("app_{}", &app.as_str()[4..])
    }

    /// Schema mode: the role that owns the application's schema.
    pub fn schema_role(app: &ApplicationId) -> String {
        format!("authsome_app_{}", &app.as_str()[4..])
    }

    /// Schema mode: the database all application schemas share, named after the control
    /// plane's (`<database>_apps`).
    pub fn shared_database(server_url: &str) -> Result<String> {
        let options = PgConnectOptions::from_str(server_url)?;
        let base = options.get_database().unwrap_or("authsome").to_owned();
        let valid = !base.is_empty()
            && base
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StorageError::Provisioning(format!(
                "schema isolation needs a control-plane database name of a-z, 0-9 and _, not `{base}`"
            )));
        }
        Ok(format!("{base}_apps"))
    }

    fn sqlite_path(dir: &std::path::Path, app: &ApplicationId) -> PathBuf {
        dir.join(format!("{app}.db"))
    }

    fn pg_options(server_url: &str, database: &str) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(server_url)?.database(database))
    }

    /// Creates (if needed) and migrates the application's database. Idempotent.
    pub async fn provision(&self, app: &ApplicationId) -> Result<()> {
        match &self.config {
            AppDatabaseConfig::Sqlite { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StorageError::Provisioning(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            AppDatabaseConfig::Postgres { server_url } => {
                ensure_database(server_url, &Self::database_name(app)).await?;
            }
            AppDatabaseConfig::PostgresSchema { server_url } => {
                let shared = Self::shared_database(server_url)?;
                ensure_database(server_url, &shared).await?;
                let mut admin = Self::pg_options(server_url, &shared)?.connect().await?;
                let role = Self::schema_role(app);
                let schema = Self::schema_name(app);
                // Names derive from a validated id: lowercase base32 only. The role owns its
                // schema and nothing else; PUBLIC keeps no rights on the shared database.
                let statements = [
                    format!(
                        "DO $$ BEGIN CREATE ROLE {role} NOLOGIN; \
                         EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                    ),
                    format!("GRANT {role} TO CURRENT_USER"),
                    format!("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}"),
                    format!("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"),
                    "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_owned(),
                    format!("REVOKE ALL ON DATABASE {shared} FROM PUBLIC"),
                    format!("GRANT CONNECT ON DATABASE {shared} TO {role}"),
                ];
                for statement in statements {
                    match admin.execute(statement.as_str()).await {
                        Ok(_) => {}
                        // 23505/42710: a concurrent provisioner created it first.
                        Err(sqlx::Error::Database(e))
                            if matches!(e.code().as_deref(), Some("23505") | Some("42710")) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let _ = admin.close().await;
            }
        }
        let store = self.open(app).await?;
        drop(store);
        self.migrate_open(app).await
    }

    async fn migrate_open(&self, app: &ApplicationId) -> Result<()> {
        let closer = {
            let open = self
                .open
                .lock()
                .map_err(|_| StorageError::Corrupt("pool map"))?;
            open.get(app).map(|o| o.closer.clone())
        };
        match closer {
            Some(closer) => closer.migrate().await,
            None => Err(StorageError::NotFound),
        }
    }

    /// The application's store, opening its pool if needed. The database must exist
    /// (see [`AppDatabases::provision`]).
    pub async fn open(&self, app: &ApplicationId) -> Result<Arc<dyn AppRepository>> {
        if let Ok(mut open) = self.open.lock() {
            if let Some(entry) = open.get_mut(app) {
                entry.last_used = Instant::now();
                return Ok(entry.store.clone());
            }
        }
        let (store, closer): (Arc<dyn AppRepository>, Closer) = match &self.config {
            AppDatabaseConfig::Sqlite { dir } => {
                let path = Self::sqlite_path(dir, app);
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    // 1 MiB of page cache per application (SQLite's default is 2 MiB): with
                    // hundreds of open applications the cache is most of the memory.
                    .pragma("cache_size", "-1024");
                // One connection per application database: SQLite has one writer at a time
                // anyway, and queuing for it is cheaper than SQLite's busy-wait sleeps. The
                // store keeps it checked out between queries (see `SqliteAppStore`).
                let pool = crate::pool::sqlite()
                    .max_connections(1)
                    .min_connections(0)
                    .idle_timeout(Duration::from_secs(60))
                    .connect_lazy_with(options);
                let store = Arc::new(SqliteAppStore::new(pool));
                (store.clone(), Closer::Sqlite(store))
            }
            AppDatabaseConfig::PostgresSchema { server_url } => {
                let options = Self::pg_options(server_url, &Self::shared_database(server_url)?)?;
                // Every connection acts as the application's role, inside its schema: the
                // database itself refuses any other application's tables.
                let setup = format!(
                    "SET ROLE {}; SET search_path TO {}",
                    Self::schema_role(app),
                    Self::schema_name(app)
                );
                let pool = crate::pool::postgres()
                    .max_connections(self.connections_per_app)
                    .min_connections(0)
                    .idle_timeout(Duration::from_secs(60))
                    .acquire_timeout(Duration::from_secs(5))
                    .after_connect(move |conn, _| {
                        let setup = setup.clone();
                        Box::pin(async move {
                            conn.execute(setup.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(options);
                (
                    Arc::new(PostgresAppStore::new(pool.clone())),
                    Closer::Postgres(pool),
                )
            }
            AppDatabaseConfig::Postgres { server_url } => {
                let options = Self::pg_options(server_url, &Self::database_name(app))?;
                let pool = crate::pool::postgres()
                    .max_connections(self.connections_per_app)
                    .min_connections(0)
                    .idle_timeout(Duration::from_secs(60))
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(options);
                (
                    Arc::new(PostgresAppStore::new(pool.clone())),
                    Closer::Postgres(pool),
                )
            }
        };
        enum Outcome {
            Raced(Arc<dyn AppRepository>),
            Inserted(Option<OpenStore>),
        }
        let outcome = {
            let mut open = self
                .open
                .lock()
                .map_err(|_| StorageError::Corrupt("pool map"))?;
            if let Some(existing) = open.get(app) {
                // Another task opened it meanwhile: use theirs.
                Outcome::Raced(existing.store.clone())
            } else {
                let evicted = if open.len() >= self.max_open {
                    open.iter()
                        .min_by_key(|(_, o)| o.last_used)
                        .map(|(id, _)| id.clone())
                        .and_then(|id| open.remove(&id))
                } else {
                    None
                };
                open.insert(
                    app.clone(),
                    OpenStore {
                        store: store.clone(),
                        closer: closer.clone(),
                        last_used: Instant::now(),
                    },
                );
                Outcome::Inserted(evicted)
            }
        };
        match outcome {
            Outcome::Raced(theirs) => {
                closer.close().await;
                Ok(theirs)
            }
            Outcome::Inserted(evicted) => {
                if let Some(evicted) = evicted {
                    evicted.closer.close().await;
                }
                // Once per process and application: a database created by an older version
                // gets the newer migrations before its first use.
                if let Err(e) = closer.migrate().await {
                    if let Ok(mut open) = self.open.lock() {
                        open.remove(app);
                    }
                    closer.close().await;
                    return Err(e);
                }
                Ok(store)
            }
        }
    }

    /// Closes the application's pool now, if open (it reopens on the next use).
    pub async fn release(&self, app: &ApplicationId) {
        let closer = self
            .open
            .lock()
            .ok()
            .and_then(|mut open| open.remove(app))
            .map(|o| o.closer);
        if let Some(closer) = closer {
            closer.close().await;
        }
    }

    /// Closes the pools not used for `idle`.
    pub async fn close_idle(&self, idle: Duration) {
        let closing: Vec<Closer> = match self.open.lock() {
            Ok(mut open) => {
                let stale: Vec<ApplicationId> = open
                    .iter()
                    .filter(|(_, o)| o.last_used.elapsed() > idle)
                    .map(|(id, _)| id.clone())
                    .collect();
                stale
                    .into_iter()
                    .filter_map(|id| open.remove(&id).map(|o| o.closer))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for closer in closing {
            closer.close().await;
        }
    }

    /// The application's store if its pool is open now (never opens or creates anything).
    pub fn if_open(&self, app: &ApplicationId) -> Option<Arc<dyn AppRepository>> {
        self.open
            .lock()
            .ok()
            .and_then(|open| open.get(app).map(|o| o.store.clone()))
    }

    /// The applications whose pools are open now.
    pub fn open_applications(&self) -> Vec<ApplicationId> {
        self.open
            .lock()
            .map(|open| open.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn open_pools(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// The size in bytes of each application's database, in the order given (0 for one that
    /// does not exist): the SQLite file with its write-ahead log, the Postgres database, or in
    /// schema mode the schema's tables with their indexes and TOAST. One connection for all.
    pub async fn sizes(&self, apps: &[ApplicationId]) -> Result<Vec<u64>> {
        match &self.config {
            AppDatabaseConfig::Sqlite { dir } => Ok(apps
                .iter()
                .map(|app| {
                    let path = Self::sqlite_path(dir, app);
                    ["", "-wal"]
                        .iter()
                        .filter_map(|suffix| {
                            std::fs::metadata(format!("{}{suffix}", path.display())).ok()
                        })
                        .map(|m| m.len())
                        .sum()
                })
                .collect()),
            AppDatabaseConfig::Postgres { server_url } => {
                let mut admin = PgConnectOptions::from_str(server_url)?.connect().await?;
                let mut out = Vec::with_capacity(apps.len());
                for app in apps {
                    let bytes: Option<i64> = sqlx::query_scalar(
                        "SELECT pg_database_size(datname) FROM pg_database WHERE datname = $1",
                    )
                    .bind(Self::database_name(app))
                    .fetch_optional(&mut admin)
                    .await?;
                    out.push(bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0));
                }
                let _ = admin.close().await;
                Ok(out)
            }
            AppDatabaseConfig::PostgresSchema { server_url } => {
                let shared = Self::shared_database(server_url)?;
                let mut admin = Self::pg_options(server_url, &shared)?.connect().await?;
                let mut out = Vec::with_capacity(apps.len());
                for app in apps {
                    let bytes: Option<i64> = sqlx::query_scalar(
                        "SELECT SUM(pg_total_relation_size(c.oid))::BIGINT FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                    )
                    .bind(Self::schema_name(app))
                    .fetch_one(&mut admin)
                    .await?;
                    out.push(bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0));
                }
                let _ = admin.close().await;
                Ok(out)
            }
        }
    }

    /// Closes the application's pool and removes its database for good.
    pub async fn destroy(&self, app: &ApplicationId) -> Result<()> {
        let closer = self
            .open
            .lock()
            .ok()
            .and_then(|mut open| open.remove(app))
            .map(|o| o.closer);
        if let Some(closer) = closer {
            closer.close().await;
        }
        match &self.config {
            AppDatabaseConfig::Sqlite { dir } => {
                let path = Self::sqlite_path(dir, app);
                for suffix in ["", "-wal", "-shm"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(StorageError::Provisioning(format!(
                                "cannot remove {}: {e}",
                                file.display()
                            )))
                        }
                    }
                }
            }
            AppDatabaseConfig::Postgres { server_url } => {
                let mut admin = PgConnectOptions::from_str(server_url)?.connect().await?;
                admin
                    .execute(
                        format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            Self::database_name(app)
                        )
                        .as_str(),
                    )
                    .await?;
                let _ = admin.close().await;
            }
            AppDatabaseConfig::PostgresSchema { server_url } => {
                let shared = Self::shared_database(server_url)?;
                let mut admin = Self::pg_options(server_url, &shared)?.connect().await?;
                let role = Self::schema_role(app);
                admin
                    .execute(
                        format!("DROP SCHEMA IF EXISTS {} CASCADE", Self::schema_name(app))
                            .as_str(),
                    )
                    .await?;
                admin
                    .execute(format!("DROP OWNED BY {role}").as_str())
                    .await
                    .ok();
                admin
                    .execute(format!("DROP ROLE IF EXISTS {role}").as_str())
                    .await?;
                let _ = admin.close().await;
            }
        }
        Ok(())
    }
}
