//! The identity model of one application: its users, their sessions and refresh tokens, and the
//! application's token-signing keys. Every value here lives in the application's own database;
//! none carries an application id, because the database is the boundary.

use chrono::{DateTime, Duration, Utc};

use crate::id::{InvitationId, OrgMembershipId, OrganizationId, SessionId, UserId};
use crate::ValidationError;

/// Access-token lifetime.
pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(10);
/// A session (and its refresh tokens) lives this long without re-authentication.
pub const SESSION_TTL: Duration = Duration::days(30);
/// A rotated refresh token presented again within this window is a concurrent double-submit,
/// not theft: it gets a fresh token instead of revoking the session.
pub const REFRESH_REUSE_GRACE: Duration = Duration::seconds(10);

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "usr_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    /// Readable by the user's own frontend.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub public_metadata: serde_json::Value,
    /// Readable only with the secret key: never serialised with the user itself (the admin API
    /// adds it explicitly).
    #[serde(skip)]
    pub private_metadata: serde_json::Value,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: SessionId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: UserId,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The organization the user acts in, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub active_organization_id: Option<OrganizationId>,
    /// RFC 9449: the thumbprint of the key the session's tokens are bound to (DPoP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
}

impl Session {
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A stored refresh token (its SHA-256 only) and where it stands in its rotation chain.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRecord {
    pub hash: crate::keys::KeyHash,
    pub session_id: SessionId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
}

/// An application's Ed25519 signing key; the private half sealed under the master key.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub sealed_private: Vec<u8>,
    pub public: [u8; 32],
    /// Published in JWKS from here on.
    pub created_at: DateTime<Utc>,
    /// Signs from here on (later than `created_at` for a rotation, so verifiers fetch it first).
    pub activates_at: DateTime<Utc>,
    /// When it stops signing (it keeps verifying until its last token has expired).
    pub retired_at: Option<DateTime<Utc>>,
}

impl SigningKeyRecord {
    pub fn signs_at(&self, now: DateTime<Utc>) -> bool {
        self.activates_at <= now && self.retired_at.is_none_or(|r| now < r)
    }

    /// Whether a token it signed may still be live, so it belongs in JWKS.
    pub fn verifies_at(&self, now: DateTime<Utc>) -> bool {
        self.retired_at.is_none_or(|r| now < r + ACCESS_TOKEN_TTL)
    }
}

/// An organization (org unit) of an application's users.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "org_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: OrganizationId,
    pub name: String,
    pub slug: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user's membership of an organization, with a role: `admin`, `member`, `auditor` or a
/// custom role name.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrgMembership {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: OrgMembershipId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub organization_id: OrganizationId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub user_id: UserId,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An invitation into an organization, by email; the token is stored as SHA-256 only.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgInvitation {
    pub id: InvitationId,
    pub organization_id: OrganizationId,
    pub email: String,
    pub role: String,
    pub token_hash: crate::keys::KeyHash,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
}

/// How long an organization invitation stays valid.
pub const ORG_INVITATION_TTL: Duration = Duration::days(7);

/// An organization role: the built-ins `admin`, `member`, `auditor`, or a custom name of 1–32
/// characters of `a-z`, `0-9`, `_`, `-`, `:`.
pub fn parse_org_role(role: &str) -> Result<String, ValidationError> {
    let ok = (1..=32).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-:".contains(&b));
    if ok {
        Ok(role.to_owned())
    } else {
        Err(ValidationError::new(
            "role",
            "must be admin, member, auditor or a custom name of 1-32 characters of a-z, 0-9, _, -, :",
        ))
    }
}

/// The calendar month (UTC) of a time, as `YYYY-MM`: the unit of MAU.
pub fn month_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m").to_string()
}

/// Parses a `YYYY-MM` month.
pub fn parse_month(s: &str) -> Result<String, ValidationError> {
    let valid = s.len() == 7
        && s.as_bytes()[4] == b'-'
        && s[..4].bytes().all(|b| b.is_ascii_digit())
        && s[5..].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m));
    if valid {
        Ok(s.to_owned())
    } else {
        Err(ValidationError::new("month", "must be YYYY-MM"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_roles_and_months() {
        for ok in [
            "admin",
            "member",
            "auditor",
            "billing:viewer",
            "team_lead-2",
        ] {
            assert!(parse_org_role(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Admin", "a b", &"x".repeat(33)] {
            assert!(parse_org_role(bad).is_err(), "{bad}");
        }
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(month_of(t), "2026-11");
        assert!(parse_month("2026-11").is_ok());
        for bad in ["2026-13", "2026-1", "26-11", "2026/11"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signing_key_lifecycle() {
        let now = Utc::now();
        let mut key = SigningKeyRecord {
            kid: "k".into(),
            sealed_private: vec![],
            public: [0; 32],
            created_at: now,
            activates_at: now + Duration::minutes(5),
            retired_at: None,
        };
        assert!(
            !key.signs_at(now) && key.verifies_at(now),
            "published before it signs"
        );
        assert!(key.signs_at(now + Duration::minutes(5)));
        key.retired_at = Some(now + Duration::hours(1));
        assert!(!key.signs_at(now + Duration::hours(1)));
        assert!(key.verifies_at(now + Duration::hours(1) + Duration::minutes(9)));
        assert!(!key.verifies_at(now + Duration::hours(1) + ACCESS_TOKEN_TTL));
    }
}
