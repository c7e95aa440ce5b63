//! Rotation's records as the control plane and storage see them: a secret's rotation settings
//! (how to mint, where to push) and each rotation with its steps. Generators, policies and the
//! steps' order are decided in `authsome-rotation`; values never appear here.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::id::{ApprovalId, PolicyId, RotationId, VaultId, WorkspaceId};
use crate::provider::Provider;
use crate::tenancy::workspace::string_enum;

string_enum!(
/// Where a rotation stands.
RotationStatus {
    Pending => "pending",
    AwaitingApproval => "awaiting_approval",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    RolledBack => "rolled_back"
});

impl RotationStatus {
    /// Whether nothing more will happen to it (short of an explicit rollback).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::RolledBack)
    }
}

/// One place a rotated value is pushed: a provider and the provider's own fields (project,
/// key, …) as its connector reads them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotationTarget {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "vercel"))]
    pub provider: Provider,
    /// The provider's fields: Vercel `{projectId, key, teamId?, environments?, type?}`,
    /// Netlify `{accountId, siteId, key, context?}`, Render `{serviceId, key}`, Cloudflare
    /// `{accountId, scriptName, key}`, Fly `{app, key}`, AWS `{secretId, region?}`, GCP
    /// `{project, secret}`, Azure `{vaultName, name}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
}

/// How one secret is rotated.
#[derive(Debug, Clone, PartialEq)]
pub struct RotationConfig {
    pub workspace_id: WorkspaceId,
    pub vault_id: VaultId,
    pub secret_name: String,
    /// The generator spec (`authsome_rotation::generator::GeneratorSpec`), as given.
    pub generator: Value,
    pub targets: Vec<RotationTarget>,
    /// When it rotates by itself, as given (`{everyDays}` or `{cron, timeZone}`).
    pub schedule: Option<Value>,
    /// Must answer 2xx after the push for the rotation to stand.
    pub health_check_url: Option<String>,
    pub redeploy: bool,
    /// How long the previous credential stays valid after a rotation.
    pub grace_period_seconds: u32,
    pub revision: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last dry run of its rotation.
    pub previewed_at: Option<DateTime<Utc>>,
    /// The last scheduled occurrence taken (run or skipped).
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// One step of a rotation as it went.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// `mint`, `store`, `push`, `redeploy`, `verify`, `health_check`, `retire_previous`, and
    /// for a rollback `restore_target`, `restore_latest`.
    pub kind: String,
    /// The target's index, for the steps of one target.
    pub target: Option<usize>,
    /// `pending`, `succeeded`, `failed`, `skipped`, `rolled_back`.
    pub status: String,
    /// What it did (a version, a deploy's id), never a value.
    pub detail: Option<String>,
    /// Why it failed (the provider's code and message, without the value).
    pub error: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// One rotation of a secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "rot_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: RotationId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub vault_id: VaultId,
    pub secret_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "succeeded"))]
    pub status: RotationStatus,
    pub reason: Option<String>,
    /// Who asked (`acc_…`, `key_…`, `prn_…`, or `schedule`).
    pub requested_by: Option<String>,
    /// The policy's decision and the rules that made it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub decision: Value,
    pub steps: Vec<StepRecord>,
    /// The vault's latest version before, and the one the rotation wrote.
    pub previous_version: Option<u32>,
    pub new_version: Option<u32>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

string_enum!(
/// The level a policy's rules apply at.
PolicyScope {
    Workspace => "workspace",
    Provider => "provider",
    Secret => "secret"
});

/// Rotation rules at one level of a workspace: the whole workspace, one provider's targets
/// (`target` = the provider), or one secret (`target` = `<vaultId>/<name>`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pol_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: PolicyId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "provider"))]
    pub scope: PolicyScope,
    pub target: Option<String>,
    /// The rules (`authsome_rotation::policy::Rules`), as given.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub rules: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

string_enum!(
/// Where an approval request stands.
ApprovalStatus {
    Pending => "pending",
    Approved => "approved",
    Denied => "denied",
    Expired => "expired",
    Cancelled => "cancelled"
});

/// A rotation held for a second person: the requester can never decide it; an approver
/// (owner or admin) approves or denies it before it expires; an owner may break glass with a
/// written reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "apr_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: ApprovalId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub rotation_id: RotationId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pending"))]
    pub status: ApprovalStatus,
    /// Who asked for the rotation (`acc_…`, `key_…`).
    pub requested_by: String,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    /// The approver's (or the breaker of glass's) words.
    pub decision_reason: Option<String>,
    /// Approved by an owner without a second person.
    pub break_glass: bool,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}
