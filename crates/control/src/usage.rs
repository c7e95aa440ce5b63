//! A workspace's usage in a calendar month (UTC), per application and in total: monthly
//! active users (a user counts once a month when they sign up, sign in or refresh a session),
//! customer-API requests, storage (each application's database size, sampled once a day) and
//! rotations, each exact across replicas; and the users counted, so every active user billed
//! can be checked.
//!
//! Usage crossing 80% and 100% of what the plan includes (monthly active users, requests,
//! rotations) raises a `usage.threshold` alert, once per threshold and month, which the
//! workspace's alert channels deliver.
//!
//! Users and databases belong to the applications, which the identity engine owns: it answers
//! through [`ApplicationUsage`]. Requests, samples and rotations are the control plane's own
//! counts.

use std::sync::Arc;

use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{Actor, AppStatus, Application, Permission};
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
    /// The size in bytes of each application's database now, in the order given.
    async fn database_sizes(&self, apps: &[ApplicationId]) -> Result<Vec<u64>>;
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
    /// The database's size at the month's last daily sample (0 before the first).
    pub storage_bytes: u64,
    /// Rotations belong to the workspace's vaults, not to an application: always 0 here,
    /// counted in the totals.
    pub rotations: u64,
    /// The daily samples summed (what storage is billed by).
    #[serde(skip)]
    pub storage_byte_days: u64,
}

/// The workspace's totals in the month.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    pub mau: u64,
    pub requests: u64,
    pub storage_bytes: u64,
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

/// The month before `month` (`YYYY-MM`).
pub(crate) fn month_before(month: &str) -> Result<String> {
    let bad = || {
        ControlError::from(authsome_domain::ValidationError::new(
            "month",
            "must be YYYY-MM",
        ))
    };
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Ok(if m <= 1 {
        format!("{:04}-12", y - 1)
    } else {
        format!("{y:04}-{:02}", m - 1)
    })
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
    pub(crate) async fn all_applications(&self, ws: &WorkspaceId) -> Result<Vec<ApplicationId>> {
        Ok(self
            .applications_of(ws)
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect())
    }

    async fn applications_of(&self, ws: &WorkspaceId) -> Result<Vec<Application>> {
        let mut all = Vec::new();
        let mut page = PageRequest::first(100);
        loop {
            let got = self.store.applications(ws, true, &page).await?;
            all.extend(got.items);
            match got.next_cursor {
                Some(cursor) => page = PageRequest::parse(Some(100), Some(&cursor))?,
                None => return Ok(all),
            }
        }
    }

    /// Usage of the workspace in `month` (default: this one). Every member but an auditor, and
    /// platform operators.
    pub async fn workspace_usage(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        month: Option<&str>,
    ) -> Result<WorkspaceUsage> {
        self.workspace_as_member_or_operator(actor, ws, Permission::UsageRead)
            .await?;
        let (month, start, end) = month_span(month, self.clock.now())?;
        self.count_month(ws, &month, start, end).await
    }

    /// Counts the workspace's usage in `month` (`[start, end)`) now.
    pub(crate) async fn count_month(
        &self,
        ws: &WorkspaceId,
        month: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<WorkspaceUsage> {
        // What this replica counted and has not written yet is part of the month.
        self.flush_request_counts().await?;
        let hour = |t: DateTime<Utc>| t.timestamp().div_euclid(3600);
        let requests = self
            .store
            .workspace_requests_between(ws, hour(start), hour(end))
            .await?;
        let day = |t: DateTime<Utc>| t.timestamp().div_euclid(86_400);
        let samples = self.store.storage_samples(ws, day(start), day(end)).await?;
        let users = self.application_usage()?;
        let mut applications = Vec::new();
        for app in self.all_applications(ws).await? {
            let mau = users.monthly_active_users(&app, month).await?;
            let requests = requests
                .iter()
                .find(|(a, _)| *a == app)
                .map_or(0, |(_, n)| *n);
            let sampled = samples.iter().filter(|s| s.application_id == app);
            applications.push(ApplicationMonth {
                mau,
                requests,
                storage_bytes: sampled.clone().max_by_key(|s| s.day).map_or(0, |s| s.bytes),
                storage_byte_days: sampled.map(|s| s.bytes).sum(),
                rotations: 0,
                application_id: app,
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
            storage_bytes: applications.iter().map(|a| a.storage_bytes).sum(),
            rotations,
        };
        Ok(WorkspaceUsage {
            month: month.to_owned(),
            totals,
            applications,
        })
    }

    /// Monthly active users of all the workspace's applications in `month` (`YYYY-MM`).
    pub(crate) async fn workspace_mau(&self, ws: &WorkspaceId, month: &str) -> Result<u64> {
        let users = self.application_usage()?;
        let mut mau = 0;
        for app in self.all_applications(ws).await? {
            mau += users.monthly_active_users(&app, month).await?;
        }
        Ok(mau)
    }

    /// The workspace, for a member holding `permission` or a platform operator.
    pub(crate) async fn workspace_as_member_or_operator(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        permission: Permission,
    ) -> Result<authsome_domain::tenancy::Workspace> {
        match self.store.workspace_access(actor, ws).await? {
            Some((workspace, role)) if role.allows(permission) => Ok(workspace),
            found => {
                if self.is_platform_operator(actor).await? {
                    return self
                        .store
                        .any_workspace(ws)
                        .await?
                        .ok_or(ControlError::NotFound("workspace"));
                }
                let (_, role) = found.ok_or(ControlError::NotFound("workspace"))?;
                self.require_for(actor, ws, role, permission)?;
                Err(ControlError::NotFound("workspace"))
            }
        }
    }

    /// Takes today's sample of every live application's database size, unless one was taken
    /// today (by any replica; a sample taken twice is stored once).
    pub async fn sample_storage(&self) -> Result<usize> {
        let today = self.clock.now().timestamp().div_euclid(86_400);
        if self.store.last_storage_day().await? >= Some(today) {
            return Ok(0);
        }
        let users = self.application_usage()?;
        let mut taken = 0;
        let mut page = PageRequest::first(100);
        loop {
            let workspaces = self.store.all_workspaces(&page).await?;
            for ws in &workspaces.items {
                // Those with a database: not being created or deleted, nor deleted.
                let live: Vec<ApplicationId> = self
                    .applications_of(&ws.id)
                    .await?
                    .into_iter()
                    .filter(|a| {
                        !a.is_deleted()
                            && matches!(a.status, AppStatus::Active | AppStatus::Suspended)
                    })
                    .map(|a| a.id)
                    .collect();
                if live.is_empty() {
                    continue;
                }
                let sizes = users.database_sizes(&live).await?;
                let samples: Vec<authsome_storage::StorageSample> = live
                    .into_iter()
                    .zip(sizes)
                    .map(|(application_id, bytes)| authsome_storage::StorageSample {
                        workspace_id: ws.id.clone(),
                        application_id,
                        day: today,
                        bytes,
                    })
                    .collect();
                taken += samples.len();
                self.store.add_storage_samples(&samples).await?;
            }
            match workspaces.next_cursor {
                Some(cursor) => page = PageRequest::parse(Some(100), Some(&cursor))?,
                None => return Ok(taken),
            }
        }
    }

    /// The users counted as active in `month`, a page at a time in id order: of `application`,
    /// or of every application of the workspace (by application, then user). What a customer
    /// checks their bill against.
    pub async fn counted_users(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        month: Option<&str>,
        application: Option<&ApplicationId>,
        page: &PageRequest,
    ) -> Result<Page<CountedUser>> {
        self.workspace_as_member_or_operator(actor, ws, Permission::UsageRead)
            .await?;
        let (month, _, _) = month_span(month, self.clock.now())?;
        let mut applications = self.all_applications(ws).await?;
        let usage = self.application_usage()?;
        let Some(application) = application else {
            applications.sort();
            return counted_across(usage.as_ref(), &applications, &month, page).await;
        };
        if !applications.contains(application) {
            return Err(ControlError::NotFound("application"));
        }
        let ids = usage
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

/// The users counted in `month` across `applications` (in id order), a page at a time; the
/// cursor names the application and the user (`{appId}/{userId}`).
async fn counted_across(
    usage: &dyn ApplicationUsage,
    applications: &[ApplicationId],
    month: &str,
    page: &PageRequest,
) -> Result<Page<CountedUser>> {
    let not_ours = || {
        ControlError::from(authsome_domain::ValidationError::new(
            "cursor",
            "is not a cursor of this listing (one without applicationId)",
        ))
    };
    let after = match page.after.as_deref() {
        None => None,
        Some(cursor) => {
            let (app, user) = cursor.split_once('/').ok_or_else(not_ours)?;
            let app = ApplicationId::parse(app).map_err(|_| not_ours())?;
            Some((app, user.to_owned()))
        }
    };
    let wanted = page.limit as usize + 1;
    let mut rows: Vec<(String, CountedUser)> = Vec::new();
    for app in applications {
        let from = match &after {
            Some((at, _)) if app < at => continue,
            Some((at, user)) if app == at => Some(user.as_str()),
            _ => None,
        };
        let left = u32::try_from(wanted - rows.len()).unwrap_or(u32::MAX);
        for user_id in usage.active_user_ids(app, month, from, left).await? {
            rows.push((
                format!("{app}/{user_id}"),
                CountedUser {
                    application_id: app.clone(),
                    user_id,
                },
            ));
        }
        if rows.len() >= wanted {
            break;
        }
    }
    Ok(Page::from_rows(rows, page.limit, |(cursor, _)| cursor.as_str()).map(|(_, user)| user))
}

/// How often a process looks at the workspaces that had requests for crossed thresholds.
const THRESHOLD_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Workspaces with customer-API requests since the last threshold scan (every change of
/// monthly active users comes with a request), and when this process last scanned.
#[derive(Default)]
pub(crate) struct ThresholdScan {
    touched: std::sync::Mutex<std::collections::HashSet<WorkspaceId>>,
    last: std::sync::Mutex<Option<authsome_domain::clock::CoarseInstant>>,
}

impl ThresholdScan {
    pub(crate) fn touch(&self, workspaces: impl IntoIterator<Item = WorkspaceId>) {
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        touched.extend(workspaces);
    }
}

impl ControlPlane {
    /// Raises `usage.threshold` for `metric` at 80% (warning) and 100% (critical) of
    /// `included`, once each per workspace, metric and month.
    pub(crate) async fn usage_threshold(
        &self,
        ws: &WorkspaceId,
        metric: &str,
        used: u64,
        included: u64,
    ) {
        let now = self.clock.now();
        let month = authsome_domain::identity::month_of(now);
        for percent in [80u64, 100] {
            if used.saturating_mul(100) < percent.saturating_mul(included) {
                continue;
            }
            let severity = if percent == 100 {
                authsome_domain::alert::AlertSeverity::Critical
            } else {
                authsome_domain::alert::AlertSeverity::Warning
            };
            let Ok((_, start, _)) = month_span(Some(&month), now) else {
                return;
            };
            self.raise_alert_since(
                ws,
                "usage.threshold",
                severity,
                format!("{percent}% of this month's {included} included {metric} are used"),
                serde_json::json!({
                    "metric": metric,
                    "used": used,
                    "included": included,
                    "percent": percent,
                    "month": month,
                }),
                format!("usage.threshold.{metric}.{percent}:{month}"),
                start,
            )
            .await;
        }
    }

    /// Looks at the workspaces that had requests since the last look (at most once a minute
    /// per process): their requests against the plan's monthly quota and their monthly active
    /// users against those included.
    pub(crate) async fn scan_usage_thresholds(&self) -> Result<()> {
        if !self.due_every(&self.thresholds.last, THRESHOLD_SCAN_EVERY) {
            return Ok(());
        }
        let touched: Vec<WorkspaceId> = std::mem::take(
            &mut *self
                .thresholds
                .touched
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
        .into_iter()
        .collect();
        let month = authsome_domain::identity::month_of(self.clock.now());
        for id in touched {
            let ws = match self.store.any_workspace(&id).await? {
                Some(ws) if !ws.root => ws,
                _ => continue,
            };
            if let Some(quota) = ws.requests_per_month() {
                let used = self.workspace_month_requests(&ws.id).await?;
                self.usage_threshold(&ws.id, "requests", used, quota).await;
            }
            let included = authsome_billing::Pricing::for_plan(ws.plan, &ws.limits).included_mau;
            if included > 0 {
                let mau = self.workspace_mau(&ws.id, &month).await?;
                self.usage_threshold(&ws.id, "monthly active users", mau, included)
                    .await;
            }
        }
        Ok(())
    }
}
