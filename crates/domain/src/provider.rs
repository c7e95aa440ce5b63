//! Provider configurations: for each platform a workspace rotates credentials on (Vercel,
//! AWS, …), where AuthSome gets the credential it acts with, in one of four modes:
//!
//! - `hosted`: the credential is a secret in one of the workspace's vaults;
//! - `kms`: the credential exists only as ciphertext under the customer's AWS KMS key, opened
//!   with KMS `Decrypt` when needed (the encryption context names the workspace and provider);
//! - `oauth`: a refresh token (a vault secret) is exchanged at the provider's token endpoint
//!   for an access token (RFC 6749 §6); a rotated refresh token replaces the secret's value;
//! - `api_key`: the credential is fetched, when needed, from the customer's own HTTPS endpoint
//!   with a signed request (the signing secret is a vault secret), used once and discarded.
//!
//! Types and parsing only: the settings of a mode, checked here, are valid downstream.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::id::{VaultId, WorkspaceId};
use crate::tenancy::workspace::string_enum;
use crate::ValidationError;

string_enum!(
/// A platform whose credentials AuthSome uses (to push rotated secrets, to redeploy).
Provider {
    Vercel => "vercel",
    Netlify => "netlify",
    Render => "render",
    Cloudflare => "cloudflare",
    Fly => "fly",
    Aws => "aws",
    Gcp => "gcp",
    Azure => "azure",
    Generic => "generic"
});

string_enum!(
    /// Where a provider's credential comes from.
    CredentialMode { Hosted => "hosted", Kms => "kms", OAuth => "oauth", ApiKey => "api_key" });

/// The longest URL, key id or name in a configuration.
const MAX_FIELD: usize = 2048;

/// Where a mode finds its credential, parsed from the API's `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The credential is the latest version of `secret` in `vault`.
    Hosted { vault: VaultId, secret: String },
    /// The credential is `ciphertext`, a KMS ciphertext under `key_id` (an ARN, whose region is
    /// used, or a key id or alias with `region`).
    Kms {
        key_id: String,
        region: Option<String>,
    },
    /// A refresh token (`secret` in `vault`) exchanged at `token_url`.
    OAuth {
        token_url: String,
        client_id: String,
        /// The client's secret, when it has one: another secret in the same vault.
        client_secret: Option<String>,
        scope: Option<String>,
        vault: VaultId,
        secret: String,
    },
    /// Fetched from `url`, the request signed with the key in `secret` of `vault`.
    ApiKey {
        url: String,
        vault: VaultId,
        secret: String,
    },
}

impl CredentialSource {
    /// Parses `config` for `mode`; unknown fields are refused, so a typo is not silently ignored.
    pub fn parse(mode: CredentialMode, config: &Value) -> Result<Self, ValidationError> {
        let map = config
            .as_object()
            .ok_or_else(|| ValidationError::new("config", "must be an object"))?;
        let allowed: &[&str] = match mode {
            CredentialMode::Hosted => &["vaultId", "secret"],
            CredentialMode::Kms => &["keyId", "region"],
            CredentialMode::OAuth => &[
                "tokenUrl",
                "clientId",
                "clientSecretName",
                "scope",
                "vaultId",
                "secret",
            ],
            CredentialMode::ApiKey => &["url", "vaultId", "secret"],
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ValidationError::new(
                "config",
                format!(
                    "has no field `{unknown}` in {} mode (fields: {})",
                    mode.as_str(),
                    allowed.join(", ")
                ),
            ));
        }
        let text = |name: &'static str| -> Result<Option<String>, ValidationError> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_FIELD => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(ValidationError::new(
                    "config",
                    format!("`{name}` must be a non-empty string of at most {MAX_FIELD} bytes"),
                )),
            }
        };
        let required = |name: &'static str| {
            text(name)?.ok_or_else(|| {
                ValidationError::new(
                    "config",
                    format!("`{name}` is required in {} mode", mode.as_str()),
                )
            })
        };
        let vault = || -> Result<VaultId, ValidationError> {
            required("vaultId")?
                .parse()
                .map_err(|_| ValidationError::new("config", "`vaultId` must be a vault id (vlt_…)"))
        };
        let secret_name = |name: &'static str| -> Result<Option<String>, ValidationError> {
            text(name)?
                .map(|s| {
                    if secret_name_ok(&s) {
                        Ok(s)
                    } else {
                        Err(ValidationError::new(
                            "config",
                            format!("`{name}` must be 1-128 characters of A-Z, a-z, 0-9, _ . -"),
                        ))
                    }
                })
                .transpose()
        };
        let secret = || {
            secret_name("secret")?.ok_or_else(|| {
                ValidationError::new(
                    "config",
                    format!("`secret` is required in {} mode", mode.as_str()),
                )
            })
        };
        Ok(match mode {
            CredentialMode::Hosted => Self::Hosted {
                vault: vault()?,
                secret: secret()?,
            },
            CredentialMode::Kms => {
                let key_id = required("keyId")?;
                let region = text("region")?;
                if let Some(r) = &region {
                    check_region(r)?;
                }
                // An ARN carries its region; a bare key id or alias takes `region` or the
                // deployment's.
                if key_id.starts_with("arn:") && kms_region(&key_id).is_none() {
                    return Err(ValidationError::new(
                        "config",
                        "`keyId` must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/…), a key id or an alias",
                    ));
                }
                Self::Kms { key_id, region }
            }
            CredentialMode::OAuth => Self::OAuth {
                token_url: url("tokenUrl", &required("tokenUrl")?)?,
                client_id: required("clientId")?,
                client_secret: secret_name("clientSecretName")?,
                scope: text("scope")?,
                vault: vault()?,
                secret: secret()?,
            },
            CredentialMode::ApiKey => Self::ApiKey {
                url: url("url", &required("url")?)?,
                vault: vault()?,
                secret: secret()?,
            },
        })
    }

    /// The vault secret this mode keeps its credential (or refresh token, or signing key) in.
    pub fn vault_secret(&self) -> Option<(&VaultId, &str)> {
        match self {
            Self::Hosted { vault, secret }
            | Self::OAuth { vault, secret, .. }
            | Self::ApiKey { vault, secret, .. } => Some((vault, secret)),
            Self::Kms { .. } => None,
        }
    }
}

/// The region in a KMS key ARN (`arn:aws:kms:us-east-1:111122223333:key/…`).
pub fn kms_region(key_id: &str) -> Option<&str> {
    let mut parts = key_id.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("kms"), Some(region), Some(_), Some(_))
            if check_region(region).is_ok() =>
        {
            Some(region)
        }
        _ => None,
    }
}

fn check_region(region: &str) -> Result<(), ValidationError> {
    let ok = (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "config",
            "`region` must be an AWS region such as us-east-1",
        ))
    }
}

fn secret_name_ok(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An absolute `https://` URL (or `http://`, which the outbound client takes only to addresses
/// the operator allowed), without credentials in it.
fn url(field: &'static str, s: &str) -> Result<String, ValidationError> {
    let bad = || ValidationError::new("config", format!("`{field}` must be an http(s) URL"));
    let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !matches!(scheme, "https" | "http")
        || authority.is_empty()
        || authority.contains('@')
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(s.to_owned())
}

/// A workspace's configuration of one provider, as stored. Never holds a credential in the
/// clear: a KMS ciphertext at most.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub workspace_id: WorkspaceId,
    pub provider: Provider,
    pub mode: CredentialMode,
    /// The mode's settings as the API took them (camelCase keys, no secret).
    pub config: BTreeMap<String, Value>,
    /// `kms` mode: the credential's ciphertext under the customer's key.
    pub ciphertext: Option<Vec<u8>>,
    /// Grows with every change: what a cached credential was resolved under.
    pub revision: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProviderConfig {
    /// The source its settings name (they were checked when stored).
    pub fn source(&self) -> Result<CredentialSource, ValidationError> {
        CredentialSource::parse(
            self.mode,
            &Value::Object(self.config.clone().into_iter().collect()),
        )
    }
}

/// The encryption context of a provider's KMS ciphertext: it opens only for this workspace
/// and provider.
pub fn kms_context(workspace: &WorkspaceId, provider: Provider) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("authsome:workspace".to_owned(), workspace.to_string()),
        ("authsome:provider".to_owned(), provider.as_str().to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_mode_takes_its_own_fields() {
        let vault = VaultId::new().to_string();
        let hosted = CredentialSource::parse(
            CredentialMode::Hosted,
            &json!({"vaultId": vault, "secret": "VERCEL_TOKEN"}),
        )
        .unwrap();
        assert_eq!(hosted.vault_secret().unwrap().1, "VERCEL_TOKEN");
        let kms = CredentialSource::parse(
            CredentialMode::Kms,
            &json!({"keyId": "arn:aws:kms:eu-west-1:111122223333:key/1234"}),
        )
        .unwrap();
        assert!(kms.vault_secret().is_none());
        assert_eq!(
            kms_region("arn:aws:kms:eu-west-1:111122223333:key/1234"),
            Some("eu-west-1")
        );
        let oauth = CredentialSource::parse(
            CredentialMode::OAuth,
            &json!({"tokenUrl": "https://auth.example.com/token", "clientId": "c",
                    "vaultId": vault, "secret": "refresh"}),
        )
        .unwrap();
        assert!(matches!(
            oauth,
            CredentialSource::OAuth {
                client_secret: None,
                ..
            }
        ));
        for (mode, config, says) in [
            (CredentialMode::Hosted, json!({"secret": "x"}), "vaultId"),
            (
                CredentialMode::Hosted,
                json!({"vaultId": "nope", "secret": "x"}),
                "vlt_",
            ),
            (
                CredentialMode::Hosted,
                json!({"vaultId": vault, "secret": "a b"}),
                "secret",
            ),
            (
                CredentialMode::Hosted,
                json!({"vaultId": vault, "secret": "x", "url": "y"}),
                "`url`",
            ),
            (
                CredentialMode::Kms,
                json!({"keyId": "arn:aws:s3:::bucket"}),
                "ARN",
            ),
            (
                CredentialMode::Kms,
                json!({"keyId": "k", "region": "US EAST"}),
                "region",
            ),
            (
                CredentialMode::OAuth,
                json!({"tokenUrl": "ftp://x", "clientId": "c",
                "vaultId": vault, "secret": "r"}),
                "tokenUrl",
            ),
            (
                CredentialMode::ApiKey,
                json!({"url": "https://user:pw@x/", "vaultId": vault,
                "secret": "s"}),
                "url",
            ),
            (CredentialMode::ApiKey, json!([]), "object"),
        ] {
            let err = CredentialSource::parse(mode, &config).unwrap_err();
            assert!(err.message.contains(says), "{config}: {err}");
        }
    }

    #[test]
    fn the_kms_context_names_workspace_and_provider() {
        let ws = WorkspaceId::new();
        let ctx = kms_context(&ws, Provider::Aws);
        assert_eq!(ctx["authsome:workspace"], ws.to_string());
        assert_eq!(ctx["authsome:provider"], "aws");
        assert_eq!(Provider::parse("fly"), Some(Provider::Fly));
        assert_eq!(
            CredentialMode::parse("api_key"),
            Some(CredentialMode::ApiKey)
        );
    }
}
