//! Alerts and where they go: a workspace's alert channels (Slack incoming webhooks, email, its
//! own signed webhooks) and the alerts raised in it (rotations, approvals, policy violations,
//! limits), each listed in the API until acknowledged. What an alert says names resources by
//! id, never a value.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::id::{AlertChannelId, AlertId, WorkspaceId};
use crate::tenancy::workspace::string_enum;

string_enum!(
/// How a channel delivers.
AlertChannelKind {
    Slack => "slack",
    Email => "email",
    Webhook => "webhook"
});

string_enum!(
/// How loud an alert is.
AlertSeverity {
    Info => "info",
    Warning => "warning",
    Critical => "critical"
});

/// A channel: its public settings in `config`, its secret part (a Slack webhook URL, a
/// webhook's signing secret) only sealed under the master key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AlertChannel {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "alc_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: AlertChannelId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "slack"))]
    pub kind: AlertChannelKind,
    /// Public settings: an email channel's `to`, a webhook's `url`, a Slack channel's host.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    #[serde(skip)]
    pub sealed: Option<Vec<u8>>,
    /// Alerts less severe than this are not delivered here (default `info`: all).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "warning"))]
    pub min_severity: AlertSeverity,
    /// At most one delivery per this many seconds (0: no cooldown).
    pub cooldown_seconds: u32,
    /// Where an alert delivered here goes next when nobody acknowledged it in time.
    pub escalation: Option<Escalation>,
    /// Receives alerts only when another channel escalates to it (an on-call pager).
    pub escalation_only: bool,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An unacknowledged alert goes on to `channel_id` after `after_minutes`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Escalation {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "alc_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub channel_id: AlertChannelId,
    /// 1 to 10,080 (a week).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_080))]
    pub after_minutes: u32,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "alr_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: AlertId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    /// `rotation.succeeded`, `rotation.failed`, `approval.requested`, `approval.decided`,
    /// `approval.expired`, `approval.break_glass`, `policy.violation`, `usage.threshold`, …
    #[serde(rename = "type")]
    pub kind: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "critical"))]
    pub severity: AlertSeverity,
    pub title: String,
    /// Ids of what it is about (rotation, secret, approval request), never a value.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
    /// Alerts with the same key within the deduplication window are one.
    pub dedupe_key: String,
    pub created_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
}
