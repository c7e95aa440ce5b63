//! Rotation's storage: secrets' rotation settings, rotations with their steps, and the durable
//! job queue their runs (and later schedules and deliveries) go through. The SQL is written
//! once for both backends; only the job claim differs (`FOR UPDATE SKIP LOCKED` on Postgres, the
//! one held writer on SQLite).

use authsome_domain::id::{ApprovalId, JobId, PolicyId, RotationId, VaultId, WorkspaceId};
use authsome_domain::job::Job;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::rotation::{
    Approval, ApprovalStatus, Policy, PolicyScope, Rotation, RotationConfig, RotationStatus,
};
use chrono::{DateTime, Utc};

use crate::outbox::Outbox;
use crate::rows::{json, ms, time};
use crate::{Result, StorageError};

/// What a policy needs to know of a secret's and its workspace's past rotations (every one
/// started, whatever became of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationHistory {
    pub secret_since_day: u32,
    pub workspace_since_month: u32,
    pub last_at: Option<DateTime<Utc>>,
}

#[async_trait::async_trait]
pub trait RotationRepository {
    /// Stores a secret's rotation settings with its audit rows; the new revision.
    async fn put_rotation_config(&self, config: &RotationConfig, outbox: &Outbox) -> Result<u32>;
    async fn rotation_config(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        secret: &str,
    ) -> Result<Option<RotationConfig>>;
    /// Stores a new rotation, and the job that runs it or the approval it waits for, with the
    /// audit rows, in one commit; `Duplicate` when a rotation of the secret is under way
    /// (pending, awaiting approval or running).
    async fn insert_rotation(
        &self,
        rotation: &Rotation,
        job: Option<&Job>,
        approval: Option<&Approval>,
        outbox: &Outbox,
    ) -> Result<()>;
    /// Decides a pending approval (`State("decided")` when it is no longer pending) and saves
    /// its rotation, with the job that runs it when approved, in one commit.
    async fn decide_approval(
        &self,
        approval: &Approval,
        rotation: &Rotation,
        job: Option<&Job>,
        outbox: &Outbox,
    ) -> Result<()>;
    /// A workspace's approval request; with no workspace, any.
    async fn approval(
        &self,
        workspace: Option<&WorkspaceId>,
        id: &ApprovalId,
    ) -> Result<Option<Approval>>;
    async fn approvals(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Approval>>;
    /// Pending requests whose time ran out before `now`.
    async fn expired_approvals(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Approval>>;
    /// Saves a rotation's progress (status, steps, versions, error) with its audit rows; a job
    /// to enqueue with it (a rollback's run) goes in the same commit.
    async fn save_rotation(
        &self,
        rotation: &Rotation,
        job: Option<&Job>,
        outbox: &Outbox,
    ) -> Result<()>;
    /// A workspace's rotation; with no workspace (the job runner), any.
    async fn rotation(
        &self,
        workspace: Option<&WorkspaceId>,
        id: &RotationId,
    ) -> Result<Option<Rotation>>;
    async fn rotations(
        &self,
        workspace: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Rotation>>;
    async fn rotation_history(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        secret: &str,
        day_since: DateTime<Utc>,
        month_since: DateTime<Utc>,
    ) -> Result<RotationHistory>;
    /// The workspace's rotations started per UTC day in `[since, until)`: each day's start and
    /// count, days without any left out.
    async fn rotations_per_day(
        &self,
        workspace: &WorkspaceId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, u32)>>;
    /// Every secret's settings that have a schedule, across workspaces (the scheduler's read),
    /// in a stable order, `limit` after `after` (vault id, secret name).
    async fn all_scheduled_rotation_configs(
        &self,
        after: Option<(&VaultId, &str)>,
        limit: u32,
    ) -> Result<Vec<RotationConfig>>;
    /// Takes a scheduled occurrence of the secret's rotation (it must be later than the last one
    /// taken) and enqueues `job` with it; `false` when another replica took it first.
    async fn take_scheduled_occurrence(
        &self,
        config: &RotationConfig,
        occurrence: DateTime<Utc>,
        job: &Job,
    ) -> Result<bool>;
    /// Secrets (not deleted) whose `expiresAt` is at or before `before`, across workspaces (the
    /// expiry alerts' scan), in id order after `after`.
    async fn all_expiring_secrets(
        &self,
        before: DateTime<Utc>,
        after: Option<&authsome_domain::id::SecretId>,
        limit: u32,
    ) -> Result<Vec<authsome_domain::vault::Secret>>;
    /// Notes a dry run of the secret's rotation.
    async fn mark_previewed(
        &self,
        workspace: &WorkspaceId,
        vault: &VaultId,
        secret: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// `Duplicate` when the level has a policy already.
    async fn insert_policy(&self, policy: &Policy, outbox: &Outbox) -> Result<()>;
    /// Replaces a policy's rules; `NotFound` outside its workspace.
    async fn update_policy(&self, policy: &Policy, outbox: &Outbox) -> Result<()>;
    async fn delete_policy(
        &self,
        workspace: &WorkspaceId,
        id: &PolicyId,
        outbox: &Outbox,
    ) -> Result<()>;
    async fn policy(&self, workspace: &WorkspaceId, id: &PolicyId) -> Result<Option<Policy>>;
    async fn policies(&self, workspace: &WorkspaceId) -> Result<Vec<Policy>>;
}

#[async_trait::async_trait]
pub trait JobRepository {
    /// Enqueues a job; `false` when one with the same dedupe key exists already.
    async fn enqueue_job(&self, job: &Job) -> Result<bool>;
    /// Hands out up to `limit` jobs due at `now` (and those whose lease ran out) to `worker`
    /// until `lease_until`; no two workers get the same job.
    async fn claim_jobs(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Job>>;
    /// Hands `worker` the job that `from` (a transport's relay) claimed as its `attempt`th
    /// hand-out, or that anyone holds under a lease that ran out, until `lease_until`; none when
    /// the job is done, handed out again since, or held under a live lease by another worker.
    async fn take_job(
        &self,
        id: &JobId,
        attempt: u32,
        from: &str,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Job>>;
    /// Retires a job `worker` holds; `false` when it no longer holds it.
    async fn finish_job(&self, id: &JobId, worker: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Puts a job `worker` holds back in the queue for `run_at`, noting why.
    async fn retry_job(
        &self,
        id: &JobId,
        worker: &str,
        run_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool>;
    /// Gives up on a job `worker` holds, noting why.
    async fn fail_job(
        &self,
        id: &JobId,
        worker: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

pub(crate) const ROTATION_COLUMNS: &str = "id, workspace_id, vault_id, secret_name, status, \
     reason, requested_by, decision, steps, previous_version, new_version, error, created_at, \
     updated_at, finished_at";

#[derive(sqlx::FromRow)]
pub(crate) struct RotationRow {
    id: String,
    workspace_id: String,
    vault_id: String,
    secret_name: String,
    status: String,
    reason: Option<String>,
    requested_by: Option<String>,
    decision: String,
    steps: String,
    previous_version: Option<i64>,
    new_version: Option<i64>,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

fn version(v: Option<i64>, what: &'static str) -> Result<Option<u32>> {
    v.map(|v| u32::try_from(v).map_err(|_| StorageError::Corrupt(what)))
        .transpose()
}

impl RotationRow {
    pub(crate) fn into_domain(self) -> Result<Rotation> {
        let corrupt = StorageError::Corrupt;
        Ok(Rotation {
            id: RotationId::parse(&self.id).map_err(|_| corrupt("rotations.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| corrupt("rotations.workspace_id"))?,
            vault_id: VaultId::parse(&self.vault_id).map_err(|_| corrupt("rotations.vault_id"))?,
            secret_name: self.secret_name,
            status: RotationStatus::parse(&self.status).ok_or(corrupt("rotations.status"))?,
            reason: self.reason,
            requested_by: self.requested_by,
            decision: json(&self.decision, "rotations.decision")?,
            steps: json(&self.steps, "rotations.steps")?,
            previous_version: version(self.previous_version, "rotations.previous_version")?,
            new_version: version(self.new_version, "rotations.new_version")?,
            error: self.error,
            created_at: time(self.created_at, "rotations.created_at")?,
            updated_at: time(self.updated_at, "rotations.updated_at")?,
            finished_at: self
                .finished_at
                .map(|t| time(t, "rotations.finished_at"))
                .transpose()?,
        })
    }
}

pub(crate) const CONFIG_COLUMNS: &str = "workspace_id, vault_id, secret_name, generator, targets, \
     schedule, health_check_url, redeploy, grace_period_seconds, revision, created_at, updated_at, \
     previewed_at, scheduled_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ConfigRow {
    workspace_id: String,
    vault_id: String,
    secret_name: String,
    generator: String,
    targets: String,
    schedule: Option<String>,
    health_check_url: Option<String>,
    redeploy: bool,
    grace_period_seconds: i64,
    revision: i64,
    created_at: i64,
    updated_at: i64,
    previewed_at: Option<i64>,
    scheduled_at: Option<i64>,
}

impl ConfigRow {
    pub(crate) fn into_domain(self) -> Result<RotationConfig> {
        let corrupt = StorageError::Corrupt;
        Ok(RotationConfig {
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| corrupt("rotation_configs.workspace_id"))?,
            vault_id: VaultId::parse(&self.vault_id)
                .map_err(|_| corrupt("rotation_configs.vault_id"))?,
            secret_name: self.secret_name,
            generator: json(&self.generator, "rotation_configs.generator")?,
            targets: json(&self.targets, "rotation_configs.targets")?,
            schedule: self
                .schedule
                .map(|s| json(&s, "rotation_configs.schedule"))
                .transpose()?,
            health_check_url: self.health_check_url,
            redeploy: self.redeploy,
            grace_period_seconds: u32::try_from(self.grace_period_seconds)
                .map_err(|_| corrupt("rotation_configs.grace_period_seconds"))?,
            revision: u32::try_from(self.revision)
                .map_err(|_| corrupt("rotation_configs.revision"))?,
            created_at: time(self.created_at, "rotation_configs.created_at")?,
            updated_at: time(self.updated_at, "rotation_configs.updated_at")?,
            previewed_at: self
                .previewed_at
                .map(|t| time(t, "rotation_configs.previewed_at"))
                .transpose()?,
            scheduled_at: self
                .scheduled_at
                .map(|t| time(t, "rotation_configs.scheduled_at"))
                .transpose()?,
        })
    }
}

pub(crate) const APPROVAL_COLUMNS: &str = "id, workspace_id, rotation_id, status, requested_by, \
     reason, decided_by, decision_reason, break_glass, expires_at, created_at, decided_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ApprovalRow {
    id: String,
    workspace_id: String,
    rotation_id: String,
    status: String,
    requested_by: String,
    reason: Option<String>,
    decided_by: Option<String>,
    decision_reason: Option<String>,
    break_glass: bool,
    expires_at: i64,
    created_at: i64,
    decided_at: Option<i64>,
}

impl ApprovalRow {
    pub(crate) fn into_domain(self) -> Result<Approval> {
        let corrupt = StorageError::Corrupt;
        Ok(Approval {
            id: ApprovalId::parse(&self.id).map_err(|_| corrupt("rotation_approvals.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| corrupt("rotation_approvals.workspace_id"))?,
            rotation_id: RotationId::parse(&self.rotation_id)
                .map_err(|_| corrupt("rotation_approvals.rotation_id"))?,
            status: ApprovalStatus::parse(&self.status)
                .ok_or(corrupt("rotation_approvals.status"))?,
            requested_by: self.requested_by,
            reason: self.reason,
            decided_by: self.decided_by,
            decision_reason: self.decision_reason,
            break_glass: self.break_glass,
            expires_at: time(self.expires_at, "rotation_approvals.expires_at")?,
            created_at: time(self.created_at, "rotation_approvals.created_at")?,
            decided_at: self
                .decided_at
                .map(|t| time(t, "rotation_approvals.decided_at"))
                .transpose()?,
        })
    }
}

pub(crate) const POLICY_COLUMNS: &str =
    "id, workspace_id, scope, target, rules, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct PolicyRow {
    id: String,
    workspace_id: String,
    scope: String,
    target: String,
    rules: String,
    created_at: i64,
    updated_at: i64,
}

impl PolicyRow {
    pub(crate) fn into_domain(self) -> Result<Policy> {
        let corrupt = StorageError::Corrupt;
        Ok(Policy {
            id: PolicyId::parse(&self.id).map_err(|_| corrupt("rotation_policies.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| corrupt("rotation_policies.workspace_id"))?,
            scope: PolicyScope::parse(&self.scope).ok_or(corrupt("rotation_policies.scope"))?,
            target: Some(self.target).filter(|t| !t.is_empty()),
            rules: json(&self.rules, "rotation_policies.rules")?,
            created_at: time(self.created_at, "rotation_policies.created_at")?,
            updated_at: time(self.updated_at, "rotation_policies.updated_at")?,
        })
    }
}

pub(crate) const JOB_COLUMNS: &str =
    "id, kind, payload, workspace_id, run_at, attempts, dedupe_key, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: String,
    kind: String,
    payload: String,
    workspace_id: Option<String>,
    run_at: i64,
    attempts: i64,
    dedupe_key: Option<String>,
    created_at: i64,
}

impl JobRow {
    pub(crate) fn into_domain(self) -> Result<Job> {
        let corrupt = StorageError::Corrupt;
        Ok(Job {
            id: JobId::parse(&self.id).map_err(|_| corrupt("jobs.id"))?,
            kind: self.kind,
            payload: json(&self.payload, "jobs.payload")?,
            workspace_id: self
                .workspace_id
                .map(|w| WorkspaceId::parse(&w).map_err(|_| corrupt("jobs.workspace_id")))
                .transpose()?,
            run_at: time(self.run_at, "jobs.run_at")?,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("jobs.attempts"))?,
            dedupe_key: self.dedupe_key,
            created_at: time(self.created_at, "jobs.created_at")?,
        })
    }
}

/// The INSERT of a job (binds: id, kind, payload, workspace, run_at, dedupe key, created).
pub(crate) const INSERT_JOB: &str = "INSERT INTO jobs (id, kind, payload, workspace_id, status, \
     run_at, attempts, dedupe_key, created_at) VALUES ($1, $2, $3, $4, 'queued', $5, 0, $6, $7) \
     ON CONFLICT (dedupe_key) DO NOTHING";

pub(crate) fn job_binds(job: &Job) -> (String, i64, Option<&str>, i64) {
    (
        serde_json::to_string(&job.payload).unwrap_or_else(|_| "{}".into()),
        ms(job.run_at),
        job.workspace_id.as_ref().map(|w| w.as_str()),
        ms(job.created_at),
    )
}

pub(crate) fn steps_json(r: &Rotation) -> String {
    serde_json::to_string(&r.steps).unwrap_or_else(|_| "[]".into())
}

/// Implements [`RotationRepository`] and [`JobRepository`] for a store, after
/// `crate::sql::impl_repositories!`; `$lock` ends the job claim's inner SELECT.
macro_rules! impl_rotation {
    ($store:ty, $lock:literal) => {
        impl $store {
            /// Deletes the row `id` of `table` if it is `workspace`'s (`NotFound` if not), with
            /// the audit rows, in one commit. `table` is one of this crate's, never input.
            pub(crate) async fn delete_in_workspace(
                &self,
                table: &'static str,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &str,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let sql = format!("DELETE FROM {table} WHERE id = $1 AND workspace_id = $2");
                let done = sqlx::query(&sql)
                    .bind(id)
                    .bind(workspace.as_str())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn insert_job_in(
                exec: &mut sqlx::Transaction<'_, <$store as $crate::rotation::HasDb>::Db>,
                job: &authsome_domain::job::Job,
            ) -> $crate::Result<bool> {
                let (payload, run_at, workspace, created) = $crate::rotation::job_binds(job);
                let done = sqlx::query($crate::rotation::INSERT_JOB)
                    .bind(job.id.as_str())
                    .bind(&job.kind)
                    .bind(payload)
                    .bind(workspace)
                    .bind(run_at)
                    .bind(job.dedupe_key.as_deref())
                    .bind(created)
                    .execute(&mut **exec)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl $crate::rotation::RotationRepository for $store {
            async fn put_rotation_config(
                &self,
                c: &authsome_domain::rotation::RotationConfig,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<u32> {
                let generator = serde_json::to_string(&c.generator).unwrap_or_default();
                let targets = serde_json::to_string(&c.targets).unwrap_or_default();
                let schedule = c
                    .schedule
                    .as_ref()
                    .map(|s| serde_json::to_string(s).unwrap_or_default());
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let (revision,): (i64,) = sqlx::query_as(
                    "INSERT INTO rotation_configs (workspace_id, vault_id, secret_name, generator, \
                     targets, schedule, health_check_url, redeploy, grace_period_seconds, \
                     revision, created_at, updated_at) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10 \
                     WHERE EXISTS (SELECT 1 FROM vaults WHERE id = $2 AND workspace_id = $1) \
                     ON CONFLICT (vault_id, secret_name) DO UPDATE SET generator = $4, \
                     targets = $5, schedule = $6, health_check_url = $7, redeploy = $8, \
                     grace_period_seconds = $9, revision = rotation_configs.revision + 1, \
                     updated_at = $10 RETURNING revision",
                )
                .bind(c.workspace_id.as_str())
                .bind(c.vault_id.as_str())
                .bind(&c.secret_name)
                .bind(generator)
                .bind(targets)
                .bind(schedule)
                .bind(c.health_check_url.as_deref())
                .bind(c.redeploy)
                .bind(i64::from(c.grace_period_seconds))
                .bind($crate::rows::ms(c.updated_at))
                .fetch_optional(&mut *tx)
                .await?
                .ok_or($crate::StorageError::NotFound)?;
                commit_with_outbox(tx, outbox).await?;
                u32::try_from(revision)
                    .map_err(|_| $crate::StorageError::Corrupt("rotation_configs.revision"))
            }

            async fn rotation_config(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                secret: &str,
            ) -> $crate::Result<Option<authsome_domain::rotation::RotationConfig>> {
                let sql = format!(
                    "SELECT {} FROM rotation_configs WHERE workspace_id = $1 AND vault_id = $2 \
                     AND secret_name = $3",
                    $crate::rotation::CONFIG_COLUMNS
                );
                sqlx::query_as::<_, $crate::rotation::ConfigRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(vault.as_str())
                    .bind(secret)
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::rotation::ConfigRow::into_domain)
                    .transpose()
            }

            async fn insert_rotation(
                &self,
                r: &authsome_domain::rotation::Rotation,
                job: Option<&authsome_domain::job::Job>,
                approval: Option<&authsome_domain::rotation::Approval>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "INSERT INTO rotations (id, workspace_id, vault_id, secret_name, status, \
                     reason, requested_by, decision, steps, previous_version, new_version, error, \
                     created_at, updated_at, finished_at) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 \
                     WHERE EXISTS (SELECT 1 FROM vaults WHERE id = $3 AND workspace_id = $2)",
                )
                .bind(r.id.as_str())
                .bind(r.workspace_id.as_str())
                .bind(r.vault_id.as_str())
                .bind(&r.secret_name)
                .bind(r.status.as_str())
                .bind(r.reason.as_deref())
                .bind(r.requested_by.as_deref())
                .bind(r.decision.to_string())
                .bind($crate::rotation::steps_json(r))
                .bind(r.previous_version.map(i64::from))
                .bind(r.new_version.map(i64::from))
                .bind(r.error.as_deref())
                .bind($crate::rows::ms(r.created_at))
                .bind($crate::rows::ms(r.updated_at))
                .bind($crate::rows::opt_ms(r.finished_at))
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::unique)?;
                if done.rows_affected() != 1 {
                    return Err($crate::StorageError::NotFound);
                }
                if let Some(job) = job {
                    Self::insert_job_in(&mut tx, job).await?;
                }
                if let Some(a) = approval {
                    sqlx::query(
                        "INSERT INTO rotation_approvals (id, workspace_id, rotation_id, status, \
                         requested_by, reason, decided_by, decision_reason, break_glass, \
                         expires_at, created_at, decided_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(a.id.as_str())
                    .bind(a.workspace_id.as_str())
                    .bind(a.rotation_id.as_str())
                    .bind(a.status.as_str())
                    .bind(&a.requested_by)
                    .bind(a.reason.as_deref())
                    .bind(a.decided_by.as_deref())
                    .bind(a.decision_reason.as_deref())
                    .bind(a.break_glass)
                    .bind($crate::rows::ms(a.expires_at))
                    .bind($crate::rows::ms(a.created_at))
                    .bind($crate::rows::opt_ms(a.decided_at))
                    .execute(&mut *tx)
                    .await?;
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn decide_approval(
                &self,
                a: &authsome_domain::rotation::Approval,
                r: &authsome_domain::rotation::Rotation,
                job: Option<&authsome_domain::job::Job>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE rotation_approvals SET status = $3, decided_by = $4, \
                     decision_reason = $5, break_glass = $6, decided_at = $7 \
                     WHERE id = $1 AND workspace_id = $2 AND status = 'pending'",
                )
                .bind(a.id.as_str())
                .bind(a.workspace_id.as_str())
                .bind(a.status.as_str())
                .bind(a.decided_by.as_deref())
                .bind(a.decision_reason.as_deref())
                .bind(a.break_glass)
                .bind($crate::rows::opt_ms(a.decided_at))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err($crate::StorageError::State("the request was decided already"));
                }
                let done = sqlx::query(
                    "UPDATE rotations SET status = $3, error = $4, updated_at = $5, \
                     finished_at = $6 WHERE id = $1 AND workspace_id = $2",
                )
                .bind(r.id.as_str())
                .bind(r.workspace_id.as_str())
                .bind(r.status.as_str())
                .bind(r.error.as_deref())
                .bind($crate::rows::ms(r.updated_at))
                .bind($crate::rows::opt_ms(r.finished_at))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err($crate::StorageError::NotFound);
                }
                if let Some(job) = job {
                    Self::insert_job_in(&mut tx, job).await?;
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn approval(
                &self,
                workspace: Option<&authsome_domain::id::WorkspaceId>,
                id: &authsome_domain::id::ApprovalId,
            ) -> $crate::Result<Option<authsome_domain::rotation::Approval>> {
                let sql = format!(
                    "SELECT {} FROM rotation_approvals WHERE id = $1 \
                     AND ($2 IS NULL OR workspace_id = $2)",
                    $crate::rotation::APPROVAL_COLUMNS
                );
                sqlx::query_as::<_, $crate::rotation::ApprovalRow>(&sql)
                    .bind(id.as_str())
                    .bind(workspace.map(|w| w.as_str()))
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::rotation::ApprovalRow::into_domain)
                    .transpose()
            }

            async fn approvals(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                page: &authsome_domain::page::PageRequest,
            ) -> $crate::Result<authsome_domain::page::Page<authsome_domain::rotation::Approval>>
            {
                $crate::vault::scoped_page!(
                    self,
                    $crate::rotation::ApprovalRow,
                    $crate::rotation::APPROVAL_COLUMNS,
                    "rotation_approvals",
                    workspace,
                    page
                )
            }

            async fn expired_approvals(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::Result<Vec<authsome_domain::rotation::Approval>> {
                let sql = format!(
                    "SELECT {} FROM rotation_approvals WHERE status = 'pending' \
                     AND expires_at < $1 ORDER BY expires_at LIMIT $2",
                    $crate::rotation::APPROVAL_COLUMNS
                );
                sqlx::query_as::<_, $crate::rotation::ApprovalRow>(&sql)
                    .bind($crate::rows::ms(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::rotation::ApprovalRow::into_domain)
                    .collect()
            }

            async fn save_rotation(
                &self,
                r: &authsome_domain::rotation::Rotation,
                job: Option<&authsome_domain::job::Job>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE rotations SET status = $3, decision = $4, steps = $5, \
                     previous_version = $6, new_version = $7, error = $8, updated_at = $9, \
                     finished_at = $10 WHERE id = $1 AND workspace_id = $2",
                )
                .bind(r.id.as_str())
                .bind(r.workspace_id.as_str())
                .bind(r.status.as_str())
                .bind(r.decision.to_string())
                .bind($crate::rotation::steps_json(r))
                .bind(r.previous_version.map(i64::from))
                .bind(r.new_version.map(i64::from))
                .bind(r.error.as_deref())
                .bind($crate::rows::ms(r.updated_at))
                .bind($crate::rows::opt_ms(r.finished_at))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err($crate::StorageError::NotFound);
                }
                if let Some(job) = job {
                    Self::insert_job_in(&mut tx, job).await?;
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn rotation(
                &self,
                workspace: Option<&authsome_domain::id::WorkspaceId>,
                id: &authsome_domain::id::RotationId,
            ) -> $crate::Result<Option<authsome_domain::rotation::Rotation>> {
                let sql = format!(
                    "SELECT {} FROM rotations WHERE id = $1 AND ($2 IS NULL OR workspace_id = $2)",
                    $crate::rotation::ROTATION_COLUMNS
                );
                sqlx::query_as::<_, $crate::rotation::RotationRow>(&sql)
                    .bind(id.as_str())
                    .bind(workspace.map(|w| w.as_str()))
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::rotation::RotationRow::into_domain)
                    .transpose()
            }

            async fn rotations(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                page: &authsome_domain::page::PageRequest,
            ) -> $crate::Result<authsome_domain::page::Page<authsome_domain::rotation::Rotation>>
            {
                $crate::vault::scoped_page!(
                    self,
                    $crate::rotation::RotationRow,
                    $crate::rotation::ROTATION_COLUMNS,
                    "rotations",
                    workspace,
                    page
                )
            }

            async fn rotation_history(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                secret: &str,
                day_since: chrono::DateTime<chrono::Utc>,
                month_since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<$crate::rotation::RotationHistory> {
                let (secret_count, last): (i64, Option<i64>) = sqlx::query_as(
                    "SELECT COUNT(CASE WHEN created_at >= $4 THEN 1 END), MAX(created_at) \
                     FROM rotations WHERE workspace_id = $1 AND vault_id = $2 \
                     AND secret_name = $3",
                )
                .bind(workspace.as_str())
                .bind(vault.as_str())
                .bind(secret)
                .bind($crate::rows::ms(day_since))
                .fetch_one(&self.pool)
                .await?;
                let (month,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM rotations WHERE workspace_id = $1 AND created_at >= $2",
                )
                .bind(workspace.as_str())
                .bind($crate::rows::ms(month_since))
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::rotation::RotationHistory {
                    secret_since_day: u32::try_from(secret_count).unwrap_or(u32::MAX),
                    workspace_since_month: u32::try_from(month).unwrap_or(u32::MAX),
                    last_at: last
                        .map(|t| $crate::rows::time(t, "rotations.created_at"))
                        .transpose()?,
                })
            }

            async fn rotations_per_day(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                since: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<(chrono::DateTime<chrono::Utc>, u32)>> {
                let rows: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT created_at / 86400000, COUNT(*) FROM rotations \
                     WHERE workspace_id = $1 AND created_at >= $2 AND created_at < $3 \
                     GROUP BY created_at / 86400000 ORDER BY 1",
                )
                .bind(workspace.as_str())
                .bind($crate::rows::ms(since))
                .bind($crate::rows::ms(until))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(day, count)| {
                        Ok((
                            $crate::rows::time(day * 86_400_000, "rotations.created_at")?,
                            u32::try_from(count).unwrap_or(u32::MAX),
                        ))
                    })
                    .collect()
            }

            async fn all_scheduled_rotation_configs(
                &self,
                after: Option<(&authsome_domain::id::VaultId, &str)>,
                limit: u32,
            ) -> $crate::Result<Vec<authsome_domain::rotation::RotationConfig>> {
                let sql = format!(
                    "SELECT {} FROM rotation_configs WHERE schedule IS NOT NULL \
                     AND (vault_id > $1 OR (vault_id = $1 AND secret_name > $2)) \
                     ORDER BY vault_id, secret_name LIMIT $3",
                    $crate::rotation::CONFIG_COLUMNS
                );
                let (vault, name) = after.map_or(("", ""), |(v, n)| (v.as_str(), n));
                sqlx::query_as::<_, $crate::rotation::ConfigRow>(&sql)
                    .bind(vault)
                    .bind(name)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::rotation::ConfigRow::into_domain)
                    .collect()
            }

            async fn take_scheduled_occurrence(
                &self,
                c: &authsome_domain::rotation::RotationConfig,
                occurrence: chrono::DateTime<chrono::Utc>,
                job: &authsome_domain::job::Job,
            ) -> $crate::Result<bool> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE rotation_configs SET scheduled_at = $4 \
                     WHERE workspace_id = $1 AND vault_id = $2 AND secret_name = $3 \
                     AND (scheduled_at IS NULL OR scheduled_at < $4)",
                )
                .bind(c.workspace_id.as_str())
                .bind(c.vault_id.as_str())
                .bind(&c.secret_name)
                .bind($crate::rows::ms(occurrence))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::insert_job_in(&mut tx, job).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn all_expiring_secrets(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                after: Option<&authsome_domain::id::SecretId>,
                limit: u32,
            ) -> $crate::Result<Vec<authsome_domain::vault::Secret>> {
                let sql = format!(
                    "SELECT {} FROM vault_secrets WHERE expires_at IS NOT NULL \
                     AND expires_at <= $1 AND deleted_at IS NULL AND id > $2 \
                     ORDER BY id LIMIT $3",
                    $crate::vault::SECRET_COLUMNS
                );
                sqlx::query_as::<_, $crate::vault::SecretRow>(&sql)
                    .bind($crate::rows::ms(before))
                    .bind(after.map_or("", |a| a.as_str()))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::vault::SecretRow::into_domain)
                    .collect()
            }

            async fn mark_previewed(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                vault: &authsome_domain::id::VaultId,
                secret: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE rotation_configs SET previewed_at = $4 \
                     WHERE workspace_id = $1 AND vault_id = $2 AND secret_name = $3",
                )
                .bind(workspace.as_str())
                .bind(vault.as_str())
                .bind(secret)
                .bind($crate::rows::ms(at))
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn insert_policy(
                &self,
                p: &authsome_domain::rotation::Policy,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                sqlx::query(
                    "INSERT INTO rotation_policies (id, workspace_id, scope, target, rules, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(p.id.as_str())
                .bind(p.workspace_id.as_str())
                .bind(p.scope.as_str())
                .bind(p.target.as_deref().unwrap_or(""))
                .bind(p.rules.to_string())
                .bind($crate::rows::ms(p.created_at))
                .bind($crate::rows::ms(p.updated_at))
                .execute(&mut *tx)
                .await
                .map_err($crate::rows::unique)?;
                commit_with_outbox(tx, outbox).await
            }

            async fn update_policy(
                &self,
                p: &authsome_domain::rotation::Policy,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE rotation_policies SET rules = $3, updated_at = $4 \
                     WHERE id = $1 AND workspace_id = $2",
                )
                .bind(p.id.as_str())
                .bind(p.workspace_id.as_str())
                .bind(p.rules.to_string())
                .bind($crate::rows::ms(p.updated_at))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn delete_policy(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::PolicyId,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                self.delete_in_workspace("rotation_policies", workspace, id.as_str(), outbox)
                    .await
            }

            async fn policy(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::PolicyId,
            ) -> $crate::Result<Option<authsome_domain::rotation::Policy>> {
                $crate::vault::scoped_row!(
                    self,
                    $crate::rotation::PolicyRow,
                    $crate::rotation::POLICY_COLUMNS,
                    "rotation_policies",
                    workspace,
                    id
                )
            }

            async fn policies(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<Vec<authsome_domain::rotation::Policy>> {
                let sql = format!(
                    "SELECT {} FROM rotation_policies WHERE workspace_id = $1 ORDER BY id",
                    $crate::rotation::POLICY_COLUMNS
                );
                sqlx::query_as::<_, $crate::rotation::PolicyRow>(&sql)
                    .bind(workspace.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::rotation::PolicyRow::into_domain)
                    .collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::rotation::JobRepository for $store {
            async fn enqueue_job(&self, job: &authsome_domain::job::Job) -> $crate::Result<bool> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let inserted = Self::insert_job_in(&mut tx, job).await?;
                tx.commit().await?;
                Ok(inserted)
            }

            async fn claim_jobs(
                &self,
                worker: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::Result<Vec<authsome_domain::job::Job>> {
                let sql = format!(
                    "UPDATE jobs SET status = 'running', locked_by = $1, lease_until = $3, \
                     attempts = attempts + 1 WHERE id IN (SELECT id FROM jobs \
                     WHERE (status = 'queued' AND run_at <= $2) \
                     OR (status = 'running' AND lease_until < $2) \
                     ORDER BY run_at LIMIT $4{}) RETURNING {}",
                    $lock,
                    $crate::rotation::JOB_COLUMNS
                );
                sqlx::query_as::<_, $crate::rotation::JobRow>(&sql)
                    .bind(worker)
                    .bind($crate::rows::ms(now))
                    .bind($crate::rows::ms(lease_until))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.writer().await?)
                    .await?
                    .into_iter()
                    .map($crate::rotation::JobRow::into_domain)
                    .collect()
            }

            async fn take_job(
                &self,
                id: &authsome_domain::id::JobId,
                attempt: u32,
                from: &str,
                worker: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Option<authsome_domain::job::Job>> {
                let sql = format!(
                    "UPDATE jobs SET locked_by = $4, lease_until = $6 WHERE id = $1 \
                     AND attempts = $2 AND status = 'running' \
                     AND (locked_by = $3 OR lease_until < $5) RETURNING {}",
                    $crate::rotation::JOB_COLUMNS
                );
                sqlx::query_as::<_, $crate::rotation::JobRow>(&sql)
                    .bind(id.as_str())
                    .bind(i64::from(attempt))
                    .bind(from)
                    .bind(worker)
                    .bind($crate::rows::ms(now))
                    .bind($crate::rows::ms(lease_until))
                    .fetch_optional(&mut *self.writer().await?)
                    .await?
                    .map($crate::rotation::JobRow::into_domain)
                    .transpose()
            }

            async fn finish_job(
                &self,
                id: &authsome_domain::id::JobId,
                worker: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'done', finished_at = $3, locked_by = NULL, \
                     lease_until = NULL WHERE id = $1 AND locked_by = $2 AND status = 'running'",
                )
                .bind(id.as_str())
                .bind(worker)
                .bind($crate::rows::ms(now))
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn retry_job(
                &self,
                id: &authsome_domain::id::JobId,
                worker: &str,
                run_at: chrono::DateTime<chrono::Utc>,
                error: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'queued', run_at = $3, last_error = $4, \
                     locked_by = NULL, lease_until = NULL \
                     WHERE id = $1 AND locked_by = $2 AND status = 'running'",
                )
                .bind(id.as_str())
                .bind(worker)
                .bind($crate::rows::ms(run_at))
                .bind(error)
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn fail_job(
                &self,
                id: &authsome_domain::id::JobId,
                worker: &str,
                error: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'failed', last_error = $3, finished_at = $4, \
                     locked_by = NULL, lease_until = NULL \
                     WHERE id = $1 AND locked_by = $2 AND status = 'running'",
                )
                .bind(id.as_str())
                .bind(worker)
                .bind(error)
                .bind($crate::rows::ms(now))
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_rotation;

/// The database type a store's transactions run on.
pub(crate) trait HasDb {
    type Db: sqlx::Database;
}

impl HasDb for crate::SqliteStore {
    type Db = sqlx::Sqlite;
}

impl HasDb for crate::PostgresStore {
    type Db = sqlx::Postgres;
}
