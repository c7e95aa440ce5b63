//! Which network destinations the server may open connections to on someone's behalf: the
//! instances of dedicated applications now, and later webhooks, rotation connectors and OIDC
//! discovery. A destination is a host as written (an IP literal or a name) and the addresses it
//! resolved to; callers resolve, this module decides, and the caller then connects to exactly
//! an address that was decided on (so a name cannot resolve differently in between).
//!
//! Some addresses are never reached unless the operator lists them explicitly, with an entry
//! that lies inside the special range itself (`127.0.0.1/32`, `169.254.169.254/32`, not
//! `0.0.0.0/0`): loopback, link-local (cloud metadata services live there), "this network",
//! multicast, reserved and broadcast, and the metadata addresses of clouds that put theirs
//! elsewhere. The same holds for the names that mean this host or a metadata service
//! (`localhost`, `metadata.google.internal`, …), which must be listed by name. An IPv4 address
//! written as IPv6 (`::ffff:127.0.0.1`) is judged as the IPv4 address.
//!
//! With an allowlist (`AUTHSOME_UPSTREAM_ALLOW`: CIDRs and host names, `*.` for a suffix), a
//! destination must also be on it: a listed name, or addresses inside listed networks. Without
//! one, every other address is allowed, unless the policy refuses private networks too (the
//! stricter form outbound calls to customer-given URLs will take).

use std::net::IpAddr;

use ipnet::IpNet;

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefused {
    #[error("{0} is a loopback, link-local, metadata or reserved address that the allowlist does not list explicitly")]
    SpecialAddress(IpAddr),
    #[error("{0} is a private address, and private networks are not allowed")]
    PrivateAddress(IpAddr),
    #[error("{0} is not in the allowlist")]
    AddressNotListed(IpAddr),
    #[error("`{0}` names this host or a metadata service and is not listed by name")]
    SpecialName(String),
    #[error("`{0}` is not a valid host")]
    BadHost(String),
}

/// A parse failure of an allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is neither a CIDR (10.0.0.0/8, fd00::/8), an IP address nor a host name (auth.internal, *.svc.cluster.local)")]
pub struct BadEntry(pub String);

/// Where outbound connections may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    networks: Vec<IpNet>,
    /// Lowercase names; `*.suffix` entries are kept as `.suffix`.
    names: Vec<String>,
    /// Whether an allowlist was given: then a destination must be on it.
    listed: bool,
    /// Whether private networks (RFC 1918, unique local, shared address space) are refused.
    deny_private: bool,
}

/// The ranges never reached unless listed explicitly.
fn special_networks() -> &'static [IpNet] {
    use std::sync::OnceLock;
    static NETS: OnceLock<Vec<IpNet>> = OnceLock::new();
    NETS.get_or_init(|| {
        [
            "0.0.0.0/8",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "224.0.0.0/4",
            "240.0.0.0/4",
            // Alibaba Cloud's metadata service.
            "100.100.100.200/32",
            "::/128",
            "::1/128",
            "fe80::/10",
            "ff00::/8",
            // AWS's IPv6 metadata service.
            "fd00:ec2::254/128",
        ]
        .iter()
        .map(|n| n.parse().expect("a valid network"))
        .collect()
    })
}

fn private_networks() -> &'static [IpNet] {
    use std::sync::OnceLock;
    static NETS: OnceLock<Vec<IpNet>> = OnceLock::new();
    NETS.get_or_init(|| {
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "fc00::/7",
        ]
        .iter()
        .map(|n| n.parse().expect("a valid network"))
        .collect()
    })
}

/// Whether `ip` is on the public internet: neither private nor special (loopback, link-local,
/// metadata and the like). Plain-text HTTP goes only to addresses that are not.
pub fn is_public(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    !special_networks()
        .iter()
        .chain(private_networks())
        .any(|n| n.contains(&ip))
}

/// Names of this host or of metadata services, refused unless listed by name.
const SPECIAL_NAMES: [&str; 7] = [
    "localhost",
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
];

/// An IPv4 address written as IPv6 (mapped or compatible) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

impl EgressPolicy {
    /// No allowlist: everything but the special addresses and names.
    pub fn open() -> Self {
        Self::default()
    }

    /// An allowlist, comma- or whitespace-separated: CIDRs, IP addresses, host names and
    /// `*.suffix` patterns. Empty: [`EgressPolicy::open`].
    pub fn parse(list: &str) -> Result<Self, BadEntry> {
        let mut policy = Self::default();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            policy.listed = true;
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.networks.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(canonical(ip)));
            } else if let Some(name) = valid_name(entry.strip_prefix("*.").unwrap_or(entry)) {
                policy.names.push(if entry.starts_with("*.") {
                    format!(".{name}")
                } else {
                    name
                });
            } else {
                return Err(BadEntry(entry.to_owned()));
            }
        }
        Ok(policy)
    }

    /// Outbound calls to URLs customers give (identity issuers now; webhooks and connectors
    /// later): any public address; private networks and the special addresses only when
    /// `exceptions` (CIDRs, addresses, host names) lists them.
    pub fn public_with(exceptions: &str) -> Result<Self, BadEntry> {
        let mut policy = Self::parse(exceptions)?;
        policy.listed = false;
        policy.deny_private = true;
        Ok(policy)
    }

    /// The same policy, refusing private networks too unless they are listed.
    pub fn without_private(mut self) -> Self {
        self.deny_private = true;
        self
    }

    /// Whether an allowlist was given.
    pub fn is_listed(&self) -> bool {
        self.listed
    }

    /// Whether `host` (a URL's host: an IP literal, in brackets for IPv6, or a name) is refused
    /// before it is resolved, and whether a name is on the allowlist by name.
    pub fn check_host(&self, host: &str) -> Result<Host, EgressRefused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_address(false, ip)?;
            return Ok(Host::Address(canonical(ip)));
        }
        let name = valid_name(host).ok_or_else(|| EgressRefused::BadHost(host.to_owned()))?;
        let exactly_listed = self.names.contains(&name);
        let listed = exactly_listed
            || self
                .names
                .iter()
                .any(|n| n.starts_with('.') && name.ends_with(n.as_str()));
        let special = SPECIAL_NAMES.contains(&name.as_str()) || name.ends_with(".localhost");
        if special && !exactly_listed {
            return Err(EgressRefused::SpecialName(name));
        }
        Ok(Host::Name { listed })
    }

    /// Whether one address that a host resolved to may be reached. `name_listed`: the host is a
    /// name on the allowlist ([`Host::Name`]), which admits its addresses unless they are
    /// special (or private, when those are refused) and not listed explicitly.
    pub fn check_address(&self, name_listed: bool, ip: IpAddr) -> Result<(), EgressRefused> {
        let ip = canonical(ip);
        let explicitly = |ranges: &[IpNet]| {
            self.networks.iter().any(|listed| {
                listed.contains(&ip) && ranges.iter().any(|range| range.contains(listed))
            })
        };
        if special_networks().iter().any(|n| n.contains(&ip)) {
            return if explicitly(special_networks()) {
                Ok(())
            } else {
                Err(EgressRefused::SpecialAddress(ip))
            };
        }
        let in_list = self.networks.iter().any(|n| n.contains(&ip));
        if self.deny_private && private_networks().iter().any(|n| n.contains(&ip)) && !in_list {
            return Err(EgressRefused::PrivateAddress(ip));
        }
        if self.listed && !name_listed && !in_list {
            return Err(EgressRefused::AddressNotListed(ip));
        }
        Ok(())
    }

    /// [`check_host`](Self::check_host), then [`check_address`](Self::check_address) for one
    /// address the host resolved to.
    pub fn check(&self, host: &str, resolved: IpAddr) -> Result<(), EgressRefused> {
        match self.check_host(host)? {
            Host::Address(_) => self.check_address(false, resolved),
            Host::Name { listed } => self.check_address(listed, resolved),
        }
    }
}

/// What [`EgressPolicy::check_host`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// An IP literal, allowed.
    Address(IpAddr),
    /// A name, to be resolved; `listed` when the allowlist names it.
    Name { listed: bool },
}

/// A DNS name in lowercase without a trailing dot: labels of letters, digits, `-` and `_`.
fn valid_name(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    ok.then_some(name)
}

#[cfg(test)]
mod tests {

    #[test]
    fn outbound_policies_allow_public_addresses_and_listed_exceptions_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let strict = EgressPolicy::public_with("").unwrap();
        assert!(strict.check("issuer.example", ip("93.184.216.34")).is_ok());
        for private in [
            "10.0.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "fd00::1",
        ] {
            assert!(
                strict.check("issuer.example", ip(private)).is_err(),
                "{private}"
            );
        }
        let listed = EgressPolicy::public_with("127.0.0.1/32, 10.1.0.0/16").unwrap();
        assert!(listed.check("127.0.0.1", ip("127.0.0.1")).is_ok());
        assert!(listed.check("idp.internal", ip("10.1.2.3")).is_ok());
        assert!(listed.check("idp.internal", ip("10.2.0.1")).is_err());
        assert!(
            listed.check("issuer.example", ip("93.184.216.34")).is_ok(),
            "public stays open"
        );
        assert!(EgressPolicy::public_with("not a network!").is_err());
    }
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses_need_an_explicit_entry() {
        let open = EgressPolicy::open();
        for special in [
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "100.100.100.200",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                matches!(
                    open.check_address(false, ip(special)),
                    Err(EgressRefused::SpecialAddress(_))
                ),
                "{special}"
            );
        }
        for ordinary in [
            "10.0.0.1",
            "192.168.1.10",
            "203.0.113.7",
            "fd12::1",
            "2001:db8::1",
        ] {
            assert_eq!(
                open.check_address(false, ip(ordinary)),
                Ok(()),
                "{ordinary}"
            );
        }
        // Listing everything is not listing loopback; listing loopback is.
        let everything = EgressPolicy::parse("0.0.0.0/0, ::/0").unwrap();
        assert!(everything.check_address(false, ip("127.0.0.1")).is_err());
        assert!(everything
            .check_address(false, ip("169.254.169.254"))
            .is_err());
        let loopback = EgressPolicy::parse("127.0.0.0/8").unwrap();
        assert_eq!(loopback.check_address(false, ip("127.0.0.1")), Ok(()));
        assert_eq!(
            loopback.check_address(false, ip("::ffff:127.0.0.1")),
            Ok(())
        );
        assert!(loopback
            .check_address(false, ip("169.254.169.254"))
            .is_err());
        let one = EgressPolicy::parse("127.0.0.1").unwrap();
        assert_eq!(one.check_address(false, ip("127.0.0.1")), Ok(()));
        assert!(one.check_address(false, ip("127.0.0.2")).is_err());
    }

    #[test]
    fn an_allowlist_bounds_every_destination() {
        let policy = EgressPolicy::parse("10.0.0.0/8 auth.internal,*.svc.cluster.local").unwrap();
        assert!(policy.is_listed());
        assert_eq!(policy.check("10.1.2.3", ip("10.1.2.3")), Ok(()));
        assert_eq!(
            policy.check("192.168.0.1", ip("192.168.0.1")),
            Err(EgressRefused::AddressNotListed(ip("192.168.0.1")))
        );
        // A listed name may resolve anywhere but to a special address.
        assert_eq!(policy.check("auth.internal", ip("192.168.0.9")), Ok(()));
        assert_eq!(policy.check("AUTH.internal.", ip("192.168.0.9")), Ok(()));
        assert!(policy.check("auth.internal", ip("127.0.0.1")).is_err());
        assert_eq!(
            policy.check("a.ns.svc.cluster.local", ip("172.16.0.4")),
            Ok(())
        );
        // An unlisted name must resolve inside a listed network.
        assert_eq!(policy.check("other.internal", ip("10.9.9.9")), Ok(()));
        assert!(policy.check("other.internal", ip("172.16.0.4")).is_err());
        assert!(policy
            .check("evil-svc.cluster.local", ip("172.16.0.4"))
            .is_err());
    }

    #[test]
    fn special_names_are_refused_unless_listed_by_name() {
        let open = EgressPolicy::open();
        for name in [
            "localhost",
            "LOCALHOST.",
            "api.localhost",
            "metadata.google.internal",
            "metadata",
            "instance-data",
        ] {
            assert!(
                matches!(open.check_host(name), Err(EgressRefused::SpecialName(_))),
                "{name}"
            );
        }
        assert!(open.check_host("bad host").is_err());
        assert_eq!(
            open.check_host("[::1]"),
            Err(EgressRefused::SpecialAddress(ip("::1")))
        );
        let listed = EgressPolicy::parse("localhost,127.0.0.1/32").unwrap();
        assert_eq!(listed.check("localhost", ip("127.0.0.1")), Ok(()));
        // A suffix pattern does not list a special name.
        let suffix = EgressPolicy::parse("*.localhost").unwrap();
        assert!(suffix.check_host("a.localhost").is_err());
    }

    #[test]
    fn private_networks_can_be_refused_too() {
        let public = EgressPolicy::open().without_private();
        assert!(matches!(
            public.check_address(false, ip("10.0.0.1")),
            Err(EgressRefused::PrivateAddress(_))
        ));
        assert!(public.check_address(false, ip("fd12::1")).is_err());
        assert_eq!(public.check_address(false, ip("203.0.113.7")), Ok(()));
        let some = EgressPolicy::parse("10.1.0.0/16")
            .unwrap()
            .without_private();
        assert_eq!(some.check_address(false, ip("10.1.2.3")), Ok(()));
    }

    #[test]
    fn bad_entries_are_named() {
        assert_eq!(
            EgressPolicy::parse("10.0.0.0/8, host!").unwrap_err(),
            BadEntry("host!".into())
        );
        assert_eq!(
            EgressPolicy::parse("10.0.0.0/33").unwrap_err(),
            BadEntry("10.0.0.0/33".into())
        );
        assert_eq!(EgressPolicy::parse("").unwrap(), EgressPolicy::open());
    }
}
