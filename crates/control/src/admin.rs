//! Platform-operator actions: the owners and admins of the root workspace (or its management
//! keys with the admin role) set any workspace's standing, plan and limits.

use authsome_domain::event::DomainEvent;
use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{
    Actor, Application, KycStatus, PaymentStatus, Plan, Role, Workspace, WorkspaceLimits,
    WorkspaceStatus,
};
use authsome_domain::ValidationError;

use crate::{ControlError, ControlPlane, Result};

#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminWorkspacePatch {
    pub status: Option<WorkspaceStatus>,
    pub kyc_status: Option<KycStatus>,
    pub payment_status: Option<PaymentStatus>,
    pub plan: Option<Plan>,
    /// Enterprise workspaces only: overrides of the plan's limits.
    pub limits: Option<WorkspaceLimits>,
}

/// What platform operators set on any workspace's application.
#[derive(Debug, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminApplicationPatch {
    /// A dedicated application's instances, `http://host[:port]`, within
    /// `AUTHSOME_UPSTREAM_ALLOW`; `[]` takes it out of service until it has some.
    pub upstreams: Option<Vec<String>>,
}

impl ControlPlane {
    pub(crate) async fn is_platform_operator(&self, actor: &Actor) -> Result<bool> {
        let Some(root) = self.store.root_workspace_id().await? else {
            return Ok(false);
        };
        Ok(matches!(
            self.store.workspace_access(actor, &root).await?,
            Some((_, Role::Owner | Role::Admin))
        ))
    }

    /// Callers who are not platform operators learn nothing: the admin routes do not exist for them.
    pub async fn require_platform_operator(&self, actor: &Actor) -> Result<()> {
        self.require_operator(actor).await
    }

    async fn require_operator(&self, actor: &Actor) -> Result<()> {
        if self.is_platform_operator(actor).await? {
            Ok(())
        } else {
            Err(ControlError::NotFound("route"))
        }
    }

    pub async fn admin_list_workspaces(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<Workspace>> {
        self.require_operator(actor).await?;
        Ok(self.store.all_workspaces(page).await?)
    }

    pub async fn admin_get_workspace(&self, actor: &Actor, id: &WorkspaceId) -> Result<Workspace> {
        self.require_operator(actor).await?;
        self.store
            .any_workspace(id)
            .await?
            .ok_or(ControlError::NotFound("workspace"))
    }

    pub async fn admin_update_workspace(
        &self,
        actor: &Actor,
        id: &WorkspaceId,
        patch: AdminWorkspacePatch,
    ) -> Result<Workspace> {
        let mut ws = self.admin_get_workspace(actor, id).await?;
        let mut event = DomainEvent::new("admin.workspace.updated")
            .workspace(&ws.id)
            .target(&ws.id);
        if let Some(status) = patch.status {
            if ws.root && status == WorkspaceStatus::Suspended {
                return Err(ControlError::Conflict(
                    "the root workspace cannot be suspended".into(),
                ));
            }
            event = event.changed("status", &ws.status, &status);
            ws.status = status;
        }
        if let Some(kyc) = patch.kyc_status {
            event = event.changed("kycStatus", &ws.kyc_status, &kyc);
            ws.kyc_status = kyc;
        }
        if let Some(payment) = patch.payment_status {
            event = event.changed("paymentStatus", &ws.payment_status, &payment);
            ws.payment_status = payment;
        }
        let plan_changed = patch.plan.is_some_and(|p| p != ws.plan);
        if let Some(plan) = patch.plan {
            event = event.changed("plan", &ws.plan, &plan);
            ws.plan = plan;
        }
        if let Some(limits) = patch.limits {
            limits.validate()?;
            event = event.changed("limits", &ws.limits, &limits);
            ws.limits = limits;
        }
        if ws.plan != Plan::Enterprise && ws.limits != WorkspaceLimits::default() {
            return Err(
                ValidationError::new("limits", "can only be set on enterprise workspaces").into(),
            );
        }
        ws.updated_at = self.clock.now();
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store.update_workspace(&ws, outbox).await
        })
        .await?;
        self.invalidate(crate::keys::Invalidation::Workspace(ws.id.clone()));
        if plan_changed {
            self.subscribe_later(&ws).await?;
        }
        Ok(ws)
    }
}

impl ControlPlane {
    /// Points any workspace's dedicated application at its instances (platform operators).
    pub async fn admin_update_application(
        &self,
        actor: &Actor,
        id: &ApplicationId,
        patch: AdminApplicationPatch,
    ) -> Result<Application> {
        self.require_operator(actor).await?;
        let mut app = self
            .store
            .any_application(id)
            .await?
            .filter(|a| !a.is_deleted())
            .ok_or(ControlError::NotFound("application"))?;
        let mut event = Self::app_event("admin.application.updated", &app);
        if let Some(upstreams) = patch.upstreams {
            event = self.set_upstreams(&mut app, event, upstreams).await?;
        }
        app.updated_at = self.clock.now();
        self.audited(Some(actor), vec![event], async |outbox| {
            self.store.update_application(&app, outbox).await
        })
        .await?;
        self.invalidate(crate::keys::Invalidation::Application(app.id.clone()));
        Ok(app)
    }

    /// Every upstream of a live dedicated application: the instances a gateway health-checks.
    pub async fn serving_upstreams(&self) -> Result<Vec<String>> {
        Ok(self.store.all_upstreams().await?)
    }
}
