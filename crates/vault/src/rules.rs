//! What the vault accepts: names, values, version counts.

use authsome_domain::ValidationError;

/// The largest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Versions a vault keeps of each secret unless told otherwise.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;
/// The most versions a vault may keep of each secret.
pub const MAX_VERSIONS_LIMIT: u32 = 1000;
/// The most tags a secret may carry.
pub const MAX_TAGS: usize = 32;

/// A secret's name: 1-128 of `A-Z`, `a-z`, `0-9`, `_`, `.`, `-`.
pub fn parse_secret_name(name: &str) -> Result<String, ValidationError> {
    name_rule("name", name, 128)
}

/// A vault's name: 1-64 of the same characters (`production`, `ci`).
pub fn parse_vault_name(name: &str) -> Result<String, ValidationError> {
    name_rule("name", name, 64)
}

fn name_rule(field: &'static str, name: &str, max: usize) -> Result<String, ValidationError> {
    let ok = (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ValidationError::new(
            field,
            format!("must be 1-{max} characters of A-Z, a-z, 0-9, '_', '.' and '-'"),
        ))
    }
}

/// A value of at most [`MAX_VALUE_BYTES`].
pub fn check_value(value: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ValidationError::new("value", "must be at most 64 KiB"));
    }
    Ok(())
}

/// `maxVersions`: 1 to [`MAX_VERSIONS_LIMIT`].
pub fn check_max_versions(n: u32) -> Result<u32, ValidationError> {
    if (1..=MAX_VERSIONS_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(ValidationError::new(
            "maxVersions",
            "must be between 1 and 1000",
        ))
    }
}

/// Tags: at most [`MAX_TAGS`], each a name of 1-64 characters.
pub fn parse_tags(tags: Vec<String>) -> Result<Vec<String>, ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::new("tags", "must be at most 32"));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = name_rule("tags", &tag, 64)?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_counts() {
        for ok in ["DATABASE_URL", "stripe.secret-key", "a", &"x".repeat(128)] {
            assert!(parse_secret_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "slash/name", "ünï", &"x".repeat(129)] {
            assert!(parse_secret_name(bad).is_err(), "{bad}");
        }
        assert!(parse_vault_name(&"v".repeat(65)).is_err());
        assert!(check_value(&"v".repeat(MAX_VALUE_BYTES)).is_ok());
        assert!(check_value(&"v".repeat(MAX_VALUE_BYTES + 1)).is_err());
        assert!(check_max_versions(0).is_err() && check_max_versions(1001).is_err());
        assert_eq!(
            parse_tags(vec!["a".into(), "a".into(), "b".into()]).unwrap(),
            ["a", "b"]
        );
        assert!(parse_tags(vec!["bad tag".into()]).is_err());
    }
}
