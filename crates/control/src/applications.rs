//! Applications: create, list, read, update, soft delete with a 7-day undelete window, restore.

use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::application::{parse_region, parse_upstreams, UNDELETE_WINDOW};
use authsome_domain::tenancy::{
    parse_json_object, parse_name, Actor, AppStatus, Application, Environment, Permission, Role,
    Slug, Tenancy, Workspace,
};

use crate::{duplicate, ControlError, ControlPlane, Result};

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApplication {
    pub name: String,
    pub slug: Option<String>,
    pub environment: Environment,
    pub tenancy: Option<Tenancy>,
    pub region: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub config: Option<serde_json::Value>,
    /// Required for `dedicated` applications: `http(s)://host[:port]` instances.
    pub upstreams: Option<Vec<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub region: Option<String>,
    /// Replaces the whole config object.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub config: Option<serde_json::Value>,
    pub upstreams: Option<Vec<String>>,
}

impl ControlPlane {
    pub async fn create_application(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        input: NewApplication,
    ) -> Result<Application> {
        let (workspace, _) = self
            .workspace_for(actor, ws, Permission::ApplicationsWrite)
            .await?;
        let name = parse_name("name", &input.name)?;
        let slug = match input.slug {
            Some(s) => Slug::parse("slug", &s)?,
            None => Slug::derive(&name),
        };
        let tenancy = input.tenancy.unwrap_or(Tenancy::Shared);
        let upstreams = parse_upstreams(tenancy, input.upstreams)?;
        let region = match input.region {
            Some(r) => parse_region(&r)?,
            None => self.settings.default_region.clone(),
        };
        let config = match input.config {
            Some(c) => parse_json_object("config", c)?,
            None => serde_json::json!({}),
        };
        workspace.may_create_application(input.environment)?;
        let now = authsome_domain::now();
        let mut app = Application {
            id: ApplicationId::new(),
            workspace_id: ws.clone(),
            name,
            slug: slug.into_string(),
            environment: input.environment,
            tenancy,
            status: AppStatus::Provisioning,
            region,
            config,
            upstreams,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            purge_at: None,
            provisioned_at: None,
            provision_attempts: 0,
            provision_error: None,
        };
        self.audited(
            Some(actor),
            vec![Self::app_event("application.created", &app)],
            async {
                self.store
                    .create_application(&app)
                    .await
                    .map_err(duplicate("slug"))
            },
        )
        .await?;
        // Usually ready before we answer; if not, the maintenance loop retries.
        let provisioned = self.provision(&mut app).await?;
        self.audited(None, provisioned, self.store.update_application(&app))
            .await?;
        Ok(app)
    }

    pub async fn list_applications(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<Application>> {
        self.workspace_for(actor, ws, Permission::ApplicationsRead)
            .await?;
        Ok(self.store.applications(ws, include_deleted, page).await?)
    }

    /// The application with its workspace, if the caller holds `permission` there.
    pub(crate) async fn application_for(
        &self,
        actor: &Actor,
        id: &ApplicationId,
        permission: Permission,
    ) -> Result<(Application, Workspace, Role)> {
        let (app, ws, role) = self
            .store
            .application_access(actor, id)
            .await?
            .ok_or(ControlError::NotFound("application"))?;
        self.require_for(actor, &ws.id, role, permission)?;
        Ok((app, ws, role))
    }

    /// An application for the public customer-API routes (JWKS, discovery, access tokens):
    /// anyone may name it; deleted ones do not exist.
    pub async fn public_application(&self, id: &str) -> Result<std::sync::Arc<Application>> {
        let id = ApplicationId::parse(id).map_err(|_| ControlError::NotFound("application"))?;
        self.cached_application(&id, None)
            .await?
            .filter(|a| !a.is_deleted())
            .ok_or(ControlError::NotFound("application"))
    }

    /// The application, if the caller holds `permission` on it and it is not deleted: for
    /// operations another engine carries out (signing-key rotation, usage).
    pub async fn authorize_application(
        &self,
        actor: &Actor,
        id: &ApplicationId,
        permission: Permission,
    ) -> Result<Application> {
        let (app, _, _) = self.application_for(actor, id, permission).await?;
        if app.is_deleted() {
            return Err(ControlError::Conflict("the application is deleted".into()));
        }
        if app.status == AppStatus::Provisioning {
            return Err(ControlError::Conflict(
                "the application is still being provisioned".into(),
            ));
        }
        Ok(app)
    }

    pub async fn get_application(&self, actor: &Actor, id: &ApplicationId) -> Result<Application> {
        Ok(self
            .application_for(actor, id, Permission::ApplicationsRead)
            .await?
            .0)
    }

    pub async fn update_application(
        &self,
        actor: &Actor,
        id: &ApplicationId,
        patch: ApplicationPatch,
    ) -> Result<Application> {
        let (mut app, ws, _) = self
            .application_for(actor, id, Permission::ApplicationsWrite)
            .await?;
        ws.may_write()?;
        if app.is_deleted() {
            return Err(ControlError::Conflict(
                "the application is deleted; restore it first".into(),
            ));
        }
        let mut event = Self::app_event("application.updated", &app);
        if let Some(name) = patch.name {
            let name = parse_name("name", &name)?;
            event = event.changed("name", &app.name, &name);
            app.name = name;
        }
        if let Some(slug) = patch.slug {
            let slug = Slug::parse("slug", &slug)?.into_string();
            event = event.changed("slug", &app.slug, &slug);
            app.slug = slug;
        }
        if let Some(region) = patch.region {
            let region = parse_region(&region)?;
            event = event.changed("region", &app.region, &region);
            app.region = region;
        }
        if let Some(config) = patch.config {
            let config = parse_json_object("config", config)?;
            event = event.changed_keys("config", &app.config, &config);
            app.config = config;
        }
        if let Some(upstreams) = patch.upstreams {
            let upstreams = parse_upstreams(app.tenancy, Some(upstreams))?;
            event = event.changed("upstreams", &app.upstreams, &upstreams);
            app.upstreams = upstreams;
        }
        app.updated_at = authsome_domain::now();
        self.audited(Some(actor), vec![event], async {
            self.store
                .update_application(&app)
                .await
                .map_err(duplicate("slug"))
        })
        .await?;
        self.invalidate(crate::keys::Invalidation::Application(app.id.clone()));
        Ok(app)
    }

    /// Soft delete: keys stop working at once; the data goes after the undelete window.
    pub async fn delete_application(
        &self,
        actor: &Actor,
        id: &ApplicationId,
    ) -> Result<Application> {
        let (mut app, _, _) = self
            .application_for(actor, id, Permission::ApplicationsWrite)
            .await?;
        if app.is_deleted() {
            return Err(ControlError::Conflict(
                "the application is already deleted".into(),
            ));
        }
        let now = authsome_domain::now();
        app.status = AppStatus::Deleting;
        app.deleted_at = Some(now);
        app.purge_at = Some(now + UNDELETE_WINDOW);
        app.updated_at = now;
        self.audited(
            Some(actor),
            vec![Self::app_event("application.deleted", &app)],
            self.store.update_application(&app),
        )
        .await?;
        self.invalidate(crate::keys::Invalidation::Application(app.id.clone()));
        Ok(app)
    }

    pub async fn restore_application(
        &self,
        actor: &Actor,
        id: &ApplicationId,
    ) -> Result<Application> {
        let (mut app, ws, _) = self
            .application_for(actor, id, Permission::ApplicationsWrite)
            .await?;
        ws.may_write()?;
        if !app.is_deleted() {
            return Err(ControlError::Conflict(
                "the application is not deleted".into(),
            ));
        }
        app.status = if app.provisioned_at.is_some() {
            AppStatus::Active
        } else {
            AppStatus::Provisioning
        };
        app.deleted_at = None;
        app.purge_at = None;
        app.updated_at = authsome_domain::now();
        self.audited(
            Some(actor),
            vec![Self::app_event("application.restored", &app)],
            async {
                self.store
                    .update_application(&app)
                    .await
                    .map_err(duplicate("slug"))
            },
        )
        .await?;
        self.invalidate(crate::keys::Invalidation::Application(app.id.clone()));
        Ok(app)
    }
}
