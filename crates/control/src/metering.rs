//! Request metering: customer-API requests counted per application, key and hour in memory and
//! written in batches by the maintenance loop (never a database write per request), and the
//! month-to-date totals: an application's (its usage), and its workspace's, which the plan's
//! monthly quota is checked against.
//!
//! The total is the stored count (re-read at most every few seconds) plus what this process has
//! not written yet; requests another replica has not flushed yet are not in it, so a quota can be
//! overshot by a few seconds of traffic. That is the price of no write per request.

use authsome_domain::FastMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use authsome_domain::clock::CoarseInstant;

use authsome_domain::id::{ApplicationId, KeyId, WorkspaceId};
use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::{ControlPlane, Result};

const TOTAL_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct RequestMeter {
    pending: Mutex<Pending>,
    totals: Totals<ApplicationId>,
    /// The last hour whose month was worked out and that month's first hour, packed as
    /// `hour << 32 | month_start_hour` (0: none yet): every request asks, and the calendar
    /// arithmetic is worth doing once an hour rather than twice a request.
    month_memo: AtomicU64,
}

impl RequestMeter {
    /// The first hour of the calendar month (UTC) that `hour` falls in.
    fn month_start(&self, hour: i64) -> i64 {
        let packed = self.month_memo.load(Ordering::Relaxed);
        if packed != 0 && (packed >> 32) as i64 == hour {
            return (packed & u64::from(u32::MAX)) as i64;
        }
        let month = month_bounds(hour_start(hour)).0;
        if let (Ok(h), Ok(m)) = (u32::try_from(hour), u32::try_from(month)) {
            self.month_memo
                .store(u64::from(h) << 32 | u64::from(m), Ordering::Relaxed);
        }
        month
    }
}

/// Counts not yet written, per application: per key and hour, and per month-start hour so the
/// quota check reads one entry instead of summing. Looked up by reference, so counting a
/// request copies no id once its application and key have been seen.
#[derive(Default)]
struct Pending {
    apps: FastMap<ApplicationId, AppPending>,
    /// Per workspace, for its quota: what was counted here and its stored month total.
    workspaces: FastMap<WorkspaceId, WorkspacePending>,
    /// Batches a flush could not write (or did not hear back about), retried under the same id
    /// so that one applied after all is not counted twice.
    unsent: Vec<Batch>,
}

/// Counts flushed together, under an id the store remembers.
struct Batch {
    id: String,
    counts: Vec<Counted>,
}

impl Batch {
    /// Requests in it for which `matches(application, workspace, hour)`.
    fn sum(&self, matches: impl Fn(&ApplicationId, &WorkspaceId, i64) -> bool) -> u64 {
        self.counts
            .iter()
            .filter(|(a, w, _, h, _)| matches(a, w, *h))
            .map(|c| c.4)
            .sum()
    }
}

/// A workspace's requests counted here, and its stored count of the month (month-start hour,
/// requests, when read; read again after [`TOTAL_TTL`] or a flush), under the same lock, so
/// the quota check and the count are one lock and one lookup on the request path.
#[derive(Default)]
struct WorkspacePending {
    /// (month-start hour, requests): one entry, two around the turn of a month.
    months: Vec<(i64, u64)>,
    stored: Option<(i64, u64, CoarseInstant)>,
}

impl WorkspacePending {
    fn counted(&self, month: i64) -> u64 {
        self.months
            .iter()
            .find(|(m, _)| *m == month)
            .map_or(0, |(_, n)| *n)
    }

    /// The stored count of `month`, if it was read recently enough.
    fn fresh_stored(&self, month: i64) -> Option<u64> {
        let (from, n, at) = self.stored?;
        (from == month && at.elapsed() < TOTAL_TTL).then_some(n)
    }
}

#[derive(Default)]
struct AppPending {
    workspace: Option<WorkspaceId>,
    /// (month-start hour, requests): one entry, two around the turn of a month.
    months: Vec<(i64, u64)>,
    keys: FastMap<KeyId, Vec<(i64, u64)>>,
}

/// Adds `n` to the count of `at` in a short list of (hour, count).
fn bump(counts: &mut Vec<(i64, u64)>, at: i64, n: u64) {
    match counts.iter_mut().find(|(h, _)| *h == at) {
        Some((_, count)) => *count += n,
        None => counts.push((at, n)),
    }
}

impl AppPending {
    fn add(&mut self, key: &KeyId, hour: i64, month: i64, n: u64) {
        bump(&mut self.months, month, n);
        match self.keys.get_mut(key) {
            Some(hours) => bump(hours, hour, n),
            None => {
                self.keys.insert(key.clone(), vec![(hour, n)]);
            }
        }
    }
}

impl Pending {
    fn add(
        &mut self,
        app: &ApplicationId,
        workspace: &WorkspaceId,
        key: &KeyId,
        hour: i64,
        month: i64,
        n: u64,
    ) {
        self.add_to_app(app, workspace, key, hour, month, n);
        match self.workspaces.get_mut(workspace) {
            Some(w) => bump(&mut w.months, month, n),
            None => {
                self.workspaces.insert(
                    workspace.clone(),
                    WorkspacePending {
                        months: vec![(month, n)],
                        stored: None,
                    },
                );
            }
        }
    }

    /// The request path: with a `quota`, whether the workspace's month total leaves room
    /// (nothing counted when not); the request counted. `None` when the stored total must be
    /// read again first.
    fn count_within(
        &mut self,
        app: &ApplicationId,
        workspace: &WorkspaceId,
        key: &KeyId,
        hour: i64,
        month: i64,
        quota: Option<u64>,
    ) -> Option<bool> {
        if let Some(quota) = quota {
            let unsent = self.unsent_of(workspace, month);
            let w = self.workspaces.get_mut(workspace)?;
            if w.fresh_stored(month)? + w.counted(month) + unsent >= quota {
                return Some(false);
            }
            bump(&mut w.months, month, 1);
            self.add_to_app(app, workspace, key, hour, month, 1);
            return Some(true);
        }
        self.add(app, workspace, key, hour, month, 1);
        Some(true)
    }

    /// Counts `n` for the application's key (not its workspace's total).
    fn add_to_app(
        &mut self,
        app: &ApplicationId,
        workspace: &WorkspaceId,
        key: &KeyId,
        hour: i64,
        month: i64,
        n: u64,
    ) {
        match self.apps.get_mut(app) {
            Some(pending) => pending.add(key, hour, month, n),
            None => {
                let mut pending = AppPending {
                    workspace: Some(workspace.clone()),
                    ..AppPending::default()
                };
                pending.add(key, hour, month, n);
                self.apps.insert(app.clone(), pending);
            }
        }
    }

    /// Requests of `workspace` in batches not written yet, from the month starting at `month`.
    fn unsent_of(&self, workspace: &WorkspaceId, month: i64) -> u64 {
        if self.unsent.is_empty() {
            return 0;
        }
        self.unsent
            .iter()
            .map(|b| b.sum(|_, w, h| w == workspace && h >= month))
            .sum()
    }

    /// Everything counted, as (application, its workspace, key, hour, requests).
    fn into_counts(self) -> Vec<Counted> {
        let mut counts = Vec::new();
        for (app, pending) in self.apps {
            let Some(workspace) = pending.workspace else {
                continue;
            };
            for (key, hours) in pending.keys {
                for (hour, n) in hours {
                    counts.push((app.clone(), workspace.clone(), key.clone(), hour, n));
                }
            }
        }
        counts
    }

    /// Requests of `workspace`'s applications counted here in the month starting at `month`.
    fn workspace_month_total(&self, workspace: &WorkspaceId, month: i64) -> u64 {
        self.workspaces
            .get(workspace)
            .map_or(0, |w| w.counted(month))
            + self.unsent_of(workspace, month)
    }

    /// The workspace's month total (stored and counted here) if its stored count is fresh.
    fn fresh_workspace_total(&self, workspace: &WorkspaceId, month: i64) -> Option<u64> {
        let stored = self.workspaces.get(workspace)?.fresh_stored(month)?;
        Some(stored + self.workspace_month_total(workspace, month))
    }

    fn set_stored(&mut self, workspace: &WorkspaceId, month: i64, n: u64) {
        self.workspaces.entry(workspace.clone()).or_default().stored =
            Some((month, n, CoarseInstant::now()));
    }

    /// Requests of `app` counted here in the month starting at hour `month`.
    fn month_total(&self, app: &ApplicationId, month: i64) -> u64 {
        self.apps
            .get(app)
            .and_then(|p| p.months.iter().find(|(m, _)| *m == month))
            .map_or(0, |(_, n)| *n)
            + self
                .unsent
                .iter()
                .map(|b| b.sum(|a, _, h| a == app && h >= month))
                .sum::<u64>()
    }
}

type Counted = (ApplicationId, WorkspaceId, KeyId, i64, u64);

/// 128 random bits in hex: a batch's id, unique across replicas and restarts.
fn uuid_like() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default()
}

fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3600)
}

/// The hour (since the Unix epoch) it is now, without the calendar conversion of a `DateTime`
/// (asked twice on every customer-API request).
fn current_hour() -> i64 {
    i64::try_from(authsome_domain::unix_seconds() / 3600).unwrap_or(i64::MAX)
}

/// The first hour of `t`'s calendar month (UTC), and the start of the next month.
pub fn month_bounds(t: DateTime<Utc>) -> (i64, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t);
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let next = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(t);
    (hour_of(start), next)
}

impl ControlPlane {
    /// The request path's metering: with a monthly `quota`, the workspace's month total checked
    /// against it (`false`, and nothing counted, when it is used up); the request counted. One
    /// lock, unless the stored total is due to be read again.
    pub(crate) async fn meter_request(
        &self,
        app: &ApplicationId,
        workspace: &WorkspaceId,
        key: &KeyId,
        quota: Option<u64>,
    ) -> Result<bool> {
        let hour = current_hour();
        let month = self.meter.month_start(hour);
        for _ in 0..2 {
            {
                let Ok(mut pending) = self.meter.pending.lock() else {
                    return Ok(true);
                };
                if let Some(within) = pending.count_within(app, workspace, key, hour, month, quota)
                {
                    return Ok(within);
                }
            }
            self.refresh_workspace_total(workspace, month).await?;
        }
        Ok(true)
    }

    async fn refresh_workspace_total(&self, workspace: &WorkspaceId, month: i64) -> Result<u64> {
        let n = self
            .store
            .workspace_requests_since(workspace, month)
            .await?;
        if let Ok(mut pending) = self.meter.pending.lock() {
            pending.set_stored(workspace, month, n);
        }
        Ok(n)
    }

    /// Writes the counted requests as a batch with an id of its own; a batch that fails is kept
    /// and written again under the same id before anything newer (the store applies an id
    /// once, so a batch whose write succeeded unheard is not counted twice).
    pub async fn flush_request_counts(&self) -> Result<usize> {
        let mut batches = match self.meter.pending.lock() {
            Ok(mut pending) => {
                let mut taken = std::mem::take(&mut *pending);
                let mut batches = std::mem::take(&mut taken.unsent);
                let fresh = taken.into_counts();
                if !fresh.is_empty() {
                    batches.push(Batch {
                        id: format!("{}-{}", self.worker, uuid_like()),
                        counts: fresh,
                    });
                }
                batches
            }
            Err(_) => return Ok(0),
        };
        let mut written = 0;
        while !batches.is_empty() {
            let batch = &batches[0];
            let rows: Vec<(ApplicationId, KeyId, i64, u64)> = batch
                .counts
                .iter()
                .map(|(a, _, k, h, n)| (a.clone(), k.clone(), *h, *n))
                .collect();
            if let Err(e) = self
                .store
                .add_request_counts(&batch.id, &rows, self.clock.now())
                .await
            {
                if let Ok(mut pending) = self.meter.pending.lock() {
                    batches.append(&mut pending.unsent);
                    pending.unsent = batches;
                }
                return Err(e.into());
            }
            let batch = batches.remove(0);
            self.thresholds
                .touch(batch.counts.iter().map(|(_, ws, _, _, _)| ws.clone()));
            // What was pending is now in the stored totals.
            if let Ok(mut totals) = self.meter.totals.write() {
                for (app, _, _, _, _) in &batch.counts {
                    totals.remove(app);
                }
            }
            if let Ok(mut pending) = self.meter.pending.lock() {
                for (_, workspace, _, _, _) in &batch.counts {
                    if let Some(w) = pending.workspaces.get_mut(workspace) {
                        w.stored = None;
                    }
                }
            }
            written += batch.counts.len();
        }
        Ok(written)
    }

    /// Requests of the application this calendar month (UTC): stored plus not yet flushed here.
    pub async fn month_requests(&self, app: &ApplicationId) -> Result<u64> {
        let from_hour = self.meter.month_start(current_hour());
        month_total(
            &self.meter.totals,
            app,
            from_hour,
            || self.store.requests_since(app, from_hour),
            |p| p.month_total(app, from_hour),
            &self.meter.pending,
        )
        .await
    }

    /// Requests of all the workspace's applications this calendar month (UTC): what its plan's
    /// monthly quota counts.
    pub async fn workspace_month_requests(&self, workspace: &WorkspaceId) -> Result<u64> {
        let month = self.meter.month_start(current_hour());
        let fresh = self
            .meter
            .pending
            .lock()
            .ok()
            .and_then(|p| p.fresh_workspace_total(workspace, month));
        if let Some(total) = fresh {
            return Ok(total);
        }
        let stored = self.refresh_workspace_total(workspace, month).await?;
        let pending = self
            .meter
            .pending
            .lock()
            .ok()
            .map_or(0, |p| p.workspace_month_total(workspace, month));
        Ok(stored + pending)
    }
}

type Totals<K> = RwLock<FastMap<K, (i64, u64, CoarseInstant)>>;

/// A month's total for `key`: the stored count (`stored`, read again at most every
/// [`TOTAL_TTL`]) plus what this process counted and has not written (`pending_of`).
async fn month_total<K, F>(
    totals: &Totals<K>,
    key: &K,
    from_hour: i64,
    stored: impl FnOnce() -> F,
    pending_of: impl FnOnce(&Pending) -> u64,
    pending: &Mutex<Pending>,
) -> Result<u64>
where
    K: Clone + Eq + std::hash::Hash,
    F: std::future::Future<Output = std::result::Result<u64, authsome_storage::StorageError>>,
{
    let cached = totals.read().ok().and_then(|t| {
        t.get(key)
            .filter(|(from, _, at)| *from == from_hour && at.elapsed() < TOTAL_TTL)
            .map(|(_, n, _)| *n)
    });
    let stored = match cached {
        Some(n) => n,
        None => {
            let n = stored().await?;
            if let Ok(mut totals) = totals.write() {
                if totals.len() > 100_000 {
                    totals.clear();
                }
                totals.insert(key.clone(), (from_hour, n, CoarseInstant::now()));
            }
            n
        }
    };
    Ok(stored + pending.lock().ok().map_or(0, |p| pending_of(&p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_bounds_roll_over_the_year() {
        let t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let (start, next) = month_bounds(t);
        assert_eq!(
            start,
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .unwrap()
                .timestamp()
                / 3600
        );
        assert_eq!(next, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
    }

    #[test]
    fn the_current_hour_agrees_with_the_calendar_clock() {
        let before = hour_of(Utc::now());
        let hour = current_hour();
        assert!(hour == before || hour == before + 1, "{before} {hour}");
    }

    #[test]
    fn pending_counts_by_key_hour_and_month() {
        let meter = RequestMeter::default();
        let hour = |m, d, h| hour_of(Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap());
        let (app, other) = (ApplicationId::new(), ApplicationId::new());
        let (k1, k2) = (KeyId::new(), KeyId::new());
        let (ws, other_ws) = (WorkspaceId::new(), WorkspaceId::new());
        let mut pending = Pending::default();
        // The last hour of November and the first of December, twice each (the memo is asked
        // for the same hour again and for the next one).
        for at in [
            hour(11, 30, 23),
            hour(11, 30, 23),
            hour(12, 1, 0),
            hour(12, 1, 0),
        ] {
            let month = meter.month_start(at);
            assert_eq!(month, month_bounds(hour_start(at)).0);
            pending.add(&app, &ws, &k1, at, month, 1);
        }
        pending.add(
            &app,
            &ws,
            &k2,
            hour(12, 1, 0),
            meter.month_start(hour(12, 1, 0)),
            5,
        );
        pending.add(
            &other,
            &other_ws,
            &k1,
            hour(12, 1, 0),
            meter.month_start(hour(12, 1, 0)),
            7,
        );
        let november = meter.month_start(hour(11, 1, 0));
        let december = meter.month_start(hour(12, 1, 0));
        assert_eq!(pending.month_total(&app, november), 2);
        assert_eq!(pending.month_total(&app, december), 7);
        assert_eq!(pending.month_total(&other, december), 7);
        assert_eq!(pending.month_total(&other, november), 0);
        // A workspace's quota counts all its applications.
        assert_eq!(pending.workspace_month_total(&ws, december), 7);
        assert_eq!(pending.workspace_month_total(&ws, november), 2);
        assert_eq!(pending.workspace_month_total(&other_ws, december), 7);
        let mut counts: Vec<_> = pending
            .into_counts()
            .into_iter()
            .map(|(a, w, k, h, n)| {
                assert_eq!(w == ws, a == app);
                (a == app, k == k1, h, n)
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            vec![
                (false, true, hour(12, 1, 0), 7),
                (true, false, hour(12, 1, 0), 5),
                (true, true, hour(11, 30, 23), 2),
                (true, true, hour(12, 1, 0), 2),
            ]
        );
    }
}
