//! The application: one isolated environment of a workspace, reached at `/v1/{appId}`.

use chrono::{DateTime, Duration, Utc};

use crate::id::{ApplicationId, WorkspaceId};
use crate::keys::KeyMode;
use crate::tenancy::workspace::string_enum;
use crate::ValidationError;

string_enum!(
    /// Production applications get live keys; staging and development get test keys.
    Environment { Production => "production", Staging => "staging", Development => "development" });
string_enum!(
    /// Shared: served by the in-process engine. Dedicated: forwarded to the application's upstreams.
    Tenancy { Shared => "shared", Dedicated => "dedicated" });
string_enum!(
    /// Lifecycle of an application.
    AppStatus { Provisioning => "provisioning", Active => "active", Suspended => "suspended", Deleting => "deleting" });

/// How long a deleted application can still be restored.
pub const UNDELETE_WINDOW: Duration = Duration::days(7);

impl Environment {
    pub fn key_mode(self) -> KeyMode {
        match self {
            Environment::Production => KeyMode::Live,
            Environment::Staging | Environment::Development => KeyMode::Test,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Application {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "app_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: ApplicationId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub slug: String,
    pub environment: Environment,
    pub tenancy: Tenancy,
    pub status: AppStatus,
    pub region: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
    /// Instances a dedicated application's traffic is forwarded to; empty when shared.
    pub upstreams: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// When a deleted application's data is removed for good; until then it can be restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_at: Option<DateTime<Utc>>,
    /// When its database became ready.
    pub provisioned_at: Option<DateTime<Utc>>,
    /// Failed provisioning attempts so far (retried with backoff).
    pub provision_attempts: u32,
    /// The last provisioning error, while it is still provisioning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision_error: Option<String>,
}

impl Application {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// Checks the tenancy / upstreams pair: a dedicated application has at most 16 distinct
/// `http://host[:port]` upstreams (none yet: it waits for its instances, and answers 503); a
/// shared one has none. Each comes back in its normal form (`http://2130706433` is
/// `http://127.0.0.1`), which is what the gateway connects to. Where an upstream may point is
/// the operator's allowlist's to decide ([`crate::egress`]), after resolution.
///
/// The hop to an instance is plain HTTP on the deployment's private network (or a service
/// mesh's mTLS): the gateway does not speak TLS to instances.
pub fn parse_upstreams(
    tenancy: Tenancy,
    upstreams: Option<Vec<String>>,
) -> Result<Vec<String>, ValidationError> {
    let upstreams = upstreams.unwrap_or_default();
    match tenancy {
        Tenancy::Shared if !upstreams.is_empty() => Err(ValidationError::new(
            "upstreams",
            "only dedicated applications have upstreams",
        )),
        Tenancy::Shared => Ok(upstreams),
        Tenancy::Dedicated if upstreams.len() > 16 => Err(ValidationError::new(
            "upstreams",
            "a dedicated application has at most 16 upstreams",
        )),
        Tenancy::Dedicated => {
            let mut normal: Vec<String> = Vec::with_capacity(upstreams.len());
            for u in upstreams {
                let u = upstream_base(&u)?;
                if !normal.contains(&u) {
                    normal.push(u);
                }
            }
            Ok(normal)
        }
    }
}

/// One upstream in its normal form, `http://host[:port]`.
fn upstream_base(u: &str) -> Result<String, ValidationError> {
    let parsed = url::Url::parse(u)
        .map_err(|_| ValidationError::new("upstreams", "each upstream must be an http:// URL"))?;
    if parsed.scheme() == "https" {
        return Err(ValidationError::new(
            "upstreams",
            "https upstreams are not supported: the gateway reaches instances over plain HTTP \
             on a private network (put TLS in a service mesh)",
        ));
    }
    let plain = parsed.scheme() == "http"
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.path() == "/";
    match parsed.host_str() {
        Some(host) if plain => Ok(match parsed.port() {
            Some(port) => format!("http://{host}:{port}"),
            None => format!("http://{host}"),
        }),
        _ => Err(ValidationError::new(
            "upstreams",
            "each upstream must be http://host[:port] with no path or credentials",
        )),
    }
}

/// A region name: 1–32 characters of `a-z`, `0-9`, `-`.
pub fn parse_region(s: &str) -> Result<String, ValidationError> {
    if (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(s.to_owned())
    } else {
        Err(ValidationError::new(
            "region",
            "must be 1-32 characters of a-z, 0-9 and '-'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_follow_tenancy() {
        assert_eq!(
            parse_upstreams(Tenancy::Shared, None).unwrap(),
            Vec::<String>::new()
        );
        assert!(parse_upstreams(Tenancy::Shared, Some(vec!["http://a:1".into()])).is_err());
        // A dedicated application may wait for its instances.
        assert_eq!(
            parse_upstreams(Tenancy::Dedicated, None).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_upstreams(
                Tenancy::Dedicated,
                Some(vec![
                    "http://10.0.0.1:8080/".into(),
                    "HTTP://10.0.0.1:8080".into()
                ])
            )
            .unwrap(),
            vec!["http://10.0.0.1:8080".to_owned()]
        );
        // Other spellings of an address come back as the address.
        for (written, normal) in [
            ("http://2130706433", "http://127.0.0.1"),
            ("http://0x7f.1:81", "http://127.0.0.1:81"),
            ("http://017700000001", "http://127.0.0.1"),
            ("http://[::ffff:7f00:1]:80", "http://[::ffff:7f00:1]"),
            ("http://Auth.Internal:8080", "http://auth.internal:8080"),
        ] {
            assert_eq!(
                parse_upstreams(Tenancy::Dedicated, Some(vec![written.into()])).unwrap(),
                vec![normal.to_owned()],
                "{written}"
            );
        }
        assert!(parse_upstreams(
            Tenancy::Dedicated,
            Some((0..17).map(|i| format!("http://10.0.0.{i}")).collect())
        )
        .is_err());
        for bad in [
            "ftp://a",
            "https://a:8443",
            "http://u:p@a",
            "http://a/x",
            "nope",
            "http://a?x=1",
        ] {
            assert!(
                parse_upstreams(Tenancy::Dedicated, Some(vec![bad.into()])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn environments_map_to_key_modes() {
        assert_eq!(Environment::Production.key_mode(), KeyMode::Live);
        assert_eq!(Environment::Staging.key_mode(), KeyMode::Test);
        assert_eq!(Environment::Development.key_mode(), KeyMode::Test);
    }
}
