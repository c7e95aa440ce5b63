//! Workspaces: create (the creator becomes owner), list, read, update, delete.

use authsome_domain::event::DomainEvent;
use authsome_domain::id::{MemberId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{
    parse_json_object, parse_name, Actor, KycStatus, Member, MemberStatus, PaymentStatus,
    Permission, Plan, Role, Slug, Workspace, WorkspaceLimits, WorkspaceStatus,
};
use authsome_storage::StorageError;

use crate::{duplicate, ControlError, ControlPlane, Result};

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWorkspace {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::name))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_slug))]
    pub slug: Option<String>,
    pub plan: Option<Plan>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspacePatch {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_slug))]
    pub slug: Option<String>,
    /// Replaces the whole metadata object.
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub metadata: Option<serde_json::Value>,
}

impl ControlPlane {
    /// Only a signed-in person can create a workspace; they become its owner. New workspaces
    /// start on `free`: a paid plan comes from billing or a platform operator.
    pub async fn create_workspace(
        &self,
        actor: &Actor,
        input: NewWorkspace,
    ) -> Result<(Workspace, Role)> {
        let Actor::Account(account_id) = actor else {
            return Err(ControlError::Forbidden(
                "management keys cannot create workspaces".into(),
            ));
        };
        let name = parse_name("name", &input.name)?;
        let slug = match input.slug {
            Some(s) => Slug::parse("slug", &s)?,
            None => Slug::derive(&name),
        };
        let plan = input.plan.unwrap_or(Plan::Free);
        if plan != Plan::Free && !self.is_platform_operator(actor).await? {
            return Err(ControlError::Forbidden(
                "new workspaces start on the free plan; paid plans come with billing or from \
                 the platform operators"
                    .into(),
            ));
        }
        let metadata = match input.metadata {
            Some(m) => parse_json_object("metadata", m)?,
            None => serde_json::json!({}),
        };
        let now = self.clock.now();
        let workspace = Workspace {
            id: WorkspaceId::new(),
            name,
            slug: slug.into_string(),
            plan,
            status: WorkspaceStatus::Active,
            kyc_status: KycStatus::Pending,
            payment_status: PaymentStatus::Current,
            metadata,
            limits: WorkspaceLimits::default(),
            root: false,
            created_at: now,
            updated_at: now,
        };
        let owner = Member {
            id: MemberId::new(),
            workspace_id: workspace.id.clone(),
            account_id: account_id.clone(),
            // Email and name belong to the account; storage reads them from there.
            email: String::new(),
            name: None,
            role: Role::Owner,
            status: MemberStatus::Active,
            created_at: now,
            updated_at: now,
        };
        self.audited(
            Some(actor),
            vec![DomainEvent::new("workspace.created")
                .workspace(&workspace.id)
                .target(&workspace.id)],
            async |outbox| {
                self.store
                    .create_workspace(&workspace, &owner, outbox)
                    .await
                    .map_err(duplicate("slug"))
            },
        )
        .await?;
        Ok((workspace, Role::Owner))
    }

    pub async fn list_workspaces(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<(Workspace, Role)>> {
        Ok(self.store.workspaces_of(actor, page).await?)
    }

    pub async fn get_workspace(
        &self,
        actor: &Actor,
        id: &WorkspaceId,
    ) -> Result<(Workspace, Role)> {
        self.workspace_for(actor, id, Permission::WorkspaceRead)
            .await
    }

    pub async fn update_workspace(
        &self,
        actor: &Actor,
        id: &WorkspaceId,
        patch: WorkspacePatch,
    ) -> Result<(Workspace, Role)> {
        let (mut ws, role) = self
            .workspace_for(actor, id, Permission::WorkspaceUpdate)
            .await?;
        let mut event = DomainEvent::new("workspace.updated")
            .workspace(&ws.id)
            .target(&ws.id);
        if let Some(name) = patch.name {
            let name = parse_name("name", &name)?;
            event = event.changed("name", &ws.name, &name);
            ws.name = name;
        }
        if let Some(slug) = patch.slug {
            let slug = Slug::parse("slug", &slug)?.into_string();
            event = event.changed("slug", &ws.slug, &slug);
            ws.slug = slug;
        }
        if let Some(metadata) = patch.metadata {
            let metadata = parse_json_object("metadata", metadata)?;
            event = event.changed_keys("metadata", &ws.metadata, &metadata);
            ws.metadata = metadata;
        }
        ws.updated_at = self.clock.now();
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .update_workspace(&ws, outbox)
                .await
                .map_err(duplicate("slug"))
        })
        .await?;
        Ok((ws, role))
    }

    /// Deletes an empty workspace (no applications, including deleted ones not yet purged).
    pub async fn delete_workspace(&self, actor: &Actor, id: &WorkspaceId) -> Result<()> {
        let (ws, _) = self
            .workspace_for(actor, id, Permission::WorkspaceDelete)
            .await?;
        if ws.root {
            return Err(ControlError::Conflict(
                "the root workspace cannot be deleted".into(),
            ));
        }
        self.audited(
            Some(actor),
            vec![DomainEvent::new("workspace.deleted")
                .workspace(id)
                .target(id)],
            async |outbox| match self.store.delete_workspace(id, outbox).await {
                Err(StorageError::NotFound) => Err(ControlError::NotFound("workspace")),
                other => Ok(other?),
            },
        )
        .await?;
        self.invalidate(crate::keys::Invalidation::Workspace(id.clone()));
        Ok(())
    }
}
