//! Alert channels and alerts. An alert and the jobs that deliver it commit together, and only
//! when no alert with the same key was raised in the deduplication window (checked in the same
//! transaction, under the writer).

use authsome_domain::alert::{Alert, AlertChannel, AlertChannelKind, AlertSeverity};
use authsome_domain::id::{AlertChannelId, AlertId, WorkspaceId};
use authsome_domain::job::Job;
use authsome_domain::page::{Page, PageRequest};
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::outbox::Outbox;
use crate::rows::{json, time};
use crate::{Result, StorageError};

#[async_trait::async_trait]
pub trait AlertRepository {
    /// `NotFound` when it escalates to a channel that is not the workspace's.
    async fn insert_alert_channel(&self, channel: &AlertChannel, outbox: &Outbox) -> Result<()>;
    async fn alert_channels(&self, workspace: &WorkspaceId) -> Result<Vec<AlertChannel>>;
    async fn alert_channel(
        &self,
        workspace: &WorkspaceId,
        id: &AlertChannelId,
    ) -> Result<Option<AlertChannel>>;
    async fn delete_alert_channel(
        &self,
        workspace: &WorkspaceId,
        id: &AlertChannelId,
        outbox: &Outbox,
    ) -> Result<()>;
    /// Notes a delivery on the channel (its cooldown counts from here).
    async fn alert_delivered(
        &self,
        workspace: &WorkspaceId,
        id: &AlertChannelId,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Stores `alert` and its delivery `jobs` unless an alert with its dedupe key was raised
    /// in the workspace since `since`; whether it was stored.
    async fn raise_alert(&self, alert: &Alert, since: DateTime<Utc>, jobs: &[Job]) -> Result<bool>;
    async fn alerts(&self, workspace: &WorkspaceId, page: &PageRequest) -> Result<Page<Alert>>;
    /// An alert; with no workspace (a delivery job), any.
    async fn alert(&self, workspace: Option<&WorkspaceId>, id: &AlertId) -> Result<Option<Alert>>;
    /// `false` when it was acknowledged already (or is not the workspace's).
    async fn acknowledge_alert(
        &self,
        workspace: &WorkspaceId,
        id: &AlertId,
        by: &str,
        at: DateTime<Utc>,
        outbox: &Outbox,
    ) -> Result<bool>;
}

pub(crate) const CHANNEL_COLUMNS: &str = "id, workspace_id, kind, config, sealed, min_severity, \
     cooldown_seconds, escalate_to, escalate_after_minutes, escalation_only, last_delivered_at, \
     created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ChannelRow {
    id: String,
    workspace_id: String,
    kind: String,
    config: String,
    sealed: Option<String>,
    min_severity: String,
    cooldown_seconds: i64,
    escalate_to: Option<String>,
    escalate_after_minutes: Option<i64>,
    escalation_only: bool,
    last_delivered_at: Option<i64>,
    created_at: i64,
}

impl ChannelRow {
    pub(crate) fn into_domain(self) -> Result<AlertChannel> {
        let corrupt = StorageError::Corrupt;
        Ok(AlertChannel {
            id: AlertChannelId::parse(&self.id).map_err(|_| corrupt("alert_channels.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| corrupt("alert_channels.workspace_id"))?,
            kind: AlertChannelKind::parse(&self.kind).ok_or(corrupt("alert_channels.kind"))?,
            config: json(&self.config, "alert_channels.config")?,
            sealed: self
                .sealed
                .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
                .transpose()
                .map_err(|_| corrupt("alert_channels.sealed"))?,
            min_severity: AlertSeverity::parse(&self.min_severity)
                .ok_or(corrupt("alert_channels.min_severity"))?,
            cooldown_seconds: u32::try_from(self.cooldown_seconds)
                .map_err(|_| corrupt("alert_channels.cooldown_seconds"))?,
            escalation: match (self.escalate_to, self.escalate_after_minutes) {
                (Some(to), Some(after)) => Some(authsome_domain::alert::Escalation {
                    channel_id: AlertChannelId::parse(&to)
                        .map_err(|_| corrupt("alert_channels.escalate_to"))?,
                    after_minutes: u32::try_from(after)
                        .map_err(|_| corrupt("alert_channels.escalate_after_minutes"))?,
                }),
                // The channel escalated to was deleted: no escalation.
                _ => None,
            },
            escalation_only: self.escalation_only,
            last_delivered_at: self
                .last_delivered_at
                .map(|t| time(t, "alert_channels.last_delivered_at"))
                .transpose()?,
            created_at: time(self.created_at, "alert_channels.created_at")?,
        })
    }
}

pub(crate) const ALERT_COLUMNS: &str = "id, workspace_id, kind, severity, title, details, \
     dedupe_key, created_at, acknowledged_at, acknowledged_by";

#[derive(sqlx::FromRow)]
pub(crate) struct AlertRow {
    id: String,
    workspace_id: String,
    kind: String,
    severity: String,
    title: String,
    details: String,
    dedupe_key: String,
    created_at: i64,
    acknowledged_at: Option<i64>,
    acknowledged_by: Option<String>,
}

impl AlertRow {
    pub(crate) fn into_domain(self) -> Result<Alert> {
        let corrupt = StorageError::Corrupt;
        Ok(Alert {
            id: AlertId::parse(&self.id).map_err(|_| corrupt("alerts.id"))?,
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| corrupt("alerts.workspace_id"))?,
            kind: self.kind,
            severity: AlertSeverity::parse(&self.severity).ok_or(corrupt("alerts.severity"))?,
            title: self.title,
            details: json(&self.details, "alerts.details")?,
            dedupe_key: self.dedupe_key,
            created_at: time(self.created_at, "alerts.created_at")?,
            acknowledged_at: self
                .acknowledged_at
                .map(|t| time(t, "alerts.acknowledged_at"))
                .transpose()?,
            acknowledged_by: self.acknowledged_by,
        })
    }
}

/// Implements [`AlertRepository`] for a store, after `crate::rotation::impl_rotation!`.
macro_rules! impl_alerts {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::alerts::AlertRepository for $store {
            async fn insert_alert_channel(
                &self,
                c: &authsome_domain::alert::AlertChannel,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                use base64::Engine;
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "INSERT INTO alert_channels (id, workspace_id, kind, config, sealed, \
                     min_severity, cooldown_seconds, escalate_to, escalate_after_minutes, \
                     escalation_only, last_delivered_at, created_at) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $9, $10, $11, NULL, $8 \
                     WHERE $9 IS NULL OR EXISTS (SELECT 1 FROM alert_channels \
                     WHERE id = $9 AND workspace_id = $2)",
                )
                .bind(c.id.as_str())
                .bind(c.workspace_id.as_str())
                .bind(c.kind.as_str())
                .bind(c.config.to_string())
                .bind(
                    c.sealed
                        .as_ref()
                        .map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
                )
                .bind(c.min_severity.as_str())
                .bind(i64::from(c.cooldown_seconds))
                .bind($crate::rows::ms(c.created_at))
                .bind(c.escalation.as_ref().map(|e| e.channel_id.as_str()))
                .bind(c.escalation.as_ref().map(|e| i64::from(e.after_minutes)))
                .bind(c.escalation_only)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    // Escalating to a channel of another workspace (or none).
                    return Err($crate::StorageError::NotFound);
                }
                commit_with_outbox(tx, outbox).await
            }

            async fn alert_channels(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<Vec<authsome_domain::alert::AlertChannel>> {
                let sql = format!(
                    "SELECT {} FROM alert_channels WHERE workspace_id = $1 ORDER BY id",
                    $crate::alerts::CHANNEL_COLUMNS
                );
                sqlx::query_as::<_, $crate::alerts::ChannelRow>(&sql)
                    .bind(workspace.as_str())
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map($crate::alerts::ChannelRow::into_domain)
                    .collect()
            }

            async fn alert_channel(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::AlertChannelId,
            ) -> $crate::Result<Option<authsome_domain::alert::AlertChannel>> {
                $crate::vault::scoped_row!(
                    self,
                    $crate::alerts::ChannelRow,
                    $crate::alerts::CHANNEL_COLUMNS,
                    "alert_channels",
                    workspace,
                    id
                )
            }

            async fn delete_alert_channel(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::AlertChannelId,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<()> {
                self.delete_in_workspace("alert_channels", workspace, id.as_str(), outbox)
                    .await
            }

            async fn alert_delivered(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::AlertChannelId,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE alert_channels SET last_delivered_at = $3 \
                     WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(workspace.as_str())
                .bind($crate::rows::ms(at))
                .execute(&mut *self.writer().await?)
                .await?;
                Ok(())
            }

            async fn raise_alert(
                &self,
                a: &authsome_domain::alert::Alert,
                since: chrono::DateTime<chrono::Utc>,
                jobs: &[authsome_domain::job::Job],
            ) -> $crate::Result<bool> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "INSERT INTO alerts (id, workspace_id, kind, severity, title, details, \
                     dedupe_key, created_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                     WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE workspace_id = $2 \
                     AND dedupe_key = $7 AND created_at >= $9)",
                )
                .bind(a.id.as_str())
                .bind(a.workspace_id.as_str())
                .bind(&a.kind)
                .bind(a.severity.as_str())
                .bind(&a.title)
                .bind(a.details.to_string())
                .bind(&a.dedupe_key)
                .bind($crate::rows::ms(a.created_at))
                .bind($crate::rows::ms(since))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                for job in jobs {
                    Self::insert_job_in(&mut tx, job).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn alerts(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                page: &authsome_domain::page::PageRequest,
            ) -> $crate::Result<authsome_domain::page::Page<authsome_domain::alert::Alert>> {
                $crate::vault::scoped_page!(
                    self,
                    $crate::alerts::AlertRow,
                    $crate::alerts::ALERT_COLUMNS,
                    "alerts",
                    workspace,
                    page
                )
            }

            async fn alert(
                &self,
                workspace: Option<&authsome_domain::id::WorkspaceId>,
                id: &authsome_domain::id::AlertId,
            ) -> $crate::Result<Option<authsome_domain::alert::Alert>> {
                let sql = format!(
                    "SELECT {} FROM alerts WHERE id = $1 AND ($2 IS NULL OR workspace_id = $2)",
                    $crate::alerts::ALERT_COLUMNS
                );
                sqlx::query_as::<_, $crate::alerts::AlertRow>(&sql)
                    .bind(id.as_str())
                    .bind(workspace.map(|w| w.as_str()))
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::alerts::AlertRow::into_domain)
                    .transpose()
            }

            async fn acknowledge_alert(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                id: &authsome_domain::id::AlertId,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<bool> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "UPDATE alerts SET acknowledged_at = $3, acknowledged_by = $4 \
                     WHERE id = $1 AND workspace_id = $2 AND acknowledged_at IS NULL",
                )
                .bind(id.as_str())
                .bind(workspace.as_str())
                .bind($crate::rows::ms(at))
                .bind(by)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                commit_with_outbox(tx, outbox).await?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_alerts;
