//! The embedded backend: one SQLite file in WAL mode, for a laptop or a single node.
//!
//! Reads take any connection of the pool; every write queues for the one connection the store
//! holds for writing (see `crate::held`), so the process's writers never meet at SQLite's lock.
//!
//! WAL checkpoints run off the write path: by default SQLite makes the write that finds the WAL
//! past 1,000 pages copy them all back into the database file and `fsync` it before it returns,
//! so one write in a few hundred waits milliseconds. The store's checkpointer task does that
//! copy instead, a short while after writes, on a reading connection (a passive checkpoint never
//! blocks the writer). Under writes that never pause, the task cannot finish a checkpoint before
//! more frames arrive, and SQLite restarts the WAL from its beginning only once every frame is
//! back in the database; so SQLite's own checkpoint at 1,000 pages stays, and then finds only
//! the frames the task has not copied yet, and the WAL stays a few megabytes.

use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::{MappedMutexGuard, Notify};

use crate::held::{HeldConnection, HeldScript};

/// How long the checkpointer waits after a write before it checkpoints, so that a burst of
/// writes is checkpointed once.
const CHECKPOINT_AFTER: Duration = Duration::from_millis(100);

pub struct SqliteStore {
    pool: SqlitePool,
    writer: HeldConnection,
    root: OnceLock<authsome_domain::id::WorkspaceId>,
    checkpointer: Checkpointer,
}

/// Checkpoints the WAL a short while after writes, and never while the database is idle.
/// Stops when the store is dropped.
struct Checkpointer {
    wrote: std::sync::Arc<Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the task when there is a Tokio runtime (a store opened outside one checkpoints
    /// only as SQLite does by itself, at 1,000 pages).
    fn start(pool: &SqlitePool) -> Self {
        let wrote = std::sync::Arc::new(Notify::new());
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let pool = pool.clone();
            let wrote = wrote.clone();
            runtime.spawn(async move {
                loop {
                    wrote.notified().await;
                    tokio::time::sleep(CHECKPOINT_AFTER).await;
                    if pool.is_closed() {
                        return;
                    }
                    // PASSIVE: copies what no reader still needs, waits for no one; what it
                    // leaves is taken next time.
                    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&pool)
                        .await
                    {
                        tracing::warn!(error = %e, "SQLite WAL checkpoint failed; will retry");
                    }
                }
            })
        });
        Self { wrote, task }
    }

    /// Called on every write: the checkpointer runs after it (one wake-up per burst).
    fn wrote(&self) {
        self.wrote.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
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
            checkpointer: Checkpointer::start(&pool),
            pool,
            root: OnceLock::new(),
        })
    }

    /// The connection every write runs on, for one statement or one transaction. A method
    /// must not call another writing method while it holds it.
    async fn writer(&self) -> crate::Result<MappedMutexGuard<'_, sqlx::SqliteConnection>> {
        self.checkpointer.wrote();
        self.writer.conn().await
    }

    /// The write connection, for a script (see `crate::script`).
    async fn script_writer(&self) -> crate::Result<HeldScript<'_>> {
        self.checkpointer.wrote();
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
