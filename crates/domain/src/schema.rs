//! The rules of [`crate`]'s `parse` functions as JSON Schemas, for the API description: what a
//! client or a schema-driven generator builds from them is what the server accepts. Patterns are
//! ECMA-262 and, where a rule cannot be said exactly (trimming, byte lengths), a little stricter
//! than the server, never looser.

use utoipa::openapi::schema::{KnownFormat, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{Object, ObjectBuilder};

/// A string of `min..=max` characters matching `pattern`.
fn text(pattern: &str, min: usize, max: usize, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
}

/// The same schema that also admits `null` (a field that may be absent or null).
fn or_null(mut schema: Object) -> Object {
    let kind = match &schema.schema_type {
        SchemaType::Type(t) => t.clone(),
        _ => Type::String,
    };
    schema.schema_type = SchemaType::from_iter([kind, Type::Null]);
    schema
}

/// [`crate::tenancy::parse_name`]: 1–100 characters after trimming, no control characters.
pub fn name() -> Object {
    text(
        r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
        1,
        100,
        "1-100 characters after trimming, without control characters",
    )
}

/// [`name`], or null.
pub fn optional_name() -> Object {
    or_null(name())
}

/// [`crate::tenancy::Slug`]: 3–63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
pub fn slug() -> Object {
    text(
        "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        3,
        63,
        "3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
    )
}

/// [`slug`], or null (derived from the name when absent).
pub fn optional_slug() -> Object {
    or_null(slug())
}

/// [`crate::tenancy::member::parse_email`]: an address with a dotted domain, at most 254 bytes.
pub fn email() -> Object {
    let mut schema = text(
        r"^[^\s@\u0000-\u001f\u007f-\u009f]+@[^\s@.\u0000-\u001f\u007f-\u009f][^\s@\u0000-\u001f\u007f-\u009f]*\.[^\s@\u0000-\u001f\u007f-\u009f]*[^\s@.\u0000-\u001f\u007f-\u009f]$",
        3,
        // 254 bytes: 63 characters of up to four bytes always fit.
        254,
        "An email address (at most 254 bytes; compared case-insensitively)",
    );
    schema.format = Some(SchemaFormat::KnownFormat(KnownFormat::Email));
    schema
}

/// [`email`], or null.
pub fn optional_email() -> Object {
    or_null(email())
}

/// A new application user's password under the default [`crate::password::PasswordPolicy`].
pub fn user_password() -> Object {
    text(
        ".*",
        8,
        crate::password::MAX_PASSWORD_CHARS,
        "8-256 characters (the minimum is the operator's AUTHSOME_PASSWORD_MIN_LENGTH, 8 by \
         default); common passwords are refused",
    )
}

/// [`user_password`], or null.
pub fn optional_user_password() -> Object {
    or_null(user_password())
}

/// A team member's new password: [`crate::password::check_policy`].
pub fn member_password() -> Object {
    text(
        ".*",
        12,
        crate::password::MAX_PASSWORD_CHARS,
        "12-256 characters",
    )
}

/// A password presented to sign in: no password longer than anyone can set is ever right.
pub fn presented_password() -> Object {
    text(
        ".*",
        1,
        crate::password::MAX_PASSWORD_CHARS,
        "The password (at most 256 characters)",
    )
}

/// [`crate::identity::parse_org_role`]: `admin`, `member`, `auditor` or a custom role.
pub fn org_role() -> Object {
    text(
        "^[a-z0-9_:-]{1,32}$",
        1,
        32,
        "`admin`, `member`, `auditor` or a custom role of 1-32 characters of a-z, 0-9, _, -, :",
    )
}

/// [`crate::identity::parse_month`]: a calendar month, `YYYY-MM`.
pub fn month() -> Object {
    text(
        "^[0-9]{4}-(0[1-9]|1[0-2])$",
        7,
        7,
        "A calendar month (UTC), YYYY-MM",
    )
}

/// An identifier of [`crate::id`] with `prefix`: the prefix, `_`, 26 lowercase Crockford
/// base32 characters.
pub fn id(prefix: &str) -> Object {
    text(
        &format!("^{prefix}_[0-7][0-9a-hjkmnp-tv-z]{{25}}$"),
        prefix.len() + 27,
        prefix.len() + 27,
        &format!("An id: `{prefix}_` and 26 lowercase base32 characters"),
    )
}

/// A user id (`usr_…`).
pub fn user_id() -> Object {
    id("usr")
}

/// A user id, or null.
pub fn optional_user_id() -> Object {
    or_null(user_id())
}

/// An organization id (`org_…`), or null.
pub fn optional_organization_id() -> Object {
    or_null(id("org"))
}

/// [`crate::tenancy::application::parse_region`], or null (the operator's default region).
pub fn optional_region() -> Object {
    or_null(text(
        "^[a-z0-9-]{1,32}$",
        1,
        32,
        "1-32 characters of a-z, 0-9 and '-'",
    ))
}

/// A dedicated application's instances, or null: at most 16 `http://host[:port]`.
pub fn optional_upstreams() -> utoipa::openapi::Array {
    let upstream = text(
        "^http://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$",
        8,
        300,
        "http://host[:port]: no https (TLS belongs to a mesh), path, query or credentials",
    );
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(upstream)
        .max_items(Some(16))
        .description(Some(
            "A dedicated application's instances (at most 16), within the operator's \
             AUTHSOME_UPSTREAM_ALLOW; only dedicated applications have any",
        ))
        .build()
}

/// One of `values`.
pub fn one_of(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

/// [`crate::tenancy::parse_json_object`]: a JSON object of at most 8 KiB serialised, or null.
pub fn optional_json_object() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some("A JSON object of at most 8 KiB when serialised"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{OrganizationId, UserId};

    fn matches(schema: &Object, value: &str) -> bool {
        let pattern = schema.pattern.as_deref().unwrap_or_default();
        // The patterns use only what ECMA-262 and the regex crate read alike.
        regex::Regex::new(pattern).unwrap().is_match(value)
    }

    #[test]
    fn patterns_agree_with_the_parsers() {
        for (value, ok) in [
            ("acme-prod", true),
            ("ab", false),
            ("-abc", false),
            ("abc-", false),
            ("a_b", false),
        ] {
            assert_eq!(matches(&slug(), value), ok, "{value}");
            assert_eq!(
                crate::tenancy::Slug::parse("slug", value).is_ok(),
                ok,
                "{value}"
            );
        }
        for (value, ok) in [
            ("ada@example.com", true),
            ("a@b", false),
            ("a b@c.d", false),
            ("a@.b.c", false),
            ("a@b.c.", false),
        ] {
            assert_eq!(matches(&email(), value), ok, "{value}");
            assert_eq!(
                crate::tenancy::member::parse_email(value).is_ok(),
                ok,
                "{value}"
            );
        }
        for (value, ok) in [
            ("admin", true),
            ("billing:read", true),
            ("Admin", false),
            ("", false),
        ] {
            assert_eq!(matches(&org_role(), value), ok, "{value}");
            assert_eq!(
                crate::identity::parse_org_role(value).is_ok(),
                ok,
                "{value}"
            );
        }
        for (value, ok) in [("2026-12", true), ("2026-13", false), ("2026-1", false)] {
            assert_eq!(matches(&month(), value), ok, "{value}");
            assert_eq!(crate::identity::parse_month(value).is_ok(), ok, "{value}");
        }
        let user = UserId::new();
        assert!(matches(&user_id(), user.as_str()));
        assert!(!matches(&user_id(), OrganizationId::new().as_str()));
        assert!(matches(&id("org"), OrganizationId::new().as_str()));
        for (value, ok) in [("Acme", true), ("  ", false), ("a\u{7}b", false)] {
            assert_eq!(matches(&name(), value), ok, "{value}");
            assert_eq!(
                crate::tenancy::parse_name("name", value).is_ok(),
                ok,
                "{value}"
            );
        }
    }
}
