//! The seam between rotation and the providers: one target (a project's variable, a worker's
//! secret, a secret manager's entry) as [`TargetConnector`], what a write and a read-back say,
//! why a target refused, and [`verify`], which decides from a read-back whether the target
//! holds the value written. The connectors themselves (wire formats, HTTP) live in
//! `authsome-connect`.

use std::time::Duration;

use async_trait::async_trait;
use authsome_domain::provider::Provider;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why a target did not take or tell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The target's configuration cannot be used (names the field).
    #[error("invalid target: {0}")]
    Config(String),
    /// The provider refused: a bad credential, a missing project, an invalid value. Retrying
    /// the same call will not help.
    #[error("{provider} refused ({status}{}): {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        provider: &'static str,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The provider asked to come back later.
    #[error("rate limited; retry after {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Out of reach or failing: worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

/// What a write produced, as the provider identified it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The provider's version or id of what was written.
    pub version: Option<String>,
    /// The provider's digest of the value, where it gives one.
    pub digest: Option<String>,
}

/// What a target holds under the key now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The value itself (compared by SHA-256, then dropped).
    Value(Zeroizing<String>),
    /// The provider's digest of the value.
    Digest(String),
    /// The provider's version of the value.
    Version(String),
    /// The key exists; the provider never shows secret values.
    Present,
    Absent,
}

/// Whether `observed` shows that `value`, written as `written`, is what the target holds.
pub fn verify(value: &str, written: &Written, observed: &Observed) -> Result<(), String> {
    let ok = match observed {
        Observed::Value(v) => Sha256::digest(v.as_bytes()) == Sha256::digest(value.as_bytes()),
        Observed::Digest(d) => written.digest.as_deref() == Some(d.as_str()),
        Observed::Version(v) => written.version.as_deref() == Some(v.as_str()),
        Observed::Present => true,
        Observed::Absent => false,
    };
    if ok {
        Ok(())
    } else {
        Err(match observed {
            Observed::Absent => "the key is missing at the target".into(),
            _ => "the target holds another value than the one written".into(),
        })
    }
}

/// One target at one provider, with its credential.
#[async_trait]
pub trait TargetConnector: Send + Sync {
    fn provider(&self) -> Provider;
    /// Whether the credential reaches the target (the project, site, service or store).
    async fn status(&self) -> Result<(), TargetError>;
    /// Writes `value` under the target's key, touching nothing else.
    async fn write(&self, value: &str) -> Result<Written, TargetError>;
    /// What the target holds under its key now.
    async fn read_back(&self) -> Result<Observed, TargetError>;
    /// Starts a fresh deploy that takes the new value (a new build, not a reuse of the old
    /// environment snapshot); the deploy's id, or `None` where the value is live without one.
    async fn redeploy(&self) -> Result<Option<String>, TargetError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_compares_what_the_provider_can_show() {
        let written = Written {
            version: Some("3".into()),
            digest: Some("abc".into()),
        };
        let v = |s: &str| Observed::Value(Zeroizing::new(s.into()));
        assert!(verify("new", &written, &v("new")).is_ok());
        assert!(verify("new", &written, &v("old")).is_err());
        assert!(verify("new", &written, &Observed::Digest("abc".into())).is_ok());
        assert!(verify("new", &written, &Observed::Digest("def".into())).is_err());
        assert!(verify("new", &written, &Observed::Version("3".into())).is_ok());
        assert!(verify("new", &written, &Observed::Version("2".into())).is_err());
        assert!(verify("new", &written, &Observed::Present).is_ok());
        assert!(verify("new", &written, &Observed::Absent).is_err());
    }
}
