//! The audit outbox: how a write and its audit event are committed together or not at all.
//!
//! The control plane and the identity engine run each audited write inside [`scope`] with the
//! write's event already serialised. The storage method that performs the write inserts the
//! pending rows into its own database's `audit_outbox` table in the write's transaction, and
//! reports them stored only once that transaction commits. The audit writer later moves each
//! row into the workspace's log and deletes it, skipping ids the log already holds, so every
//! row lands exactly once. A write whose outbox row cannot be stored rolls back with it.
//!
//! **Invariant:** every storage method that writes something audited stores the pending rows
//! atomically with the write (the backend's `write_outbox` in its transaction, or the row's
//! `INSERT` inside the write's single command: a data-modifying CTE on Postgres, a
//! `crate::script` on SQLite) and calls `committed` after the commit.

use std::cell::RefCell;
use std::future::Future;

use chrono::{DateTime, Utc};

/// An event waiting in an outbox: its id (`evt_…`) and JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl OutboxRow {
    /// The row of an event: its id and its JSON.
    pub fn of(event: &authsome_domain::event::DomainEvent) -> Self {
        Self {
            id: event.id.as_str().to_owned(),
            body: serde_json::to_string(event).unwrap_or_default(),
            created_at: event.at,
        }
    }
}

struct Pending {
    rows: Vec<OutboxRow>,
    stored: bool,
}

tokio::task_local! {
    static PENDING: RefCell<Pending>;
}

/// Runs `write` with `rows` pending; returns its output and whether the rows were committed
/// with it.
pub async fn scope<F: Future>(rows: Vec<OutboxRow>, write: F) -> (F::Output, bool) {
    let pending = RefCell::new(Pending {
        rows,
        stored: false,
    });
    PENDING
        .scope(pending, async move {
            let output = write.await;
            let stored = PENDING.with(|p| p.borrow().stored);
            (output, stored)
        })
        .await
}

/// The rows the current write must store (none outside a [`scope`], or once stored).
pub(crate) fn pending() -> Vec<OutboxRow> {
    PENDING
        .try_with(|p| {
            let p = p.borrow();
            if p.stored {
                Vec::new()
            } else {
                p.rows.clone()
            }
        })
        .unwrap_or_default()
}

/// The pending rows for a write that stores them inside its own single command: the first
/// row's columns bound as they are (the usual case, one event per write, costs no JSON on either
/// side), and any further rows as one JSON array (`[{"id", "body", "at"}]`, `at` in
/// milliseconds) that the SQL takes apart: `jsonb_array_elements(CAST($n AS jsonb))` on
/// Postgres, `json_each($n)` on SQLite. All `None` when there are none.
#[derive(Debug, Default)]
pub(crate) struct InlineRows {
    pub(crate) id: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) at: Option<i64>,
    pub(crate) rest: Option<String>,
}

impl InlineRows {
    /// Whether there is a row to store.
    pub(crate) fn any(&self) -> bool {
        self.id.is_some()
    }

    /// Binds the rows to `query`'s next four parameters (id, body, at, rest), the placeholders
    /// an [`outboxed_write!`] command names.
    pub(crate) fn bind<'q, DB: sqlx::Database>(
        &'q self,
        query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
    where
        Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        query
            .bind(self.id.as_deref())
            .bind(self.body.as_deref())
            .bind(self.at)
            .bind(self.rest.as_deref())
    }
}

/// The one command of a write that changes at most one row, with the pending outbox rows
/// ([`pending_inline`]) stored only if it changed one: on Postgres one statement with
/// data-modifying CTEs, on SQLite a script (`crate::script`, run on the held connection). Its
/// first row's first column is the number of rows the write changed.
///
/// `outboxed_write!(backend, "UPDATE … WHERE …", "$8", "$9", "$10", "$11")`: the write without
/// `RETURNING` or `;`, then the placeholders of the outbox rows' id, body, time and rest, bound
/// after the write's own with [`InlineRows::bind`]. One round trip, where a transaction takes
/// four (`BEGIN`, the write, the outbox `INSERT`, `COMMIT`).
///
/// `outboxed_write!(backend, after "UPDATE … WHERE …", "INSERT INTO t (…) SELECT $5, …", …)`:
/// a write that happens only if the statement before it changed a row (a key roll: the old key
/// marked rolled, then its replacement inserted). The second is an `INSERT … SELECT` without
/// `FROM` or `WHERE`; the count is its own (0 when the first changed nothing).
macro_rules! outboxed_write {
    ($backend:expr, $write:literal, $id:literal, $body:literal, $at:literal, $rest:literal) => {
        match $backend {
            $crate::Backend::Postgres => concat!(
                "WITH w AS (",
                $write,
                " RETURNING 1), ",
                $crate::outbox::outboxed_write!(@postgres_outbox $id, $body, $at, $rest)
            ),
            $crate::Backend::Sqlite => $crate::script::sqlite_script!(
                $write,
                "; ",
                $crate::outbox::outboxed_write!(@sqlite_outbox $id, $body, $at, $rest)
            ),
        }
    };
    (
        $backend:expr, after $first:literal, $write:literal,
        $id:literal, $body:literal, $at:literal, $rest:literal
    ) => {
        match $backend {
            $crate::Backend::Postgres => concat!(
                "WITH f AS (",
                $first,
                " RETURNING 1), w AS (",
                $write,
                " FROM f RETURNING 1), ",
                $crate::outbox::outboxed_write!(@postgres_outbox $id, $body, $at, $rest)
            ),
            $crate::Backend::Sqlite => $crate::script::sqlite_script!(
                $first,
                "; ",
                $write,
                " WHERE changes() = 1; ",
                $crate::outbox::outboxed_write!(@sqlite_outbox $id, $body, $at, $rest)
            ),
        }
    };
    // The rest of the Postgres statement, after the CTE `w` of the write: the rows' CTE and
    // the final count.
    (@postgres_outbox $id:literal, $body:literal, $at:literal, $rest:literal) => {
        concat!(
            "o AS (INSERT INTO audit_outbox (id, body, created_at) ",
            "SELECT CAST(",
            $id,
            " AS TEXT), CAST(",
            $body,
            " AS TEXT), CAST(",
            $at,
            " AS BIGINT) FROM w WHERE ",
            $id,
            " IS NOT NULL ",
            "UNION ALL ",
            "SELECT r->>'id', r->>'body', CAST(r->>'at' AS BIGINT) FROM w, ",
            "jsonb_array_elements(COALESCE(CAST(",
            $rest,
            " AS jsonb), '[]'::jsonb)) r ",
            "RETURNING 1) ",
            "SELECT (SELECT COUNT(*) FROM w) + 0 * (SELECT COUNT(*) FROM o)"
        )
    };
    // The rest of the SQLite script, after the write: its count, then the rows.
    (@sqlite_outbox $id:literal, $body:literal, $at:literal, $rest:literal) => {
        concat!(
            "SELECT changes(); ",
            // The first row, if the write changed its row; the others, if that one was stored.
            "INSERT INTO audit_outbox (id, body, created_at) SELECT ",
            $id,
            ", ",
            $body,
            ", ",
            $at,
            " WHERE ",
            $id,
            " IS NOT NULL AND changes() = 1; ",
            "INSERT INTO audit_outbox (id, body, created_at) ",
            "SELECT json_extract(value, '$.id'), json_extract(value, '$.body'), ",
            "json_extract(value, '$.at') FROM json_each(COALESCE(",
            $rest,
            ", '[]')) ",
            "WHERE changes() = 1"
        )
    };
}
pub(crate) use outboxed_write;

pub(crate) fn pending_inline() -> InlineRows {
    let mut rows = pending().into_iter();
    let Some(first) = rows.next() else {
        return InlineRows::default();
    };
    let rest: Vec<serde_json::Value> = rows
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "body": r.body,
                "at": r.created_at.timestamp_millis(),
            })
        })
        .collect();
    InlineRows {
        at: Some(first.created_at.timestamp_millis()),
        id: Some(first.id),
        body: Some(first.body),
        rest: if rest.is_empty() {
            None
        } else {
            serde_json::to_string(&rest).ok()
        },
    }
}

/// Called after the transaction that wrote the pending rows committed.
pub(crate) fn committed(wrote: bool) {
    if wrote {
        let _ = PENDING.try_with(|p| p.borrow_mut().stored = true);
    }
}

/// The one outbox statement that differs between backends.
pub(crate) trait OutboxDialect: sqlx::Database {
    /// Deletes the rows with these ids: one fixed statement whatever their number, the ids
    /// bound as one value, so it is prepared once per connection. A statement with a parameter
    /// per id would be parsed again for every new count, and, sqlx caching each one, would push
    /// the connection's everyday statements out of its cache.
    fn delete_ids(ids: &[String]) -> sqlx::query::Query<'_, Self, Self::Arguments<'_>>;
}

impl OutboxDialect for sqlx::Postgres {
    fn delete_ids(ids: &[String]) -> sqlx::query::Query<'_, Self, Self::Arguments<'_>> {
        sqlx::query("DELETE FROM audit_outbox WHERE id = ANY($1)").bind(ids)
    }
}

impl OutboxDialect for sqlx::Sqlite {
    fn delete_ids(ids: &[String]) -> sqlx::query::Query<'_, Self, Self::Arguments<'_>> {
        // A JSON array of strings cannot fail to serialise.
        sqlx::query("DELETE FROM audit_outbox WHERE id IN (SELECT value FROM json_each($1))")
            .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
    }
}

/// The outbox's SQL for one backend (the table is the same in every database):
/// `write_outbox(executor)` inserts the pending rows (if any) through the write's transaction;
/// `read_outbox(executor, before, limit)` lists rows older than `before`;
/// `delete_outbox_ids(executor, ids)` deletes rows by id, with [`OutboxDialect::delete_ids`].
macro_rules! outbox_sql {
    ($db:ty) => {
        async fn write_outbox<'e, E>(exec: E) -> $crate::Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows = $crate::outbox::pending();
            if rows.is_empty() {
                return Ok(false);
            }
            let mut insert =
                sqlx::QueryBuilder::<$db>::new("INSERT INTO audit_outbox (id, body, created_at) ");
            insert.push_values(&rows, |mut b, r| {
                b.push_bind(&r.id)
                    .push_bind(&r.body)
                    .push_bind(r.created_at.timestamp_millis());
            });
            insert.build().execute(exec).await?;
            Ok(true)
        }

        async fn read_outbox<'e, E>(
            exec: E,
            before: chrono::DateTime<chrono::Utc>,
            limit: u32,
        ) -> $crate::Result<Vec<$crate::outbox::OutboxRow>>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT id, body, created_at FROM audit_outbox WHERE created_at < $1 \
                 ORDER BY created_at, id LIMIT $2",
            )
            .bind(before.timestamp_millis())
            .bind(i64::from(limit))
            .fetch_all(exec)
            .await?;
            rows.into_iter()
                .map(|(id, body, at)| {
                    Ok($crate::outbox::OutboxRow {
                        id,
                        body,
                        created_at: chrono::DateTime::from_timestamp_millis(at)
                            .ok_or($crate::StorageError::Corrupt("audit_outbox.created_at"))?,
                    })
                })
                .collect()
        }

        async fn delete_outbox_ids<'e, E>(exec: E, ids: &[String]) -> $crate::Result<()>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            if ids.is_empty() {
                return Ok(());
            }
            <$db as $crate::outbox::OutboxDialect>::delete_ids(ids)
                .execute(exec)
                .await?;
            Ok(())
        }
    };
}

pub(crate) use outbox_sql;
