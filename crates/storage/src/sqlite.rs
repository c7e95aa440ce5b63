//! The embedded backend: one SQLite file in WAL mode, for a laptop or a single node.
//!
//! Reads take any connection of the pool; every write queues for the one connection the store
//! holds for writing (see `crate::held`), so the process's writers never meet at SQLite's lock.

use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::MappedMutexGuard;

use crate::held::{HeldConnection, HeldScript};

pub struct SqliteStore {
    pool: SqlitePool,
    writer: HeldConnection,
    root: OnceLock<authsome_domain::id::WorkspaceId>,
}

impl crate::sql::HasDb for SqliteStore {
    type Db = sqlx::Sqlite;
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> crate::Result<Self> {
        Self::with_options(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens a `sqlite:` URL (e.g. `sqlite:///var/lib/authsome/cp.db`).
    pub async fn connect_url(url: &str) -> crate::Result<Self> {
        Self::with_options(SqliteConnectOptions::from_str(url)?).await
    }

    async fn with_options(options: SqliteConnectOptions) -> crate::Result<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = crate::pool::sqlite()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self {
            writer: HeldConnection::new(pool.clone()),
            pool,
            root: OnceLock::new(),
        })
    }

    /// The connection every write runs on, for one statement or one transaction. A method
    /// must not call another writing method while it holds it.
    async fn writer(&self) -> crate::Result<MappedMutexGuard<'_, sqlx::SqliteConnection>> {
        self.writer.conn().await
    }

    /// The write connection, for a script (see `crate::script`).
    async fn script_writer(&self) -> crate::Result<HeldScript<'_>> {
        self.writer.script().await
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

crate::sql::impl_repositories!(SqliteStore, Backend::Sqlite, MIGRATOR);

crate::audit::impl_audit!(
    SqliteStore,
    crate::audit::sqlite_batch::insert_entries,
    delete_outbox_ids
);
