//! The embedded backend: one SQLite file in WAL mode, for a laptop or a single node.
//!
//! Reads take any connection of the pool; every write queues for the one connection the store
//! holds for writing (see `crate::held`), so the process's writers never meet at SQLite's lock.
//!
//! WAL checkpoints run mostly off the write path. By default SQLite makes the write that finds
//! the WAL past 1,000 pages copy them all back into the database file and `fsync` it before it
//! returns. The store's checkpointer task does most of that copy instead, once every
//! [`CHECKPOINT_EVERY_WRITES`] writes, on a reading connection (a passive checkpoint never
//! blocks the writer). Not after every write: once every frame is back in the database, the next
//! write starts the WAL over and `fsync`s its new header, so checkpointing after each of a few
//! sporadic writes would make each of them wait for a sync. Under writes that never pause, the
//! task's checkpoints cannot catch up (frames keep arriving), so SQLite's own checkpoint at
//! 1,000 pages stays: it then finds only the frames the task has not copied yet, and the WAL stays
//! a few megabytes. (While the task's checkpoint waits for a slow disk to sync, SQLite's finds
//! the checkpoint lock taken and writes go on without waiting: the WAL then grows by what they
//! write meanwhile, and starts over once the copy is done.)

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::{MappedMutexGuard, Notify};

use crate::held::{HeldConnection, HeldScript};

/// Writes between two checkpoints by the task: a few hundred WAL pages, under SQLite's own
/// 1,000 (a control-plane write adds two, or three to four with its audit outbox row, and the
/// audit log's appends some more). Each checkpoint syncs the disk twice, and the write after it
/// once more, when it starts the WAL over; pages written again and again between two checkpoints
/// (the audit outbox's, filled by writes and emptied by the log's writer) are copied only once.
/// Measured with `control_write`'s blocks of 100 writes on a 2-core VM's ext4 disk: at a hundred
/// writes, auditing added 7.6% to 10.5% to a write's answer; at two hundred, 4.9% to 5.9%, plain
/// writes unchanged.
const CHECKPOINT_EVERY_WRITES: u32 = 200;
/// How long the checkpointer waits once that many writes were made, so that the one in
/// progress has committed.
const CHECKPOINT_AFTER: Duration = Duration::from_millis(20);

pub struct SqliteStore {
    pool: SqlitePool,
    writer: HeldConnection,
    root: OnceLock<authsome_domain::id::WorkspaceId>,
    checkpointer: Checkpointer,
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY_WRITES`] writes. Stops when the store is
/// dropped.
struct Checkpointer {
    /// Writes since the last checkpoint (approximately: a count, not WAL pages).
    writes: std::sync::Arc<AtomicU32>,
    due: std::sync::Arc<Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the task when there is a Tokio runtime (a store opened outside one checkpoints
    /// only as SQLite does by itself, at 1,000 pages).
    fn start(pool: &SqlitePool) -> Self {
        let writes = std::sync::Arc::new(AtomicU32::new(0));
        let due = std::sync::Arc::new(Notify::new());
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let pool = pool.clone();
            let writes = writes.clone();
            let due = due.clone();
            runtime.spawn(async move {
                loop {
                    due.notified().await;
                    tokio::time::sleep(CHECKPOINT_AFTER).await;
                    if pool.is_closed() {
                        return;
                    }
                    writes.store(0, Ordering::Relaxed);
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
        Self { writes, due, task }
    }

    /// Called on every write; wakes the task only when a checkpoint is due.
    fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) + 1 == CHECKPOINT_EVERY_WRITES {
            self.due.notify_one();
        }
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
            .busy_timeout(Duration::from_secs(10))
            // Room for every statement the store uses (the audit writer's batch inserts come
            // in up to `ROWS_PER_INSERT` sizes) so that none is parsed again after its first use.
            .statement_cache_capacity(256);
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

crate::audit::impl_audit!(SqliteStore, crate::audit::sqlite_batch::insert_entries);

crate::vault::impl_vault!(SqliteStore);

crate::alerts::impl_alerts!(SqliteStore);

crate::billing::impl_billing!(SqliteStore);

crate::rotation::impl_rotation!(SqliteStore, "");
