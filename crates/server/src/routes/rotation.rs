//! Rotation: a secret's rotation settings (`…/secrets/{name}/rotation`), starting a rotation or
//! previewing it (`…/secrets/{name}/rotations`), rotations by id, with rollback, and the
//! workspace's rotation policies.

use authsome_control::rotation::{
    ApprovalAction, ApprovalDecision, NewPolicy, PolicyUpdate, PutRotation, RotationPlan,
    RotationSettings, RotationUsage, StartRotation, StartRotations, Started,
};
use authsome_domain::id::{ApprovalId, PolicyId, RotationId, VaultId, WorkspaceId};
use authsome_domain::rotation::{Approval, Policy, Rotation};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, ListParams, Query};
use crate::views::List;
use crate::AppState;

/// Sets how the secret is rotated: the generator, the targets (each provider needs its
/// credential configured under `…/providers/{provider}`), the health check, redeploys and the
/// grace period. Owners and admins.
#[utoipa::path(put, path = "/control/v1/vaults/{vaultId}/secrets/{name}/rotation", tag = "rotation",
    params(("vaultId" = String, Path), ("name" = String, Path)),
    request_body = PutRotation,
    responses((status = 200, body = RotationSettings), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path((vault, name)): Path<(String, String)>,
    Json(input): Json<PutRotation>,
) -> Result<axum::Json<RotationSettings>, ApiError> {
    let vault: VaultId = path_id(&vault, "vault")?;
    Ok(axum::Json(
        state
            .control
            .put_rotation_settings(&caller.actor, &vault, &name, input)
            .await?,
    ))
}

#[utoipa::path(get, path = "/control/v1/vaults/{vaultId}/secrets/{name}/rotation", tag = "rotation",
    params(("vaultId" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = RotationSettings), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path((vault, name)): Path<(String, String)>,
) -> Result<axum::Json<RotationSettings>, ApiError> {
    let vault: VaultId = path_id(&vault, "vault")?;
    Ok(axum::Json(
        state
            .control
            .rotation_settings(&caller.actor, &vault, &name)
            .await?,
    ))
}

/// The plan of a dry run (`{"plan": …}`, nothing changes).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PlanView {
    pub plan: RotationPlan,
}

/// Starts a rotation (202 with the rotation, run in the background: poll it by id), or with
/// `dryRun` returns its plan (200) and changes nothing. A policy that blocks it is 409.
#[utoipa::path(post, path = "/control/v1/vaults/{vaultId}/secrets/{name}/rotations", tag = "rotation",
    params(("vaultId" = String, Path), ("name" = String, Path)),
    request_body = StartRotation,
    responses((status = 202, body = Rotation), (status = 200, body = PlanView),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path((vault, name)): Path<(String, String)>,
    Json(input): Json<Option<StartRotation>>,
) -> Result<Response, ApiError> {
    let vault: VaultId = path_id(&vault, "vault")?;
    let started = state
        .control
        .start_rotation(&caller.actor, &vault, &name, input.unwrap_or_default())
        .await?;
    Ok(match started {
        Started::Plan(plan) => (StatusCode::OK, axum::Json(PlanView { plan })).into_response(),
        Started::Rotation(r) => (StatusCode::ACCEPTED, axum::Json(r)).into_response(),
    })
}

/// One secret's outcome in a batch: `started` (with the rotation), `planned` (a dry run, with
/// the plan) or `refused` (with the error it would have been alone).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchOutcome {
    pub secret: String,
    /// `started`, `planned` or `refused`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<RotationPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

/// The outcomes of a batch, in the order asked.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct BatchView {
    pub data: Vec<BatchOutcome>,
}

/// Starts (or with `dryRun` previews) the rotations of many secrets of a vault at once, each as
/// `…/secrets/{name}/rotations` would: one secret refused (no settings, a policy, a rotation
/// already running) does not stop the others. 200 with each secret's outcome.
#[utoipa::path(post, path = "/control/v1/vaults/{vaultId}/rotations", tag = "rotation",
    params(("vaultId" = String, Path)),
    request_body = StartRotations,
    responses((status = 200, body = BatchView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(vault): Path<String>,
    Json(input): Json<StartRotations>,
) -> Result<axum::Json<BatchView>, ApiError> {
    let vault: VaultId = path_id(&vault, "vault")?;
    let outcomes = state
        .control
        .start_rotations(&caller.actor, &vault, input)
        .await?;
    let data = outcomes
        .into_iter()
        .map(|(secret, started)| match started {
            Ok(Started::Rotation(r)) => BatchOutcome {
                secret,
                outcome: "started",
                rotation: Some(r),
                plan: None,
                error: None,
            },
            Ok(Started::Plan(plan)) => BatchOutcome {
                secret,
                outcome: "planned",
                rotation: None,
                plan: Some(plan),
                error: None,
            },
            Err(e) => BatchOutcome {
                secret,
                outcome: "refused",
                rotation: None,
                plan: None,
                error: Some(ApiError::from(e).detail()),
            },
        })
        .collect();
    Ok(axum::Json(BatchView { data }))
}

/// A rotation: its steps (each with what it did or why it failed) and status.
#[utoipa::path(get, path = "/control/v1/rotations/{rotId}", tag = "rotation",
    params(("rotId" = String, Path)),
    responses((status = 200, body = Rotation), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Rotation>, ApiError> {
    let id: RotationId = path_id(&id, "rotation")?;
    Ok(axum::Json(
        state.control.rotation(&caller.actor, &id).await?,
    ))
}

/// Rolls a succeeded rotation back (in the background: the targets get the previous version,
/// the vault's latest goes back to its value); 202 with the rotation as it stands.
#[utoipa::path(post, path = "/control/v1/rotations/{rotId}/rollback", tag = "rotation",
    params(("rotId" = String, Path)),
    responses((status = 202, body = Rotation), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Rotation>), ApiError> {
    let id: RotationId = path_id(&id, "rotation")?;
    let r = state.control.roll_back_rotation(&caller.actor, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/rotations", tag = "rotation",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<Rotation>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Rotation>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .rotations(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |r| r)))
}

/// Sets rotation rules at one level: `workspace`, a `provider`, or a `secret`
/// (`<vaultId>/<name>`). At rotation time each provider's chain workspace → provider → secret is
/// merged field by field (nearest wins) and the most restrictive outcome of all decides.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/policies", tag = "rotation",
    params(("wsId" = String, Path)),
    request_body = NewPolicy,
    responses((status = 201, body = Policy), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<NewPolicy>,
) -> Result<(StatusCode, axum::Json<Policy>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let policy = state
        .control
        .create_policy(&caller.actor, &ws, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(policy)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/policies", tag = "rotation",
    params(("wsId" = String, Path)),
    responses((status = 200, body = List<Policy>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn policies(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<List<Policy>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let all = state.control.policies(&caller.actor, &ws).await?;
    Ok(axum::Json(List {
        data: all,
        has_more: false,
        next_cursor: None,
    }))
}

/// Replaces a policy's rules.
#[utoipa::path(put, path = "/control/v1/workspaces/{wsId}/policies/{polId}", tag = "rotation",
    params(("wsId" = String, Path), ("polId" = String, Path)),
    request_body = PolicyUpdate,
    responses((status = 200, body = Policy), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
    Json(input): Json<PolicyUpdate>,
) -> Result<axum::Json<Policy>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let id: PolicyId = path_id(&id, "policy")?;
    Ok(axum::Json(
        state
            .control
            .update_policy(&caller.actor, &ws, &id, input)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/control/v1/workspaces/{wsId}/policies/{polId}", tag = "rotation",
    params(("wsId" = String, Path), ("polId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let id: PolicyId = path_id(&id, "policy")?;
    state.control.delete_policy(&caller.actor, &ws, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A month's rotations per day against the plan's allowance (free: 100, a hard stop; pro:
/// 10,000 included, then billed as overage; enterprise: its own limit).
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/rotations/usage", tag = "rotation",
    params(("wsId" = String, Path), crate::routes::applications::UsageParams),
    responses((status = 200, body = RotationUsage), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<crate::routes::applications::UsageParams>,
) -> Result<axum::Json<RotationUsage>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .rotation_usage(&caller.actor, &ws, params.month.as_deref())
            .await?,
    ))
}

/// The workspace's approval requests (rotations held for a second person).
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/approvals", tag = "rotation",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<Approval>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approvals(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Approval>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .approvals(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |a| a)))
}

#[utoipa::path(get, path = "/control/v1/approvals/{aprId}", tag = "rotation",
    params(("aprId" = String, Path)),
    responses((status = 200, body = Approval), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approval(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Approval>, ApiError> {
    let id: ApprovalId = path_id(&id, "approval request")?;
    Ok(axum::Json(
        state.control.approval(&caller.actor, &id).await?,
    ))
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    action: ApprovalAction,
    input: Option<ApprovalDecision>,
) -> Result<axum::Json<Approval>, ApiError> {
    let id: ApprovalId = path_id(&id, "approval request")?;
    Ok(axum::Json(
        state
            .control
            .decide_approval(&caller.actor, &id, action, input.unwrap_or_default())
            .await?,
    ))
}

/// Approves a rotation held for a second person (owners and admins; never the requester):
/// it runs at once.
#[utoipa::path(post, path = "/control/v1/approvals/{aprId}/approve", tag = "rotation",
    params(("aprId" = String, Path)), request_body = Option<ApprovalDecision>,
    responses((status = 200, body = Approval), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<Option<ApprovalDecision>>,
) -> Result<axum::Json<Approval>, ApiError> {
    decide(state, caller, id, ApprovalAction::Approve, input).await
}

/// Denies it (owners and admins; never the requester): the rotation fails, nothing changed.
#[utoipa::path(post, path = "/control/v1/approvals/{aprId}/deny", tag = "rotation",
    params(("aprId" = String, Path)), request_body = Option<ApprovalDecision>,
    responses((status = 200, body = Approval), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<Option<ApprovalDecision>>,
) -> Result<axum::Json<Approval>, ApiError> {
    decide(state, caller, id, ApprovalAction::Deny, input).await
}

/// The requester withdraws the request.
#[utoipa::path(post, path = "/control/v1/approvals/{aprId}/cancel", tag = "rotation",
    params(("aprId" = String, Path)), request_body = Option<ApprovalDecision>,
    responses((status = 200, body = Approval), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<Option<ApprovalDecision>>,
) -> Result<axum::Json<Approval>, ApiError> {
    decide(state, caller, id, ApprovalAction::Cancel, input).await
}

/// An owner approves without a second person, with a written reason (audited).
#[utoipa::path(post, path = "/control/v1/approvals/{aprId}/break-glass", tag = "rotation",
    params(("aprId" = String, Path)), request_body = ApprovalDecision,
    responses((status = 200, body = Approval), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn break_glass(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<Option<ApprovalDecision>>,
) -> Result<axum::Json<Approval>, ApiError> {
    decide(state, caller, id, ApprovalAction::BreakGlass, input).await
}
