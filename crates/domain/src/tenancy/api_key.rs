//! API key records: what is stored about a key (never the key itself) and its scopes.

use chrono::{DateTime, Utc};

use crate::id::{AccountId, ApplicationId, KeyId, WorkspaceId};
use crate::keys::{key_prefix, KeyHash, KeyKind, KeyMode};
use crate::tenancy::member::Role;
use crate::tenancy::workspace::string_enum;

string_enum!(
/// What a secret key may reach on its application's admin API. No scopes means all of it.
KeyScope {
    UsersRead => "users:read",
    UsersWrite => "users:write",
    OrganizationsRead => "organizations:read",
    OrganizationsWrite => "organizations:write",
    SessionsRead => "sessions:read",
    SessionsWrite => "sessions:write",
});

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "key_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: KeyId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    /// Absent for workspace management keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub application_id: Option<ApplicationId>,
    #[serde(rename = "type")]
    pub kind: KeyKind,
    pub mode: KeyMode,
    pub name: Option<String>,
    pub scopes: Vec<KeyScope>,
    /// The role a management key acts with; absent for application keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Management keys: the account of the member whose key this is (who created it, or the
    /// owner it was reassigned to). It never acts with more than that member's role, and stops
    /// working when they leave. Absent for the bootstrap key and application keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub created_by: Option<AccountId>,
    #[serde(skip)]
    pub hash: KeyHash,
    pub last4: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set when the key was rolled (end of its grace period) or created with an expiry.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key that replaced this one when it was rolled.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub rolled_to: Option<KeyId>,
    /// Secret keys: the key itself sealed under the master key (base64), so the server can
    /// check HMAC-signed requests. Never shown.
    #[serde(skip)]
    pub signing_secret: Option<String>,
}

impl ApiKey {
    pub fn prefix(&self) -> &'static str {
        key_prefix(self.kind, self.mode)
    }

    /// What a listing shows instead of the key, e.g. `sk_live_…a1B2`.
    pub fn redacted(&self) -> String {
        format!("{}…{}", self.prefix(), self.last4)
    }

    /// A key verifies while it is neither revoked nor past its expiry.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// Whether the key may call an admin route that needs `scope`.
    pub fn has_scope(&self, scope: KeyScope) -> bool {
        self.kind == KeyKind::Secret && (self.scopes.is_empty() || self.scopes.contains(&scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn key(kind: KeyKind, scopes: Vec<KeyScope>) -> ApiKey {
        ApiKey {
            signing_secret: None,
            id: KeyId::new(),
            workspace_id: WorkspaceId::new(),
            application_id: Some(ApplicationId::new()),
            kind,
            mode: KeyMode::Test,
            name: None,
            scopes,
            role: None,
            created_by: None,
            hash: KeyHash::of("x"),
            last4: "abcd".into(),
            created_at: Utc::now(),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            rolled_to: None,
        }
    }

    #[test]
    fn usability_and_scopes() {
        let now = Utc::now();
        let mut k = key(KeyKind::Secret, vec![]);
        assert!(k.is_usable_at(now));
        assert!(k.has_scope(KeyScope::UsersWrite));
        assert_eq!(k.redacted(), "sk_test_…abcd");
        k.expires_at = Some(now + Duration::seconds(5));
        assert!(k.is_usable_at(now) && !k.is_usable_at(now + Duration::seconds(5)));
        k.revoked_at = Some(now);
        assert!(!k.is_usable_at(now));
        let scoped = key(KeyKind::Secret, vec![KeyScope::UsersRead]);
        assert!(scoped.has_scope(KeyScope::UsersRead) && !scoped.has_scope(KeyScope::UsersWrite));
        assert!(!key(KeyKind::Publishable, vec![]).has_scope(KeyScope::UsersRead));
    }
}
