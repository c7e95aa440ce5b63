//! Rotation's use cases: a secret's rotation settings, starting a rotation (or previewing its
//! plan), the closed loop run as a durable job, and rolling a rotation back.
//!
//! A rotation is a row with its steps (`authsome_rotation::plan`) and a `rotation.run` job
//! committed with it. The job runner (`crate::jobs`) hands jobs out under a lease and
//! runs the rotation step by step, saving after each one, so a process that dies mid-rotation
//! leaves it to be resumed (or rolled back) by whichever replica claims the job once its lease
//! lapses. Minting and storing write the vault's next version with check-and-set, so a resumed
//! run never stores twice; pushing the same version again is harmless. A step that fails for
//! good rolls back what was done before it (targets get the previous version, the vault's
//! latest goes back); one the provider asks to retry later puts the job back. The values pass
//! only between the vault and the connectors; records and audit entries name versions.

use std::sync::Arc;
use std::time::Duration;

use authsome_domain::alert::AlertSeverity;
use authsome_domain::event::{DomainEvent, Outcome as EventOutcome};
use authsome_domain::id::{ApprovalId, PolicyId};
use authsome_domain::id::{RotationId, VaultId, WorkspaceId};
use authsome_domain::job::Job;
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::provider::Provider;
use authsome_domain::rotation::{
    Approval, ApprovalStatus, Policy, PolicyScope, Rotation, RotationConfig, RotationStatus,
    RotationTarget, StepRecord,
};
use authsome_domain::tenancy::{Actor, Permission, Role};
use authsome_rotation::generator::GeneratorSpec;
use authsome_rotation::issuer::{CredentialIssuer, IssuerSpec};
use authsome_rotation::plan::{self, Shape, Step, Undo};
use authsome_rotation::policy::{self, Decision, Facts, Outcome, Rules};
use authsome_rotation::schedule::Schedule;
use authsome_rotation::target::{verify, TargetConnector, TargetError, Written};
use authsome_storage::StorageError;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::vault::{PutSecret, VaultActor};
use crate::{ControlError, ControlPlane, Result};

/// The job that runs a rotation.
pub const RUN_JOB: &str = "rotation.run";
/// The job that starts a scheduled occurrence.
pub const SCHEDULED_JOB: &str = "rotation.scheduled";
/// The job that rolls a completed rotation back.
pub const ROLLBACK_JOB: &str = "rotation.rollback";
/// Claims of a job before a provider that keeps failing fails the rotation.
const MAX_ATTEMPTS: u32 = 5;
const MAX_TARGETS: usize = 20;
const MAX_GRACE_SECONDS: u32 = 30 * 24 * 3600;
const MAX_REASON: usize = 500;

/// The adapters a rotation needs: a connector for a target, with a credential, and the health
/// probe (both through the operator's egress policy). `authsome-connect` implements it.
#[async_trait::async_trait]
pub trait RotationPorts: Send + Sync {
    /// The connector for `target`, calling with `credential` (a bearer token, or for AWS the
    /// access key's JSON).
    fn connect(
        &self,
        target: &RotationTarget,
        credential: &str,
    ) -> std::result::Result<Box<dyn TargetConnector>, TargetError>;
    /// The issuer of dual-phase credentials `spec` names, calling with `credential` (the
    /// provider's, as for [`Self::connect`]).
    fn issuer(
        &self,
        spec: &IssuerSpec,
        credential: &str,
    ) -> std::result::Result<Box<dyn CredentialIssuer>, TargetError>;
    /// What is wrong with a target's fields, without calling anyone.
    fn check(&self, target: &RotationTarget) -> std::result::Result<(), TargetError>;
    /// `GET url`: its status code.
    async fn probe(&self, url: &str) -> std::result::Result<u16, String>;
}

/// `PUT …/secrets/{name}/rotation`.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutRotation {
    /// How the next value is minted (default: 40 alphanumeric characters).
    pub generator: Option<GeneratorSpec>,
    /// Instead of a generator, the provider issues each next credential itself and the
    /// previous one stays valid until the grace period is over (dual-phase: two live
    /// credentials overlap); the previous one is then revoked. Needs the issuer's provider
    /// configured (`…/providers/aws` for IAM access keys).
    pub issuer: Option<IssuerSpec>,
    /// Where the value is pushed (1 to 20 targets); each provider needs a configuration in the
    /// workspace (`…/providers/{provider}`) for its credential.
    pub targets: Vec<RotationTarget>,
    /// Rotate by itself: `{everyDays}` after the last rotation, or `{cron, timeZone?}`.
    pub schedule: Option<Schedule>,
    /// Must answer 2xx after the push, else the rotation rolls back.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub health_check_url: Option<String>,
    /// Redeploy the targets after the push (default false).
    pub redeploy: Option<bool>,
    /// How long the previous value stays current elsewhere before it is retired (default 0,
    /// at most 2592000).
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2_592_000))]
    pub grace_period_seconds: Option<u32>,
}

/// A secret's rotation settings.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RotationSettings {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub vault_id: VaultId,
    pub secret_name: String,
    /// How each next value is minted, unless an issuer issues it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSpec>,
    /// The provider that issues each next credential (dual-phase).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerSpec>,
    pub targets: Vec<RotationTarget>,
    pub schedule: Option<Schedule>,
    pub health_check_url: Option<String>,
    pub redeploy: bool,
    pub grace_period_seconds: u32,
    pub revision: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST …/secrets/{name}/rotations`.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRotation {
    /// Only the plan: nothing changes.
    pub dry_run: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub reason: Option<String>,
}

/// `POST /control/v1/vaults/{vaultId}/rotations`: many secrets of one vault at once.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRotations {
    /// The secrets' names, each once (1 to 1,000).
    pub secrets: Vec<String>,
    /// Only the plans: nothing changes.
    pub dry_run: Option<bool>,
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub reason: Option<String>,
}

/// Secrets one batch may rotate.
pub const MAX_BATCH: usize = 1000;

/// What a rotation would do.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RotationPlan {
    pub secret_name: String,
    /// The version a rotation would write.
    pub next_version: u32,
    pub targets: Vec<RotationTarget>,
    pub steps: Vec<StepRecord>,
    pub decision: Decision,
}

/// `POST /control/v1/workspaces/{wsId}/policies`.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPolicy {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "provider"))]
    pub scope: PolicyScope,
    /// None for the workspace; the provider (`vercel`, …) for a provider; `<vaultId>/<name>`
    /// for a secret.
    pub target: Option<String>,
    pub rules: Rules,
}

/// `PUT /control/v1/policies/{polId}`: the new rules (they replace the old ones whole).
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyUpdate {
    pub rules: Rules,
}

/// `POST /control/v1/approvals/{aprId}/approve|deny|cancel|break-glass`.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalDecision {
    /// Why (required to break glass: at least 10 characters).
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub reason: Option<String>,
}

/// What is done to a pending approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalAction {
    Approve,
    Deny,
    Cancel,
    BreakGlass,
}

/// A month's rotations.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RotationUsage {
    pub month: String,
    /// Days with rotations (UTC), in order.
    pub days: Vec<DailyRotations>,
    /// Rotations started in the month (a dry run is none; a failed one counts).
    pub total: u64,
    pub allowance: authsome_domain::tenancy::RotationAllowance,
    /// Rotations past the plan's included ones where the plan bills them (pro).
    pub overage: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DailyRotations {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub rotations: u32,
}

/// A started rotation, or the plan of a dry run.
pub enum Started {
    Plan(RotationPlan),
    Rotation(Rotation),
}

fn step_record(step: &Step) -> StepRecord {
    let (kind, target) = match *step {
        Step::Mint => ("mint", None),
        Step::Store => ("store", None),
        Step::Push { target } => ("push", Some(target)),
        Step::Redeploy { target } => ("redeploy", Some(target)),
        Step::Verify { target } => ("verify", Some(target)),
        Step::HealthCheck => ("health_check", None),
        Step::RetirePrevious => ("retire_previous", None),
    };
    StepRecord {
        kind: kind.into(),
        target,
        status: "pending".into(),
        detail: None,
        error: None,
        at: None,
    }
}

fn step_of(record: &StepRecord) -> Option<Step> {
    Some(match (record.kind.as_str(), record.target) {
        ("mint", None) => Step::Mint,
        ("store", None) => Step::Store,
        ("push", Some(target)) => Step::Push { target },
        ("redeploy", Some(target)) => Step::Redeploy { target },
        ("verify", Some(target)) => Step::Verify { target },
        ("health_check", None) => Step::HealthCheck,
        ("retire_previous", None) => Step::RetirePrevious,
        _ => return None,
    })
}

fn rotation_event(action: &'static str, r: &Rotation) -> DomainEvent {
    DomainEvent::new(action)
        .workspace(&r.workspace_id)
        .target(&r.id)
        .change("vault", r.vault_id.as_str())
        .change("secret", r.secret_name.as_str())
}

/// How a step (or any job) ended.
pub(crate) enum Fault {
    /// Try the job again later (the provider rate-limited or could not answer).
    Later(Duration, String),
    /// The step failed for good: roll back.
    Failed(String),
}

impl Fault {
    /// Why, whether or not it is worth retrying.
    pub(crate) fn message(self) -> String {
        match self {
            Fault::Later(_, m) | Fault::Failed(m) => m,
        }
    }
}

impl From<TargetError> for Fault {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::RateLimited { retry_after } => Fault::Later(retry_after, e.to_string()),
            TargetError::Unavailable(m) => Fault::Later(Duration::from_secs(10), m),
            other => Fault::Failed(other.to_string()),
        }
    }
}

impl From<ControlError> for Fault {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Unavailable(m) => Fault::Later(Duration::from_secs(10), m),
            ControlError::Storage(s) => {
                Fault::Later(Duration::from_secs(10), format!("storage: {s}"))
            }
            other => Fault::Failed(other.to_string()),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ControlError {
    authsome_domain::ValidationError::new(field, message.into()).into()
}

impl ControlPlane {
    fn rotation_ports(&self) -> Result<&Arc<dyn RotationPorts>> {
        self.rotation_ports.as_ref().ok_or_else(|| {
            ControlError::Unavailable("this deployment makes no outbound calls".into())
        })
    }

    /// Sets how a secret is rotated (owners and admins). The secret need not exist yet.
    pub async fn put_rotation_settings(
        &self,
        actor: &Actor,
        vault: &VaultId,
        name: &str,
        input: PutRotation,
    ) -> Result<RotationSettings> {
        let name = authsome_vault::rules::parse_secret_name(name)?;
        let (vault, workspace, _) = self
            .vault_for(actor, vault, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let minting = match (input.generator, input.issuer) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "issuer",
                    "a value is either generated or issued, not both",
                ))
            }
            (generator, None) => Minting::Generated(
                generator
                    .unwrap_or_default()
                    .checked()
                    .map_err(|e| invalid(e.field, e.message))?,
            ),
            (None, Some(issuer)) => {
                issuer.checked().map_err(|e| invalid(e.field, e.message))?;
                Minting::Issued(issuer)
            }
        };
        if input.targets.is_empty() || input.targets.len() > MAX_TARGETS {
            return Err(invalid("targets", format!("1 to {MAX_TARGETS} targets")));
        }
        let ports = self.rotation_ports()?;
        for (i, target) in input.targets.iter().enumerate() {
            ports.check(target).map_err(|e| {
                invalid(
                    "targets",
                    format!("target {i} ({}): {e}", target.provider.as_str()),
                )
            })?;
        }
        if let Some(schedule) = &input.schedule {
            schedule.check().map_err(|e| invalid(e.field, e.message))?;
        }
        if let Some(url) = &input.health_check_url {
            let parsed = url::Url::parse(url).ok();
            if url.len() > 2048 || !parsed.is_some_and(|u| matches!(u.scheme(), "https" | "http")) {
                return Err(invalid("healthCheckUrl", "must be an http(s) URL"));
            }
        }
        let grace = input.grace_period_seconds.unwrap_or(0);
        if grace > MAX_GRACE_SECONDS {
            return Err(invalid(
                "gracePeriodSeconds",
                format!("at most {MAX_GRACE_SECONDS}"),
            ));
        }
        let now = self.clock.now();
        let mut config = RotationConfig {
            workspace_id: vault.workspace_id.clone(),
            vault_id: vault.id.clone(),
            secret_name: name.clone(),
            generator: minting.to_value(),
            targets: input.targets,
            schedule: input
                .schedule
                .as_ref()
                .map(|s| serde_json::to_value(s).unwrap_or_default()),
            health_check_url: input.health_check_url,
            redeploy: input.redeploy.unwrap_or(false),
            grace_period_seconds: grace,
            revision: 0,
            created_at: now,
            updated_at: now,
            previewed_at: None,
            scheduled_at: None,
        };
        let event = DomainEvent::new("vault.rotation.configured")
            .workspace(&vault.workspace_id)
            .target(&vault.id)
            .change("secret", name.as_str())
            .change(
                "targets",
                config
                    .targets
                    .iter()
                    .map(|t| t.provider.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        config.revision = self
            .audited(Some(actor), vec![event], async |outbox| {
                self.store
                    .put_rotation_config(&config, outbox)
                    .await
                    .map_err(crate::gone("vault"))
            })
            .await?;
        let stored = self
            .store
            .rotation_config(&vault.workspace_id, &vault.id, &name)
            .await?
            .ok_or(ControlError::NotFound("rotation settings"))?;
        settings_view(stored)
    }

    pub async fn rotation_settings(
        &self,
        actor: &Actor,
        vault: &VaultId,
        name: &str,
    ) -> Result<RotationSettings> {
        let (vault, _, _) = self.vault_for(actor, vault, Permission::VaultsRead).await?;
        let stored = self
            .store
            .rotation_config(&vault.workspace_id, &vault.id, name)
            .await?
            .ok_or(ControlError::NotFound("rotation settings"))?;
        settings_view(stored)
    }

    /// Starts a rotation of the secret (or, with `dryRun`, returns its plan and changes
    /// nothing). The policy decides first; a blocked rotation is refused with the rules that
    /// blocked it.
    pub async fn start_rotation(
        &self,
        actor: &Actor,
        vault: &VaultId,
        name: &str,
        input: StartRotation,
    ) -> Result<Started> {
        let (vault, workspace, _) = self
            .vault_for(actor, vault, Permission::SecretsWrite)
            .await?;
        self.begin_rotation(Some(actor), &workspace, &vault, name, input)
            .await
    }

    /// Starts (or previews) the rotation of each of a vault's secrets named in `input`, each as
    /// [`Self::start_rotation`] would, one after the other: one secret's refusal (a policy, an
    /// overlapping rotation, no settings) does not stop the others. The outcomes in the order
    /// asked. Refused as a whole only when the request itself is wrong or the caller may not.
    pub async fn start_rotations(
        &self,
        actor: &Actor,
        vault: &VaultId,
        input: StartRotations,
    ) -> Result<Vec<(String, Result<Started>)>> {
        if input.secrets.is_empty() || input.secrets.len() > MAX_BATCH {
            return Err(invalid(
                "secrets",
                format!("between 1 and {MAX_BATCH} secret names"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = input.secrets.iter().find(|n| !seen.insert(n.as_str())) {
            return Err(invalid("secrets", format!("`{twice}` is named twice")));
        }
        let (vault, workspace, _) = self
            .vault_for(actor, vault, Permission::SecretsWrite)
            .await?;
        let mut outcomes = Vec::with_capacity(input.secrets.len());
        for name in input.secrets {
            let one = StartRotation {
                dry_run: input.dry_run,
                reason: input.reason.clone(),
            };
            // Each start counts the plan's rotations anew: past the limit the rest are refused.
            let started = self
                .begin_rotation(Some(actor), &workspace, &vault, &name, one)
                .await;
            outcomes.push((name, started));
        }
        Ok(outcomes)
    }

    /// Starts (or previews) a rotation for `actor`, or for the schedule when there is none:
    /// the schedule's rotation that a policy blocks is recorded as failed, naming the rules.
    async fn begin_rotation(
        &self,
        actor: Option<&Actor>,
        workspace: &authsome_domain::tenancy::Workspace,
        vault: &authsome_domain::vault::Vault,
        name: &str,
        input: StartRotation,
    ) -> Result<Started> {
        let config = self
            .store
            .rotation_config(&vault.workspace_id, &vault.id, name)
            .await?
            .ok_or(ControlError::NotFound("rotation settings"))?;
        let reason = match input.reason {
            Some(r) if r.chars().count() > MAX_REASON => {
                return Err(invalid(
                    "reason",
                    format!("at most {MAX_REASON} characters"),
                ))
            }
            other => other.filter(|r| !r.trim().is_empty()),
        };
        let secret = self
            .store
            .secret(&vault.workspace_id, &vault.id, name)
            .await?
            .filter(|s| s.deleted_at.is_none())
            .ok_or(ControlError::NotFound("secret"))?;
        let now = self.clock.now();
        let history = self
            .store
            .rotation_history(
                &vault.workspace_id,
                &vault.id,
                name,
                now - chrono::Duration::days(1),
                month_start(now),
            )
            .await?;
        let facts = Facts {
            now,
            secret_rotations_last_day: history.secret_since_day,
            workspace_rotations_this_month: history.workspace_since_month,
            last_rotation_at: history.last_at,
            // A dry run since the last rotation (or, before any, at all).
            previewed: config
                .previewed_at
                .is_some_and(|p| history.last_at.is_none_or(|last| p >= last)),
            approved: false,
        };
        let decision = policy::decide(&self.policy_chains(&config).await?, &facts);
        let shape = Shape {
            targets: config.targets.len(),
            redeploy: config.redeploy || decision.auto_redeploy,
            health_check: config.health_check_url.is_some(),
        };
        let steps: Vec<StepRecord> = plan::steps(shape).iter().map(step_record).collect();
        if input.dry_run == Some(true) {
            self.store
                .mark_previewed(&vault.workspace_id, &vault.id, name, now)
                .await?;
            if let Some(actor) = actor {
                self.emit(
                    actor,
                    DomainEvent::new("vault.rotation.previewed")
                        .workspace(&vault.workspace_id)
                        .target(&vault.id)
                        .change("secret", name),
                );
            }
            return Ok(Started::Plan(RotationPlan {
                secret_name: secret.name,
                next_version: secret.version + 1,
                targets: config.targets,
                steps,
                decision,
            }));
        }
        workspace.may_write()?;
        let allowance = workspace.rotation_allowance();
        let started = u64::from(history.workspace_since_month);
        if let (Some(included), true) = (allowance.included, allowance.hard_stop) {
            if started >= included {
                return Err(ControlError::PaymentRequired(format!(
                    "the {} plan allows {included} rotations a month, and this month's are used",
                    workspace.plan.as_str()
                )));
            }
        }
        if decision.outcome == Outcome::Block {
            let rules: Vec<String> = decision
                .findings
                .iter()
                .filter(|f| f.outcome == Outcome::Block)
                .map(|f| format!("{}: {}", f.rule, f.message))
                .collect();
            let why = format!("the rotation policy blocks it ({})", rules.join("; "));
            self.policy_alert(&vault.workspace_id, &vault.id, name, &why)
                .await;
            return Err(ControlError::Conflict(why));
        }
        let held = decision.outcome == Outcome::RequireApproval;
        let rotation = Rotation {
            id: RotationId::new(),
            workspace_id: vault.workspace_id.clone(),
            vault_id: vault.id.clone(),
            secret_name: secret.name.clone(),
            status: if held {
                RotationStatus::AwaitingApproval
            } else {
                RotationStatus::Pending
            },
            reason,
            requested_by: Some(actor.map_or_else(|| "schedule".to_owned(), actor_id)),
            decision: serde_json::to_value(&decision).unwrap_or_default(),
            steps,
            previous_version: Some(secret.version),
            new_version: None,
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        let (job, approval) = if held {
            let approval = Approval {
                id: ApprovalId::new(),
                workspace_id: vault.workspace_id.clone(),
                rotation_id: rotation.id.clone(),
                status: ApprovalStatus::Pending,
                requested_by: match actor {
                    Some(actor) => self.person_of(actor).await?,
                    None => "schedule".into(),
                },
                reason: rotation.reason.clone(),
                decided_by: None,
                decision_reason: None,
                break_glass: false,
                expires_at: now
                    + chrono::Duration::seconds(i64::from(decision.approval_timeout_seconds)),
                created_at: now,
                decided_at: None,
            };
            (None, Some(approval))
        } else {
            let job = Job::new(
                RUN_JOB,
                json!({"rotation": rotation.id.as_str()}),
                Some(&vault.workspace_id),
                now,
            );
            (Some(job), None)
        };
        let mut events = vec![rotation_event("vault.rotation.requested", &rotation)
            .change("policy", format!("{:?}", decision.outcome).to_lowercase())];
        if let Some(a) = &approval {
            // What the workspace's channels will tell its approvers.
            events.push(approval_event("vault.approval.requested", a));
        }
        if actor.is_none() {
            events = events
                .into_iter()
                .map(|e| e.actor(authsome_domain::event::EventActor::System))
                .collect();
        }
        self.audited(actor, events, async |outbox| {
            self.store
                .insert_rotation(&rotation, job.as_ref(), approval.as_ref(), outbox)
                .await
                .map_err(|e| match e {
                    StorageError::Duplicate => ControlError::Conflict(format!(
                        "a rotation of `{name}` is already under way; wait for it to finish"
                    )),
                    other => crate::gone("vault")(other),
                })
        })
        .await?;
        if let Some(a) = &approval {
            self.approval_alert(a, "approval.requested").await;
        }
        self.usage_alerts(workspace, started + 1).await;
        Ok(Started::Rotation(rotation))
    }

    /// Takes the scheduled rotations that are due (once across replicas: each occurrence is
    /// taken with a compare-and-set and its job enqueued in the same commit); how many.
    pub async fn schedule_rotations(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut taken = 0;
        let mut after: Option<(VaultId, String)> = None;
        loop {
            let page = self
                .store
                .all_scheduled_rotation_configs(after.as_ref().map(|(v, n)| (v, n.as_str())), 200)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some((last.vault_id.clone(), last.secret_name.clone()));
            for config in &page {
                let Some(schedule) = config
                    .schedule
                    .clone()
                    .and_then(|s| serde_json::from_value::<Schedule>(s).ok())
                else {
                    continue;
                };
                let last_rotation = self
                    .store
                    .rotation_history(
                        &config.workspace_id,
                        &config.vault_id,
                        &config.secret_name,
                        now,
                        now,
                    )
                    .await?
                    .last_at;
                let base = [Some(config.updated_at), config.scheduled_at, last_rotation]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(config.created_at);
                let Some(due) = schedule.next_after(base).filter(|d| *d <= now) else {
                    continue;
                };
                let job = Job::new(
                    SCHEDULED_JOB,
                    json!({"vault": config.vault_id.as_str(), "secret": config.secret_name,
                           "occurrence": due.to_rfc3339()}),
                    Some(&config.workspace_id),
                    now,
                );
                if self
                    .store
                    .take_scheduled_occurrence(config, due, &job)
                    .await?
                {
                    taken += 1;
                }
            }
        }
        Ok(taken)
    }

    /// A scheduled occurrence: the rotation starts as the schedule's; one the policy or the
    /// plan refuses is skipped, with an audit entry saying why.
    pub(crate) async fn run_scheduled(
        &self,
        job: &Job,
    ) -> std::result::Result<Option<DateTime<Utc>>, Fault> {
        let ws = job
            .workspace_id
            .clone()
            .ok_or_else(|| Fault::Failed("a scheduled rotation without a workspace".into()))?;
        let vault = job.payload["vault"]
            .as_str()
            .and_then(|v| VaultId::parse(v).ok())
            .ok_or_else(|| Fault::Failed("a scheduled rotation without a vault".into()))?;
        let name = job.payload["secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let workspace = self
            .store
            .any_workspace(&ws)
            .await
            .map_err(|e| Fault::from(ControlError::from(e)))?;
        let vault = self
            .store
            .vault(&ws, &vault)
            .await
            .map_err(|e| Fault::from(ControlError::from(e)))?;
        let (Some(workspace), Some(vault)) = (workspace, vault) else {
            return Ok(None);
        };
        let input = StartRotation {
            dry_run: None,
            reason: Some("scheduled".into()),
        };
        match self
            .begin_rotation(None, &workspace, &vault, &name, input)
            .await
        {
            Ok(_) => Ok(None),
            Err(ControlError::Storage(e)) => Err(Fault::Later(
                Duration::from_secs(10),
                format!("storage: {e}"),
            )),
            Err(refused) => {
                self.policy_alert(&ws, &vault.id, &name, &refused.to_string())
                    .await;
                self.events.emit(
                    DomainEvent::new("vault.rotation.skipped")
                        .workspace(&ws)
                        .target(&vault.id)
                        .change("secret", name.as_str())
                        .change("reason", refused.to_string())
                        .outcome(EventOutcome::Denied)
                        .actor(authsome_domain::event::EventActor::System),
                );
                Ok(None)
            }
        }
    }

    /// The rules for each provider the secret's targets use: the workspace's, then the
    /// provider's, then the secret's (the nearest level sets each field).
    async fn policy_chains(&self, config: &RotationConfig) -> Result<Vec<Rules>> {
        let policies = self.store.policies(&config.workspace_id).await?;
        let rules_of = |scope: PolicyScope, target: Option<&str>| -> Result<Option<Rules>> {
            policies
                .iter()
                .find(|p| p.scope == scope && p.target.as_deref() == target)
                .map(|p| {
                    serde_json::from_value(p.rules.clone()).map_err(|_| {
                        ControlError::Storage(StorageError::Corrupt("rotation_policies.rules"))
                    })
                })
                .transpose()
        };
        let workspace = rules_of(PolicyScope::Workspace, None)?;
        let secret_target = format!("{}/{}", config.vault_id, config.secret_name);
        let secret = rules_of(PolicyScope::Secret, Some(&secret_target))?;
        let mut providers: Vec<Provider> = config.targets.iter().map(|t| t.provider).collect();
        providers.sort_by_key(|p| p.as_str());
        providers.dedup();
        providers
            .into_iter()
            .map(|p| {
                let provider = rules_of(PolicyScope::Provider, Some(p.as_str()))?;
                Ok(Rules::chain(&[
                    workspace.as_ref(),
                    provider.as_ref(),
                    secret.as_ref(),
                ]))
            })
            .collect()
    }

    /// Sets rotation rules at one level of the workspace (owners and admins); one policy per
    /// level (409 when the level has one: change it by id).
    pub async fn create_policy(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewPolicy,
    ) -> Result<Policy> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsManage)
            .await?;
        workspace.may_write()?;
        let target = self.policy_target(ws, input.scope, input.target).await?;
        let rules = checked_rules(input.rules)?;
        let now = self.clock.now();
        let policy = Policy {
            id: PolicyId::new(),
            workspace_id: ws.clone(),
            scope: input.scope,
            target,
            rules,
            created_at: now,
            updated_at: now,
        };
        let event = policy_event("vault.policy.created", &policy);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .insert_policy(&policy, outbox)
                .await
                .map_err(crate::duplicate("a policy for this level"))
        })
        .await?;
        Ok(policy)
    }

    pub async fn policies(&self, actor: &Actor, ws: &WorkspaceId) -> Result<Vec<Policy>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.policies(ws).await?)
    }

    /// The policy `id` in a workspace the caller may `permission` in.
    async fn policy_for(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &PolicyId,
        permission: Permission,
    ) -> Result<Policy> {
        let (workspace, _) = self.workspace_for(actor, ws, permission).await?;
        if permission != Permission::VaultsRead {
            workspace.may_write()?;
        }
        self.store
            .policy(ws, id)
            .await?
            .ok_or(ControlError::NotFound("policy"))
    }

    pub async fn update_policy(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &PolicyId,
        input: PolicyUpdate,
    ) -> Result<Policy> {
        let mut policy = self
            .policy_for(actor, ws, id, Permission::VaultsManage)
            .await?;
        policy.rules = checked_rules(input.rules)?;
        policy.updated_at = self.clock.now();
        let event = policy_event("vault.policy.updated", &policy);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .update_policy(&policy, outbox)
                .await
                .map_err(crate::gone("policy"))
        })
        .await?;
        Ok(policy)
    }

    pub async fn delete_policy(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        id: &PolicyId,
    ) -> Result<()> {
        let policy = self
            .policy_for(actor, ws, id, Permission::VaultsManage)
            .await?;
        let event = policy_event("vault.policy.deleted", &policy);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .delete_policy(ws, id, outbox)
                .await
                .map_err(crate::gone("policy"))
        })
        .await
    }

    /// A policy's target as stored: none for the workspace, the provider's name, or
    /// `<vaultId>/<name>` of a vault in the workspace.
    async fn policy_target(
        &self,
        ws: &WorkspaceId,
        scope: PolicyScope,
        target: Option<String>,
    ) -> Result<Option<String>> {
        match (scope, target) {
            (PolicyScope::Workspace, None) => Ok(None),
            (PolicyScope::Workspace, Some(_)) => {
                Err(invalid("target", "a workspace policy has no target"))
            }
            (PolicyScope::Provider, Some(t)) => Provider::parse(&t)
                .map(|p| Some(p.as_str().to_owned()))
                .ok_or_else(|| invalid("target", format!("{t:?} is not a provider"))),
            (PolicyScope::Secret, Some(t)) => {
                let bad = || invalid("target", "must be <vaultId>/<secret name>");
                let (vault, name) = t.split_once('/').ok_or_else(bad)?;
                let vault = VaultId::parse(vault).map_err(|_| bad())?;
                let name = authsome_vault::rules::parse_secret_name(name)?;
                self.store
                    .vault(ws, &vault)
                    .await?
                    .ok_or_else(|| invalid("target", "no such vault in this workspace"))?;
                Ok(Some(format!("{vault}/{name}")))
            }
            (_, None) => Err(invalid(
                "target",
                "a provider or secret policy names its target",
            )),
        }
    }

    /// The person behind an actor (an account id; a key made before keys remembered their
    /// member stands for itself).
    pub(crate) async fn person_of(&self, actor: &Actor) -> Result<String> {
        Ok(match self.account_of(actor).await? {
            Some(account) => account.to_string(),
            None => actor_id(actor),
        })
    }

    /// Checks that `actor` reads in `ws` (a record found by id), answering as if the `what`
    /// did not exist when it does not.
    pub(crate) async fn readable_in(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        what: &'static str,
    ) -> Result<()> {
        match self.workspace_for(actor, ws, Permission::VaultsRead).await {
            Ok(_) => Ok(()),
            Err(ControlError::NotFound(_)) => Err(ControlError::NotFound(what)),
            Err(other) => Err(other),
        }
    }

    pub async fn approvals(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Approval>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.approvals(ws, page).await?)
    }

    pub async fn approval(&self, actor: &Actor, id: &ApprovalId) -> Result<Approval> {
        let approval = self
            .store
            .approval(None, id)
            .await?
            .ok_or(ControlError::NotFound("approval request"))?;
        self.readable_in(actor, &approval.workspace_id, "approval request")
            .await?;
        Ok(approval)
    }

    /// Approves, denies, cancels or (an owner, with a written reason) breaks glass on a pending
    /// request. The requester can never approve or deny their own (only cancel it, or as an
    /// owner break glass); approving needs `RotationsApprove` (owners and admins). An approved
    /// rotation runs at once, without another request.
    pub async fn decide_approval(
        &self,
        actor: &Actor,
        id: &ApprovalId,
        action: ApprovalAction,
        input: ApprovalDecision,
    ) -> Result<Approval> {
        let mut approval = self.approval(actor, id).await?;
        let ws = approval.workspace_id.clone();
        let (workspace, role) = self
            .store
            .workspace_access(actor, &ws)
            .await?
            .ok_or(ControlError::NotFound("approval request"))?;
        workspace.may_write()?;
        let person = self.person_of(actor).await?;
        let own = person == approval.requested_by;
        match action {
            ApprovalAction::Approve | ApprovalAction::Deny => {
                // Who approves is the rotation's policy decision (owners and admins unless a
                // policy names other roles); an owner always may.
                let held = self
                    .store
                    .rotation(Some(&ws), &approval.rotation_id)
                    .await?
                    .ok_or(ControlError::NotFound("rotation"))?;
                let decision: Option<Decision> = serde_json::from_value(held.decision).ok();
                let allowed = match &decision {
                    Some(d) => d.may_approve(role),
                    None => role.allows(Permission::RotationsApprove),
                };
                if !allowed {
                    self.record_denial(actor, &ws, role, Permission::RotationsApprove);
                    let approvers = decision
                        .map(|d| d.approver_roles)
                        .unwrap_or_else(|| policy::DEFAULT_APPROVER_ROLES.to_vec());
                    return Err(ControlError::Forbidden(format!(
                        "the {} role may not approve this rotation; its approvers: {}",
                        role.as_str(),
                        approvers
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                if own {
                    return Err(ControlError::Forbidden(
                        "the requester cannot decide their own request".into(),
                    ));
                }
            }
            ApprovalAction::Cancel if !own => {
                return Err(ControlError::Forbidden(
                    "only the requester cancels a request".into(),
                ));
            }
            ApprovalAction::Cancel => {}
            ApprovalAction::BreakGlass => {
                if role != Role::Owner {
                    return Err(ControlError::Forbidden(
                        "only an owner may break glass".into(),
                    ));
                }
            }
        }
        let reason = input
            .reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON)
        {
            return Err(invalid(
                "reason",
                format!("at most {MAX_REASON} characters"),
            ));
        }
        if action == ApprovalAction::BreakGlass
            && reason.as_ref().is_none_or(|r| r.chars().count() < 10)
        {
            return Err(invalid(
                "reason",
                "breaking glass needs a written reason of at least 10 characters",
            ));
        }
        if approval.status != ApprovalStatus::Pending {
            return Err(ControlError::Conflict(format!(
                "the request is {} already",
                approval.status.as_str()
            )));
        }
        let now = self.clock.now();
        if now >= approval.expires_at {
            self.expire_approval(approval).await?;
            return Err(ControlError::Conflict("the request has expired".into()));
        }
        let mut rotation = self
            .store
            .rotation(Some(&ws), &approval.rotation_id)
            .await?
            .ok_or(ControlError::NotFound("rotation"))?;
        approval.decided_by = Some(person);
        approval.decision_reason = reason;
        approval.decided_at = Some(now);
        rotation.updated_at = now;
        let (job, action_name) = match action {
            ApprovalAction::Approve | ApprovalAction::BreakGlass => {
                approval.status = ApprovalStatus::Approved;
                approval.break_glass = action == ApprovalAction::BreakGlass;
                rotation.status = RotationStatus::Pending;
                let job = Job::new(
                    RUN_JOB,
                    json!({"rotation": rotation.id.as_str()}),
                    Some(&ws),
                    now,
                );
                let name = if approval.break_glass {
                    "vault.approval.break_glass"
                } else {
                    "vault.approval.approved"
                };
                (Some(job), name)
            }
            ApprovalAction::Deny | ApprovalAction::Cancel => {
                let (status, name, why) = if action == ApprovalAction::Deny {
                    (
                        ApprovalStatus::Denied,
                        "vault.approval.denied",
                        "the approval was denied",
                    )
                } else {
                    (
                        ApprovalStatus::Cancelled,
                        "vault.approval.cancelled",
                        "the request was cancelled",
                    )
                };
                approval.status = status;
                rotation.status = RotationStatus::Failed;
                rotation.error = Some(why.into());
                rotation.finished_at = Some(now);
                (None, name)
            }
        };
        let event = approval_event(action_name, &approval);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .decide_approval(&approval, &rotation, job.as_ref(), outbox)
                .await
        })
        .await?;
        let kind = if approval.break_glass {
            "approval.break_glass"
        } else {
            "approval.decided"
        };
        self.approval_alert(&approval, kind).await;
        Ok(approval)
    }

    async fn expire_approval(&self, mut approval: Approval) -> Result<()> {
        let Some(mut rotation) = self
            .store
            .rotation(Some(&approval.workspace_id), &approval.rotation_id)
            .await?
        else {
            return Ok(());
        };
        let now = self.clock.now();
        approval.status = ApprovalStatus::Expired;
        approval.decided_at = Some(now);
        rotation.status = RotationStatus::Failed;
        rotation.error = Some("the approval request expired".into());
        rotation.updated_at = now;
        rotation.finished_at = Some(now);
        let event = approval_event("vault.approval.expired", &approval)
            .actor(authsome_domain::event::EventActor::System);
        match self
            .audited(None, vec![event], async |outbox| {
                self.store
                    .decide_approval(&approval, &rotation, None, outbox)
                    .await
            })
            .await
        {
            // Decided meanwhile: nothing to expire.
            Err(ControlError::Conflict(_)) => Ok(()),
            Ok(()) => {
                self.approval_alert(&approval, "approval.expired").await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Expires the pending requests whose time is up (their rotations fail); how many.
    pub async fn expire_approvals(&self) -> Result<usize> {
        let due = self.store.expired_approvals(self.clock.now(), 100).await?;
        let count = due.len();
        for approval in due {
            self.expire_approval(approval).await?;
        }
        Ok(count)
    }

    /// A month's rotations (UTC, `YYYY-MM`; default the current one) per day, against the
    /// plan's allowance: what billing charges as overage.
    pub async fn rotation_usage(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        month: Option<&str>,
    ) -> Result<RotationUsage> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        let now = self.clock.now();
        let month = match month {
            Some(m) => authsome_domain::identity::parse_month(m)?,
            None => authsome_domain::identity::month_of(now),
        };
        let start = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
            .map_err(|_| invalid("month", "must be YYYY-MM"))?
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc())
            .ok_or_else(|| invalid("month", "must be YYYY-MM"))?;
        let (_, end) = crate::metering::month_bounds(start);
        let days: Vec<DailyRotations> = self
            .store
            .rotations_per_day(ws, start, end)
            .await?
            .into_iter()
            .map(|(day, rotations)| DailyRotations {
                day: day.format("%Y-%m-%d").to_string(),
                rotations,
            })
            .collect();
        let total: u64 = days.iter().map(|d| u64::from(d.rotations)).sum();
        let allowance = workspace.rotation_allowance();
        let overage = match allowance {
            authsome_domain::tenancy::RotationAllowance {
                included: Some(included),
                hard_stop: false,
            } => total.saturating_sub(included),
            _ => 0,
        };
        Ok(RotationUsage {
            month,
            days,
            total,
            allowance,
            overage,
        })
    }

    async fn rotation_alert(&self, r: &Rotation, kind: &str) {
        let (severity, what) = match kind {
            "rotation.succeeded" => (AlertSeverity::Info, "succeeded"),
            _ => (AlertSeverity::Critical, "failed"),
        };
        let mut details = rotation_details(r);
        if let Some(error) = &r.error {
            details["error"] = json!(error);
        }
        self.raise_alert(
            &r.workspace_id,
            kind,
            severity,
            format!(
                "The rotation of {} in vault {} {what}",
                r.secret_name, r.vault_id
            ),
            details,
            format!("{kind}:{}", r.id),
        )
        .await;
    }

    async fn approval_alert(&self, a: &Approval, kind: &str) {
        let severity = match kind {
            "approval.break_glass" => AlertSeverity::Critical,
            "approval.requested" | "approval.expired" => AlertSeverity::Warning,
            _ => AlertSeverity::Info,
        };
        let title = match kind {
            "approval.requested" => "A rotation waits for a second person's approval".to_owned(),
            "approval.break_glass" => "An owner broke glass to approve a rotation".to_owned(),
            "approval.expired" => "A rotation's approval request expired".to_owned(),
            _ => format!("A rotation's approval request was {}", a.status.as_str()),
        };
        self.raise_alert(
            &a.workspace_id,
            kind,
            severity,
            title,
            json!({"approval": a.id.as_str(), "rotation": a.rotation_id.as_str(),
                   "status": a.status.as_str(), "reason": a.decision_reason}),
            format!("{kind}:{}", a.id),
        )
        .await;
    }

    /// A policy refused a rotation of the secret.
    async fn policy_alert(&self, ws: &WorkspaceId, vault: &VaultId, name: &str, why: &str) {
        self.raise_alert(
            ws,
            "policy.violation",
            AlertSeverity::Warning,
            format!("A rotation of {name} in vault {vault} was refused by policy"),
            json!({"vault": vault.as_str(), "secret": name, "reason": why}),
            format!("policy.violation:{vault}/{name}"),
        )
        .await;
    }

    /// 80% and 100% of the plan's monthly rotations, once each a month.
    async fn usage_alerts(&self, workspace: &authsome_domain::tenancy::Workspace, started: u64) {
        if let Some(included) = workspace.rotation_allowance().included {
            self.usage_threshold(&workspace.id, "rotations", started, included)
                .await;
        }
    }

    pub async fn rotation(&self, actor: &Actor, id: &RotationId) -> Result<Rotation> {
        let rotation = self
            .store
            .rotation(None, id)
            .await?
            .ok_or(ControlError::NotFound("rotation"))?;
        self.readable_in(actor, &rotation.workspace_id, "rotation")
            .await?;
        Ok(rotation)
    }

    pub async fn rotations(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Rotation>> {
        self.workspace_for(actor, ws, Permission::VaultsRead)
            .await?;
        Ok(self.store.rotations(ws, page).await?)
    }

    /// Rolls a succeeded rotation back: the targets get the previous version again (and are
    /// redeployed when the rotation redeployed them) and the vault's latest goes back to the
    /// previous value, as a new version. Runs as a job (the rotation reads `rolled_back` once
    /// it ran); the answer is the rotation as it stands.
    pub async fn roll_back_rotation(&self, actor: &Actor, id: &RotationId) -> Result<Rotation> {
        let mut rotation = self.rotation(actor, id).await?;
        let (_, workspace, _) = self
            .vault_for(actor, &rotation.vault_id, Permission::SecretsWrite)
            .await?;
        workspace.may_write()?;
        if rotation.status != RotationStatus::Succeeded {
            return Err(ControlError::Conflict(format!(
                "only a succeeded rotation can be rolled back; this one is {}",
                rotation.status.as_str()
            )));
        }
        let retired = rotation
            .steps
            .iter()
            .any(|s| s.kind == "retire_previous" && s.status == "succeeded");
        let issued = self
            .store
            .rotation_config(
                &rotation.workspace_id,
                &rotation.vault_id,
                &rotation.secret_name,
            )
            .await?
            .and_then(|c| Minting::of(&c.generator))
            .is_some_and(|m| m.issuer().is_some());
        if retired && issued {
            return Err(ControlError::Conflict(
                "the previous credential was revoked after the grace period; rotate again instead"
                    .into(),
            ));
        }
        let now = self.clock.now();
        // What was still to come (retiring the previous value) will not happen now.
        for step in rotation.steps.iter_mut().filter(|s| s.status == "pending") {
            step.status = "skipped".into();
        }
        rotation.updated_at = now;
        let mut job = Job::new(
            ROLLBACK_JOB,
            json!({"rotation": rotation.id.as_str()}),
            Some(&rotation.workspace_id),
            now,
        );
        // Asked twice, rolled back once.
        job.dedupe_key = Some(format!("{ROLLBACK_JOB}:{}", rotation.id));
        let event = rotation_event("vault.rotation.rollback_requested", &rotation);
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .save_rotation(&rotation, Some(&job), outbox)
                .await
                .map_err(crate::gone("rotation"))
        })
        .await?;
        Ok(rotation)
    }

    async fn load_rotation(&self, id: &RotationId) -> std::result::Result<Rotation, Fault> {
        self.store
            .rotation(None, id)
            .await
            .map_err(|e| Fault::from(ControlError::from(e)))?
            .ok_or_else(|| Fault::Failed("the rotation is gone".into()))
    }

    /// Saves the rotation with the audit event `event` makes of it.
    async fn save(
        &self,
        rotation: &mut Rotation,
        event: impl FnOnce(&Rotation) -> DomainEvent,
    ) -> std::result::Result<(), Fault> {
        rotation.updated_at = self.clock.now();
        let event = event(rotation).actor(authsome_domain::event::EventActor::System);
        self.audited(None, vec![event], async |outbox| {
            self.store.save_rotation(rotation, None, outbox).await
        })
        .await
        .map_err(Fault::from)
    }

    /// Runs a rotation's next steps; `Some(at)` when it must wait until then (the grace period
    /// before retiring the previous value).
    pub(crate) async fn advance_rotation(
        &self,
        id: &RotationId,
        attempts: u32,
    ) -> std::result::Result<Option<DateTime<Utc>>, Fault> {
        let mut r = self.load_rotation(id).await?;
        // A succeeded rotation may still retire its previous value after the grace period.
        let pending = r.steps.iter().any(|s| s.status == "pending");
        if r.status.is_final() && !(r.status == RotationStatus::Succeeded && pending) {
            return Ok(None);
        }
        let config = self
            .store
            .rotation_config(&r.workspace_id, &r.vault_id, &r.secret_name)
            .await
            .map_err(|e| Fault::from(ControlError::from(e)))?;
        let Some(config) = config else {
            return self
                .fail_and_undo(&mut r, None, "the rotation settings were removed".into())
                .await;
        };
        if r.status == RotationStatus::Pending {
            r.status = RotationStatus::Running;
            self.save(&mut r, |r| rotation_event("vault.rotation.started", r))
                .await?;
        }
        let mut written: Vec<Option<Written>> = vec![None; config.targets.len()];
        for (i, record) in r.steps.clone().iter().enumerate() {
            let step = step_of(record)
                .ok_or_else(|| Fault::Failed(format!("unknown step {}", record.kind)))?;
            if let Step::Push { target } = step {
                written[target] = record.detail.as_deref().map(written_of);
            }
            if record.status != "pending" {
                continue;
            }
            if step == Step::RetirePrevious && config.grace_period_seconds > 0 {
                let due = r
                    .steps
                    .iter()
                    .filter_map(|s| s.at)
                    .max()
                    .unwrap_or(r.updated_at)
                    + chrono::Duration::seconds(i64::from(config.grace_period_seconds));
                if self.clock.now() < due {
                    if r.status != RotationStatus::Succeeded {
                        // Everything that can fail has passed: the rotation stands.
                        r.status = RotationStatus::Succeeded;
                        self.save(&mut r, |r| rotation_event("vault.rotation.succeeded", r))
                            .await?;
                        self.rotation_alert(&r, "rotation.succeeded").await;
                    }
                    return Ok(Some(due));
                }
            }
            match self.run_step(&mut r, &config, step, &written).await {
                Ok((detail, w)) => {
                    if let Step::Push { target } = step {
                        written[target] = w;
                    }
                    let now = self.clock.now();
                    let s = &mut r.steps[i];
                    s.status = "succeeded".into();
                    s.detail = detail;
                    s.error = None;
                    s.at = Some(now);
                    self.save(&mut r, |r| {
                        let event = rotation_event("vault.rotation.step", r)
                            .change("step", record.kind.as_str());
                        match record.target {
                            Some(t) => event.change("target", t as u64),
                            None => event,
                        }
                    })
                    .await?;
                }
                Err(Fault::Later(wait, why)) if attempts < MAX_ATTEMPTS => {
                    r.steps[i].error = Some(why.clone());
                    self.save(&mut r, |r| {
                        rotation_event("vault.rotation.step_deferred", r)
                            .change("step", record.kind.as_str())
                            .change("reason", why.as_str())
                    })
                    .await?;
                    return Err(Fault::Later(wait, why));
                }
                Err(Fault::Later(_, why) | Fault::Failed(why)) => {
                    return self.fail_and_undo(&mut r, Some(i), why).await;
                }
            }
        }
        r.finished_at = Some(self.clock.now());
        let first = r.status != RotationStatus::Succeeded;
        let action = if first {
            "vault.rotation.succeeded"
        } else {
            "vault.rotation.completed"
        };
        r.status = RotationStatus::Succeeded;
        self.save(&mut r, |r| rotation_event(action, r)).await?;
        if first {
            self.rotation_alert(&r, "rotation.succeeded").await;
        }
        Ok(None)
    }

    /// One step: what it did (never a value) and, for a push, what the provider said.
    async fn run_step(
        &self,
        r: &mut Rotation,
        config: &RotationConfig,
        step: Step,
        written: &[Option<Written>],
    ) -> std::result::Result<(Option<String>, Option<Written>), Fault> {
        match step {
            Step::Mint => match minting_of(config)? {
                Minting::Generated(spec) => {
                    spec.checked()
                        .map_err(|e| Fault::Failed(format!("generator: {e}")))?;
                    Ok((Some("a value of the generator's spec".into()), None))
                }
                Minting::Issued(spec) => Ok((
                    Some(format!(
                        "{} issues it as it is stored; the previous one stays valid until retired",
                        spec.provider().as_str()
                    )),
                    None,
                )),
            },
            Step::Store => Ok((Some(self.store_new_version(r, config).await?), None)),
            Step::Push { target } => {
                let version = r
                    .new_version
                    .ok_or_else(|| Fault::Failed("nothing stored".into()))?;
                let value = self.version_value(r, version).await?;
                let w = self
                    .connector(r, &config.targets[target])
                    .await?
                    .write(&value)
                    .await?;
                let detail = json!({"version": version, "provider": {"version": w.version, "digest": w.digest}});
                Ok((Some(detail.to_string()), Some(w)))
            }
            Step::Redeploy { target } => {
                let deploy = self
                    .connector(r, &config.targets[target])
                    .await?
                    .redeploy()
                    .await?;
                Ok((
                    Some(deploy.unwrap_or_else(|| "nothing to redeploy".into())),
                    None,
                ))
            }
            Step::Verify { target } => {
                let version = r
                    .new_version
                    .ok_or_else(|| Fault::Failed("nothing stored".into()))?;
                let value = self.version_value(r, version).await?;
                let observed = self
                    .connector(r, &config.targets[target])
                    .await?
                    .read_back()
                    .await?;
                let w = written[target].clone().unwrap_or_default();
                verify(&value, &w, &observed).map_err(Fault::Failed)?;
                Ok((Some(format!("the target holds version {version}")), None))
            }
            Step::HealthCheck => {
                let url = config.health_check_url.as_deref().unwrap_or_default();
                let status = self
                    .rotation_ports()
                    .map_err(Fault::from)?
                    .probe(url)
                    .await
                    .map_err(|e| Fault::Failed(format!("health check: {e}")))?;
                if (200..300).contains(&status) {
                    Ok((Some(format!("answered {status}")), None))
                } else {
                    Err(Fault::Failed(format!("health check answered {status}")))
                }
            }
            Step::RetirePrevious => {
                let previous = r.previous_version.unwrap_or(0);
                let Minting::Issued(spec) = minting_of(config)? else {
                    return Ok((
                        Some(format!("version {previous} is no longer current")),
                        None,
                    ));
                };
                let value = self.version_value(r, previous).await?;
                let Some(id) = spec.id_of(&value) else {
                    return Ok((
                        Some(format!(
                            "version {previous} is not a credential {} issued; nothing revoked",
                            spec.provider().as_str()
                        )),
                        None,
                    ));
                };
                self.issuer(r, &spec).await?.revoke(&id).await?;
                Ok((
                    Some(format!("revoked version {previous}'s credential {id}")),
                    None,
                ))
            }
        }
    }

    /// Mints and stores the next version (check-and-set on the version the rotation started
    /// from); a resumed run that finds its own version there takes it.
    async fn store_new_version(
        &self,
        r: &mut Rotation,
        config: &RotationConfig,
    ) -> std::result::Result<String, Fault> {
        let previous = r.previous_version.unwrap_or(0);
        let secret = self
            .store
            .secret(&r.workspace_id, &r.vault_id, &r.secret_name)
            .await
            .map_err(|e| Fault::from(ControlError::from(e)))?
            .ok_or_else(|| Fault::Failed("the secret is gone".into()))?;
        let ours = secret
            .versions
            .iter()
            .find(|v| v.version == previous + 1)
            .is_some_and(|v| v.created_by.as_deref() == Some(r.id.as_str()));
        if secret.version == previous + 1 && ours {
            r.new_version = Some(secret.version);
            return Ok(format!(
                "version {} (stored before a restart)",
                secret.version
            ));
        }
        if secret.version != previous {
            return Err(Fault::Failed(format!(
                "the secret changed during the rotation (version {} is no longer the latest)",
                previous
            )));
        }
        let (value, issued) = match minting_of(config)? {
            Minting::Generated(spec) => (
                spec.generate()
                    .map_err(|e| Fault::Failed(format!("generator: {e}")))?,
                None,
            ),
            Minting::Issued(spec) => {
                let issuer = self.issuer(r, &spec).await?;
                // A run cut off between issuing and storing left a credential nobody holds.
                if let Some(orphan) = issued_note(r) {
                    issuer.revoke(&orphan).await?;
                }
                let issued = issuer.issue().await?;
                // Noted before it is stored, so a run cut off here can revoke it.
                if let Some(step) = r.steps.iter_mut().find(|s| s.kind == "store") {
                    step.detail = Some(json!({ "issued": issued.id }).to_string());
                }
                self.save(r, |r| {
                    rotation_event("vault.rotation.issued", r)
                        .change("credential", issued.id.as_str())
                })
                .await?;
                (issued.value, Some((issuer, issued.id)))
            }
        };
        let actor = VaultActor::Rotation(r.workspace_id.clone(), r.id.clone());
        let input = PutSecret::with_value(value);
        let stored = self
            .put_secret(&actor, &r.vault_id, &r.secret_name, input, Some(previous))
            .await
            .map_err(|e| match e {
                ControlError::PreconditionFailed(m) => {
                    Fault::Failed(format!("the secret changed during the rotation: {m}"))
                }
                other => Fault::from(other),
            });
        let (stored, _) = match stored {
            Ok(stored) => stored,
            Err(fault) => {
                // Not stored: the credential just issued must not stay live.
                if let Some((issuer, id)) = issued {
                    if issuer.revoke(&id).await.is_ok() {
                        if let Some(step) = r.steps.iter_mut().find(|s| s.kind == "store") {
                            step.detail = None;
                        }
                    }
                }
                return Err(fault);
            }
        };
        r.new_version = Some(stored.version);
        Ok(format!("version {}", stored.version))
    }

    async fn version_value(
        &self,
        r: &Rotation,
        version: u32,
    ) -> std::result::Result<Zeroizing<String>, Fault> {
        let actor = VaultActor::Rotation(r.workspace_id.clone(), r.id.clone());
        Ok(self
            .secret_value(&actor, &r.vault_id, &r.secret_name, Some(version))
            .await?
            .value)
    }

    async fn issuer(
        &self,
        r: &Rotation,
        spec: &IssuerSpec,
    ) -> std::result::Result<Box<dyn CredentialIssuer>, Fault> {
        let credential = self.provider_credential(r, spec.provider()).await?;
        Ok(self
            .rotation_ports()
            .map_err(Fault::from)?
            .issuer(spec, &credential)?)
    }

    /// The workspace's credential for `provider`, as a fault a rotation understands.
    async fn provider_credential(
        &self,
        r: &Rotation,
        provider: Provider,
    ) -> std::result::Result<Zeroizing<String>, Fault> {
        self.resolve_credential(&r.workspace_id, provider)
            .await
            .map(|c| c.value)
            .map_err(|e| match e {
                crate::providers::ResolveError::Unavailable(m) => {
                    Fault::Later(Duration::from_secs(10), m)
                }
                crate::providers::ResolveError::CircuitOpen(wait) => {
                    Fault::Later(wait, "the provider's credential source is failing".into())
                }
                other => Fault::Failed(format!("the {} credential: {other}", provider.as_str())),
            })
    }

    async fn connector(
        &self,
        r: &Rotation,
        target: &RotationTarget,
    ) -> std::result::Result<Box<dyn TargetConnector>, Fault> {
        let credential = self.provider_credential(r, target.provider).await?;
        Ok(self
            .rotation_ports()
            .map_err(Fault::from)?
            .connect(target, &credential)?)
    }

    /// Marks the step that failed, undoes what was done before it, and fails the rotation.
    async fn fail_and_undo(
        &self,
        r: &mut Rotation,
        failed: Option<usize>,
        why: String,
    ) -> std::result::Result<Option<DateTime<Utc>>, Fault> {
        let now = self.clock.now();
        let done: Vec<Step> = r
            .steps
            .iter()
            .filter(|s| s.status == "succeeded")
            .filter_map(step_of)
            .collect();
        if let Some(i) = failed {
            r.steps[i].status = "failed".into();
            r.steps[i].error = Some(why.clone());
            r.steps[i].at = Some(now);
        }
        for step in r.steps.iter_mut().filter(|s| s.status == "pending") {
            step.status = "skipped".into();
        }
        let step = failed.map(|i| r.steps[i].kind.clone());
        r.error = Some(match &step {
            Some(kind) => format!("{kind} failed: {why}"),
            None => why.clone(),
        });
        let undo_errors = self.undo(r, &plan::rollback(&done)).await;
        if !undo_errors.is_empty() {
            r.error = Some(format!(
                "{}; rolling back also failed: {}",
                r.error.as_deref().unwrap_or_default(),
                undo_errors.join("; ")
            ));
        }
        r.status = RotationStatus::Failed;
        r.finished_at = Some(self.clock.now());
        self.save(r, |r| {
            rotation_event("vault.rotation.failed", r)
                .outcome(EventOutcome::Failure)
                .change("step", step.unwrap_or_default())
                .change("reason", why)
        })
        .await?;
        self.rotation_alert(r, "rotation.failed").await;
        Ok(None)
    }

    /// Carries out undos, recording each as a step; the errors of those that failed.
    async fn undo(&self, r: &mut Rotation, undos: &[Undo]) -> Vec<String> {
        let config = self
            .store
            .rotation_config(&r.workspace_id, &r.vault_id, &r.secret_name)
            .await
            .ok()
            .flatten();
        let mut errors = Vec::new();
        for undo in undos {
            let (kind, target, outcome) = match (*undo, &config) {
                (Undo::RestoreTarget { target }, Some(config)) => (
                    "restore_target",
                    Some(target),
                    self.restore_target(r, &config.targets[target]).await,
                ),
                (Undo::Redeploy { target }, Some(config)) => {
                    let done = match self.connector(r, &config.targets[target]).await {
                        Ok(c) => c
                            .redeploy()
                            .await
                            .map(|d| d.unwrap_or_default())
                            .map_err(|e| e.to_string()),
                        Err(fault) => Err(fault.message()),
                    };
                    ("redeploy", Some(target), done)
                }
                (Undo::RestoreLatest, _) => ("restore_latest", None, self.restore_latest(r).await),
                (_, None) => (
                    "restore_target",
                    None,
                    Err("the rotation settings are gone".into()),
                ),
            };
            let (status, detail, error) = match outcome {
                Ok(detail) => ("succeeded", Some(detail), None),
                Err(e) => {
                    errors.push(format!("{kind}: {e}"));
                    ("failed", None, Some(e))
                }
            };
            r.steps.push(StepRecord {
                kind: kind.into(),
                target,
                status: status.into(),
                detail,
                error,
                at: Some(self.clock.now()),
            });
        }
        errors
    }

    async fn restore_target(
        &self,
        r: &Rotation,
        target: &RotationTarget,
    ) -> std::result::Result<String, String> {
        let previous = r.previous_version.ok_or("no previous version")?;
        let value = self
            .version_value(r, previous)
            .await
            .map_err(Fault::message)?;
        let connector = self.connector(r, target).await.map_err(Fault::message)?;
        connector.write(&value).await.map_err(|e| e.to_string())?;
        Ok(format!("version {previous} pushed again"))
    }

    /// The previous value becomes the latest again, as a new version.
    async fn restore_latest(&self, r: &Rotation) -> std::result::Result<String, String> {
        let (Some(previous), Some(new)) = (r.previous_version, r.new_version) else {
            return Ok("nothing was stored".into());
        };
        let value = self
            .version_value(r, previous)
            .await
            .map_err(Fault::message)?;
        let actor = VaultActor::Rotation(r.workspace_id.clone(), r.id.clone());
        let (stored, _) = self
            .put_secret(
                &actor,
                &r.vault_id,
                &r.secret_name,
                PutSecret::with_value(value),
                Some(new),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut said = format!(
            "version {} holds version {previous}'s value",
            stored.version
        );
        // An issued credential that is no longer the vault's is revoked.
        let config = self
            .store
            .rotation_config(&r.workspace_id, &r.vault_id, &r.secret_name)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(spec) = config
            .as_ref()
            .and_then(|c| Minting::of(&c.generator))
            .as_ref()
            .and_then(Minting::issuer)
        {
            let value = self.version_value(r, new).await.map_err(Fault::message)?;
            if let Some(id) = spec.id_of(&value) {
                self.issuer(r, spec)
                    .await
                    .map_err(Fault::message)?
                    .revoke(&id)
                    .await
                    .map_err(|e| e.to_string())?;
                said.push_str(&format!("; revoked the issued credential {id}"));
            }
        }
        Ok(said)
    }

    pub(crate) async fn advance_rollback(
        &self,
        id: &RotationId,
        _attempts: u32,
    ) -> std::result::Result<Option<DateTime<Utc>>, Fault> {
        let mut r = self.load_rotation(id).await?;
        if r.status != RotationStatus::Succeeded {
            return Ok(None);
        }
        let done: Vec<Step> = r
            .steps
            .iter()
            .filter(|s| s.status == "succeeded")
            .filter_map(step_of)
            .collect();
        let errors = self.undo(&mut r, &plan::rollback(&done)).await;
        let rolled_back = errors.is_empty();
        if rolled_back {
            r.status = RotationStatus::RolledBack;
        } else {
            r.status = RotationStatus::Failed;
            r.error = Some(format!("the rollback failed: {}", errors.join("; ")));
        }
        r.finished_at = Some(self.clock.now());
        self.save(&mut r, |r| {
            if rolled_back {
                rotation_event("vault.rotation.rolled_back", r)
            } else {
                rotation_event("vault.rotation.rollback_failed", r).outcome(EventOutcome::Failure)
            }
        })
        .await?;
        Ok(None)
    }
}

fn rotation_details(r: &Rotation) -> Value {
    json!({
        "rotation": r.id.as_str(),
        "vault": r.vault_id.as_str(),
        "secret": r.secret_name,
        "version": r.new_version,
    })
}

fn checked_rules(rules: Rules) -> Result<Value> {
    rules.check().map_err(|e| invalid(e.field, e.message))?;
    Ok(serde_json::to_value(&rules).unwrap_or_default())
}

fn approval_event(action: &'static str, a: &Approval) -> DomainEvent {
    let event = DomainEvent::new(action)
        .workspace(&a.workspace_id)
        .target(&a.id)
        .change("rotation", a.rotation_id.as_str())
        .change("requestedBy", a.requested_by.as_str());
    match &a.decision_reason {
        Some(reason) => event.change("reason", reason.as_str()),
        None => event,
    }
}

fn policy_event(action: &'static str, p: &Policy) -> DomainEvent {
    DomainEvent::new(action)
        .workspace(&p.workspace_id)
        .target(&p.id)
        .change("scope", p.scope.as_str())
        .change("target", p.target.clone().unwrap_or_default())
        .change("rules", p.rules.clone())
}

fn written_of(detail: &str) -> Written {
    let v: Value = serde_json::from_str(detail).unwrap_or_default();
    Written {
        version: v["provider"]["version"].as_str().map(str::to_owned),
        digest: v["provider"]["digest"].as_str().map(str::to_owned),
    }
}

/// How a rotation's next value comes to be, as its settings store it (`generator`: a
/// generator's spec, or `{"issuer": …}`).
enum Minting {
    Generated(GeneratorSpec),
    Issued(IssuerSpec),
}

impl Minting {
    fn of(stored: &Value) -> Option<Self> {
        match stored.get("issuer") {
            Some(issuer) => serde_json::from_value(issuer.clone())
                .ok()
                .map(Minting::Issued),
            None => serde_json::from_value(stored.clone())
                .ok()
                .map(Minting::Generated),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Minting::Generated(g) => serde_json::to_value(g).unwrap_or_default(),
            Minting::Issued(i) => json!({ "issuer": i }),
        }
    }

    fn issuer(&self) -> Option<&IssuerSpec> {
        match self {
            Minting::Issued(i) => Some(i),
            Minting::Generated(_) => None,
        }
    }
}

/// The credential a run issued but may not have stored (noted on its store step).
fn issued_note(r: &Rotation) -> Option<String> {
    let step = r.steps.iter().find(|s| s.kind == "store")?;
    let note: Value = serde_json::from_str(step.detail.as_deref()?).ok()?;
    note.get("issued")?.as_str().map(str::to_owned)
}

/// A rotation's minting, or the fault of settings that no longer read.
fn minting_of(config: &RotationConfig) -> std::result::Result<Minting, Fault> {
    Minting::of(&config.generator)
        .ok_or_else(|| Fault::Failed("the generator settings are unreadable".into()))
}

fn settings_view(c: RotationConfig) -> Result<RotationSettings> {
    let minting = Minting::of(&c.generator).ok_or(ControlError::Storage(StorageError::Corrupt(
        "rotation_configs.generator",
    )))?;
    let (generator, issuer) = match minting {
        Minting::Generated(g) => (Some(g), None),
        Minting::Issued(i) => (None, Some(i)),
    };
    Ok(RotationSettings {
        generator,
        issuer,
        schedule: c
            .schedule
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| {
                ControlError::Storage(StorageError::Corrupt("rotation_configs.schedule"))
            })?,
        vault_id: c.vault_id,
        secret_name: c.secret_name,
        targets: c.targets,
        health_check_url: c.health_check_url,
        redeploy: c.redeploy,
        grace_period_seconds: c.grace_period_seconds,
        revision: c.revision,
        created_at: c.created_at,
        updated_at: c.updated_at,
    })
}

fn actor_id(actor: &Actor) -> String {
    match actor {
        Actor::Account(id) => id.to_string(),
        Actor::ManagementKey { key_id, .. } => key_id.to_string(),
    }
}

/// The first instant of `now`'s calendar month (UTC).
fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Datelike;
    now.date_naive()
        .with_day(1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(now, |d| d.and_utc())
}
