//! Monthly active users: each user's first authentication (sign-up, sign-in, refresh) in a
//! calendar month (UTC), per application. Recorded cheaply: a user seen this month by this
//! process costs a set lookup; new ones are batched and written by the maintenance loop (and
//! before any count), where a primary key on (month, user) makes a repeat from another replica
//! or after a restart a no-op. The count is therefore exact.

use std::collections::{HashMap, HashSet};

use authsome_domain::id::{ApplicationId, UserId};
use authsome_domain::identity::{month_of, parse_month};
use chrono::{DateTime, Utc};

use crate::{Identity, Result};

/// Entries remembered before the seen-set is cleared (it only saves writes, never counts).
const MAX_SEEN: usize = 1_000_000;

#[derive(Default)]
pub(crate) struct ActiveUsers {
    seen: HashSet<(ApplicationId, String, UserId)>,
    pending: Vec<(ApplicationId, String, UserId, DateTime<Utc>)>,
}

impl Identity {
    pub(crate) fn note_active(&self, app: &ApplicationId, user: &UserId, at: DateTime<Utc>) {
        let month = month_of(at);
        let Ok(mut active) = self.active_users.lock() else {
            return;
        };
        if active.seen.len() >= MAX_SEEN {
            active.seen.clear();
        }
        if active
            .seen
            .insert((app.clone(), month.clone(), user.clone()))
        {
            active.pending.push((app.clone(), month, user.clone(), at));
        }
    }

    /// Writes the pending first-of-month authentications; on failure they are kept for later.
    pub async fn flush_active_users(&self) -> Result<usize> {
        let pending = match self.active_users.lock() {
            Ok(mut active) => std::mem::take(&mut active.pending),
            Err(_) => return Ok(0),
        };
        let total = pending.len();
        let mut by_app: HashMap<ApplicationId, Vec<(String, UserId, DateTime<Utc>)>> =
            HashMap::new();
        for (app, month, user, at) in pending {
            by_app.entry(app).or_default().push((month, user, at));
        }
        let mut failed = Vec::new();
        let mut first_error = None;
        for (app, entries) in by_app {
            let written = match self.store(&app).await {
                Ok(store) => store
                    .record_active_users(&entries)
                    .await
                    .map_err(Into::into),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                failed.extend(entries.into_iter().map(|(m, u, a)| (app.clone(), m, u, a)));
                first_error.get_or_insert(e);
            }
        }
        if !failed.is_empty() {
            if let Ok(mut active) = self.active_users.lock() {
                active.pending.extend(failed);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }

    /// Distinct users of the application who authenticated in `month` (`YYYY-MM`).
    pub async fn monthly_active_users(&self, app: &ApplicationId, month: &str) -> Result<u64> {
        let month = parse_month(month)?;
        self.flush_active_users().await?;
        Ok(self.store(app).await?.active_users(&month).await?)
    }

    /// The ids of the users counted in `month` (`YYYY-MM`), in id order after `after`.
    pub async fn active_user_ids(
        &self,
        app: &ApplicationId,
        month: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let month = parse_month(month)?;
        self.flush_active_users().await?;
        Ok(self
            .store(app)
            .await?
            .active_user_ids(&month, after, limit)
            .await?)
    }

    /// The size in bytes of each application's database now, in the order given.
    pub async fn database_sizes(&self, apps: &[ApplicationId]) -> Result<Vec<u64>> {
        Ok(self.databases.sizes(apps).await?)
    }
}
