//! Provisioning: turning an application record into real resources (its own database, its
//! signing key) and removing them after the undelete window. The control plane drives it; the
//! work itself is done by a [`Provisioner`] the server wires in (the identity engine).
//!
//! A new application is provisioned inline when it is created, so it is usually `active` in the
//! creation response. When that fails it stays `provisioning` with the error recorded, and the
//! maintenance loop retries it with exponential backoff (2^attempts seconds, at most 5 minutes).

use std::time::Duration;

use async_trait::async_trait;
use authsome_domain::event::{DomainEvent, EventActor};
use authsome_domain::id::ApplicationId;
use authsome_domain::tenancy::{AppStatus, Application};

use crate::{ControlPlane, Result};

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BACKOFF_SECONDS: i64 = 300;

#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Creates (idempotently) whatever the application needs to serve traffic.
    async fn provision(&self, app: &Application) -> Result<(), String>;
    /// Removes the application's resources for good.
    async fn destroy(&self, app: &ApplicationId) -> Result<(), String>;
}

impl ControlPlane {
    /// One provisioning attempt; records the outcome on the application (which the caller
    /// stores, with the returned event when it succeeded).
    pub(crate) async fn provision(&self, app: &mut Application) -> Result<Vec<DomainEvent>> {
        let Some(provisioner) = &self.provisioner else {
            // Control-plane-only deployments (tests of the control plane) have nothing to create.
            app.status = AppStatus::Active;
            app.provisioned_at = Some(self.clock.now());
            return Ok(Vec::new());
        };
        let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, provisioner.provision(app)).await
        {
            Ok(result) => result,
            Err(_) => Err("timed out".to_owned()),
        };
        let now = self.clock.now();
        let mut events = Vec::new();
        match outcome {
            Ok(()) => {
                app.status = AppStatus::Active;
                app.provisioned_at = Some(now);
                app.provision_error = None;
                events.push(
                    Self::app_event("application.provisioned", app).actor(EventActor::System),
                );
            }
            Err(error) => {
                tracing::warn!(app = %app.id, %error, attempt = app.provision_attempts + 1, "provisioning failed");
                app.provision_attempts += 1;
                app.provision_error = Some(error);
            }
        }
        app.updated_at = now;
        Ok(events)
    }

    /// Retries applications stuck in `provisioning` whose backoff has elapsed.
    pub(crate) async fn retry_provisioning(&self) -> Result<()> {
        let now = self.clock.now();
        for mut app in self.store.applications_to_provision(50).await? {
            let backoff = 1i64
                .checked_shl(app.provision_attempts.min(16))
                .unwrap_or(MAX_BACKOFF_SECONDS)
                .min(MAX_BACKOFF_SECONDS);
            if app.provision_attempts > 0
                && now < app.updated_at + chrono::Duration::seconds(backoff)
            {
                continue;
            }
            let provisioned = self.provision(&mut app).await?;
            self.audited(None, provisioned, async |outbox| {
                self.store.update_application(&app, outbox).await
            })
            .await?;
            self.invalidate(crate::keys::Invalidation::Application(app.id.clone()));
        }
        Ok(())
    }

    /// Removes applications whose undelete window has passed: resources first, then the record.
    pub(crate) async fn purge_expired(&self) -> Result<()> {
        let now = self.clock.now();
        for id in self.store.expired_applications(now, 50).await? {
            if let Some(provisioner) = &self.provisioner {
                if let Err(error) = provisioner.destroy(&id).await {
                    tracing::warn!(app = %id, %error, "could not remove an expired application; will retry");
                    continue;
                }
            }
            let mut purged = DomainEvent::new("application.purged")
                .actor(EventActor::System)
                .application(&id)
                .target(&id);
            if let Some(app) = self.store.any_application(&id).await? {
                purged = purged.workspace(&app.workspace_id);
            }
            self.audited(None, vec![purged], async |outbox| {
                self.store.remove_application(&id, outbox).await
            })
            .await?;
            self.invalidate(crate::keys::Invalidation::Application(id.clone()));
            tracing::info!(app = %id, "purged application past its undelete window");
        }
        Ok(())
    }
}
