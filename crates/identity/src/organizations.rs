//! Organizations (org units) of an application's users: create, list, update, delete;
//! memberships with roles; invitations by email, accepted once by the signed-in invitee.

use authsome_control::admission::{AdminAccess, OrganizationsRead, OrganizationsWrite};
use authsome_domain::id::{ApplicationId, InvitationId, OrgMembershipId, OrganizationId, UserId};
use authsome_domain::identity::{
    parse_org_role, OrgInvitation, OrgMembership, Organization, ORG_INVITATION_TTL,
};
use authsome_domain::keys::{KeyHash, OpaqueToken};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::member::parse_email;
use authsome_domain::tenancy::{parse_json_object, parse_name, Slug};
use authsome_storage::StorageError;
use chrono::{DateTime, Utc};

use crate::{Identity, IdentityError, Result};

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOrganization {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::name))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_slug))]
    pub slug: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub metadata: Option<serde_json::Value>,
    /// A user who joins as `admin` at once (typically the creator).
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_user_id))]
    pub created_by: Option<UserId>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrganizationPatch {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_slug))]
    pub slug: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMembership {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::user_id))]
    pub user_id: UserId,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::org_role))]
    pub role: String,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MembershipPatch {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::org_role))]
    pub role: String,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOrgInvitation {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::email))]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::org_role))]
    pub role: String,
}

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptOrgInvitation {
    pub token: String,
}

/// An invitation as created: the token is shown once.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreatedOrgInvitation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: InvitationId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub organization_id: OrganizationId,
    pub email: String,
    pub role: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

fn storage(what: &'static str) -> impl Fn(StorageError) -> IdentityError {
    move |e| match e {
        StorageError::Duplicate => IdentityError::Conflict(format!("{what} already exists")),
        StorageError::NotFound => IdentityError::NotFound(what),
        StorageError::State(why) => IdentityError::Conflict(why.into()),
        other => other.into(),
    }
}

impl Identity {
    pub async fn create_organization(
        &self,
        access: &AdminAccess<OrganizationsWrite>,
        input: NewOrganization,
    ) -> Result<(Organization, Option<OrgMembership>)> {
        let app = access.application();
        let name = parse_name("name", &input.name)?;
        let slug = match input.slug {
            Some(s) => Slug::parse("slug", &s)?,
            None => Slug::derive(&name),
        };
        let metadata = match input.metadata {
            Some(m) => parse_json_object("metadata", m)?,
            None => serde_json::json!({}),
        };
        let store = self.store(app).await?;
        let now = self.clock.now();
        let org = Organization {
            id: OrganizationId::new(),
            name,
            slug: slug.into_string(),
            metadata,
            created_at: now,
            updated_at: now,
        };
        let creator = match input.created_by {
            Some(user) => {
                store
                    .user(&user)
                    .await?
                    .ok_or(IdentityError::NotFound("user"))?;
                Some(OrgMembership {
                    id: OrgMembershipId::new(),
                    organization_id: org.id.clone(),
                    user_id: user,
                    role: "admin".into(),
                    created_at: now,
                    updated_at: now,
                })
            }
            None => None,
        };
        self.audited(
            app,
            Self::event(app, "organization.created", &org.id, None),
            async |outbox| {
                store
                    .create_organization(&org, creator.as_ref(), outbox)
                    .await
                    .map_err(|e| match e {
                        StorageError::Duplicate => {
                            IdentityError::Conflict("slug is already taken".into())
                        }
                        other => other.into(),
                    })
            },
        )
        .await?;
        Ok((org, creator))
    }

    pub async fn organization(
        &self,
        access: &AdminAccess<OrganizationsRead>,
        id: &OrganizationId,
    ) -> Result<Organization> {
        let app = access.application();
        self.store(app)
            .await?
            .organization(id)
            .await?
            .ok_or(IdentityError::NotFound("organization"))
    }

    pub async fn organizations(
        &self,
        access: &AdminAccess<OrganizationsRead>,
        page: &PageRequest,
    ) -> Result<Page<Organization>> {
        let app = access.application();
        Ok(self.store(app).await?.organizations(page).await?)
    }

    pub async fn update_organization(
        &self,
        access: &AdminAccess<OrganizationsWrite>,
        id: &OrganizationId,
        patch: OrganizationPatch,
    ) -> Result<Organization> {
        let app = access.application();
        let store = self.store(app).await?;
        let mut org = store
            .organization(id)
            .await?
            .ok_or(IdentityError::NotFound("organization"))?;
        let mut event = Self::event(app, "organization.updated", &org.id, None);
        if let Some(name) = patch.name {
            let name = parse_name("name", &name)?;
            event = event.changed("name", &org.name, &name);
            org.name = name;
        }
        if let Some(slug) = patch.slug {
            let slug = Slug::parse("slug", &slug)?.into_string();
            event = event.changed("slug", &org.slug, &slug);
            org.slug = slug;
        }
        if let Some(m) = patch.metadata {
            let metadata = parse_json_object("metadata", m)?;
            event = event.changed_keys("metadata", &org.metadata, &metadata);
            org.metadata = metadata;
        }
        org.updated_at = self.clock.now();
        self.audited(app, event, async |outbox| {
            store
                .update_organization(&org, outbox)
                .await
                .map_err(|e| match e {
                    StorageError::Duplicate => {
                        IdentityError::Conflict("slug is already taken".into())
                    }
                    other => storage("organization")(other),
                })
        })
        .await?;
        Ok(org)
    }

    pub async fn delete_organization(
        &self,
        access: &AdminAccess<OrganizationsWrite>,
        id: &OrganizationId,
    ) -> Result<()> {
        let app = access.application();
        let store = self.store(app).await?;
        self.audited(
            app,
            Self::event(app, "organization.deleted", id, None),
            async |outbox| {
                store
                    .delete_organization(id, outbox)
                    .await
                    .map_err(storage("organization"))
            },
        )
        .await?;
        Ok(())
    }

    pub async fn add_membership(
        &self,
        access: &AdminAccess<OrganizationsWrite>,
        org: &OrganizationId,
        input: NewMembership,
    ) -> Result<OrgMembership> {
        let app = access.application();
        let role = parse_org_role(&input.role)?;
        let store = self.store(app).await?;
        store
            .organization(org)
            .await?
            .ok_or(IdentityError::NotFound("organization"))?;
        store
            .user(&input.user_id)
            .await?
            .ok_or(IdentityError::NotFound("user"))?;
        let now = self.clock.now();
        let membership = OrgMembership {
            id: OrgMembershipId::new(),
            organization_id: org.clone(),
            user_id: input.user_id,
            role,
            created_at: now,
            updated_at: now,
        };
        self.audited(
            app,
            Self::event(app, "organization.membership.added", &membership.id, None)
                .change("role", membership.role.clone()),
            async |outbox| {
                store
                    .add_membership(&membership, outbox)
                    .await
                    .map_err(storage("membership"))
            },
        )
        .await?;
        Ok(membership)
    }

    pub async fn memberships(
        &self,
        access: &AdminAccess<OrganizationsRead>,
        org: &OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<OrgMembership>> {
        let app = access.application();
        let store = self.store(app).await?;
        store
            .organization(org)
            .await?
            .ok_or(IdentityError::NotFound("organization"))?;
        Ok(store.memberships(org, page).await?)
    }

    pub async fn update_membership(
        &self,
        access: &AdminAccess<OrganizationsWrite>,
        org: &OrganizationId,
        id: &OrgMembershipId,
        patch: MembershipPatch,
    ) -> Result<OrgMembership> {
        let app = access.application();
        let role = parse_org_role(&patch.role)?;
        let store = self.store(app).await?;
        let membership = self
            .audited(
                app,
                Self::event(app, "organization.membership.updated", id, None)
                    .change("role", role.clone()),
                async |outbox| {
                    store
                        .update_membership_role(org, id, &role, self.clock.now(), outbox)
                        .await
                        .map_err(storage("membership"))
                },
            )
            .await?;
        Ok(membership)
    }

    pub async fn remove_membership(
        &self,
        access: &AdminAccess<OrganizationsWrite>,
        org: &OrganizationId,
        id: &OrgMembershipId,
    ) -> Result<()> {
        let app = access.application();
        let store = self.store(app).await?;
        self.audited(
            app,
            Self::event(app, "organization.membership.removed", id, None),
            async |outbox| {
                store
                    .remove_membership(org, id, outbox)
                    .await
                    .map_err(storage("membership"))
            },
        )
        .await?;
        Ok(())
    }

    pub async fn invite_to_organization(
        &self,
        access: &AdminAccess<OrganizationsWrite>,
        org: &OrganizationId,
        input: NewOrgInvitation,
    ) -> Result<CreatedOrgInvitation> {
        let app = access.application();
        let email = parse_email(&input.email)?;
        let role = parse_org_role(&input.role)?;
        let store = self.store(app).await?;
        store
            .organization(org)
            .await?
            .ok_or(IdentityError::NotFound("organization"))?;
        let token = OpaqueToken::generate("oit_");
        let now = self.clock.now();
        let invitation = OrgInvitation {
            id: InvitationId::new(),
            organization_id: org.clone(),
            email: email.clone(),
            role: role.clone(),
            token_hash: token.hash,
            created_at: now,
            expires_at: now + ORG_INVITATION_TTL,
            accepted_at: None,
        };
        self.audited(
            app,
            Self::event(app, "organization.invitation.created", &invitation.id, None)
                .change("role", role.clone())
                .identifying("email", email.clone()),
            async |outbox| store.create_invitation(&invitation, outbox).await,
        )
        .await?;
        Ok(CreatedOrgInvitation {
            id: invitation.id,
            organization_id: org.clone(),
            email,
            role,
            token: token.plaintext,
            expires_at: invitation.expires_at,
        })
    }

    /// The signed-in user (of `access_token`) accepts an invitation addressed to their email.
    pub async fn accept_org_invitation(
        &self,
        app: &ApplicationId,
        access_token: crate::Presented<'_>,
        input: AcceptOrgInvitation,
    ) -> Result<OrgMembership> {
        let (user, _, _) = self.authenticate(app, access_token).await?;
        let store = self.store(app).await?;
        let now = self.clock.now();
        let invitation = store
            .invitation_by_token(&KeyHash::of(&input.token), now)
            .await?
            .ok_or(IdentityError::NotFound("invitation"))?;
        if invitation.email != user.email {
            // Someone else's invitation: as if it did not exist.
            return Err(IdentityError::NotFound("invitation"));
        }
        let membership = OrgMembership {
            id: OrgMembershipId::new(),
            organization_id: invitation.organization_id.clone(),
            user_id: user.id,
            role: invitation.role.clone(),
            created_at: now,
            updated_at: now,
        };
        self.audited(
            app,
            Self::event(
                app,
                "organization.invitation.accepted",
                &invitation.id,
                Some(&membership.user_id),
            ),
            async |outbox| {
                store
                    .accept_org_invitation(&invitation.id, &membership, now, outbox)
                    .await
                    .map_err(|e| match e {
                        StorageError::State(_) => IdentityError::NotFound("invitation"),
                        other => storage("membership")(other),
                    })
            },
        )
        .await?;
        Ok(membership)
    }
}
