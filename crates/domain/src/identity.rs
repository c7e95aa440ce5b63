//! The identity model of one application: its users, their sessions and refresh tokens, and the
//! application's token-signing keys. Every value here lives in the application's own database;
//! none carries an application id, because the database is the boundary.

use chrono::{DateTime, Duration, Utc};

use crate::id::{SessionId, UserId};
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
    pub created_at: DateTime<Utc>,
    /// When it stops signing (it keeps verifying until its last token has expired).
    pub retired_at: Option<DateTime<Utc>>,
}

/// Application users' passwords: 8 to 256 bytes (NIST SP 800-63B).
pub fn check_user_password(password: &str) -> Result<(), ValidationError> {
    if password.chars().count() < 8 {
        return Err(ValidationError::new(
            "password",
            "must be at least 8 characters",
        ));
    }
    if password.len() > 256 {
        return Err(ValidationError::new(
            "password",
            "must be at most 256 bytes",
        ));
    }
    Ok(())
}
