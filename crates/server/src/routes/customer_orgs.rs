//! Organizations of an application's users: the admin API (secret key, `organizations:*`
//! scopes) and the user-facing routes (access token): accepting an invitation, switching the
//! organization a session acts in.

use authsome_control::admission::{OrganizationsRead, OrganizationsWrite};
use authsome_domain::id::{OrgMembershipId, OrganizationId};
use authsome_domain::identity::{OrgMembership, Organization};
use authsome_identity::{
    AcceptOrgInvitation, CreatedOrgInvitation, MembershipPatch, NewMembership, NewOrgInvitation,
    NewOrganization, OrganizationPatch, SwitchOrganization,
};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Json, Query};
use crate::routes::customer::{self, presented, public};
use crate::routes::customer_users::PageParams;
use crate::views::List;
use crate::AppState;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedOrganization {
    #[serde(flatten)]
    pub organization: Organization,
    /// The creator's membership, when `createdBy` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<OrgMembership>,
}

#[utoipa::path(post, path = "/v1/{appId}/organizations", tag = "organizations",
    params(("appId" = String, Path)),
    request_body = NewOrganization,
    responses((status = 201, body = CreatedOrganization), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
    Json(input): Json<NewOrganization>,
) -> Result<(StatusCode, axum::Json<CreatedOrganization>), ApiError> {
    let access = customer::admin::<OrganizationsWrite>(&state, &app_id, &parts).await?;
    let (organization, membership) = state.identity.create_organization(&access, input).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedOrganization {
            organization,
            membership,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/{appId}/organizations", tag = "organizations",
    params(("appId" = String, Path), PageParams),
    responses((status = 200, body = List<Organization>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Query(params): Query<PageParams>,
    parts: Parts,
) -> Result<axum::Json<List<Organization>>, ApiError> {
    let access = customer::admin::<OrganizationsRead>(&state, &app_id, &parts).await?;
    let page = authsome_domain::page::PageRequest::parse(params.limit, params.cursor.as_deref())?;
    Ok(axum::Json(List::from_page(
        state.identity.organizations(&access, &page).await?,
        |o| o,
    )))
}

#[utoipa::path(get, path = "/v1/{appId}/organizations/{orgId}", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path)),
    responses((status = 200, body = Organization), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path((app_id, org)): Path<(String, String)>,
    parts: Parts,
) -> Result<axum::Json<Organization>, ApiError> {
    let access = customer::admin::<OrganizationsRead>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    Ok(axum::Json(
        state.identity.organization(&access, &org).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/{appId}/organizations/{orgId}", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path)),
    request_body = OrganizationPatch,
    responses((status = 200, body = Organization), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Path((app_id, org)): Path<(String, String)>,
    parts: Parts,
    Json(patch): Json<OrganizationPatch>,
) -> Result<axum::Json<Organization>, ApiError> {
    let access = customer::admin::<OrganizationsWrite>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    Ok(axum::Json(
        state
            .identity
            .update_organization(&access, &org, patch)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/{appId}/organizations/{orgId}", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path((app_id, org)): Path<(String, String)>,
    parts: Parts,
) -> Result<StatusCode, ApiError> {
    let access = customer::admin::<OrganizationsWrite>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    state.identity.delete_organization(&access, &org).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/{appId}/organizations/{orgId}/memberships", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path)),
    request_body = NewMembership,
    responses((status = 201, body = OrgMembership), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_membership(
    State(state): State<AppState>,
    Path((app_id, org)): Path<(String, String)>,
    parts: Parts,
    Json(input): Json<NewMembership>,
) -> Result<(StatusCode, axum::Json<OrgMembership>), ApiError> {
    let access = customer::admin::<OrganizationsWrite>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    Ok((
        StatusCode::CREATED,
        axum::Json(state.identity.add_membership(&access, &org, input).await?),
    ))
}

#[utoipa::path(get, path = "/v1/{appId}/organizations/{orgId}/memberships", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path), PageParams),
    responses((status = 200, body = List<OrgMembership>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn memberships(
    State(state): State<AppState>,
    Path((app_id, org)): Path<(String, String)>,
    Query(params): Query<PageParams>,
    parts: Parts,
) -> Result<axum::Json<List<OrgMembership>>, ApiError> {
    let access = customer::admin::<OrganizationsRead>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    let page = authsome_domain::page::PageRequest::parse(params.limit, params.cursor.as_deref())?;
    Ok(axum::Json(List::from_page(
        state.identity.memberships(&access, &org, &page).await?,
        |m| m,
    )))
}

#[utoipa::path(patch, path = "/v1/{appId}/organizations/{orgId}/memberships/{ormId}", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path), ("ormId" = String, Path)),
    request_body = MembershipPatch,
    responses((status = 200, body = OrgMembership), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_membership(
    State(state): State<AppState>,
    Path((app_id, org, membership)): Path<(String, String, String)>,
    parts: Parts,
    Json(patch): Json<MembershipPatch>,
) -> Result<axum::Json<OrgMembership>, ApiError> {
    let access = customer::admin::<OrganizationsWrite>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    let membership: OrgMembershipId = path_id(&membership, "membership")?;
    Ok(axum::Json(
        state
            .identity
            .update_membership(&access, &org, &membership, patch)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/{appId}/organizations/{orgId}/memberships/{ormId}", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path), ("ormId" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_membership(
    State(state): State<AppState>,
    Path((app_id, org, membership)): Path<(String, String, String)>,
    parts: Parts,
) -> Result<StatusCode, ApiError> {
    let access = customer::admin::<OrganizationsWrite>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    let membership: OrgMembershipId = path_id(&membership, "membership")?;
    state
        .identity
        .remove_membership(&access, &org, &membership)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Invites a person by email; the one-time token (valid 7 days) is in the response.
#[utoipa::path(post, path = "/v1/{appId}/organizations/{orgId}/invitations", tag = "organizations",
    params(("appId" = String, Path), ("orgId" = String, Path)),
    request_body = NewOrgInvitation,
    responses((status = 201, body = CreatedOrgInvitation), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn invite(
    State(state): State<AppState>,
    Path((app_id, org)): Path<(String, String)>,
    parts: Parts,
    Json(input): Json<NewOrgInvitation>,
) -> Result<(StatusCode, axum::Json<CreatedOrgInvitation>), ApiError> {
    let access = customer::admin::<OrganizationsWrite>(&state, &app_id, &parts).await?;
    let org: OrganizationId = path_id(&org, "organization")?;
    Ok((
        StatusCode::CREATED,
        axum::Json(
            state
                .identity
                .invite_to_organization(&access, &org, input)
                .await?,
        ),
    ))
}

/// The signed-in user accepts an invitation addressed to their email (once).
#[utoipa::path(post, path = "/v1/{appId}/organizations/invitations/accept", tag = "organizations",
    params(("appId" = String, Path)),
    request_body = AcceptOrgInvitation,
    responses((status = 200, body = OrgMembership), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
    Json(input): Json<AcceptOrgInvitation>,
) -> Result<axum::Json<OrgMembership>, ApiError> {
    let app = public(&state, &app_id).await?;
    Ok(axum::Json(
        state
            .identity
            .accept_org_invitation(&app.id, presented(&state, &parts).await?.get(), input)
            .await?,
    ))
}

/// The answer to switching organization: the session's new access token.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SwitchedOrganization {
    pub session: authsome_identity::AccessToken,
}

/// Acts in another organization (or none): a new access token with `org` and `orgRole`.
#[utoipa::path(post, path = "/v1/{appId}/auth/switch-organization", tag = "customer",
    params(("appId" = String, Path)),
    request_body = SwitchOrganization,
    responses((status = 200, body = SwitchedOrganization), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn switch_organization(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    parts: Parts,
    Json(input): Json<SwitchOrganization>,
) -> Result<axum::Json<SwitchedOrganization>, ApiError> {
    let app = public(&state, &app_id).await?;
    let session = state
        .identity
        .switch_organization(&app.id, presented(&state, &parts).await?.get(), input)
        .await?;
    Ok(axum::Json(SwitchedOrganization { session }))
}
