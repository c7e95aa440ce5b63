//! Storage of the audit log: per-workspace heads, entries, signed checkpoints and the
//! deployment's checkpoint signing keys. It stores what `authsome-control`'s audit writer
//! computed (hashes, compact ranges, signed notes) and decides nothing; every query names its
//! workspace.
//!
//! **Invariant:** an append only lands if the head still has the size the writer read
//! (optimistic concurrency), in the same transaction as its entries, so two replicas appending
//! to one log never interleave or fork it.

use async_trait::async_trait;
use authsome_domain::id::WorkspaceId;
use chrono::{DateTime, Utc};

use crate::Result;

/// A log's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub workspace_id: WorkspaceId,
    pub size: u64,
    pub head_hash: Vec<u8>,
    pub compact_range: Vec<u8>,
    pub hmac_key: String,
    pub first_kept: u64,
    pub checkpoint_size: u64,
}

/// One entry as stored: the canonical line and the columns copied out of it for filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub index: u64,
    pub id: String,
    pub at: DateTime<Utc>,
    pub action: String,
    pub actor_id: Option<String>,
    pub application_id: Option<String>,
    pub outcome: String,
    pub leaf_hash: Vec<u8>,
    /// `None` once retention pruned it.
    pub body: Option<String>,
}

/// Filters of the audit listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub actor_id: Option<String>,
    pub action_prefix: Option<String>,
    pub application_id: Option<String>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root_hash: Vec<u8>,
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSigningKey {
    /// `<name>+<hex key id>`.
    pub id: String,
    pub name: String,
    pub public_key: Vec<u8>,
    pub sealed_seed: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait AuditRepository {
    /// Creates an empty log for the workspace unless it has one; returns the head either way.
    async fn open_audit_log(
        &self,
        workspace: &WorkspaceId,
        empty_range: &[u8],
        hmac_key: &str,
        now: DateTime<Utc>,
    ) -> Result<AuditHead>;
    async fn audit_head(&self, workspace: &WorkspaceId) -> Result<Option<AuditHead>>;
    /// Appends `rows` (indices `expected_size..`) and moves the head, only if the log still
    /// has `expected_size` entries; `false` when another writer got there first. Deletes the
    /// control-plane outbox rows `outbox_ids` in the same transaction (exactly once).
    async fn append_audit(
        &self,
        workspace: &WorkspaceId,
        expected_size: u64,
        rows: &[AuditRow],
        head_hash: &[u8],
        compact_range: &[u8],
        outbox_ids: &[String],
    ) -> Result<bool>;
    /// Control-plane outbox rows created before `before`, oldest first.
    async fn audit_outbox(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<crate::outbox::OutboxRow>>;
    /// Deletes control-plane outbox rows (ones the log already holds).
    async fn delete_audit_outbox(&self, ids: &[String]) -> Result<()>;
    /// Which of `ids` the audit log already holds.
    async fn existing_audit_ids(&self, ids: &[String]) -> Result<Vec<String>>;
    /// Entries matching `filter`, newest first, older than the entry with id `before`.
    async fn audit_entries(
        &self,
        workspace: &WorkspaceId,
        filter: &AuditFilter,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRow>>;
    /// Entries from index `from`, oldest first (the export and verification read these).
    async fn audit_range(
        &self,
        workspace: &WorkspaceId,
        from: u64,
        limit: u32,
    ) -> Result<Vec<AuditRow>>;
    /// The leaf hashes of entries `from..to`, in order.
    async fn audit_leaf_hashes(
        &self,
        workspace: &WorkspaceId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Vec<u8>>>;
    /// Every log's head.
    async fn audit_heads(&self) -> Result<Vec<AuditHead>>;
    /// Retention: removes the bodies of the log's oldest entries, those before the first
    /// entry at or after `cutoff`, keeping their leaf hashes (the tree stays provable) and
    /// moving `first_kept`. Returns the new `first_kept`.
    async fn prune_audit(&self, workspace: &WorkspaceId, cutoff: DateTime<Utc>) -> Result<u64>;
    /// Logs that grew since their last checkpoint.
    async fn audit_logs_to_checkpoint(&self) -> Result<Vec<AuditHead>>;
    async fn add_audit_checkpoint(
        &self,
        workspace: &WorkspaceId,
        checkpoint: &StoredCheckpoint,
    ) -> Result<()>;
    async fn latest_audit_checkpoint(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Option<StoredCheckpoint>>;
    async fn audit_checkpoint(
        &self,
        workspace: &WorkspaceId,
        size: u64,
    ) -> Result<Option<StoredCheckpoint>>;
    /// Every checkpoint of the log, smallest first.
    async fn audit_checkpoints(&self, workspace: &WorkspaceId) -> Result<Vec<StoredCheckpoint>>;
    async fn audit_signing_keys(&self) -> Result<Vec<AuditSigningKey>>;
    /// Adds `key` and retires every other active key, at once.
    async fn rotate_audit_signing_key(&self, key: &AuditSigningKey) -> Result<()>;
    /// Adds `key` only if there is no active key; returns whether it was added.
    async fn add_first_audit_signing_key(&self, key: &AuditSigningKey) -> Result<bool>;
}

pub(crate) fn u(v: i64, what: &'static str) -> Result<u64> {
    u64::try_from(v).map_err(|_| crate::StorageError::Corrupt(what))
}

pub(crate) fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` prefix match.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The audit writer's batch statements on Postgres: one fixed statement whatever the batch's
/// size (the rows as arrays, unnested), so each is prepared once per connection rather than
/// parsed and planned again for every new row count.
pub(crate) mod postgres_batch {
    use super::{i, AuditRow};
    use crate::rows::ms;

    pub(crate) async fn insert_entries(
        conn: &mut sqlx::PgConnection,
        workspace: &str,
        rows: &[AuditRow],
    ) -> crate::Result<()> {
        let column = |f: fn(&AuditRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO audit_entries (workspace_id, idx, id, at, action, actor_id, \
             application_id, outcome, leaf_hash, body) \
             SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::bytea[], $10::text[])",
        )
        .bind(workspace)
        .bind(rows.iter().map(|r| i(r.index)).collect::<Vec<_>>())
        .bind(column(|r| Some(r.id.as_str())))
        .bind(rows.iter().map(|r| ms(r.at)).collect::<Vec<_>>())
        .bind(column(|r| Some(r.action.as_str())))
        .bind(column(|r| r.actor_id.as_deref()))
        .bind(column(|r| r.application_id.as_deref()))
        .bind(column(|r| Some(r.outcome.as_str())))
        .bind(
            rows.iter()
                .map(|r| r.leaf_hash.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(column(|r| r.body.as_deref()))
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The same on SQLite, whose statements are prepared in process: multi-row `VALUES`, at most
/// [`sqlite_batch::ROWS_PER_INSERT`] rows a statement. The rows are bound as they are, since a
/// batch as one JSON value costs more to encode and take apart (the bodies are JSON, escaped
/// again) than binding them; the cap keeps the statements few (one per row count up to it), so
/// after the first batches each is prepared already, as the store's statement cache holds them
/// beside the everyday ones (see `SqliteStore`).
pub(crate) mod sqlite_batch {
    use super::{i, AuditRow};
    use crate::rows::ms;

    /// Rows per INSERT statement: a batch of up to 2,000 costs a few more round trips to the
    /// connection's thread, and there are only this many distinct statements.
    pub(crate) const ROWS_PER_INSERT: usize = 32;

    pub(crate) async fn insert_entries(
        conn: &mut sqlx::SqliteConnection,
        workspace: &str,
        rows: &[AuditRow],
    ) -> crate::Result<()> {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO audit_entries (workspace_id, idx, id, at, action, \
                 actor_id, application_id, outcome, leaf_hash, body) ",
            );
            insert.push_values(chunk, |mut b, r| {
                b.push_bind(workspace)
                    .push_bind(i(r.index))
                    .push_bind(&r.id)
                    .push_bind(ms(r.at))
                    .push_bind(&r.action)
                    .push_bind(r.actor_id.as_deref())
                    .push_bind(r.application_id.as_deref())
                    .push_bind(&r.outcome)
                    .push_bind(&r.leaf_hash)
                    .push_bind(r.body.as_deref());
            });
            insert.build().execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// The audit repository of `$store`; `$insert` is the writer's batch insert of entries for its
/// backend (outbox rows go out with the store's own `delete_outbox_ids`).
macro_rules! impl_audit {
    ($store:ty, $insert:path) => {
        mod audit_impl {
            use async_trait::async_trait;
            use authsome_domain::id::WorkspaceId;
            use chrono::{DateTime, Utc};

            use super::*;
            use crate::audit::*;
            use crate::rows::{ms, opt_ms, time};
            use crate::sql::HasDb;
            use crate::{Result, StorageError};

            type Db = <$store as HasDb>::Db;

            #[derive(sqlx::FromRow)]
            struct HeadRow {
                workspace_id: String,
                size: i64,
                head_hash: Vec<u8>,
                compact_range: Vec<u8>,
                hmac_key: String,
                first_kept: i64,
                checkpoint_size: i64,
            }

            impl HeadRow {
                fn into_head(self) -> Result<AuditHead> {
                    Ok(AuditHead {
                        workspace_id: WorkspaceId::parse(&self.workspace_id)
                            .map_err(|_| StorageError::Corrupt("audit_logs.workspace_id"))?,
                        size: u(self.size, "audit_logs.size")?,
                        head_hash: self.head_hash,
                        compact_range: self.compact_range,
                        hmac_key: self.hmac_key,
                        first_kept: u(self.first_kept, "audit_logs.first_kept")?,
                        checkpoint_size: u(self.checkpoint_size, "audit_logs.checkpoint_size")?,
                    })
                }
            }

            #[derive(sqlx::FromRow)]
            struct EntryRow {
                idx: i64,
                id: String,
                at: i64,
                action: String,
                actor_id: Option<String>,
                application_id: Option<String>,
                outcome: String,
                leaf_hash: Vec<u8>,
                body: Option<String>,
            }

            impl EntryRow {
                fn into_row(self) -> Result<AuditRow> {
                    Ok(AuditRow {
                        index: u(self.idx, "audit_entries.idx")?,
                        id: self.id,
                        at: time(self.at, "audit_entries.at")?,
                        action: self.action,
                        actor_id: self.actor_id,
                        application_id: self.application_id,
                        outcome: self.outcome,
                        leaf_hash: self.leaf_hash,
                        body: self.body,
                    })
                }
            }

            #[derive(sqlx::FromRow)]
            struct CheckpointRow {
                size: i64,
                root_hash: Vec<u8>,
                at: i64,
                key_id: String,
                note: String,
            }

            impl CheckpointRow {
                fn into_checkpoint(self) -> Result<StoredCheckpoint> {
                    Ok(StoredCheckpoint {
                        size: u(self.size, "audit_checkpoints.size")?,
                        root_hash: self.root_hash,
                        at: time(self.at, "audit_checkpoints.at")?,
                        key_id: self.key_id,
                        note: self.note,
                    })
                }
            }

            #[derive(sqlx::FromRow)]
            struct KeyRow {
                id: String,
                name: String,
                public_key: Vec<u8>,
                sealed_seed: String,
                created_at: i64,
                retired_at: Option<i64>,
            }

            const HEAD_COLUMNS: &str = "workspace_id, size, head_hash, compact_range, hmac_key, \
                                        first_kept, checkpoint_size";
            const ENTRY_COLUMNS: &str = "idx, id, at, action, actor_id, application_id, outcome, \
                                         leaf_hash, body";
            /// Ids per query of `existing_audit_ids` (recovery's rare path), well under both
            /// backends' parameter limits.
            const IDS_PER_QUERY: usize = 500;

            async fn insert_key<'e, E>(exec: E, key: &AuditSigningKey) -> Result<()>
            where
                E: sqlx::Executor<'e, Database = Db>,
            {
                sqlx::query(
                    "INSERT INTO audit_signing_keys (id, name, public_key, sealed_seed, \
                     created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&key.id)
                .bind(&key.name)
                .bind(&key.public_key)
                .bind(&key.sealed_seed)
                .bind(ms(key.created_at))
                .bind(opt_ms(key.retired_at))
                .execute(exec)
                .await
                .map_err(crate::rows::unique)?;
                Ok(())
            }

            #[async_trait]
            impl AuditRepository for $store {
                async fn open_audit_log(
                    &self,
                    workspace: &WorkspaceId,
                    empty_range: &[u8],
                    hmac_key: &str,
                    now: DateTime<Utc>,
                ) -> Result<AuditHead> {
                    sqlx::query(
                        "INSERT INTO audit_logs (workspace_id, size, head_hash, compact_range, \
                         hmac_key, created_at) VALUES ($1, 0, $2, $3, $4, $5) \
                         ON CONFLICT (workspace_id) DO NOTHING",
                    )
                    .bind(workspace.as_str())
                    .bind(vec![0u8; 32])
                    .bind(empty_range)
                    .bind(hmac_key)
                    .bind(ms(now))
                    .execute(&mut *self.writer().await?)
                    .await?;
                    self.audit_head(workspace)
                        .await?
                        .ok_or(StorageError::NotFound)
                }

                async fn audit_head(&self, workspace: &WorkspaceId) -> Result<Option<AuditHead>> {
                    sqlx::query_as::<_, HeadRow>(&format!(
                        "SELECT {HEAD_COLUMNS} FROM audit_logs WHERE workspace_id = $1"
                    ))
                    .bind(workspace.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(HeadRow::into_head)
                    .transpose()
                }

                async fn append_audit(
                    &self,
                    workspace: &WorkspaceId,
                    expected_size: u64,
                    rows: &[AuditRow],
                    head_hash: &[u8],
                    compact_range: &[u8],
                    outbox_ids: &[String],
                ) -> Result<bool> {
                    let mut w = self.writer().await?;
                    let mut tx = sqlx::Connection::begin(&mut *w).await?;
                    // The head moves first: on SQLite this takes the write lock, on Postgres the
                    // row lock, and a writer that lost the race learns it before inserting.
                    let moved = sqlx::query(
                        "UPDATE audit_logs SET size = $2, head_hash = $3, compact_range = $4 \
                         WHERE workspace_id = $1 AND size = $5",
                    )
                    .bind(workspace.as_str())
                    .bind(i(expected_size + rows.len() as u64))
                    .bind(head_hash)
                    .bind(compact_range)
                    .bind(i(expected_size))
                    .execute(&mut *tx)
                    .await?;
                    if moved.rows_affected() != 1 {
                        return Ok(false);
                    }
                    $insert(&mut *tx, workspace.as_str(), rows).await?;
                    delete_outbox_ids(&mut *tx, outbox_ids).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn audit_outbox(
                    &self,
                    before: DateTime<Utc>,
                    limit: u32,
                ) -> Result<Vec<crate::outbox::OutboxRow>> {
                    read_outbox(&self.pool, before, limit).await
                }

                async fn delete_audit_outbox(&self, ids: &[String]) -> Result<()> {
                    delete_outbox_ids(&mut *self.writer().await?, ids).await
                }

                async fn existing_audit_ids(&self, ids: &[String]) -> Result<Vec<String>> {
                    let mut found = Vec::new();
                    for chunk in ids.chunks(IDS_PER_QUERY) {
                        let mut select = sqlx::QueryBuilder::<Db>::new(
                            "SELECT id FROM audit_entries WHERE id IN (",
                        );
                        let mut list = select.separated(", ");
                        for id in chunk {
                            list.push_bind(id);
                        }
                        select.push(")");
                        let rows: Vec<(String,)> =
                            select.build_query_as().fetch_all(&self.pool).await?;
                        found.extend(rows.into_iter().map(|(id,)| id));
                    }
                    Ok(found)
                }

                async fn audit_entries(
                    &self,
                    workspace: &WorkspaceId,
                    filter: &AuditFilter,
                    before: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<AuditRow>> {
                    sqlx::query_as::<_, EntryRow>(&format!(
                        "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE workspace_id = $1 \
                         AND body IS NOT NULL AND ($2 IS NULL OR idx < (SELECT b.idx \
                         FROM audit_entries b WHERE b.workspace_id = $1 AND b.id = $2)) \
                         AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) \
                         AND ($5 IS NULL OR actor_id = $5) \
                         AND ($6 IS NULL OR action LIKE $6 ESCAPE '\\') \
                         AND ($7 IS NULL OR application_id = $7) \
                         AND ($8 IS NULL OR outcome = $8) \
                         ORDER BY idx DESC LIMIT $9"
                    ))
                    .bind(workspace.as_str())
                    .bind(before)
                    .bind(opt_ms(filter.from))
                    .bind(opt_ms(filter.to))
                    .bind(filter.actor_id.as_deref())
                    .bind(filter.action_prefix.as_deref().map(like_prefix))
                    .bind(filter.application_id.as_deref())
                    .bind(filter.outcome.as_deref())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(EntryRow::into_row)
                    .collect()
                }

                async fn audit_range(
                    &self,
                    workspace: &WorkspaceId,
                    from: u64,
                    limit: u32,
                ) -> Result<Vec<AuditRow>> {
                    sqlx::query_as::<_, EntryRow>(&format!(
                        "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE workspace_id = $1 \
                         AND idx >= $2 ORDER BY idx LIMIT $3"
                    ))
                    .bind(workspace.as_str())
                    .bind(i(from))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(EntryRow::into_row)
                    .collect()
                }

                async fn audit_leaf_hashes(
                    &self,
                    workspace: &WorkspaceId,
                    from: u64,
                    to: u64,
                ) -> Result<Vec<Vec<u8>>> {
                    Ok(sqlx::query_scalar(
                        "SELECT leaf_hash FROM audit_entries WHERE workspace_id = $1 \
                         AND idx >= $2 AND idx < $3 ORDER BY idx",
                    )
                    .bind(workspace.as_str())
                    .bind(i(from))
                    .bind(i(to))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn audit_heads(&self) -> Result<Vec<AuditHead>> {
                    sqlx::query_as::<_, HeadRow>(&format!(
                        "SELECT {HEAD_COLUMNS} FROM audit_logs ORDER BY workspace_id"
                    ))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(HeadRow::into_head)
                    .collect()
                }

                async fn prune_audit(
                    &self,
                    workspace: &WorkspaceId,
                    cutoff: DateTime<Utc>,
                ) -> Result<u64> {
                    let mut w = self.writer().await?;
                    let mut tx = sqlx::Connection::begin(&mut *w).await?;
                    // A write first: the log's row lock (Postgres) or the write lock (SQLite).
                    sqlx::query(
                        "UPDATE audit_logs SET first_kept = first_kept WHERE workspace_id = $1",
                    )
                    .bind(workspace.as_str())
                    .execute(&mut *tx)
                    .await?;
                    let head: Option<(i64, i64)> = sqlx::query_as(
                        "SELECT size, first_kept FROM audit_logs WHERE workspace_id = $1",
                    )
                    .bind(workspace.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((size, first_kept)) = head else {
                        return Ok(0);
                    };
                    let first_recent: Option<i64> = sqlx::query_scalar(
                        "SELECT MIN(idx) FROM audit_entries WHERE workspace_id = $1 \
                         AND idx >= $2 AND at >= $3",
                    )
                    .bind(workspace.as_str())
                    .bind(first_kept)
                    .bind(ms(cutoff))
                    .fetch_one(&mut *tx)
                    .await?;
                    let keep_from = first_recent.unwrap_or(size);
                    if keep_from <= first_kept {
                        return u(first_kept, "audit_logs.first_kept");
                    }
                    sqlx::query(
                        "UPDATE audit_entries SET body = NULL WHERE workspace_id = $1 \
                         AND idx >= $2 AND idx < $3",
                    )
                    .bind(workspace.as_str())
                    .bind(first_kept)
                    .bind(keep_from)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE audit_logs SET first_kept = $2 WHERE workspace_id = $1")
                        .bind(workspace.as_str())
                        .bind(keep_from)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    u(keep_from, "audit_logs.first_kept")
                }

                async fn audit_logs_to_checkpoint(&self) -> Result<Vec<AuditHead>> {
                    sqlx::query_as::<_, HeadRow>(&format!(
                        "SELECT {HEAD_COLUMNS} FROM audit_logs WHERE size > checkpoint_size \
                         ORDER BY workspace_id"
                    ))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(HeadRow::into_head)
                    .collect()
                }

                async fn add_audit_checkpoint(
                    &self,
                    workspace: &WorkspaceId,
                    c: &StoredCheckpoint,
                ) -> Result<()> {
                    let mut w = self.writer().await?;
                    let mut tx = sqlx::Connection::begin(&mut *w).await?;
                    sqlx::query(
                        "UPDATE audit_logs SET checkpoint_size = $2 \
                         WHERE workspace_id = $1 AND checkpoint_size < $2",
                    )
                    .bind(workspace.as_str())
                    .bind(i(c.size))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO audit_checkpoints (workspace_id, size, root_hash, at, \
                         key_id, note) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (workspace_id, size) DO NOTHING",
                    )
                    .bind(workspace.as_str())
                    .bind(i(c.size))
                    .bind(&c.root_hash)
                    .bind(ms(c.at))
                    .bind(&c.key_id)
                    .bind(&c.note)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn latest_audit_checkpoint(
                    &self,
                    workspace: &WorkspaceId,
                ) -> Result<Option<StoredCheckpoint>> {
                    sqlx::query_as::<_, CheckpointRow>(
                        "SELECT size, root_hash, at, key_id, note FROM audit_checkpoints \
                         WHERE workspace_id = $1 ORDER BY size DESC LIMIT 1",
                    )
                    .bind(workspace.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .map(CheckpointRow::into_checkpoint)
                    .transpose()
                }

                async fn audit_checkpoint(
                    &self,
                    workspace: &WorkspaceId,
                    size: u64,
                ) -> Result<Option<StoredCheckpoint>> {
                    sqlx::query_as::<_, CheckpointRow>(
                        "SELECT size, root_hash, at, key_id, note FROM audit_checkpoints \
                         WHERE workspace_id = $1 AND size = $2",
                    )
                    .bind(workspace.as_str())
                    .bind(i(size))
                    .fetch_optional(&self.pool)
                    .await?
                    .map(CheckpointRow::into_checkpoint)
                    .transpose()
                }

                async fn audit_checkpoints(
                    &self,
                    workspace: &WorkspaceId,
                ) -> Result<Vec<StoredCheckpoint>> {
                    sqlx::query_as::<_, CheckpointRow>(
                        "SELECT size, root_hash, at, key_id, note FROM audit_checkpoints \
                         WHERE workspace_id = $1 ORDER BY size",
                    )
                    .bind(workspace.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(CheckpointRow::into_checkpoint)
                    .collect()
                }

                async fn audit_signing_keys(&self) -> Result<Vec<AuditSigningKey>> {
                    sqlx::query_as::<_, KeyRow>(
                        "SELECT id, name, public_key, sealed_seed, created_at, retired_at \
                         FROM audit_signing_keys ORDER BY created_at, id",
                    )
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(|k| {
                        Ok(AuditSigningKey {
                            id: k.id,
                            name: k.name,
                            public_key: k.public_key,
                            sealed_seed: k.sealed_seed,
                            created_at: time(k.created_at, "audit_signing_keys.created_at")?,
                            retired_at: k
                                .retired_at
                                .map(|t| time(t, "audit_signing_keys.retired_at"))
                                .transpose()?,
                        })
                    })
                    .collect()
                }

                async fn rotate_audit_signing_key(&self, key: &AuditSigningKey) -> Result<()> {
                    let mut w = self.writer().await?;
                    let mut tx = sqlx::Connection::begin(&mut *w).await?;
                    sqlx::query(
                        "UPDATE audit_signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
                    )
                    .bind(ms(key.created_at))
                    .execute(&mut *tx)
                    .await?;
                    insert_key(&mut *tx, key).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn add_first_audit_signing_key(&self, key: &AuditSigningKey) -> Result<bool> {
                    // The partial unique index allows one active key: a concurrent first start
                    // loses here and uses the winner's key.
                    match insert_key(&mut *self.writer().await?, key).await {
                        Ok(()) => Ok(true),
                        Err(StorageError::Duplicate) => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            }
        }
    };
}

pub(crate) use impl_audit;
