//! The credential vault's records as the control plane and storage see them: vaults, secrets
//! with their version history, and the workspace key-encryption keys (sealed). Values never
//! appear here: they exist only as envelopes (bytes) in storage and in the one call that reads
//! or writes them (`authsome-vault`).

use chrono::{DateTime, Utc};

use crate::id::{PrincipalId, SecretId, TrustedIssuerId, VaultId, WorkspaceId};

/// A named set of secrets in a workspace (`production`, `ci`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Vault {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "vlt_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: VaultId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    /// Versions kept of each secret; the oldest beyond it are removed on write.
    pub max_versions: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A secret's metadata: never its value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "sec_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: SecretId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub vault_id: VaultId,
    #[serde(skip)]
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// When the credential stops being valid at its source (alerts warn before it).
    pub expires_at: Option<DateTime<Utc>>,
    /// The latest version's number.
    pub version: u32,
    /// The versions kept, oldest first (in a listing: empty).
    pub versions: Vec<SecretVersion>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set while soft-deleted: no value is served until it is restored.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// Who wrote it (`acc_…`, `key_…`).
    pub created_by: Option<String>,
    /// Set once destroyed: its value is gone for good.
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// One version of a workspace's key-encryption key, as stored: sealed under the master key or
/// the customer's KMS key, or destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKek {
    pub version: u32,
    /// `None` once destroyed.
    pub sealed: Option<Vec<u8>>,
    /// The customer's AWS KMS key (an ARN) that wrapped it, when not the master key: `sealed`
    /// is then KMS ciphertext (enterprise, customer-managed keys).
    pub kms_key_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A machine principal: a service, a CI job or an agent that reads (or writes) the secrets of
/// the vaults it is bound to, proving itself with its own key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "prn_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: PrincipalId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    pub name: String,
    /// The Ed25519 public key it signs proofs with (32 bytes), if it registered one.
    #[serde(skip)]
    pub public_key: Option<Vec<u8>>,
    /// The public key as a JWK, when there is one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub public_key_jwk: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// What a principal may do in a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum VaultPermission {
    /// Read values (and secrets' metadata).
    Read,
    /// Write new versions.
    Write,
}

/// A principal's permissions in one vault.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub principal_id: PrincipalId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub vault_id: VaultId,
    pub permissions: Vec<VaultPermission>,
    pub created_at: DateTime<Utc>,
}

impl Principal {
    /// The OKP JWK of an Ed25519 public key.
    pub fn jwk_of(public_key: &[u8]) -> serde_json::Value {
        use base64::Engine;
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public_key),
        })
    }
}

/// An external issuer of identity tokens (a CI system, a Kubernetes cluster) whose tokens, with
/// the given audience and claims, a workspace accepts as one of its principals.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TrustedIssuer {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "tis_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: TrustedIssuerId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    /// The tokens' `iss`, exactly.
    pub issuer: String,
    /// Where the issuer publishes its signing keys (an `https://` JWK Set).
    pub jwks_uri: String,
    /// The `aud` the tokens must carry.
    pub audience: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub principal_id: PrincipalId,
    /// Claims the tokens must carry with exactly these values (`sub`, `repository`, …).
    pub claims: std::collections::BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
}
