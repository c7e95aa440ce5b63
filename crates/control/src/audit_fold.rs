//! Folding of repeated refusals for the audit log. A flood of identical failed sign-ins or
//! denied requests must not cost the log an entry each (an attacker would grow it at will), and
//! must not vanish either. The first of a kind is written at once; the identical ones that
//! follow within the window are counted, and when the window closes one more entry says how
//! many there were (`changes.repeated`), between which times and from which addresses. The
//! count is exact: the first entry plus `repeated` is every attempt.
//!
//! "Identical" is the same action, outcome, actor, workspace, application, target and changes;
//! the request id, time, address, user agent and the values of identifying fields (the emails
//! a spray tries, kept only as HMACs anyway) may differ. The closing entry says how many
//! distinct identifying values there were (`changes.distinct`), and lists the first addresses.
//! Only events that are not writes and did not succeed are folded. No I/O: the audit log asks
//! what to write.

use std::collections::HashMap;
use std::time::Duration;

use authsome_domain::clock::{Clock, CoarseInstant};
use authsome_domain::event::{DomainEvent, Outcome};
use authsome_domain::id::EventId;

/// Distinct client addresses a summary lists (the count stays exact beyond them).
const ADDRESSES_LISTED: usize = 8;
/// Distinct identifying values a window tells apart; beyond it the summary says "at least".
const DISTINCT_COUNTED: usize = 1024;

struct Pending {
    /// The entry written at once, copied for the summary.
    first: DomainEvent,
    opened: CoarseInstant,
    repeated: u64,
    last_at: chrono::DateTime<chrono::Utc>,
    addresses: Vec<String>,
    more_addresses: bool,
    /// Digests of the identifying values seen (bounded).
    identities: std::collections::HashSet<u64>,
}

pub(crate) struct Folds {
    window: Duration,
    capacity: usize,
    open: HashMap<String, Pending>,
    clock: Clock,
}

impl Folds {
    pub(crate) fn new(window: Duration, capacity: usize, clock: Clock) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            open: HashMap::new(),
            clock,
        }
    }

    /// The event back when it is to be written now (the first of its kind, or not foldable);
    /// `None` when it was counted into an open window. A summary forced out early because the
    /// table is full goes to `released`.
    pub(crate) fn offer(
        &mut self,
        event: DomainEvent,
        released: &mut Vec<DomainEvent>,
    ) -> Option<DomainEvent> {
        if event.outcome == Outcome::Success || self.window.is_zero() {
            return Some(event);
        }
        let key = fold_key(&event);
        let now = self.clock.instant();
        if let Some(p) = self.open.get_mut(&key) {
            if now.since(p.opened) < self.window {
                p.repeated += 1;
                p.last_at = event.at;
                note_address(p, event.ip.as_deref());
                note_identity(p, &event);
                return None;
            }
            if let Some(done) = self.open.remove(&key) {
                released.extend(summary(done));
            }
        }
        if self.open.len() >= self.capacity {
            // Full: the oldest window closes early (its count is written, nothing is lost).
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, p)| p.opened)
                .map(|(k, _)| k.clone())
            {
                if let Some(done) = self.open.remove(&oldest) {
                    released.extend(summary(done));
                }
            }
        }
        let mut pending = Pending {
            first: event.clone(),
            opened: now,
            repeated: 0,
            last_at: event.at,
            addresses: Vec::new(),
            more_addresses: false,
            identities: std::collections::HashSet::new(),
        };
        note_address(&mut pending, event.ip.as_deref());
        note_identity(&mut pending, &event);
        self.open.insert(key, pending);
        Some(event)
    }

    /// Closes the windows that have run their time (all of them with `all`, at shutdown) and
    /// returns the summaries to write.
    pub(crate) fn release(&mut self, all: bool) -> Vec<DomainEvent> {
        let now = self.clock.instant();
        let window = self.window;
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, p)| all || now.since(p.opened) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.open.remove(&k))
            .filter_map(summary)
            .collect()
    }
}

fn note_address(p: &mut Pending, ip: Option<&str>) {
    let Some(ip) = ip else { return };
    if p.addresses.iter().any(|a| a == ip) {
        return;
    }
    if p.addresses.len() < ADDRESSES_LISTED {
        p.addresses.push(ip.to_owned());
    } else {
        p.more_addresses = true;
    }
}

fn note_identity(p: &mut Pending, event: &DomainEvent) {
    if event.identifying.is_empty() || p.identities.len() >= DISTINCT_COUNTED {
        return;
    }
    use std::hash::BuildHasher;
    // A process-local keyed hash: only told apart here, never stored.
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let digest = KEY
        .get_or_init(Default::default)
        .hash_one(&event.identifying);
    p.identities.insert(digest);
}

/// The entry that closes a window, if anything was folded into it.
fn summary(p: Pending) -> Option<DomainEvent> {
    if p.repeated == 0 {
        return None;
    }
    let first_at = p.first.at;
    let mut event = p.first;
    event.id = EventId::new();
    event.at = p.last_at;
    event.request_id = None;
    event.ip = None;
    event.user_agent = None;
    event.changes.insert("repeated".into(), p.repeated.into());
    event.changes.insert(
        "firstAt".into(),
        serde_json::Value::String(rfc3339(first_at)),
    );
    event.changes.insert(
        "lastAt".into(),
        serde_json::Value::String(rfc3339(p.last_at)),
    );
    event
        .changes
        .insert("addresses".into(), serde_json::json!(p.addresses));
    if p.more_addresses {
        event.changes.insert("moreAddresses".into(), true.into());
    }
    if !p.identities.is_empty() {
        event
            .changes
            .insert("distinct".into(), p.identities.len().into());
        if p.identities.len() >= DISTINCT_COUNTED {
            event.changes.insert("distinctAtLeast".into(), true.into());
        }
    }
    Some(event)
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What makes two refusals the same: everything but when, where from, which request and the
/// identifying values tried (their field names count).
fn fold_key(e: &DomainEvent) -> String {
    let fields: Vec<&str> = e.identifying.iter().map(|(f, _)| f.as_str()).collect();
    let identity = serde_json::json!([
        e.action,
        e.outcome,
        e.actor,
        e.workspace_id,
        e.application_id,
        e.target,
        e.changes,
        fields,
    ]);
    identity.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use authsome_domain::event::EventActor;

    fn failed(ip: &str) -> DomainEvent {
        let mut e = DomainEvent::new("account.sign_in_failed")
            .outcome(Outcome::Failure)
            .change("reason", "bad_credentials")
            .identifying("email", "a@x.test")
            .actor(EventActor::System);
        e.ip = Some(ip.into());
        e
    }

    fn written(o: Option<DomainEvent>) -> bool {
        o.is_some()
    }

    #[test]
    fn a_flood_is_one_entry_now_and_one_exact_count_when_the_window_closes() {
        let clock = Clock::manual();
        let mut folds = Folds::new(Duration::from_secs(60), 100, clock.clone());
        let mut released = Vec::new();
        assert!(written(folds.offer(failed("10.0.0.1"), &mut released)));
        for n in 0..999 {
            let ip = format!("10.0.0.{}", n % 20);
            assert!(!written(folds.offer(failed(&ip), &mut released)));
        }
        assert!(released.is_empty());
        assert!(folds.release(false).is_empty(), "the window is still open");
        clock.advance(Duration::from_secs(60));
        let summaries = folds.release(false);
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        assert_eq!(s.action, "account.sign_in_failed");
        assert_eq!(s.changes["repeated"], 999);
        assert_eq!(s.changes["reason"], "bad_credentials");
        assert_eq!(s.changes["addresses"].as_array().unwrap().len(), 8);
        assert_eq!(s.changes["moreAddresses"], true);
        assert_eq!(s.identifying, failed("x").identifying);
        // The next attempt opens a new window and is written at once.
        assert!(written(folds.offer(failed("10.0.0.1"), &mut released)));
    }

    #[test]
    fn a_spray_of_different_emails_folds_and_counts_them() {
        let clock = Clock::manual();
        let mut folds = Folds::new(Duration::from_secs(60), 100, clock.clone());
        let mut released = Vec::new();
        let tried = |n: u32| {
            DomainEvent::new("account.sign_in_failed")
                .outcome(Outcome::Failure)
                .change("reason", "bad_credentials")
                .identifying("email", format!("user{n}@spray.test"))
        };
        assert!(written(folds.offer(tried(0), &mut released)));
        for n in 1..300 {
            assert!(!written(folds.offer(tried(n % 100), &mut released)));
        }
        clock.advance(Duration::from_secs(60));
        let summary = folds.release(false).pop().unwrap();
        assert_eq!(summary.changes["repeated"], 299);
        assert_eq!(summary.changes["distinct"], 100);
    }

    #[test]
    fn different_refusals_and_successes_are_not_folded() {
        let mut folds = Folds::new(Duration::from_secs(60), 100, Clock::manual());
        let mut released = Vec::new();
        assert!(written(folds.offer(failed("10.0.0.1"), &mut released)));
        let other = failed("10.0.0.1").change("reason", "locked");
        assert!(written(folds.offer(other, &mut released)));
        let ok = DomainEvent::new("account.signed_in");
        assert!(written(folds.offer(ok.clone(), &mut released)));
        assert!(written(folds.offer(ok, &mut released)));
        // A lone refusal leaves no summary.
        assert!(folds.release(true).is_empty());
    }

    #[test]
    fn a_full_table_closes_the_oldest_window_early_without_losing_its_count() {
        let clock = Clock::manual();
        let mut folds = Folds::new(Duration::from_secs(60), 2, clock.clone());
        let mut released = Vec::new();
        let kind = |n: u32| failed("10.0.0.1").target(format!("t{n}"));
        assert!(written(folds.offer(kind(1), &mut released)));
        assert!(!written(folds.offer(kind(1), &mut released)));
        clock.advance(Duration::from_secs(1));
        assert!(written(folds.offer(kind(2), &mut released)));
        assert!(written(folds.offer(kind(3), &mut released)));
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].target.as_deref(), Some("t1"));
        assert_eq!(released[0].changes["repeated"], 1);
        assert!(!written(folds.offer(kind(3), &mut released)));
        let rest = folds.release(true);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].target.as_deref(), Some("t3"));
    }
}
