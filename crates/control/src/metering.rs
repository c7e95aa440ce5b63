//! Key use and request metering. Per API key, this process keeps when it was last used (its
//! `lastUsedAt`) and how many customer-API requests it made per hour, in one ledger under one
//! lock: a request is one lookup that serves both. The maintenance loop writes them in batches
//! (never a database write per request). Also the month-to-date totals: an application's (its
//! usage), and its workspace's, which the plan's monthly quota is checked against on the same
//! lookup (each key's entry points at its workspace's tally).
//!
//! The total is the stored count (re-read at most every few seconds) plus what this process has
//! not written yet; requests another replica has not flushed yet are not in it, so a quota can be
//! overshot by a few seconds of traffic. That is the price of no write per request.

use authsome_domain::FastMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use authsome_domain::clock::CoarseInstant;

use authsome_domain::id::{ApplicationId, KeyId, WorkspaceId};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};

use crate::{ControlPlane, Result};

const TOTAL_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct RequestMeter {
    ledger: Mutex<Ledger>,
    totals: Totals,
}

impl RequestMeter {
    /// [`Ledger::count`] under the lock (a poisoned lock lets the request through uncounted).
    fn count(&self, request: &MeteredRequest<'_>) -> Counting {
        match self.ledger.lock() {
            Ok(mut ledger) => ledger.count(request),
            Err(_) => Counting::Counted,
        }
    }

    /// Notes that `key` was used at `at`, for its next `lastUsedAt` write.
    pub(crate) fn record_use(&self, key: &KeyId, at: DateTime<Utc>) {
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.record_use(key, at);
        }
    }

    /// The `lastUsedAt` values not written yet (taken: [`RequestMeter::restore_uses`] puts back
    /// what could not be written).
    pub(crate) fn take_uses(&self) -> Vec<(KeyId, DateTime<Utc>)> {
        match self.ledger.lock() {
            Ok(mut ledger) => ledger
                .keys
                .iter_mut()
                .filter_map(|(id, u)| Some((id.clone(), u.last_used.take()?)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn restore_uses(&self, uses: Vec<(KeyId, DateTime<Utc>)>) {
        if let Ok(mut ledger) = self.ledger.lock() {
            for (id, at) in uses {
                let entry = ledger.keys.entry(id).or_default();
                entry.last_used = Some(entry.last_used.map_or(at, |last| last.max(at)));
            }
        }
    }
}

/// What this process has not written yet, per key, and its workspaces' tallies.
#[derive(Default)]
struct Ledger {
    keys: FastMap<KeyId, KeyUse>,
    /// Per workspace whose keys were counted (or whose month total was read); found from a
    /// key's entry by index, so the request path looks up nothing else.
    tallies: Vec<Tally>,
    tally_of: FastMap<WorkspaceId, usize>,
    /// Batches a flush could not write (or did not hear back about), retried under the same id
    /// so that one applied after all is not counted twice.
    unsent: Vec<Batch>,
}

/// One key's use not written yet.
#[derive(Default)]
struct KeyUse {
    /// Its next `lastUsedAt`.
    last_used: Option<DateTime<Utc>>,
    /// Its metered requests (once it made one here).
    requests: Option<KeyRequests>,
}

struct KeyRequests {
    app: ApplicationId,
    /// Its workspace's entry in [`Ledger::tallies`].
    tally: usize,
    /// (hour, requests): one entry, two around the turn of an hour.
    hours: Vec<(i64, u64)>,
}

/// A workspace's requests of its current month counted here and not written yet (in batches
/// not sent included), and its stored count of the month (read again after [`TOTAL_TTL`] or a
/// write): what the quota check adds up.
struct Tally {
    workspace: WorkspaceId,
    /// The day its last request fell on, that day's first hour and its month's first hour:
    /// every request asks, and the calendar arithmetic is worth doing once a day rather than
    /// once a request.
    day: Option<(NaiveDate, i64, i64)>,
    /// The month-start hour `counted` is of.
    month: i64,
    counted: u64,
    stored: Option<Stored>,
    /// Bumped by every batch written: a stored count read before one is not kept.
    writes: u64,
}

struct Stored {
    month: i64,
    requests: u64,
    until: DateTime<Utc>,
}

impl Tally {
    fn new(workspace: WorkspaceId) -> Self {
        Self {
            workspace,
            day: None,
            month: i64::MIN,
            counted: 0,
            stored: None,
            writes: 0,
        }
    }

    /// The hour (since the Unix epoch) of `at`, and the first hour of its month.
    fn place(&mut self, at: DateTime<Utc>) -> (i64, i64) {
        let at = at.naive_utc();
        let date = at.date();
        let (day, month) = match self.day {
            Some((known, day, month)) if known == date => (day, month),
            _ => {
                let day = hour_of(date.and_time(NaiveTime::MIN).and_utc());
                let month = month_start(day);
                self.day = Some((date, day, month));
                (day, month)
            }
        };
        (day + i64::from(at.hour()), month)
    }

    fn counted_in(&self, month: i64) -> u64 {
        if self.month == month {
            self.counted
        } else {
            0
        }
    }

    /// Counts a request of the month starting at `month` (an earlier month's are not the
    /// quota's any more).
    fn add(&mut self, month: i64) {
        if month > self.month {
            (self.month, self.counted) = (month, 0);
        }
        if month == self.month {
            self.counted += 1;
        }
    }

    /// `n` requests of `month` were written: they are in the stored count now.
    fn written(&mut self, month: i64, n: u64) {
        if month == self.month {
            self.counted = self.counted.saturating_sub(n);
        }
        self.stored = None;
        self.writes += 1;
    }

    /// The stored count of `month`, if it was read recently enough.
    fn fresh_stored(&self, month: i64, at: DateTime<Utc>) -> Option<u64> {
        let stored = self.stored.as_ref()?;
        (stored.month == month && at < stored.until).then_some(stored.requests)
    }
}

/// Counts flushed together, under an id the store remembers.
struct Batch {
    id: String,
    counts: Vec<Counted>,
}

impl Batch {
    /// Requests in it for which `matches(application, hour)`.
    fn sum(&self, matches: impl Fn(&ApplicationId, i64) -> bool) -> u64 {
        self.counts
            .iter()
            .filter(|(a, _, _, h, _)| matches(a, *h))
            .map(|c| c.4)
            .sum()
    }
}

/// Counts one at `at` in a short list of (hour, count).
fn bump(counts: &mut Vec<(i64, u64)>, at: i64) {
    // The latest is the one asked for, but at the turn of an hour.
    match counts.iter_mut().rev().find(|(h, _)| *h == at) {
        Some((_, count)) => *count += 1,
        None => counts.push((at, 1)),
    }
}

/// A metered request: whose, when, and the monthly quota it is checked against.
pub(crate) struct MeteredRequest<'a> {
    pub app: &'a ApplicationId,
    pub workspace: &'a WorkspaceId,
    pub key: &'a KeyId,
    pub at: DateTime<Utc>,
    pub quota: Option<u64>,
}

/// What counting a request found.
#[derive(Debug, PartialEq, Eq)]
enum Counting {
    /// Counted (within the quota, or none).
    Counted,
    /// Not counted: the month's quota is used up.
    OverQuota,
    /// The workspace's stored count must be read first.
    Stale,
}

impl Ledger {
    fn record_use(&mut self, key: &KeyId, at: DateTime<Utc>) {
        match self.keys.get_mut(key) {
            Some(entry) => entry.last_used = Some(at),
            None => {
                self.keys.insert(
                    key.clone(),
                    KeyUse {
                        last_used: Some(at),
                        requests: None,
                    },
                );
            }
        }
    }

    fn tally_index(&mut self, workspace: &WorkspaceId) -> usize {
        if let Some(&i) = self.tally_of.get(workspace) {
            return i;
        }
        self.tallies.push(Tally::new(workspace.clone()));
        let i = self.tallies.len() - 1;
        self.tally_of.insert(workspace.clone(), i);
        i
    }

    fn tally(&self, workspace: &WorkspaceId) -> Option<&Tally> {
        self.tally_of
            .get(workspace)
            .and_then(|&i| self.tallies.get(i))
    }

    /// The request path: the key's use noted; with a quota, the workspace's month total checked
    /// against it (nothing counted when it is used up); the request counted. One lookup once
    /// the key has been seen.
    fn count(&mut self, r: &MeteredRequest<'_>) -> Counting {
        if let Some(entry) = self.keys.get_mut(r.key) {
            entry.last_used = Some(r.at);
            if let Some(requests) = &mut entry.requests {
                return count_on(requests, &mut self.tallies, r);
            }
        }
        // The key's first metered request here.
        let tally = self.tally_index(r.workspace);
        let entry = self.keys.entry(r.key.clone()).or_default();
        entry.last_used = Some(r.at);
        let requests = entry.requests.insert(KeyRequests {
            app: r.app.clone(),
            tally,
            hours: Vec::new(),
        });
        count_on(requests, &mut self.tallies, r)
    }

    /// Everything counted, as (application, its workspace, key, hour, requests); the entries
    /// of keys that were not used since the last time are forgotten.
    fn take_counts(&mut self) -> Vec<Counted> {
        let before = self.keys.len();
        self.keys.retain(|_, u| {
            u.last_used.is_some() || u.requests.as_ref().is_some_and(|r| !r.hours.is_empty())
        });
        if self.keys.len() < before {
            self.forget_idle_tallies();
        }
        let mut counts = Vec::new();
        for (key, entry) in &mut self.keys {
            let Some(requests) = &mut entry.requests else {
                continue;
            };
            let Some(tally) = self.tallies.get(requests.tally) else {
                continue;
            };
            for (hour, n) in requests.hours.drain(..) {
                counts.push((
                    requests.app.clone(),
                    tally.workspace.clone(),
                    key.clone(),
                    hour,
                    n,
                ));
            }
        }
        counts
    }

    /// Drops the tallies no key points at and with nothing unwritten, renumbering the rest.
    fn forget_idle_tallies(&mut self) {
        let mut used = vec![false; self.tallies.len()];
        for requests in self.keys.values().filter_map(|u| u.requests.as_ref()) {
            used[requests.tally] = true;
        }
        let mut renumbered = vec![usize::MAX; self.tallies.len()];
        let mut kept = Vec::with_capacity(self.tallies.len());
        for (i, tally) in std::mem::take(&mut self.tallies).into_iter().enumerate() {
            if used[i] || tally.counted > 0 {
                renumbered[i] = kept.len();
                kept.push(tally);
            }
        }
        for requests in self.keys.values_mut().filter_map(|u| u.requests.as_mut()) {
            requests.tally = renumbered[requests.tally];
        }
        self.tally_of = kept
            .iter()
            .enumerate()
            .map(|(i, t)| (t.workspace.clone(), i))
            .collect();
        self.tallies = kept;
    }

    /// Requests of `app` counted here (in batches not sent included) from hour `month` on.
    fn month_total(&self, app: &ApplicationId, month: i64) -> u64 {
        let counted: u64 = self
            .keys
            .values()
            .filter_map(|u| u.requests.as_ref())
            .filter(|r| &r.app == app)
            .flat_map(|r| &r.hours)
            .filter(|(h, _)| *h >= month)
            .map(|(_, n)| n)
            .sum();
        counted
            + self
                .unsent
                .iter()
                .map(|b| b.sum(|a, h| a == app && h >= month))
                .sum::<u64>()
    }

    /// Requests of `workspace`'s applications counted here in the month starting at `month`.
    fn workspace_month_total(&self, workspace: &WorkspaceId, month: i64) -> u64 {
        self.tally(workspace).map_or(0, |t| t.counted_in(month))
    }
}

/// [`Ledger::count`] on the key's entry, once found.
fn count_on(requests: &mut KeyRequests, tallies: &mut [Tally], r: &MeteredRequest<'_>) -> Counting {
    let Some(tally) = tallies.get_mut(requests.tally) else {
        return Counting::Stale;
    };
    let (hour, month) = tally.place(r.at);
    if let Some(quota) = r.quota {
        let Some(stored) = tally.fresh_stored(month, r.at) else {
            return Counting::Stale;
        };
        if stored + tally.counted_in(month) >= quota {
            return Counting::OverQuota;
        }
    }
    tally.add(month);
    bump(&mut requests.hours, hour);
    Counting::Counted
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

/// The first hour of the calendar month (UTC) that `hour` falls in.
fn month_start(hour: i64) -> i64 {
    month_bounds(hour_start(hour)).0
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
    /// The request path's metering: the key's use noted and, with a monthly quota, the
    /// workspace's month total checked against it (`false`, and nothing counted, when it is used
    /// up); the request counted in its hour. One lock and one lookup, nothing awaited; `None`
    /// when the workspace's stored total must be read first
    /// ([`ControlPlane::meter_request_after_reading`]).
    pub(crate) fn meter_request(&self, request: &MeteredRequest<'_>) -> Option<bool> {
        match self.meter.count(request) {
            Counting::Counted => Some(true),
            Counting::OverQuota => Some(false),
            Counting::Stale => None,
        }
    }

    /// [`ControlPlane::meter_request`] once the workspace's stored total is read (counted
    /// without the quota if a write made what was read stale again at once).
    pub(crate) async fn meter_request_after_reading(
        &self,
        request: &MeteredRequest<'_>,
    ) -> Result<bool> {
        let month = month_bounds(request.at).0;
        self.refresh_workspace_total(request.workspace, month)
            .await?;
        Ok(self.meter.count(request) != Counting::OverQuota)
    }

    /// Reads the workspace's stored count of the month and keeps it for [`TOTAL_TTL`], unless a
    /// batch was written while it was read (it may not be in what was read).
    async fn refresh_workspace_total(&self, workspace: &WorkspaceId, month: i64) -> Result<u64> {
        let writes = match self.meter.ledger.lock() {
            Ok(mut ledger) => {
                let i = ledger.tally_index(workspace);
                ledger.tallies[i].writes
            }
            Err(_) => 0,
        };
        let n = self
            .store
            .workspace_requests_since(workspace, month)
            .await?;
        let until = self.clock.now() + TOTAL_TTL;
        if let Ok(mut ledger) = self.meter.ledger.lock() {
            let i = ledger.tally_index(workspace);
            let tally = &mut ledger.tallies[i];
            if tally.writes == writes {
                tally.stored = Some(Stored {
                    month,
                    requests: n,
                    until,
                });
            }
        }
        Ok(n)
    }

    /// Writes the counted requests as a batch with an id of its own; a batch that fails is kept
    /// and written again under the same id before anything newer (the store applies an id
    /// once, so a batch whose write succeeded unheard is not counted twice).
    pub async fn flush_request_counts(&self) -> Result<usize> {
        let mut batches = match self.meter.ledger.lock() {
            Ok(mut ledger) => {
                let mut batches = std::mem::take(&mut ledger.unsent);
                let fresh = ledger.take_counts();
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
                if let Ok(mut ledger) = self.meter.ledger.lock() {
                    batches.append(&mut ledger.unsent);
                    ledger.unsent = batches;
                }
                return Err(e.into());
            }
            let batch = batches.remove(0);
            self.thresholds
                .touch(batch.counts.iter().map(|(_, ws, _, _, _)| ws.clone()));
            // What was counted is in the stored totals now.
            if let Ok(mut totals) = self.meter.totals.write() {
                for (app, _, _, _, _) in &batch.counts {
                    totals.remove(app);
                }
            }
            if let Ok(mut ledger) = self.meter.ledger.lock() {
                for (_, workspace, _, hour, n) in &batch.counts {
                    let month = month_start(*hour);
                    if let Some(&i) = ledger.tally_of.get(workspace) {
                        ledger.tallies[i].written(month, *n);
                    }
                }
            }
            written += batch.counts.len();
        }
        Ok(written)
    }

    /// Requests of the application this calendar month (UTC): the stored count (read again at
    /// most every [`TOTAL_TTL`]) plus what this process counted and has not written.
    pub async fn month_requests(&self, app: &ApplicationId) -> Result<u64> {
        let month = month_start(hour_of(self.clock.now()));
        let totals = &self.meter.totals;
        let cached = totals.read().ok().and_then(|t| {
            t.get(app)
                .filter(|(from, _, at)| *from == month && at.elapsed() < TOTAL_TTL)
                .map(|(_, n, _)| *n)
        });
        let stored = match cached {
            Some(n) => n,
            None => {
                let n = self.store.requests_since(app, month).await?;
                if let Ok(mut totals) = totals.write() {
                    if totals.len() > 100_000 {
                        totals.clear();
                    }
                    totals.insert(app.clone(), (month, n, CoarseInstant::now()));
                }
                n
            }
        };
        let pending = self.meter.ledger.lock().ok();
        Ok(stored + pending.map_or(0, |ledger| ledger.month_total(app, month)))
    }

    /// Requests of all the workspace's applications this calendar month (UTC): what its plan's
    /// monthly quota counts.
    pub async fn workspace_month_requests(&self, workspace: &WorkspaceId) -> Result<u64> {
        let now = self.clock.now();
        let month = month_start(hour_of(now));
        let fresh = self.meter.ledger.lock().ok().and_then(|ledger| {
            let tally = ledger.tally(workspace)?;
            Some(tally.fresh_stored(month, now)? + tally.counted_in(month))
        });
        if let Some(total) = fresh {
            return Ok(total);
        }
        let stored = self.refresh_workspace_total(workspace, month).await?;
        let pending = self
            .meter
            .ledger
            .lock()
            .ok()
            .map_or(0, |ledger| ledger.workspace_month_total(workspace, month));
        Ok(stored + pending)
    }
}

/// Per application: the month-start hour, its stored count of that month, when read.
type Totals = RwLock<FastMap<ApplicationId, (i64, u64, CoarseInstant)>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(m: u32, d: u32, h: u32) -> i64 {
        hour_of(Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap())
    }

    fn request<'a>(
        (app, workspace, key): (&'a ApplicationId, &'a WorkspaceId, &'a KeyId),
        hour: i64,
        quota: Option<u64>,
    ) -> MeteredRequest<'a> {
        MeteredRequest {
            app,
            workspace,
            key,
            at: hour_start(hour),
            quota,
        }
    }

    fn fresh(ledger: &mut Ledger, workspace: &WorkspaceId, month: i64, requests: u64) {
        let i = ledger.tally_index(workspace);
        ledger.tallies[i].stored = Some(Stored {
            month,
            requests,
            until: DateTime::<Utc>::MAX_UTC,
        });
    }

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
    fn the_ledger_counts_by_key_hour_and_month() {
        let (app, other) = (ApplicationId::new(), ApplicationId::new());
        let (k1, k2, k3) = (KeyId::new(), KeyId::new(), KeyId::new());
        let (ws, other_ws) = (WorkspaceId::new(), WorkspaceId::new());
        let mut ledger = Ledger::default();
        // The last hour of November and the first of December, twice each (the tally's day is
        // asked for the same day again and for the next one).
        for at in [
            hour(11, 30, 23),
            hour(11, 30, 23),
            hour(12, 1, 0),
            hour(12, 1, 0),
        ] {
            let r = request((&app, &ws, &k1), at, None);
            assert_eq!(ledger.count(&r), Counting::Counted);
        }
        for _ in 0..5 {
            let r = request((&app, &ws, &k2), hour(12, 1, 0), None);
            assert_eq!(ledger.count(&r), Counting::Counted);
        }
        for _ in 0..7 {
            let r = request((&other, &other_ws, &k3), hour(12, 1, 0), None);
            assert_eq!(ledger.count(&r), Counting::Counted);
        }
        let november = month_start(hour(11, 1, 0));
        let december = month_start(hour(12, 1, 0));
        assert_eq!(ledger.month_total(&app, november), 9);
        assert_eq!(ledger.month_total(&app, december), 7);
        assert_eq!(ledger.month_total(&other, december), 7);
        // A workspace's quota counts all its applications, in its current month only.
        assert_eq!(ledger.workspace_month_total(&ws, december), 7);
        assert_eq!(ledger.workspace_month_total(&ws, november), 0);
        assert_eq!(ledger.workspace_month_total(&other_ws, december), 7);
        // Every request noted its key's use.
        let mut used: Vec<_> = ledger
            .keys
            .iter()
            .map(|(k, u)| (k == &k1, u.last_used))
            .collect();
        used.sort();
        assert!(used
            .iter()
            .all(|(_, at)| *at == Some(hour_start(hour(12, 1, 0)))));
        let mut counts: Vec<_> = ledger
            .take_counts()
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
                (false, false, hour(12, 1, 0), 7),
                (true, false, hour(12, 1, 0), 5),
                (true, true, hour(11, 30, 23), 2),
                (true, true, hour(12, 1, 0), 2),
            ]
        );
        // Taken: nothing is counted twice.
        assert!(ledger.take_counts().is_empty());
        assert_eq!(ledger.month_total(&app, november), 0);
    }

    #[test]
    fn the_quota_adds_the_stored_count_and_what_was_not_written() {
        let (app, ws) = (ApplicationId::new(), WorkspaceId::new());
        let (k1, k2) = (KeyId::new(), KeyId::new());
        let at = hour(12, 3, 10);
        let month = month_start(at);
        let mut ledger = Ledger::default();
        // Nothing is counted before the stored count was read.
        let r = request((&app, &ws, &k1), at, Some(10));
        assert_eq!(ledger.count(&r), Counting::Stale);
        assert_eq!(ledger.workspace_month_total(&ws, month), 0);
        fresh(&mut ledger, &ws, month, 6);
        for key in [&k1, &k2, &k1, &k2] {
            let r = request((&app, &ws, key), at, Some(10));
            assert_eq!(ledger.count(&r), Counting::Counted);
        }
        // 6 stored and 4 counted: both keys are refused, and not counted.
        for key in [&k1, &k2] {
            let r = request((&app, &ws, key), at, Some(10));
            assert_eq!(ledger.count(&r), Counting::OverQuota);
        }
        assert_eq!(ledger.workspace_month_total(&ws, month), 4);
        // A read older than the stored count's life is read again.
        let i = ledger.tally_index(&ws);
        ledger.tallies[i].stored.as_mut().unwrap().until = hour_start(at);
        let r = request((&app, &ws, &k1), at, Some(10));
        assert_eq!(ledger.count(&r), Counting::Stale);
        // Written: the counts leave the tally for the stored count, which is read again.
        let counts = ledger.take_counts();
        assert_eq!(counts.iter().map(|c| c.4).sum::<u64>(), 4);
        assert_eq!(ledger.workspace_month_total(&ws, month), 4, "until written");
        for (_, _, _, h, n) in &counts {
            ledger.tallies[i].written(month_start(*h), *n);
        }
        assert_eq!(ledger.workspace_month_total(&ws, month), 0);
        assert_eq!(ledger.count(&r), Counting::Stale);
        fresh(&mut ledger, &ws, month, 10);
        assert_eq!(ledger.count(&r), Counting::OverQuota);
        // Next month starts from nothing.
        let next = hour(1, 1, 0) + 365 * 24;
        let r = request((&app, &ws, &k1), next, Some(10));
        fresh(&mut ledger, &ws, month_start(next), 0);
        assert_eq!(ledger.count(&r), Counting::Counted);
        assert_eq!(ledger.workspace_month_total(&ws, month_start(next)), 1);
    }

    #[test]
    fn idle_keys_and_tallies_are_forgotten_and_the_rest_keep_counting() {
        let (a1, a2) = (ApplicationId::new(), ApplicationId::new());
        let (w1, w2) = (WorkspaceId::new(), WorkspaceId::new());
        let (k1, k2, k3) = (KeyId::new(), KeyId::new(), KeyId::new());
        let at = hour(12, 3, 10);
        let mut ledger = Ledger::default();
        for (ids, n) in [((&a1, &w1, &k1), 2), ((&a2, &w2, &k2), 3)] {
            for _ in 0..n {
                assert_eq!(ledger.count(&request(ids, at, None)), Counting::Counted);
            }
        }
        ledger.record_use(&k3, hour_start(at));
        assert_eq!(ledger.take_counts().len(), 2);
        for (_, ws, _, h, n) in [(0, &w1, 0, at, 2), (0, &w2, 0, at, 3)] {
            let i = ledger.tally_index(ws);
            ledger.tallies[i].written(month_start(h), n);
        }
        // Only the second key is used again; the uses are written.
        assert_eq!(
            ledger.count(&request((&a2, &w2, &k2), at, None)),
            Counting::Counted
        );
        for u in ledger.keys.values_mut() {
            u.last_used = None;
        }
        let counts = ledger.take_counts();
        // The first key and its workspace are forgotten; the second is renumbered.
        assert_eq!(ledger.keys.len(), 1);
        assert_eq!(ledger.tallies.len(), 1);
        assert_eq!(counts.len(), 1);
        assert!(counts[0].1 == w2 && counts[0].2 == k2 && counts[0].4 == 1);
        assert_eq!(
            ledger.count(&request((&a2, &w2, &k2), at, None)),
            Counting::Counted
        );
        assert_eq!(
            ledger.workspace_month_total(&w2, month_start(at)),
            2,
            "the one taken and not written yet, and a new one"
        );
        assert_eq!(ledger.workspace_month_total(&w1, month_start(at)), 0);
    }

    #[test]
    fn uses_are_taken_and_put_back_at_their_latest() {
        let meter = RequestMeter::default();
        let key = KeyId::new();
        let (early, late) = (hour_start(hour(12, 1, 0)), hour_start(hour(12, 1, 1)));
        meter.record_use(&key, early);
        let taken = meter.take_uses();
        assert_eq!(taken, vec![(key.clone(), early)]);
        assert!(meter.take_uses().is_empty());
        meter.record_use(&key, late);
        meter.restore_uses(taken);
        assert_eq!(meter.take_uses(), vec![(key, late)]);
    }
}
