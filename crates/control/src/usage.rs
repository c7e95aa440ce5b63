//! A workspace's usage in a calendar month (UTC), per application and in total: monthly
//! active users (a user counts once a month when they sign up, sign in or refresh a session),
//! customer-API requests and rotations, each exact across replicas; and the users counted,
//! so every active user billed can be checked.
//!
//! Users live in the applications' own databases, which the identity engine owns: it answers
//! through [`ApplicationUsage`]. Requests and rotations are the control plane's own counts.

use std::sync::Arc;

use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{Actor, Permission};
use chrono::{DateTime, Utc};

use crate::{ControlError, ControlPlane, Result};

/// What the applications' own databases say about their users (the identity engine).
#[async_trait::async_trait]
pub trait ApplicationUsage: Send + Sync {
    /// Distinct users of `app` who authenticated in `month` (`YYYY-MM`).
    async fn monthly_active_users(&self, app: &ApplicationId, month: &str) -> Result<u64>;
    /// Their ids, in order after `after`, at most `limit`.
    async fn active_user_ids(
        &self,
        app: &ApplicationId,
        month: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>>;
}

/// One application's usage in the month.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApplicationMonth {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub application_id: ApplicationId,
    pub mau: u64,
    pub requests: u64,
    /// Rotations belong to the workspace's vaults, not to an application: always 0 here,
    /// counted in the totals.
    pub rotations: u64,
}

/// The workspace's totals in the month.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    pub mau: u64,
    pub requests: u64,
    pub rotations: u64,
}

/// `GET /control/v1/workspaces/{wsId}/usage`.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceUsage {
    pub month: String,
    pub totals: UsageTotals,
    pub applications: Vec<ApplicationMonth>,
}

/// A user counted in a month.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CountedUser {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub application_id: ApplicationId,
    pub user_id: String,
}

/// The month `YYYY-MM` (default: this one) and its bounds.
pub(crate) fn month_span(
    month: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, DateTime<Utc>, DateTime<Utc>)> {
    let month = match month {
        Some(m) => authsome_domain::identity::parse_month(m)?,
        None => authsome_domain::identity::month_of(now),
    };
    let start = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ControlError::from(authsome_domain::ValidationError::new(
                "month",
                "must be YYYY-MM",
            ))
        })?;
    let (_, end) = crate::metering::month_bounds(start);
    Ok((month, start, end))
}

impl ControlPlane {
    /// Answers for the applications' users (the identity engine).
    pub fn with_application_usage(mut self, usage: Arc<dyn ApplicationUsage>) -> Self {
        self.application_usage = Some(usage);
        self
    }

    fn application_usage(&self) -> Result<&Arc<dyn ApplicationUsage>> {
        self.application_usage
            .as_ref()
            .ok_or_else(|| ControlError::Unavailable("usage is not counted here".into()))
    }

    /// The workspace's applications (deleted ones included: their month still counts).
    async fn all_applications(&self, ws: &WorkspaceId) -> Result<Vec<ApplicationId>> {
        let mut ids = Vec::new();
        let mut page = PageRequest::first(100);
        loop {
            let got = self.store.applications(ws, true, &page).await?;
            ids.extend(got.items.into_iter().map(|a| a.id));
            match got.next_cursor {
                Some(cursor) => page = PageRequest::parse(Some(100), Some(&cursor))?,
                None => return Ok(ids),
            }
        }
    }

    /// Usage of the workspace in `month` (default: this one). Every member but an auditor.
    pub async fn workspace_usage(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        month: Option<&str>,
    ) -> Result<WorkspaceUsage> {
        self.workspace_for(actor, ws, Permission::UsageRead).await?;
        let now = self.clock.now();
        let (month, start, end) = month_span(month, now)?;
        // What this replica counted and has not written yet is part of the month.
        self.flush_request_counts().await?;
        let hour = |t: DateTime<Utc>| t.timestamp().div_euclid(3600);
        let requests = self
            .store
            .workspace_requests_between(ws, hour(start), hour(end))
            .await?;
        let users = self.application_usage()?;
        let mut applications = Vec::new();
        for app in self.all_applications(ws).await? {
            let mau = users.monthly_active_users(&app, &month).await?;
            let requests = requests
                .iter()
                .find(|(a, _)| *a == app)
                .map_or(0, |(_, n)| *n);
            applications.push(ApplicationMonth {
                application_id: app,
                mau,
                requests,
                rotations: 0,
            });
        }
        let rotations = self
            .store
            .rotations_per_day(ws, start, end)
            .await?
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum();
        let totals = UsageTotals {
            mau: applications.iter().map(|a| a.mau).sum(),
            requests: applications.iter().map(|a| a.requests).sum(),
            rotations,
        };
        Ok(WorkspaceUsage {
            month,
            totals,
            applications,
        })
    }

    /// The users of `application` counted as active in `month`, a page at a time in id order:
    /// what a customer checks their bill against.
    pub async fn counted_users(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        month: Option<&str>,
        application: &ApplicationId,
        page: &PageRequest,
    ) -> Result<Page<CountedUser>> {
        self.workspace_for(actor, ws, Permission::UsageRead).await?;
        let (month, _, _) = month_span(month, self.clock.now())?;
        if !self.all_applications(ws).await?.contains(application) {
            return Err(ControlError::NotFound("application"));
        }
        let ids = self
            .application_usage()?
            .active_user_ids(application, &month, page.after.as_deref(), page.limit + 1)
            .await?;
        Ok(
            Page::from_rows(ids, page.limit, |id| id.as_str()).map(|user_id| CountedUser {
                application_id: application.clone(),
                user_id,
            }),
        )
    }
}
