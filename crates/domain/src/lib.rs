//! The AuthSome domain: identifiers, the key format, passwords, pagination, and the tenancy model
//! (workspaces, members and roles, applications, API keys) with the rules that govern them.
//!
//! **Invariant:** this crate does no I/O. It knows nothing of HTTP, SQL or the clock beyond
//! reading the current time ([`now`], [`unix_seconds`], the coarse clocks of [`clock`]) for
//! creating records and checking ages; storage and transport depend on it, never the reverse.
//! Values that pass a `parse` function here are valid everywhere downstream.

pub mod alert;
pub mod clock;
pub mod egress;
pub mod event;
pub mod id;
pub mod identity;
pub mod job;
pub mod keys;
pub mod master_key;
pub mod page;
pub mod password;
pub mod provider;
pub mod rotation;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod shared_state;
pub mod tenancy;
pub mod throttle;
pub mod vault;

/// A request field that failed validation: which field, and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: std::borrow::Cow<'static, str>,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// The current time at millisecond precision: what storage can hold exactly on both backends.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    // Straight from the system clock (one calendar conversion, not two: the customer API's
    // entry point asks on every request).
    let millis = i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_else(chrono::Utc::now)
}

/// [`now`] from the coarse clock (behind by at most a few milliseconds, and cheaper to read): for
/// checks on the request path (expiry, last use), not for the records storage orders by time.
pub fn coarse_now() -> chrono::DateTime<chrono::Utc> {
    let millis = i64::try_from(clock::coarse_since_epoch().as_millis()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_else(chrono::Utc::now)
}

/// A hash map for the request path's caches and counters, keyed by ids and hashes the server
/// derived (never by raw client input): foldhash, seeded per process, instead of the standard
/// library's SipHash, which costs several times more for a short key. Build one with
/// `FastMap::default()`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Now, in whole seconds since the Unix epoch, without any calendar conversion: for clocks on
/// the hot path that need no `DateTime` (the forwarding assertion, metering's hour).
pub fn unix_seconds() -> u64 {
    clock::coarse_since_epoch().as_secs()
}

fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// An error and its sources, `outer: inner: innermost`, for logs and stored failure texts.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
