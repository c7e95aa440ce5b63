//! Where sign-in failure counters live: in process (the domain's `LoginThrottle`), or shared by
//! every replica (the server plugs in a Redis-backed one), so that spreading guesses over
//! replicas gains an attacker nothing.

use std::time::Duration;

use async_trait::async_trait;
use authsome_domain::throttle::LoginThrottle;

/// The counters cannot be read: sign-in is refused rather than unprotected (fail closed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("sign-in throttling unavailable: {0}")]
pub struct ThrottleUnavailable(pub String);

#[async_trait]
pub trait SignInThrottle: Send + Sync {
    /// `Some(wait)` while `subject` is locked.
    async fn check(&self, subject: &str) -> Result<Option<Duration>, ThrottleUnavailable>;
    async fn failed(&self, subject: &str) -> Result<(), ThrottleUnavailable>;
    async fn succeeded(&self, subject: &str) -> Result<(), ThrottleUnavailable>;
    /// Drops expired state (in-process counters only).
    fn prune(&self) {}
}

/// One process's counters.
pub struct LocalThrottle(pub LoginThrottle);

#[async_trait]
impl SignInThrottle for LocalThrottle {
    async fn check(&self, subject: &str) -> Result<Option<Duration>, ThrottleUnavailable> {
        Ok(self.0.check(subject).err())
    }

    async fn failed(&self, subject: &str) -> Result<(), ThrottleUnavailable> {
        self.0.failed(subject);
        Ok(())
    }

    async fn succeeded(&self, subject: &str) -> Result<(), ThrottleUnavailable> {
        self.0.succeeded(subject);
        Ok(())
    }

    fn prune(&self) {
        self.0.prune();
    }
}
