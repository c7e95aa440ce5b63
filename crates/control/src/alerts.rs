//! Alerts: a workspace's channels (Slack incoming webhooks, email, its own Standard Webhooks
//! endpoints) and the alerts raised in it. Raising stores the alert (listed in the API until
//! acknowledged) and, in the same commit, one delivery job per channel that wants its
//! severity, unless an alert with the same key was raised within the deduplication window.
//! Deliveries run as durable jobs: retried when the channel cannot be reached, skipped while
//! the channel is in its cooldown. Secrets of channels (a Slack webhook's URL, a webhook's
//! signing secret) are sealed under the master key and opened only to deliver.

use std::time::Duration;

use authsome_domain::alert::{Alert, AlertChannel, AlertChannelKind, AlertSeverity, Escalation};
use authsome_domain::event::DomainEvent;
use authsome_domain::id::{AlertChannelId, AlertId, WorkspaceId};
use authsome_domain::job::Job;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{Actor, Permission};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::rotation::Fault;
use crate::{ControlError, ControlPlane, Result};

/// The job that delivers one alert to one channel.
pub const DELIVER_JOB: &str = "alert.deliver";
/// Alerts with the same key within this window are one.
const DEDUPE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(1);
const MAX_RECIPIENTS: usize = 10;
const MAX_COOLDOWN: u32 = 24 * 3600;
/// The longest wait before an unacknowledged alert escalates: a week, in minutes.
const MAX_ESCALATION_MINUTES: u32 = 7 * 24 * 60;
/// Delivery attempts before a delivery is given up.
const MAX_ATTEMPTS: u32 = 8;

/// Delivers to the outside (through the egress policy); `authsome-connect` implements it.
#[async_trait::async_trait]
pub trait AlertSender: Send + Sync {
    /// Posts `{text}` to a Slack incoming webhook.
    async fn slack(&self, url: &str, text: &str) -> std::result::Result<(), String>;
    /// Posts `body` to `url`, signed with the Standard Webhooks scheme under `secret`.
    async fn webhook(
        &self,
        url: &str,
        secret: &str,
        id: &str,
        body: &str,
    ) -> std::result::Result<(), String>;
}

/// `POST /control/v1/workspaces/{wsId}/alert-channels`.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAlertChannel {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "slack"))]
    pub kind: AlertChannelKind,
    /// Slack `{url}` (its incoming webhook), email `{to: [addresses]}`, webhook `{url}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    /// Deliver only alerts at least this severe (default `info`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "warning"))]
    pub min_severity: Option<AlertSeverity>,
    /// At most one delivery per this many seconds (default 0; at most 86400).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 86_400))]
    pub cooldown_seconds: Option<u32>,
    /// An alert delivered here that nobody acknowledged within `afterMinutes` goes on to the
    /// channel `channelId` (of this workspace; it may escalate further).
    pub escalation: Option<Escalation>,
    /// Receive alerts only when another channel escalates to this one (default false).
    pub escalation_only: Option<bool>,
}

/// A channel just made: a webhook's signing secret is shown here, once.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreatedAlertChannel {
    #[serde(flatten)]
    pub channel: AlertChannel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

fn rank(s: AlertSeverity) -> u8 {
    match s {
        AlertSeverity::Info => 0,
        AlertSeverity::Warning => 1,
        AlertSeverity::Critical => 2,
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ControlError {
    authsome_domain::ValidationError::new(field, message.into()).into()
}

fn seal_context(id: &AlertChannelId) -> Vec<u8> {
    format!("authsome:alert-channel:v1:{id}").into_bytes()
}

fn http_url(field: &'static str, v: Option<&Value>) -> Result<url::Url> {
    v.and_then(Value::as_str)
        .filter(|u| u.len() <= 2048)
        .and_then(|u| url::Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
        .ok_or_else(|| invalid(field, "must be an http(s) URL"))
}

/// What an alert says in Slack and email: never more than its title and ids.
fn text_of(alert: &Alert) -> String {
    let details = alert
        .details
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().map_or(v.to_string(), str::to_owned)))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    format!(
        "[{}] {}\n{}\n(alert {} in workspace {})",
        alert.severity.as_str(),
        alert.title,
        details,
        alert.id,
        alert.workspace_id
    )
}

impl ControlPlane {
    /// Adds a channel (owners and admins).
    pub async fn create_alert_channel(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewAlertChannel,
    ) -> Result<CreatedAlertChannel> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let cooldown = input.cooldown_seconds.unwrap_or(0);
        if cooldown > MAX_COOLDOWN {
            return Err(invalid(
                "cooldownSeconds",
                format!("at most {MAX_COOLDOWN}"),
            ));
        }
        if let Some(e) = &input.escalation {
            if !(1..=MAX_ESCALATION_MINUTES).contains(&e.after_minutes) {
                return Err(invalid(
                    "escalation.afterMinutes",
                    format!("between 1 and {MAX_ESCALATION_MINUTES}"),
                ));
            }
            if self.store.alert_channel(ws, &e.channel_id).await?.is_none() {
                return Err(invalid(
                    "escalation.channelId",
                    "no such channel in this workspace",
                ));
            }
        }
        let master = self
            .master_key
            .as_ref()
            .ok_or_else(|| ControlError::Unavailable("no master key to seal with".into()))?;
        let id = AlertChannelId::new();
        let (config, secret, shown) = match input.kind {
            AlertChannelKind::Slack => {
                let url = http_url("config.url", input.config.get("url"))?;
                let host = url.host_str().unwrap_or_default().to_owned();
                (
                    json!({"host": host}),
                    Some(Zeroizing::new(url.to_string())),
                    None,
                )
            }
            AlertChannelKind::Webhook => {
                let url = http_url("config.url", input.config.get("url"))?;
                let secret = crate::providers::new_signing_secret();
                (
                    json!({"url": url.as_str()}),
                    Some(secret.clone()),
                    Some(secret),
                )
            }
            AlertChannelKind::Email => {
                let to: Vec<String> = input
                    .config
                    .get("to")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let valid = |a: &String| {
                    a.len() <= 254
                        && a.split_once('@')
                            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                };
                if to.is_empty() || to.len() > MAX_RECIPIENTS || !to.iter().all(valid) {
                    return Err(invalid(
                        "config.to",
                        format!("1 to {MAX_RECIPIENTS} email addresses"),
                    ));
                }
                (json!({"to": to}), None, None)
            }
        };
        let channel = AlertChannel {
            sealed: secret
                .as_ref()
                .map(|s| master.seal(&seal_context(&id), s.as_bytes())),
            id,
            workspace_id: ws.clone(),
            kind: input.kind,
            config,
            min_severity: input.min_severity.unwrap_or(AlertSeverity::Info),
            cooldown_seconds: cooldown,
            escalation: input.escalation,
            escalation_only: input.escalation_only.unwrap_or(false),
            last_delivered_at: None,
            created_at: self.clock.now(),
        };
        let event = DomainEvent::new("alert.channel.created")
            .workspace(ws)
            .target(&channel.id)
            .change("type", channel.kind.as_str());
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .insert_alert_channel(&channel, outbox)
                .await
                .map_err(crate::gone("alert channel to escalate to"))
        })
        .await?;
        Ok(CreatedAlertChannel {
            channel,
            signing_secret: shown.map(|s| s.to_string()),
        })
    }

    pub async fn alert_channels(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
    ) -> Result<Vec<AlertChannel>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.alert_channels(ws).await?)
    }

    pub async fn delete_alert_channel(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &AlertChannelId,
    ) -> Result<()> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let event = DomainEvent::new("alert.channel.deleted")
            .workspace(ws)
            .target(id);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .delete_alert_channel(ws, id, outbox)
                .await
                .map_err(crate::gone("alert channel"))
        })
        .await
    }

    pub async fn alerts(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Alert>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.alerts(ws, page).await?)
    }

    /// Acknowledges an alert (any member who reads the vaults); once.
    pub async fn acknowledge_alert(&self, actor: &Actor, id: &AlertId) -> Result<Alert> {
        let alert = self
            .store
            .alert(None, id)
            .await?
            .ok_or(ControlError::NotFound("alert"))?;
        let ws = alert.workspace_id.clone();
        self.readable_in(actor, &ws, "alert").await?;
        let by = self.person_of(actor).await?;
        let now = self.clock.now();
        let event = DomainEvent::new("alert.acknowledged")
            .workspace(&ws)
            .target(id);
        let already = || ControlError::Conflict("the alert was acknowledged already".into());
        if alert.acknowledged_at.is_some() {
            return Err(already());
        }
        self.audited(Some(actor), vec![event], async |outbox| {
            match self
                .store
                .acknowledge_alert(&ws, id, &by, now, outbox)
                .await
            {
                Ok(true) => Ok(()),
                // Acknowledged meanwhile: nothing was written.
                Ok(false) => Err(already()),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        self.store
            .alert(Some(&ws), id)
            .await?
            .ok_or(ControlError::NotFound("alert"))
    }

    /// Raises an alert in `ws` (deduplicated by `key` within the window) and enqueues its
    /// deliveries. Never fails its caller: an alert that cannot be stored is logged.
    pub(crate) async fn raise_alert(
        &self,
        ws: &WorkspaceId,
        kind: &str,
        severity: AlertSeverity,
        title: String,
        details: Value,
        key: String,
    ) {
        let since = self.clock.now() - DEDUPE_WINDOW;
        self.raise_alert_since(ws, kind, severity, title, details, key, since)
            .await
    }

    /// [`ControlPlane::raise_alert`], deduplicated since `since` (a threshold: once a month).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn raise_alert_since(
        &self,
        ws: &WorkspaceId,
        kind: &str,
        severity: AlertSeverity,
        title: String,
        details: Value,
        key: String,
        since: DateTime<Utc>,
    ) {
        let outcome = async {
            let now = self.clock.now();
            let alert = Alert {
                id: AlertId::new(),
                workspace_id: ws.clone(),
                kind: kind.to_owned(),
                severity,
                title,
                details,
                dedupe_key: key,
                created_at: now,
                acknowledged_at: None,
                acknowledged_by: None,
            };
            let jobs: Vec<Job> = self
                .store
                .alert_channels(ws)
                .await?
                .iter()
                .filter(|c| !c.escalation_only && rank(c.min_severity) <= rank(severity))
                .map(|c| {
                    Job::new(
                        DELIVER_JOB,
                        json!({"alert": alert.id.as_str(), "channel": c.id.as_str()}),
                        Some(ws),
                        now,
                    )
                })
                .collect();
            self.store.raise_alert(&alert, since, &jobs).await
        }
        .await;
        if let Err(e) = outcome {
            tracing::error!(workspace = ws.as_str(), kind, error = %e, "an alert could not be raised");
        }
    }

    /// Delivers one alert to one channel (a job).
    pub(crate) async fn deliver_alert(
        &self,
        job: &Job,
    ) -> std::result::Result<Option<DateTime<Utc>>, Fault> {
        let ids = (
            job.payload["alert"]
                .as_str()
                .and_then(|a| AlertId::parse(a).ok()),
            job.payload["channel"]
                .as_str()
                .and_then(|c| AlertChannelId::parse(c).ok()),
            job.workspace_id.clone(),
        );
        let (Some(alert_id), Some(channel_id), Some(ws)) = ids else {
            return Err(Fault::Failed(
                "a delivery without its alert or channel".into(),
            ));
        };
        let storage = |e: authsome_storage::StorageError| Fault::from(ControlError::from(e));
        let alert = self
            .store
            .alert(Some(&ws), &alert_id)
            .await
            .map_err(storage)?;
        let channel = self
            .store
            .alert_channel(&ws, &channel_id)
            .await
            .map_err(storage)?;
        // Gone meanwhile (the channel deleted, the workspace too): nothing to deliver.
        let (Some(alert), Some(channel)) = (alert, channel) else {
            return Ok(None);
        };
        let escalated = job.payload["escalated"].as_bool() == Some(true);
        if escalated
            && (alert.acknowledged_at.is_some()
                || rank(channel.min_severity) > rank(alert.severity))
        {
            // Someone answered in time (or the channel does not want it): no escalation.
            return Ok(None);
        }
        let alert = if escalated {
            Alert {
                title: format!("Unacknowledged: {}", alert.title),
                ..alert
            }
        } else {
            alert
        };
        let now = self.clock.now();
        if let Some(last) = channel.last_delivered_at {
            let ready = last + chrono::Duration::seconds(i64::from(channel.cooldown_seconds));
            if channel.cooldown_seconds > 0 && now < ready {
                // In its cooldown: the alert stays in the API, this channel stays quiet.
                self.escalate(&alert, &channel, now).await?;
                return Ok(None);
            }
        }
        let secret = || -> std::result::Result<Zeroizing<String>, Fault> {
            let master = self
                .master_key
                .as_ref()
                .ok_or_else(|| Fault::Failed("no master key".into()))?;
            let sealed = channel
                .sealed
                .as_deref()
                .ok_or_else(|| Fault::Failed("the channel has no secret".into()))?;
            let opened = master
                .open(&seal_context(&channel.id), sealed)
                .map_err(|_| Fault::Failed("the channel's secret does not open".into()))?;
            String::from_utf8(opened)
                .map(Zeroizing::new)
                .map_err(|_| Fault::Failed("the channel's secret is not text".into()))
        };
        let sent = match channel.kind {
            AlertChannelKind::Slack => {
                let sender = self.alert_sender()?;
                sender.slack(&secret()?, &text_of(&alert)).await
            }
            AlertChannelKind::Webhook => {
                let sender = self.alert_sender()?;
                let url = channel.config["url"].as_str().unwrap_or_default();
                let body = json!({"type": format!("alert.{}", alert.kind), "timestamp": now, "data": alert});
                let id = format!("msg_{}", alert.id.as_str().trim_start_matches("alr_"));
                sender
                    .webhook(url, &secret()?, &id, &body.to_string())
                    .await
            }
            AlertChannelKind::Email => {
                let mailer = self
                    .mailer
                    .as_ref()
                    .ok_or_else(|| Fault::Failed("this deployment has no mail server".into()))?;
                let mut result = Ok(());
                for to in channel.config["to"].as_array().into_iter().flatten() {
                    let mail = crate::mail::Mail {
                        to: to.as_str().unwrap_or_default().to_owned(),
                        subject: format!("[AuthSome {}] {}", alert.severity.as_str(), alert.title),
                        text: text_of(&alert),
                    };
                    if let Err(e) = mailer.send(mail).await {
                        result = Err(e);
                        break;
                    }
                }
                result
            }
        };
        match sent {
            Ok(()) => {
                self.store
                    .alert_delivered(&ws, &channel.id, now)
                    .await
                    .map_err(storage)?;
                self.escalate(&alert, &channel, now).await?;
                Ok(None)
            }
            Err(why) if job.attempts < MAX_ATTEMPTS => {
                let wait = Duration::from_secs(5u64 << job.attempts.min(8));
                Err(Fault::Later(wait, why))
            }
            Err(why) => Err(Fault::Failed(why)),
        }
    }

    /// Alerts for credentials that expire soon: 7 days before a secret's `expiresAt` (warning)
    /// and 1 day before (critical), once each per expiry date; saying when the secret has no
    /// rotation settings (nothing will rotate it by itself). How many were raised or found.
    pub async fn alert_expiring_credentials(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut found = 0;
        let mut after = None;
        loop {
            let page = self
                .store
                .all_expiring_secrets(now + chrono::Duration::days(7), after.as_ref(), 200)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.id.clone());
            for secret in &page {
                let Some(expires) = secret.expires_at else {
                    continue;
                };
                let (days, severity) = if expires <= now + chrono::Duration::days(1) {
                    (1, AlertSeverity::Critical)
                } else {
                    (7, AlertSeverity::Warning)
                };
                let rotatable = self
                    .store
                    .rotation_config(&secret.workspace_id, &secret.vault_id, &secret.name)
                    .await?
                    .is_some();
                let when = if expires <= now {
                    "has expired".to_owned()
                } else {
                    format!(
                        "expires within {days} day{}",
                        if days == 1 { "" } else { "s" }
                    )
                };
                let title = if rotatable {
                    format!("The credential {} {when}", secret.name)
                } else {
                    format!(
                        "The credential {} {when} and cannot be rotated automatically",
                        secret.name
                    )
                };
                self.raise_alert_since(
                    &secret.workspace_id,
                    "credential.expiring",
                    severity,
                    title,
                    json!({"vault": secret.vault_id.as_str(), "secret": secret.name,
                           "expiresAt": expires, "rotatable": rotatable}),
                    format!(
                        "credential.expiring.{days}:{}:{}",
                        secret.id,
                        expires.timestamp_millis()
                    ),
                    // Once per threshold and expiry date.
                    expires - chrono::Duration::days(30),
                )
                .await;
                found += 1;
            }
        }
        Ok(found)
    }

    /// Schedules the delivery of `alert` to the channel `channel` escalates to, for when its
    /// time is up; that delivery goes out only if the alert is still unacknowledged then. Once
    /// per alert and channel (so a circle of escalations ends).
    async fn escalate(
        &self,
        alert: &Alert,
        channel: &AlertChannel,
        now: DateTime<Utc>,
    ) -> std::result::Result<(), Fault> {
        let Some(next) = &channel.escalation else {
            return Ok(());
        };
        if alert.acknowledged_at.is_some() {
            return Ok(());
        }
        let mut job = Job::new(
            DELIVER_JOB,
            json!({"alert": alert.id.as_str(), "channel": next.channel_id.as_str(),
                   "escalated": true, "from": channel.id.as_str()}),
            Some(&alert.workspace_id),
            now,
        );
        job.run_at = now + chrono::Duration::minutes(i64::from(next.after_minutes));
        job.dedupe_key = Some(format!("alert.escalate:{}:{}", alert.id, next.channel_id));
        self.store
            .enqueue_job(&job)
            .await
            .map_err(|e| Fault::from(ControlError::from(e)))?;
        Ok(())
    }

    fn alert_sender(&self) -> std::result::Result<&dyn AlertSender, Fault> {
        self.alert_sender
            .as_deref()
            .ok_or_else(|| Fault::Failed("this deployment makes no outbound calls".into()))
    }
}
