//! Pool settings shared by every connection pool this crate opens.
//!
//! sqlx pings a connection every time it leaves the pool unless told otherwise: one more round
//! trip per query (to SQLite's worker thread, or to the Postgres server), most of a short
//! query's cost. An embedded SQLite connection cannot go away, so it is never pinged; a
//! Postgres connection is pinged only when it sat idle long enough for a server restart, a
//! failover or a proxy's idle cut to have dropped it unnoticed. A connection that breaks while
//! in use fails that one query and is discarded, as it would be after any ping.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;

/// A Postgres connection idle at least this long is pinged before it is handed out.
pub(crate) const PING_IDLE_AFTER: Duration = Duration::from_secs(10);

pub(crate) fn sqlite() -> SqlitePoolOptions {
    SqlitePoolOptions::new().test_before_acquire(false)
}

pub(crate) fn postgres() -> PgPoolOptions {
    postgres_pinging_after(PING_IDLE_AFTER)
}

fn postgres_pinging_after(idle: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for < idle {
                    return Ok(true);
                }
                // A dead connection is closed and the pool hands out (or opens) another.
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-connection pool made by `options` on a fresh database, and the server process
    /// behind its connection, terminated (as a restart or failover would) once the pool has
    /// used it. Returns the pool, the dead process's id and the database (dropped last).
    async fn pool_whose_backend_died(
        options: PgPoolOptions,
    ) -> Option<(sqlx::PgPool, i32, authsome_testkit::TestDatabase)> {
        let db = authsome_testkit::TestDatabase::create().await?;
        let pool = options
            .max_connections(1)
            .connect(&db.url)
            .await
            .expect("connect");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("pid");
        let killer = postgres()
            .max_connections(1)
            .connect(&db.url)
            .await
            .expect("connect");
        let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&killer)
            .await
            .expect("terminate");
        assert!(killed);
        // pg_terminate_backend only signals: the process is gone when the server no longer
        // lists it.
        loop {
            let alive: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&killer)
                    .await
                    .expect("activity");
            if alive == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        killer.close().await;
        Some((pool, pid, db))
    }

    /// A connection whose server process went away while it sat idle is replaced, not handed
    /// out to fail the next query.
    #[tokio::test]
    async fn an_idle_connection_that_died_is_replaced() {
        let Some((pool, first, _db)) =
            pool_whose_backend_died(postgres_pinging_after(Duration::from_millis(100))).await
        else {
            return;
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("the pool hands out a live connection");
        assert_ne!(first, second);
        pool.close().await;
    }

    /// A connection that dies less than the idle threshold after its last query fails that
    /// one query, as "unavailable" (a 503 to the caller, worth a retry); the next gets a live one.
    #[tokio::test]
    async fn a_connection_that_died_recently_fails_one_query_as_unavailable() {
        let Some((pool, _, _db)) = pool_whose_backend_died(postgres()).await else {
            return;
        };
        let failed = sqlx::query("SELECT 1").execute(&pool).await;
        let error = crate::StorageError::from(failed.expect_err("the dead connection"));
        assert!(error.is_unavailable(), "{error:?}");
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .expect("a live connection next");
        pool.close().await;
    }
}
