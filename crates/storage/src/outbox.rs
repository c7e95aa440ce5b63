//! The audit outbox: how a write and its audit event are committed together or not at all.
//!
//! The control plane and the identity engine hand each audited write an [`Outbox`] holding the
//! write's events already serialised: the storage method that performs the write takes it as an
//! argument, inserts its rows into its own database's `audit_outbox` table in the write's
//! transaction, and marks them stored only once that transaction commits. The audit writer later moves each
//! row into the workspace's log and deletes it, skipping ids the log already holds, so every
//! row lands exactly once. A write whose outbox row cannot be stored rolls back with it.
//!
//! **Invariant:** every storage method that writes something audited takes an [`Outbox`] and
//! stores its rows atomically with the write (the backend's `write_outbox` in its transaction,
//! or the row's `INSERT` inside the write's single command: a data-modifying CTE on Postgres, a
//! `crate::script` on SQLite) and calls `Outbox::committed` after the commit.

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

/// The audit rows a write commits with it. The caller (the control plane, the identity engine)
/// makes one from the write's events and passes it to the storage method that performs the
/// write: an audited write cannot be called without one. The method stores the rows in the
/// write's own transaction or single command, and marks them stored once that commits, which
/// the caller checks with [`Outbox::stored`].
#[derive(Debug, Default)]
pub struct Outbox {
    rows: Vec<OutboxRow>,
    stored: std::sync::atomic::AtomicBool,
}

impl Outbox {
    pub fn new(rows: Vec<OutboxRow>) -> Self {
        Self {
            rows,
            stored: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// No rows: for a write made outside any audited operation (tools, tests of storage).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether the rows were committed with the write (false while there were none).
    pub fn stored(&self) -> bool {
        self.stored.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The rows still to store (none once stored).
    pub(crate) fn rows(&self) -> &[OutboxRow] {
        if self.stored() {
            &[]
        } else {
            &self.rows
        }
    }

    /// Called after the transaction or command that wrote the rows committed.
    pub(crate) fn committed(&self, wrote: bool) {
        if wrote {
            self.stored
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// The rows for a write that stores them inside its own single command.
    pub(crate) fn inline(&self) -> InlineRows {
        let mut rows = self.rows().iter();
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
            id: Some(first.id.clone()),
            body: Some(first.body.clone()),
            rest: if rest.is_empty() {
                None
            } else {
                serde_json::to_string(&rest).ok()
            },
        }
    }
}

/// An outbox's rows for a write that stores them inside its own single command: the first
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

/// The one command of a write that changes at most one row, with its outbox's rows
/// ([`Outbox::inline`]) stored only if it changed one: on Postgres one statement with
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
/// `write_outbox(executor, outbox)` inserts an outbox's rows (if any) through the write's
/// transaction; `commit_with_outbox(tx, outbox)` does that and commits, the end of every
/// audited write made in a transaction;
/// `read_outbox(executor, before, limit)` lists rows older than `before`;
/// `delete_outbox_ids(executor, ids)` deletes rows by id, with [`OutboxDialect::delete_ids`].
macro_rules! outbox_sql {
    ($db:ty) => {
        $crate::outbox::outbox_sql!(@items $db, write_outbox);
    };
    // Inside an `impl` block, where the functions are associated ones.
    (impl $db:ty) => {
        $crate::outbox::outbox_sql!(@items $db, Self::write_outbox);
    };
    (@items $db:ty, $($write:ident)::+) => {
        async fn write_outbox<'e, E>(
            exec: E,
            outbox: &$crate::outbox::Outbox,
        ) -> $crate::Result<bool>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            let rows = outbox.rows();
            if rows.is_empty() {
                return Ok(false);
            }
            let mut insert =
                sqlx::QueryBuilder::<$db>::new("INSERT INTO audit_outbox (id, body, created_at) ");
            insert.push_values(rows, |mut b, r| {
                b.push_bind(&r.id)
                    .push_bind(&r.body)
                    .push_bind(r.created_at.timestamp_millis());
            });
            insert.build().execute(exec).await?;
            Ok(true)
        }

        /// The end of every audited write made in a transaction: `outbox`'s rows stored in
        /// it, the transaction committed, and the rows marked stored.
        async fn commit_with_outbox(
            mut tx: sqlx::Transaction<'_, $db>,
            outbox: &$crate::outbox::Outbox,
        ) -> $crate::Result<()> {
            let outboxed = $($write)::+(&mut *tx, outbox).await?;
            tx.commit().await?;
            outbox.committed(outboxed);
            Ok(())
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
