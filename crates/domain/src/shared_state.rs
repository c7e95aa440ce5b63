//! Names of the state that replicas share (in Redis when `AUTHSOME_REDIS_URL` is set): rate-limit
//! cells, sign-in failure counters, one-time values. Everything that belongs to one application
//! is named under `app:{appId}:`, so its keys in Redis share one prefix and a per-application
//! Redis ACL user can be confined to exactly `{prefix}app:{appId}:*`.
//!
//! Names only: no I/O here, and nothing but these functions builds such names.

/// The name of a piece of `app`'s shared state: `app:{app}:{kind}:{rest}`.
pub fn app_scoped(app: &str, kind: &str, rest: &str) -> String {
    // Built on every customer-API request (the rate-limit cell): concatenated, not formatted.
    let mut key = String::with_capacity(6 + app.len() + kind.len() + rest.len());
    for part in ["app:", app, ":", kind, ":", rest] {
        key.push_str(part);
    }
    key
}

/// The Redis key pattern that covers every key of `app` under the deployment's `prefix`.
pub fn app_key_pattern(prefix: &str, app: &str) -> String {
    format!("{prefix}app:{app}:*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_an_application_matches_its_pattern() {
        let name = app_scoped("app_1", "ratelimit", "key_2");
        assert_eq!(name, "app:app_1:ratelimit:key_2");
        let pattern = app_key_pattern("authsome:", "app_1");
        let prefix = pattern.strip_suffix('*').unwrap();
        assert!(format!("authsome:{name}").starts_with(prefix));
        // Another application's names do not.
        assert!(!format!("authsome:{}", app_scoped("app_10", "x", "y")).starts_with(prefix));
    }
}
