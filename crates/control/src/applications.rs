//! Applications: create, list, read, update, soft delete with a 7-day undelete window, restore.

use authsome_domain::egress::Host;
use authsome_domain::event::{DomainEvent, Outcome};
use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::application::{parse_region, parse_upstreams, UNDELETE_WINDOW};
use authsome_domain::tenancy::{
    parse_json_object, parse_name, Actor, AppStatus, Application, Environment, Permission, Role,
    Slug, Tenancy, Workspace,
};
use authsome_domain::ValidationError;
use authsome_storage::StorageError;

use crate::{duplicate, ControlError, ControlPlane, Result};

#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApplication {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::name))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_slug))]
    pub slug: Option<String>,
    pub environment: Environment,
    pub tenancy: Option<Tenancy>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_region))]
    pub region: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub config: Option<serde_json::Value>,
    /// Required for `dedicated` applications.
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_upstreams))]
    pub upstreams: Option<Vec<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationPatch {
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_name))]
    pub name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_slug))]
    pub slug: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_region))]
    pub region: Option<String>,
    /// Replaces the whole config object.
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_json_object))]
    pub config: Option<serde_json::Value>,
    #[cfg_attr(feature = "openapi", schema(schema_with = authsome_domain::schema::optional_upstreams))]
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
        if input.upstreams.is_some() {
            self.require_upstream_setter(actor, ws).await?;
        }
        let upstreams = parse_upstreams(tenancy, input.upstreams)?;
        self.admit_upstreams(&upstreams).await?;
        let region = match input.region {
            Some(r) => parse_region(&r)?,
            None => self.settings.default_region.clone(),
        };
        let config = match input.config {
            Some(c) => parse_json_object("config", c)?,
            None => serde_json::json!({}),
        };
        workspace.may_create_application(input.environment)?;
        let now = self.clock.now();
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
            async |outbox| {
                let created = match workspace.applications_limit() {
                    Some(max) => {
                        self.store
                            .create_application_within(&app, max, outbox)
                            .await
                    }
                    None => self.store.create_application(&app, outbox).await,
                };
                created.map_err(|e| match e {
                    StorageError::State("application limit") => application_limit(&workspace),
                    other => duplicate("slug")(other),
                })
            },
        )
        .await?;
        // Usually ready before we answer; if not, the maintenance loop retries.
        let provisioned = self.provision(&mut app).await?;
        self.audited(None, provisioned, async |outbox| {
            self.store.update_application(&app, outbox).await
        })
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
            self.require_upstream_setter(actor, &app.workspace_id)
                .await?;
            event = self.set_upstreams(&mut app, event, upstreams).await?;
        }
        app.updated_at = self.clock.now();
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store
                .update_application(&app, outbox)
                .await
                .map_err(duplicate("slug"))
        })
        .await?;
        self.invalidate(crate::keys::Invalidation::Application(app.id.clone()));
        Ok(app)
    }

    /// Only platform operators (and, once it exists, the provisioning controller) point an
    /// application at instances: an upstream is a network address the gateway will reach.
    async fn require_upstream_setter(&self, actor: &Actor, ws: &WorkspaceId) -> Result<()> {
        if self.is_platform_operator(actor).await? {
            return Ok(());
        }
        self.emit(
            actor,
            DomainEvent::new("permission.denied")
                .workspace(ws)
                .outcome(Outcome::Denied)
                .change("field", "upstreams"),
        );
        Err(ControlError::Forbidden(
            "only platform operators set a dedicated application's upstreams".into(),
        ))
    }

    /// Replaces a dedicated application's upstreams with `upstreams`, once each is within the
    /// operator's allowlist; the change goes on `event`.
    pub(crate) async fn set_upstreams(
        &self,
        app: &mut Application,
        event: DomainEvent,
        upstreams: Vec<String>,
    ) -> Result<DomainEvent> {
        let upstreams = parse_upstreams(app.tenancy, Some(upstreams))?;
        self.admit_upstreams(&upstreams).await?;
        let event = event.changed("upstreams", &app.upstreams, &upstreams);
        app.upstreams = upstreams;
        Ok(event)
    }

    /// Each upstream's host, and every address a name resolves to now, must be allowed by the
    /// upstream policy. A listed name that does not resolve yet is accepted (the gateway
    /// checks every address again when it connects); any other name must resolve.
    async fn admit_upstreams(&self, upstreams: &[String]) -> Result<()> {
        let policy = &self.settings.upstream_policy;
        for upstream in upstreams {
            let refused = |why: String| {
                ControlError::Invalid(ValidationError::new(
                    "upstreams",
                    format!("{upstream} is refused: {why}"),
                ))
            };
            let url = url::Url::parse(upstream).map_err(|e| refused(e.to_string()))?;
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(80);
            match policy
                .check_host(host)
                .map_err(|e| refused(e.to_string()))?
            {
                Host::Address(_) => {}
                Host::Name { listed } => {
                    let resolved = tokio::net::lookup_host((host, port)).await;
                    match resolved {
                        Ok(addresses) => {
                            for address in addresses {
                                policy
                                    .check_address(listed, address.ip())
                                    .map_err(|e| refused(e.to_string()))?;
                            }
                        }
                        Err(_) if listed => {}
                        Err(e) => return Err(refused(format!("{host} does not resolve ({e})"))),
                    }
                }
            }
        }
        Ok(())
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
        let now = self.clock.now();
        app.status = AppStatus::Deleting;
        app.deleted_at = Some(now);
        app.purge_at = Some(now + UNDELETE_WINDOW);
        app.updated_at = now;
        self.audited(
            Some(actor),
            vec![Self::app_event("application.deleted", &app)],
            async |outbox| self.store.update_application(&app, outbox).await,
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
        if let Some(max) = ws.applications_limit() {
            let live = self
                .store
                .applications(&ws.id, false, &PageRequest::first(100))
                .await?
                .items
                .len();
            if live as u64 >= max {
                return Err(application_limit(&ws));
            }
        }
        app.status = if app.provisioned_at.is_some() {
            AppStatus::Active
        } else {
            AppStatus::Provisioning
        };
        app.deleted_at = None;
        app.purge_at = None;
        app.updated_at = self.clock.now();
        self.audited(
            Some(actor),
            vec![Self::app_event("application.restored", &app)],
            async |outbox| {
                self.store
                    .update_application(&app, outbox)
                    .await
                    .map_err(duplicate("slug"))
            },
        )
        .await?;
        self.invalidate(crate::keys::Invalidation::Application(app.id.clone()));
        Ok(app)
    }
}

/// The plan's application limit, reached: 402 naming it.
fn application_limit(workspace: &authsome_domain::tenancy::Workspace) -> ControlError {
    ControlError::PaymentRequired(format!(
        "the {} plan allows {} applications; delete one or upgrade the plan",
        workspace.plan.as_str(),
        workspace.applications_limit().unwrap_or_default()
    ))
}
