//! SQLite transactions sent as one command.
//!
//! sqlx runs each SQLite connection on its own thread, and every statement, `BEGIN` and
//! `COMMIT` is a round trip to that thread: two thread wake-ups, most of what a short statement
//! costs. A write of a few statements can instead go as one script,
//! `BEGIN IMMEDIATE; …; COMMIT` (see [`sqlite_script!`]), run on a connection held by a
//! [`ScriptConnection`]: unless the script is reported finished, the connection is closed
//! rather than returned to the pool, and closing it rolls back whatever the script left open
//! (a statement that failed half-way, a caller that gave up waiting). Each statement after the
//! first is written to act only if the ones before it did what they had to (`changes()`,
//! `EXISTS`), so a script that changes nothing commits nothing.
//!
//! A script reports what it did with a `SELECT changes()` after the statement that decides it,
//! read by [`run`], which runs the script to its end (a fetch of one row would stop it before
//! its `COMMIT`). The rows-affected total of a script is no use: sqlx adds SQLite's
//! last-statement count after every statement, `BEGIN` and `COMMIT` included, so it carries
//! counts from earlier commands.
//!
//! Postgres needs none of this: one statement with data-modifying CTEs does the same.

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

/// Runs a whole script and returns the rows its `SELECT`s produced.
pub(crate) async fn run<'q, DB, A>(
    query: sqlx::query::Query<'q, DB, A>,
    conn: &mut DB::Connection,
) -> Result<Vec<DB::Row>, sqlx::Error>
where
    DB: Database,
    A: sqlx::IntoArguments<'q, DB> + 'q,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    query.fetch_all(conn).await
}

/// `BEGIN IMMEDIATE; <statements>; COMMIT` as one string literal.
macro_rules! sqlite_script {
    ($($statements:literal),+ $(,)?) => {
        concat!("BEGIN IMMEDIATE; ", $($statements),+, "; COMMIT")
    };
}
pub(crate) use sqlite_script;

/// A pooled connection that a script runs on; closed on drop unless [`Self::finished`].
pub(crate) struct ScriptConnection<DB: Database> {
    conn: PoolConnection<DB>,
    finished: bool,
}

impl<DB: Database> ScriptConnection<DB> {
    pub(crate) async fn acquire(pool: &Pool<DB>) -> crate::Result<Self> {
        Ok(Self {
            conn: pool.acquire().await?,
            finished: false,
        })
    }

    /// The connection to run the script on.
    pub(crate) fn conn(&mut self) -> crate::Result<&mut DB::Connection> {
        Ok(&mut self.conn)
    }

    /// The script ran to its end (committed): the connection goes back to the pool.
    pub(crate) fn finished(mut self) {
        self.finished = true;
    }
}

impl<DB: Database> Drop for ScriptConnection<DB> {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}
