//! One SQLite connection kept out of its pool, behind an async lock that is the queue of the
//! callers waiting for it.
//!
//! SQLite lets one connection write at a time. Writers that take turns on their own connections
//! meet at the database's write lock, and a writer that finds it taken sleeps in SQLite's busy
//! handler (1 ms, then 2, 5, 10 …) however soon the lock is free again. Writers of one process
//! that queue here instead are woken the moment the one before them finishes. The connection
//! also keeps its page cache: SQLite drops a connection's cache whenever another connection
//! wrote since its last transaction, so a pool handing writes out in turn makes every write
//! read its pages again.
//!
//! A connection going back to a sqlx pool takes a round trip to its thread on the way, which
//! the next caller waits for; a held connection never goes back while the store is open.
//!
//! A caller must not ask for the connection while it holds it (the lock is not reentrant;
//! waiting gives up after [`HOLD_TIMEOUT`] rather than hang).

use sqlx::pool::PoolConnection;
use sqlx::Sqlite;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::{Result, StorageError};

/// How long a caller waits for the held connection (a sqlx pool's own default wait).
const HOLD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) struct HeldConnection {
    pool: sqlx::SqlitePool,
    held: Mutex<Option<PoolConnection<Sqlite>>>,
}

impl HeldConnection {
    /// Holds a connection of `pool` (taken on first use, and again after one was discarded).
    pub(crate) fn new(pool: sqlx::SqlitePool) -> Self {
        Self {
            pool,
            held: Mutex::new(None),
        }
    }

    async fn hold(&self) -> Result<MutexGuard<'_, Option<PoolConnection<Sqlite>>>> {
        let mut held = tokio::time::timeout(HOLD_TIMEOUT, self.held.lock())
            .await
            .map_err(|_| StorageError::Database(sqlx::Error::PoolTimedOut))?;
        if held.is_none() {
            *held = Some(self.pool.acquire().await?);
        }
        Ok(held)
    }

    /// The connection, for one query or one transaction (a transaction dropped unfinished
    /// rolls back on it, as sqlx's transactions do).
    pub(crate) async fn conn(&self) -> Result<MappedMutexGuard<'_, sqlx::SqliteConnection>> {
        MutexGuard::try_map(self.hold().await?, |held| held.as_mut().map(|c| &mut **c))
            .map_err(|_| StorageError::Corrupt("held connection"))
    }

    /// The connection, for a script (see `crate::script`): discarded unless it finished.
    pub(crate) async fn script(&self) -> Result<HeldScript<'_>> {
        Ok(HeldScript {
            held: self.hold().await?,
            finished: false,
        })
    }

    /// Gives the connection back to its pool.
    pub(crate) async fn release(&self) {
        if let Ok(mut held) = tokio::time::timeout(HOLD_TIMEOUT, self.held.lock()).await {
            held.take();
        }
    }
}

/// The held connection while a script runs on it; if the script did not run to its end, the
/// connection is closed (rolling back what the script left open) instead of kept.
pub(crate) struct HeldScript<'a> {
    held: MutexGuard<'a, Option<PoolConnection<Sqlite>>>,
    finished: bool,
}

impl HeldScript<'_> {
    /// Runs the whole script (see `crate::script`); the connection is kept only if the script
    /// ran to its end.
    pub(crate) async fn run<'q, A>(
        mut self,
        query: sqlx::query::Query<'q, Sqlite, A>,
    ) -> std::result::Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error>
    where
        A: sqlx::IntoArguments<'q, Sqlite> + 'q,
    {
        // `hold` never hands out an empty slot; a closed pool is what an empty one would mean.
        let conn = self.held.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        let rows = query.fetch_all(&mut **conn).await?;
        self.finished = true;
        Ok(rows)
    }
}

impl Drop for HeldScript<'_> {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(mut conn) = self.held.take() {
                conn.close_on_drop();
            }
        }
    }
}
