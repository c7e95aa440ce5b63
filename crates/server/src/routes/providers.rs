//! Provider credentials: `/control/v1/workspaces/{wsId}/providers/{provider}`: how each
//! provider's credential is had (hosted, kms, oauth, api_key) and a test that resolves it
//! without showing it.

use authsome_control::{ProviderTest, ProviderView, PutProvider};
use authsome_domain::id::WorkspaceId;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json};
use crate::views::List;
use crate::AppState;

/// Configures a provider's credential mode; a credential in the body goes to the vault (or,
/// in `kms` mode, is encrypted with the customer's KMS key) and never into the configuration.
/// 201 when created, 200 when replaced.
#[utoipa::path(put, path = "/control/v1/workspaces/{wsId}/providers/{provider}", tag = "providers",
    params(("wsId" = String, Path), ("provider" = authsome_domain::provider::Provider, Path)),
    request_body = PutProvider,
    responses((status = 200, body = ProviderView), (status = 201, body = ProviderView),
        (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, provider)): Path<(String, String)>,
    Json(input): Json<PutProvider>,
) -> Result<(StatusCode, axum::Json<ProviderView>), ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let (view, created) = state
        .control
        .put_provider(&caller.actor, &ws, &provider, input)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view)))
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/providers/{provider}", tag = "providers",
    params(("wsId" = String, Path), ("provider" = authsome_domain::provider::Provider, Path)),
    responses((status = 200, body = ProviderView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, provider)): Path<(String, String)>,
) -> Result<axum::Json<ProviderView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .provider_config(&caller.actor, &ws, &provider)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/control/v1/workspaces/{wsId}/providers/{provider}", tag = "providers",
    params(("wsId" = String, Path), ("provider" = authsome_domain::provider::Provider, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, provider)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    state
        .control
        .delete_provider(&caller.actor, &ws, &provider)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/providers", tag = "providers",
    params(("wsId" = String, Path)),
    responses((status = 200, body = List<ProviderView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<List<ProviderView>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let data = state.control.providers(&caller.actor, &ws).await?;
    // Nine providers at most: one page.
    Ok(axum::Json(List {
        data,
        has_more: false,
        next_cursor: None,
    }))
}

/// Resolves the provider's credential as a rotation would (through the cache, retries and
/// circuit breaker) and reports how it went; the value is never in the answer.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/providers/{provider}/test", tag = "providers",
    params(("wsId" = String, Path), ("provider" = authsome_domain::provider::Provider, Path)),
    responses((status = 200, body = ProviderTest), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, provider)): Path<(String, String)>,
) -> Result<axum::Json<ProviderTest>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(
        state
            .control
            .test_provider(&caller.actor, &ws, &provider)
            .await?,
    ))
}
