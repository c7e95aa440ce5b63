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

/// The part of a client address that limits and throttles count by: an IPv4 address whole,
/// an IPv6 address by its /64 (one subscriber's usual allocation, which an attacker could
/// otherwise walk through). Text that is not an address is kept as it is.
pub fn client_bucket(address: &str) -> std::borrow::Cow<'_, str> {
    if !address.contains(':') {
        return std::borrow::Cow::Borrowed(address);
    }
    match address.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::borrow::Cow::Owned(v4.to_string()),
            None => {
                let s = v6.segments();
                std::borrow::Cow::Owned(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
            }
        },
        Err(_) => std::borrow::Cow::Borrowed(address),
    }
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

    #[test]
    fn ipv6_clients_count_by_their_64_and_ipv4_whole() {
        assert_eq!(client_bucket("203.0.113.9"), "203.0.113.9");
        assert_eq!(
            client_bucket("2001:db8:1:2:aaaa::1"),
            client_bucket("2001:db8:1:2:ffff:1:2:3")
        );
        assert_ne!(
            client_bucket("2001:db8:1:2::1"),
            client_bucket("2001:db8:1:3::1")
        );
        assert_eq!(client_bucket("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(client_bucket("not an address"), "not an address");
    }
}
