//! Tenancy: workspaces (the customer), their team members and roles, their applications and the
//! API keys of both. Types and rules only; persistence lives behind `authsome-storage`.

pub mod actor;
pub mod api_key;
pub mod application;
pub mod member;
pub mod workspace;

pub use actor::Actor;
pub use api_key::{ApiKey, KeyScope};
pub use application::{AppStatus, Application, Environment, Tenancy};
pub use member::{Account, Member, MemberStatus, Permission, Role};
pub use workspace::{
    KycStatus, PaymentStatus, Plan, RotationAllowance, Workspace, WorkspaceLimits, WorkspaceStatus,
};

use crate::ValidationError;

/// A URL-safe handle: 3–63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Slug(String);

impl Slug {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
        let ok = (3..=63).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                "must be 3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            ))
        }
    }

    /// Derives a slug from a display name, with a random suffix so it is very likely unique.
    pub fn derive(name: &str) -> Self {
        let mut base: String = name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        while base.contains("--") {
            base = base.replace("--", "-");
        }
        let base = base.trim_matches('-');
        let base: String = base.chars().take(48).collect();
        let suffix = &crate::keys::random_base62()[..6].to_lowercase();
        let slug = if base.is_empty() {
            format!("x-{suffix}")
        } else {
            format!("{}-{suffix}", base.trim_end_matches('-'))
        };
        Self(slug)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A display name: 1–100 characters after trimming, no control characters.
pub fn parse_name(field: &'static str, s: &str) -> Result<String, ValidationError> {
    let trimmed = s.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control)
    {
        return Err(ValidationError::new(
            field,
            "must be 1-100 characters without control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Metadata and config objects: a JSON object of at most 8 KiB when serialised.
pub fn parse_json_object(
    field: &'static str,
    value: serde_json::Value,
) -> Result<serde_json::Value, ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::new(field, "must be a JSON object"));
    }
    if value.to_string().len() > 8192 {
        return Err(ValidationError::new(field, "must be at most 8 KiB"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(Slug::parse("slug", "acme-prod").is_ok());
        for bad in ["ab", "-abc", "abc-", "Acme", "a_b_c", &"a".repeat(64)] {
            assert!(Slug::parse("slug", bad).is_err(), "{bad}");
        }
        let derived = Slug::derive("  Acme, Inc. — Production!! ");
        assert!(derived.as_str().starts_with("acme-inc-production-"));
        assert!(Slug::parse("slug", derived.as_str()).is_ok());
        assert!(Slug::parse("slug", Slug::derive("!!!").as_str()).is_ok());
        assert!(Slug::parse("slug", Slug::derive(&"é".repeat(200)).as_str()).is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("name", "  Acme ").unwrap(), "Acme");
        assert!(parse_name("name", "   ").is_err());
        assert!(parse_name("name", "a\u{0}b").is_err());
        assert!(parse_name("name", &"x".repeat(101)).is_err());
    }
}
