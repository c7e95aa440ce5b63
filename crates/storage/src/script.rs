//! SQLite transactions sent as one command.
//!
//! sqlx runs each SQLite connection on its own thread, and every statement, `BEGIN` and
//! `COMMIT` is a round trip to that thread: two thread wake-ups, most of what a short statement
//! costs. A write of a few statements can instead go as one script,
//! `BEGIN IMMEDIATE; …; COMMIT` (see [`sqlite_script!`]), run on a database's held write
//! connection (`crate::held::HeldScript`): unless the script ran to its end, the connection is
//! closed rather than kept, and closing it rolls back whatever the script left open (a
//! statement that failed half-way, a caller that gave up waiting). Each statement after the
//! first is written to act only if the ones before it did what they had to (`changes()`,
//! `EXISTS`), so a script that changes nothing commits nothing.
//!
//! A script reports what it did with a `SELECT changes()` after the statement that decides it,
//! read by `HeldScript::run`, which runs the script to its end (a fetch of one row would stop it
//! before its `COMMIT`). The rows-affected total of a script is no use: sqlx adds SQLite's
//! last-statement count after every statement, `BEGIN` and `COMMIT` included, so it carries
//! counts from earlier commands.
//!
//! Postgres needs none of this: one statement with data-modifying CTEs does the same. Code shared
//! by both backends sends that statement through a [`ScriptConnection`], a pooled connection
//! with the same rule (closed unless the command ran to its end).

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

/// `BEGIN IMMEDIATE; <statements>; COMMIT` as one string literal (the pieces are literals, or
/// macros that expand to one).
macro_rules! sqlite_script {
    ($($statements:expr),+ $(,)?) => {
        concat!("BEGIN IMMEDIATE; ", $($statements),+, "; COMMIT")
    };
}
pub(crate) use sqlite_script;

/// The first column of the first row, as a count (0 when there is no row): what a script's
/// `SELECT changes()`, or a Postgres CTE's final `SELECT COUNT(*)`, reports.
pub(crate) fn first_count<R: sqlx::Row>(rows: &[R]) -> crate::Result<i64>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(match rows.first() {
        Some(row) => row.try_get::<i64, _>(0_usize)?,
        None => 0,
    })
}

/// A pooled connection that a script runs on; closed on drop unless the script ran to its end.
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

    /// Runs the whole script and returns the rows its `SELECT`s produced; the connection goes
    /// back to the pool only if the script ran to its end.
    pub(crate) async fn run<'q, A>(
        mut self,
        query: sqlx::query::Query<'q, DB, A>,
    ) -> Result<Vec<DB::Row>, sqlx::Error>
    where
        A: sqlx::IntoArguments<'q, DB> + 'q,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        let rows = query.fetch_all(&mut *self.conn).await?;
        self.finished = true;
        Ok(rows)
    }
}

impl<DB: Database> Drop for ScriptConnection<DB> {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}
