//! The credential vault: `/control/v1/workspaces/{wsId}/vaults` and `/control/v1/vaults/…`:
//! vaults, secrets (metadata), their values and versions.

use authsome_control::{
    CustomerKey, DestroyKeyring, KeyringStatus, NewBinding, NewPrincipal, NewTrustedIssuer,
    NewVault, PrincipalToken, PutSecret, RevealedSecret, TokenExchange, VaultOperator, VaultPatch,
};
use authsome_domain::id::{MemberId, PrincipalId, TrustedIssuerId, VaultId, WorkspaceId};
use authsome_domain::vault::{Binding, Principal, Secret, TrustedIssuer, Vault};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, ListParams, Query, VaultCaller};
use crate::views::List;
use crate::AppState;

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ValueParams {
    /// The version to read (default: the latest).
    #[param(minimum = 1)]
    pub version: Option<u32>,
}

/// `If-Match: <version>` (bare or quoted): the version a write expects to replace.
fn if_match(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse::<u32>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match must be a version number"))
}

#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/vaults", tag = "vault",
    params(("wsId" = String, Path)),
    request_body = NewVault,
    responses((status = 201, body = Vault), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<NewVault>,
) -> Result<(StatusCode, axum::Json<Vault>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let vault = state
        .control
        .create_vault(&caller.actor, &ws, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(vault)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/vaults", tag = "vault",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<Vault>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Vault>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .vaults(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |v| v)))
}

#[utoipa::path(get, path = "/control/v1/vaults/{vaultId}", tag = "vault",
    params(("vaultId" = String, Path)),
    responses((status = 200, body = Vault), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Vault>, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    Ok(axum::Json(state.control.vault(&caller.actor, &id).await?))
}

#[utoipa::path(patch, path = "/control/v1/vaults/{vaultId}", tag = "vault",
    params(("vaultId" = String, Path)),
    request_body = VaultPatch,
    responses((status = 200, body = Vault), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(patch): Json<VaultPatch>,
) -> Result<axum::Json<Vault>, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    Ok(axum::Json(
        state
            .control
            .update_vault(&caller.actor, &id, patch)
            .await?,
    ))
}

/// Deletes an empty vault.
#[utoipa::path(delete, path = "/control/v1/vaults/{vaultId}", tag = "vault",
    params(("vaultId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    state.control.delete_vault(&caller.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A vault's secrets: metadata only, never values.
#[utoipa::path(get, path = "/control/v1/vaults/{vaultId}/secrets", tag = "vault",
    params(("vaultId" = String, Path), ListParams),
    responses((status = 200, body = List<Secret>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = []), ("pop" = [])))]
pub async fn secrets(
    State(state): State<AppState>,
    VaultCaller(caller): VaultCaller,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Secret>>, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    let page = state.control.secrets(&caller, &id, &params.page()?).await?;
    Ok(axum::Json(List::from_page(page, |s| s)))
}

/// Writes a new version: 201 with version 1 when it creates the secret, then 200. With
/// `If-Match: <version>`, only if that is still the latest (412 `precondition_failed`
/// otherwise).
#[utoipa::path(put, path = "/control/v1/vaults/{vaultId}/secrets/{name}", tag = "vault",
    params(("vaultId" = String, Path),
        ("name" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,128}$"),
        ("If-Match" = Option<String>, Header, pattern = "^\"?[0-9]{1,9}\"?$",
            description = "The version this write replaces (0: none yet)")),
    request_body = PutSecret,
    responses((status = 200, body = Secret), (status = 201, body = Secret),
        (status = 412, body = ErrorBody), (status = "4XX", body = ErrorBody)),
    security(("bearer" = []), ("pop" = [])))]
pub async fn put_secret(
    State(state): State<AppState>,
    VaultCaller(caller): VaultCaller,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(input): Json<PutSecret>,
) -> Result<(StatusCode, axum::Json<Secret>), ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    let expected = if_match(&headers)?;
    let (secret, created) = state
        .control
        .put_secret(&caller, &id, &name, input, expected)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(secret)))
}

/// A secret's metadata: `version` is the latest, `versions` those kept.
#[utoipa::path(get, path = "/control/v1/vaults/{vaultId}/secrets/{name}", tag = "vault",
    params(("vaultId" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Secret), (status = "4XX", body = ErrorBody)),
    security(("bearer" = []), ("pop" = [])))]
pub async fn secret(
    State(state): State<AppState>,
    VaultCaller(caller): VaultCaller,
    Path((id, name)): Path<(String, String)>,
) -> Result<axum::Json<Secret>, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    Ok(axum::Json(state.control.secret(&caller, &id, &name).await?))
}

/// Soft-deletes a secret: no value is served until it is restored.
#[utoipa::path(delete, path = "/control/v1/vaults/{vaultId}/secrets/{name}", tag = "vault",
    params(("vaultId" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    state
        .control
        .delete_secret(&caller.actor, &id, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A secret's value (the latest version unless `version` is given). Every read is audited.
#[utoipa::path(get, path = "/control/v1/vaults/{vaultId}/secrets/{name}/value", tag = "vault",
    params(("vaultId" = String, Path), ("name" = String, Path), ValueParams),
    responses((status = 200, body = RevealedSecret), (status = "4XX", body = ErrorBody)),
    security(("bearer" = []), ("pop" = [])))]
pub async fn value(
    State(state): State<AppState>,
    VaultCaller(caller): VaultCaller,
    Path((id, name)): Path<(String, String)>,
    Query(params): Query<ValueParams>,
) -> Result<axum::Json<RevealedSecret>, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    Ok(axum::Json(
        state
            .control
            .secret_value(&caller, &id, &name, params.version)
            .await?,
    ))
}

#[utoipa::path(post, path = "/control/v1/vaults/{vaultId}/secrets/{name}/restore", tag = "vault",
    params(("vaultId" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Secret), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn restore_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<axum::Json<Secret>, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    Ok(axum::Json(
        state
            .control
            .restore_secret(&caller.actor, &id, &name)
            .await?,
    ))
}

/// Destroys one version's value for good; its metadata stays, marked destroyed.
#[utoipa::path(post, path = "/control/v1/vaults/{vaultId}/secrets/{name}/versions/{version}/destroy",
    tag = "vault",
    params(("vaultId" = String, Path), ("name" = String, Path),
        ("version" = u32, Path, minimum = 1)),
    responses((status = 200, body = Secret), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn destroy_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name, version)): Path<(String, String, String)>,
) -> Result<axum::Json<Secret>, ApiError> {
    let id: VaultId = path_id(&id, "vault")?;
    let version: u32 = path_id(&version, "secret version")?;
    Ok(axum::Json(
        state
            .control
            .destroy_secret_version(&caller.actor, &id, &name, version)
            .await?,
    ))
}

/// The workspace's keyring: its newest key-encryption key and the background work under way.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/keyring", tag = "vault",
    params(("wsId" = String, Path)),
    responses((status = 200, body = KeyringStatus), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn keyring(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<KeyringStatus>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(state.control.keyring(&caller.actor, &ws).await?))
}

/// Rotates the key-encryption key: new writes use the new version at once; existing data keys
/// are rewrapped in the background (`rewrap` shows how far), every secret readable throughout.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/keyring/rotate", tag = "vault",
    params(("wsId" = String, Path)),
    responses((status = 200, body = KeyringStatus), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_keyring(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<KeyringStatus>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state.control.rotate_keyring(&caller.actor, &ws).await?,
    ))
}

/// Enterprise: wraps the workspace's keys with the customer's AWS KMS key from now on (or, with
/// `keyId` null, with the deployment's master key again): a new key version wrapped so, and
/// every data key rewrapped under it in the background. Owners only: whoever controls the KMS
/// key can make every secret unreadable by revoking the deployment's grant.
#[utoipa::path(put, path = "/control/v1/workspaces/{wsId}/keyring/kms", tag = "vault",
    params(("wsId" = String, Path)),
    request_body = CustomerKey,
    responses((status = 200, body = KeyringStatus), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_customer_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<CustomerKey>,
) -> Result<axum::Json<KeyringStatus>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .set_customer_key(&caller.actor, &ws, input)
            .await?,
    ))
}

/// Re-encrypts every secret value under a fresh data key, in the background (`rekey`).
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/keyring/rekey", tag = "vault",
    params(("wsId" = String, Path)),
    responses((status = 200, body = KeyringStatus), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rekey_keyring(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<KeyringStatus>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state.control.rekey_keyring(&caller.actor, &ws).await?,
    ))
}

/// Destroys every key-encryption key of the workspace (owners only, confirmed by its name):
/// no secret sealed under them can ever be read again.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/keyring/destroy", tag = "vault",
    params(("wsId" = String, Path)),
    request_body = DestroyKeyring,
    responses((status = 200, body = KeyringStatus), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn destroy_keyring(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<DestroyKeyring>,
) -> Result<axum::Json<KeyringStatus>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .destroy_keyring(&caller.actor, &ws, input)
            .await?,
    ))
}

/// Creates a machine principal (a service, a CI job, an agent) with the Ed25519 public key it
/// will sign its proofs with (`Authorization: PoP <JWS>`).
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/principals", tag = "vault",
    params(("wsId" = String, Path)),
    request_body = NewPrincipal,
    responses((status = 201, body = Principal), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_principal(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<NewPrincipal>,
) -> Result<(StatusCode, axum::Json<Principal>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let principal = state
        .control
        .create_principal(&caller.actor, &ws, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(principal)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/principals", tag = "vault",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<Principal>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn principals(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Principal>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .principals(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |p| p)))
}

#[utoipa::path(get, path = "/control/v1/principals/{prnId}", tag = "vault",
    params(("prnId" = String, Path)),
    responses((status = 200, body = Principal), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn principal(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Principal>, ApiError> {
    let id: PrincipalId = path_id(&id, "principal")?;
    Ok(axum::Json(
        state.control.principal(&caller.actor, &id).await?,
    ))
}

/// Deletes a principal: its proofs stop working at once.
#[utoipa::path(delete, path = "/control/v1/principals/{prnId}", tag = "vault",
    params(("prnId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_principal(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: PrincipalId = path_id(&id, "principal")?;
    state.control.delete_principal(&caller.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Binds a principal to a vault of its workspace: `read` (values and metadata), `write` (new
/// versions). Replaces what it had in that vault. Every other vault stays invisible to it.
#[utoipa::path(post, path = "/control/v1/principals/{prnId}/bindings", tag = "vault",
    params(("prnId" = String, Path)),
    request_body = NewBinding,
    responses((status = 200, body = Binding), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn bind(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(input): Json<NewBinding>,
) -> Result<axum::Json<Binding>, ApiError> {
    let id: PrincipalId = path_id(&id, "principal")?;
    Ok(axum::Json(
        state
            .control
            .bind_principal(&caller.actor, &id, input)
            .await?,
    ))
}

#[utoipa::path(get, path = "/control/v1/principals/{prnId}/bindings", tag = "vault",
    params(("prnId" = String, Path)),
    responses((status = 200, body = Vec<Binding>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn bindings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<Binding>>, ApiError> {
    let id: PrincipalId = path_id(&id, "principal")?;
    Ok(axum::Json(
        state.control.principal_bindings(&caller.actor, &id).await?,
    ))
}

/// Trusts an external issuer's tokens (a CI system, a Kubernetes cluster) as one principal of
/// the workspace, when they carry the audience and every listed claim.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/trusted-issuers", tag = "vault",
    params(("wsId" = String, Path)),
    request_body = NewTrustedIssuer,
    responses((status = 201, body = TrustedIssuer), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_trusted_issuer(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<NewTrustedIssuer>,
) -> Result<(StatusCode, axum::Json<TrustedIssuer>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let trusted = state
        .control
        .create_trusted_issuer(&caller.actor, &ws, input)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(trusted)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/trusted-issuers", tag = "vault",
    params(("wsId" = String, Path)),
    responses((status = 200, body = Vec<TrustedIssuer>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn trusted_issuers(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<Vec<TrustedIssuer>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state.control.trusted_issuers(&caller.actor, &ws).await?,
    ))
}

#[utoipa::path(delete, path = "/control/v1/workspaces/{wsId}/trusted-issuers/{tisId}", tag = "vault",
    params(("wsId" = String, Path), ("tisId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_trusted_issuer(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let id: TrustedIssuerId = path_id(&id, "trusted issuer")?;
    state
        .control
        .delete_trusted_issuer(&caller.actor, &ws, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Workload identity federation: exchanges a JWT of a trusted issuer (its signature checked
/// against the issuer's published keys, its audience, expiry and registered claims) for a
/// principal access token of 15 minutes, used as `Authorization: Bearer` on the secrets routes.
#[utoipa::path(post, path = "/control/v1/principals/token", tag = "vault",
    request_body = TokenExchange,
    responses((status = 200, body = PrincipalToken), (status = 401, body = ErrorBody),
        (status = "4XX", body = ErrorBody)))]
pub async fn exchange_token(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    Json(input): Json<TokenExchange>,
) -> Result<axum::Json<PrincipalToken>, ApiError> {
    let client = crate::routes::customer::client_info(&parts);
    Ok(axum::Json(
        state
            .control
            .exchange_principal_token(&input.assertion, client.ip.as_deref())
            .await?,
    ))
}

/// Binds a member with the operator role to the vault: operators read the values of the vaults
/// bound to them and of no other.
#[utoipa::path(put, path = "/control/v1/vaults/{vaultId}/operators/{memId}", tag = "vault",
    params(("vaultId" = String, Path), ("memId" = String, Path)),
    responses((status = 200, body = VaultOperator), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn bind_operator(
    State(state): State<AppState>,
    caller: Caller,
    Path((vault, member)): Path<(String, String)>,
) -> Result<axum::Json<VaultOperator>, ApiError> {
    let vault: VaultId = path_id(&vault, "vault")?;
    let member: MemberId = path_id(&member, "member")?;
    Ok(axum::Json(
        state
            .control
            .bind_vault_operator(&caller.actor, &vault, &member)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/control/v1/vaults/{vaultId}/operators/{memId}", tag = "vault",
    params(("vaultId" = String, Path), ("memId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unbind_operator(
    State(state): State<AppState>,
    caller: Caller,
    Path((vault, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let vault: VaultId = path_id(&vault, "vault")?;
    let member: MemberId = path_id(&member, "member")?;
    state
        .control
        .unbind_vault_operator(&caller.actor, &vault, &member)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/control/v1/vaults/{vaultId}/operators", tag = "vault",
    params(("vaultId" = String, Path)),
    responses((status = 200, body = Vec<VaultOperator>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn operators(
    State(state): State<AppState>,
    caller: Caller,
    Path(vault): Path<String>,
) -> Result<axum::Json<Vec<VaultOperator>>, ApiError> {
    let vault: VaultId = path_id(&vault, "vault")?;
    Ok(axum::Json(
        state.control.vault_operators(&caller.actor, &vault).await?,
    ))
}
