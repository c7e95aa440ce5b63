//! Dual-phase credentials: instead of minting a value, the provider issues the next credential
//! itself while the previous one stays valid (two live credentials overlap, so nothing that
//! still holds the previous one breaks); the previous one is revoked only after the grace
//! period, and a rotation that fails revokes the one it issued. Today: AWS IAM access keys (a
//! user may hold two). The issuers themselves (wire format, HTTP) live in `authsome-connect`.

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use zeroize::Zeroizing;

use crate::target::TargetError;
use crate::InvalidRule;

/// What issues the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IssuerKind {
    /// An IAM user's access key: `{"accessKeyId", "secretAccessKey"}`.
    AwsIamAccessKey,
}

/// `issuer` in a secret's rotation settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerSpec {
    pub kind: IssuerKind,
    /// The IAM user whose access keys rotate.
    #[cfg_attr(feature = "openapi", schema(max_length = 64, example = "ci-deployer"))]
    pub user_name: String,
}

impl IssuerSpec {
    /// Whose credential calls the issuer (configured under `…/providers/{provider}`).
    pub fn provider(&self) -> Provider {
        match self.kind {
            IssuerKind::AwsIamAccessKey => Provider::Aws,
        }
    }

    /// The spec if IAM would accept it (a user name of 1 to 64 of `A-Za-z0-9+=,.@_-`).
    pub fn checked(&self) -> Result<&Self, InvalidRule> {
        let ok = (1..=64).contains(&self.user_name.len())
            && self
                .user_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if ok {
            Ok(self)
        } else {
            Err(InvalidRule::new(
                "issuer.userName",
                "1 to 64 of A-Z, a-z, 0-9 and +=,.@_-",
            ))
        }
    }

    /// The id of the credential a stored value holds (an access key's id), if it is one.
    pub fn id_of(&self, value: &str) -> Option<String> {
        match self.kind {
            IssuerKind::AwsIamAccessKey => serde_json::from_str::<serde_json::Value>(value)
                .ok()?
                .get("accessKeyId")?
                .as_str()
                .map(str::to_owned),
        }
    }
}

/// A credential just issued: its id (safe to record) and its value (only for the vault).
pub struct Issued {
    pub id: String,
    pub value: Zeroizing<String>,
}

/// A provider that issues and revokes credentials of one principal.
#[async_trait]
pub trait CredentialIssuer: Send + Sync {
    /// Issues a new credential; the previous ones stay valid.
    async fn issue(&self) -> Result<Issued, TargetError>;
    /// Revokes the credential `id`; one already gone is fine.
    async fn revoke(&self, id: &str) -> Result<(), TargetError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_and_values_name_their_key() {
        let spec = IssuerSpec {
            kind: IssuerKind::AwsIamAccessKey,
            user_name: "ci-deployer".into(),
        };
        assert!(spec.checked().is_ok());
        assert_eq!(spec.provider(), Provider::Aws);
        for bad in ["", "has space", &"x".repeat(65), "slash/"] {
            let s = IssuerSpec {
                user_name: bad.into(),
                ..spec.clone()
            };
            assert_eq!(s.checked().unwrap_err().field, "issuer.userName");
        }
        assert_eq!(
            spec.id_of(r#"{"accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s"}"#),
            Some("AKIAEXAMPLE".into())
        );
        assert_eq!(spec.id_of("a plain token"), None);
        let parsed: IssuerSpec =
            serde_json::from_str(r#"{"kind":"aws_iam_access_key","userName":"u"}"#).unwrap();
        assert_eq!(parsed.kind, IssuerKind::AwsIamAccessKey);
    }
}
