//! Request metering: customer-API requests counted per application, key and hour in memory and
//! written in batches by the maintenance loop (never a database write per request), and the
//! month-to-date total that monthly quotas are checked against.
//!
//! The total is the stored count (re-read at most every few seconds) plus what this process has
//! not written yet; requests another replica has not flushed yet are not in it, so a quota can be
//! overshot by a few seconds of traffic. That is the price of no write per request.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use authsome_domain::id::{ApplicationId, KeyId};
use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::{ControlPlane, Result};

const TOTAL_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct RequestMeter {
    pending: Mutex<Pending>,
    totals: RwLock<HashMap<ApplicationId, (i64, u64, Instant)>>,
}

/// Counts not yet written: per (application, key, hour), and per application and month-start
/// hour so the quota check reads one entry instead of scanning.
#[derive(Default)]
struct Pending {
    counts: HashMap<(ApplicationId, KeyId, i64), u64>,
    per_app: HashMap<(ApplicationId, i64), u64>,
}

impl Pending {
    fn add(&mut self, app: ApplicationId, key: KeyId, hour: i64, n: u64) {
        let month = month_bounds(hour_start(hour)).0;
        *self.per_app.entry((app.clone(), month)).or_insert(0) += n;
        *self.counts.entry((app, key, hour)).or_insert(0) += n;
    }
}

fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default()
}

fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3600)
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
    /// Counts one customer-API request (in memory).
    pub fn record_request(&self, app: &ApplicationId, key: &KeyId) {
        let hour = hour_of(Utc::now());
        if let Ok(mut pending) = self.meter.pending.lock() {
            pending.add(app.clone(), key.clone(), hour, 1);
        }
    }

    /// Writes the counted requests; on failure they are kept for the next flush.
    pub async fn flush_request_counts(&self) -> Result<usize> {
        let counts: Vec<_> = match self.meter.pending.lock() {
            Ok(mut pending) => {
                let taken = std::mem::take(&mut *pending);
                taken
                    .counts
                    .into_iter()
                    .map(|((a, k, h), n)| (a, k, h, n))
                    .collect()
            }
            Err(_) => return Ok(0),
        };
        if counts.is_empty() {
            return Ok(0);
        }
        match self.store.add_request_counts(&counts).await {
            Ok(()) => {
                // What was pending is now in the stored totals.
                if let Ok(mut totals) = self.meter.totals.write() {
                    for (app, _, _, _) in &counts {
                        totals.remove(app);
                    }
                }
                Ok(counts.len())
            }
            Err(e) => {
                if let Ok(mut pending) = self.meter.pending.lock() {
                    for (a, k, h, n) in counts {
                        pending.add(a, k, h, n);
                    }
                }
                Err(e.into())
            }
        }
    }

    /// Requests of the application this calendar month (UTC): stored plus not yet flushed here.
    pub async fn month_requests(&self, app: &ApplicationId) -> Result<u64> {
        let (from_hour, _) = month_bounds(Utc::now());
        let cached = self.meter.totals.read().ok().and_then(|t| {
            t.get(app)
                .filter(|(from, _, at)| *from == from_hour && at.elapsed() < TOTAL_TTL)
                .map(|(_, n, _)| *n)
        });
        let stored = match cached {
            Some(n) => n,
            None => {
                let n = self.store.requests_since(app, from_hour).await?;
                if let Ok(mut totals) = self.meter.totals.write() {
                    if totals.len() > 100_000 {
                        totals.clear();
                    }
                    totals.insert(app.clone(), (from_hour, n, Instant::now()));
                }
                n
            }
        };
        let pending = self
            .meter
            .pending
            .lock()
            .ok()
            .and_then(|p| p.per_app.get(&(app.clone(), from_hour)).copied())
            .unwrap_or(0);
        Ok(stored + pending)
    }
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
}
