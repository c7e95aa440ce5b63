//! Brute-force throttling of every credential route of both APIs (team login and invitation
//! acceptance; users' sign-in, sign-up and refresh): failures count per account and per client
//! address, and either one locked refuses the attempt before any work (no hashing, no lookup).
//!
//! The counters live in process (the domain's bounded `LoginThrottle`) or, with Redis, are
//! shared by every replica (the server plugs a Redis-backed [`SignInThrottle`] in), so that
//! spreading guesses over replicas gains an attacker nothing. Subjects are stored as digests of
//! fixed size, scoped to the control plane or an application: neither memory nor Redis holds
//! a typed email, and a megabyte of input costs a 32-byte key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use authsome_domain::clock::Clock;
use authsome_domain::keys::KeyHash;
use authsome_domain::shared_state::{app_scoped, client_bucket};
use authsome_domain::throttle::LoginThrottle;
use authsome_domain::ValidationError;

/// Consecutive failures of one account before it locks.
pub const ACCOUNT_FREE_ATTEMPTS: u32 = 5;
/// Failures from one client address (over all accounts) before it locks: an address may be
/// an office's, shared by many people.
pub const ADDRESS_FREE_ATTEMPTS: u32 = 20;
/// An account's failures are forgotten after a quiet day.
pub const ACCOUNT_FORGIVE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// An address's after a quiet hour (several people may share it).
pub const ADDRESS_FORGIVE_AFTER: Duration = Duration::from_secs(3600);

/// No address is longer (RFC 5321); checked before anything else is done with the input.
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longer passwords are refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// `value` of `field` is at most `max` bytes.
pub fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    Ok(())
}

/// Bounds a credential's inputs, on every credential route of both APIs, before any work is
/// done with them (before the throttle, a lookup or a hash).
pub fn bounded_credentials(email: &str, password: &str) -> Result<(), ValidationError> {
    bounded("email", email, MAX_EMAIL_BYTES)?;
    bounded("password", password, MAX_PASSWORD_BYTES)
}

/// The counters cannot be read: the attempt is refused rather than unprotected (fail closed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("sign-in throttling unavailable: {0}")]
pub struct ThrottleUnavailable(pub String);

/// One kind of failure counter (per account, or per address).
#[async_trait]
pub trait SignInThrottle: Send + Sync {
    /// `Some(wait)` while `subject` is locked.
    async fn check(&self, subject: &str) -> Result<Option<Duration>, ThrottleUnavailable>;
    async fn failed(&self, subject: &str) -> Result<(), ThrottleUnavailable>;
    /// Checks and counts in one step: `Some(wait)` while locked (not counted), otherwise the
    /// attempt is counted as a failure until [`SignInThrottle::succeeded`] clears it.
    async fn attempt(&self, subject: &str) -> Result<Option<Duration>, ThrottleUnavailable>;
    async fn succeeded(&self, subject: &str) -> Result<(), ThrottleUnavailable>;
    /// Drops forgiven state (in-process counters only).
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

    async fn attempt(&self, subject: &str) -> Result<Option<Duration>, ThrottleUnavailable> {
        Ok(self.0.attempt(subject).err())
    }

    async fn succeeded(&self, subject: &str) -> Result<(), ThrottleUnavailable> {
        self.0.succeeded(subject);
        Ok(())
    }

    fn prune(&self) {
        self.0.prune();
    }
}

/// Whose credentials are being tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm<'a> {
    /// Team members'.
    ControlPlane,
    /// One application's users (counters named under the application's shared-state names,
    /// which its own Redis user may reach).
    Application(&'a str),
}

/// Who is attempting: the scope, the account named (an email; none where the credential names
/// no one, as a refresh token), the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub scope: Realm<'a>,
    pub account: Option<&'a str>,
    pub address: Option<&'a str>,
}

/// Why an attempt is not let through.
#[derive(Debug, Clone)]
pub enum Throttled {
    /// The account or the address is locked for this long.
    Locked(Duration),
    /// The counters cannot be read.
    Unavailable(ThrottleUnavailable),
}

impl From<ThrottleUnavailable> for Throttled {
    fn from(e: ThrottleUnavailable) -> Self {
        Self::Unavailable(e)
    }
}

/// The account and address counters of the process (shared by the control plane and the
/// identity engine).
pub struct CredentialThrottle {
    account: Arc<dyn SignInThrottle>,
    address: Arc<dyn SignInThrottle>,
}

impl CredentialThrottle {
    pub fn new(account: Arc<dyn SignInThrottle>, address: Arc<dyn SignInThrottle>) -> Self {
        Self { account, address }
    }

    /// Counters in this process, on `clock`.
    pub fn in_process(clock: &Clock) -> Self {
        Self::new(
            Arc::new(LocalThrottle(
                LoginThrottle::new(ACCOUNT_FREE_ATTEMPTS, ACCOUNT_FORGIVE_AFTER)
                    .with_clock(clock.clone()),
            )),
            Arc::new(LocalThrottle(
                LoginThrottle::new(ADDRESS_FREE_ATTEMPTS, ADDRESS_FORGIVE_AFTER)
                    .with_clock(clock.clone()),
            )),
        )
    }

    /// Lets an attempt through unless the address or the account is locked. The attempt is
    /// counted against the account at once (checked and counted in one step, so concurrent
    /// guesses cannot all pass before one is counted); a success clears it.
    pub async fn admit(&self, who: Attempt<'_>) -> Result<(), Throttled> {
        if let Some(address) = who.address {
            let bucket = client_bucket(address);
            if let Some(wait) = self
                .address
                .check(&subject(who.scope, "i", &bucket))
                .await?
            {
                return Err(Throttled::Locked(wait));
            }
        }
        if let Some(account) = who.account {
            if let Some(wait) = self
                .account
                .attempt(&subject(who.scope, "a", account))
                .await?
            {
                return Err(Throttled::Locked(wait));
            }
        }
        Ok(())
    }

    /// Counts a failure against the address (the account's was counted on admission).
    pub async fn failed(&self, who: Attempt<'_>) -> Result<(), ThrottleUnavailable> {
        if let Some(address) = who.address {
            let bucket = client_bucket(address);
            self.address
                .failed(&subject(who.scope, "i", &bucket))
                .await?;
        }
        Ok(())
    }

    /// Clears the account's count. The address's stays: one account an attacker holds must
    /// not reset the count of their guesses at others.
    pub async fn succeeded(&self, who: Attempt<'_>) -> Result<(), ThrottleUnavailable> {
        if let Some(account) = who.account {
            self.account
                .succeeded(&subject(who.scope, "a", account))
                .await?;
        }
        Ok(())
    }

    pub fn prune(&self) {
        self.account.prune();
        self.address.prune();
    }
}

/// The scope's name for `kind` and the first 128 bits of the value's SHA-256, in hex: fixed
/// size whatever was typed, and no email in memory or Redis.
fn subject(scope: Realm<'_>, kind: &str, value: &str) -> String {
    let digest = KeyHash::of(value).to_hex();
    let digest = &digest[..32];
    match scope {
        Realm::ControlPlane => format!("control:throttle-{kind}:{digest}"),
        Realm::Application(app) => app_scoped(app, &format!("throttle-{kind}"), digest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(account: Option<&'a str>, address: Option<&'a str>) -> Attempt<'a> {
        Attempt {
            scope: Realm::ControlPlane,
            account,
            address,
        }
    }

    #[tokio::test]
    async fn an_address_spraying_many_accounts_locks_itself() {
        let t = CredentialThrottle::in_process(&Clock::manual());
        let emails: Vec<String> = (0..30).map(|n| format!("user{n}@x.test")).collect();
        let mut locked = 0;
        for email in &emails {
            let attempt = who(Some(email), Some("203.0.113.7"));
            match t.admit(attempt).await {
                Ok(()) => t.failed(attempt).await.unwrap(),
                Err(Throttled::Locked(_)) => locked += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(locked, 30 - ADDRESS_FREE_ATTEMPTS as usize);
        // Another address may still try those accounts (each below its own limit).
        assert!(t
            .admit(who(Some(&emails[0]), Some("198.51.100.1")))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn one_account_guessed_from_many_addresses_locks_the_account() {
        let t = CredentialThrottle::in_process(&Clock::manual());
        for n in 0..ACCOUNT_FREE_ATTEMPTS {
            let ip = format!("10.0.0.{n}");
            let attempt = who(Some("victim@x.test"), Some(&ip));
            t.admit(attempt).await.unwrap();
            t.failed(attempt).await.unwrap();
        }
        assert!(matches!(
            t.admit(who(Some("victim@x.test"), Some("10.9.9.9"))).await,
            Err(Throttled::Locked(_))
        ));
        // Scopes are separate: the same email in an application is not locked.
        let app = Attempt {
            scope: Realm::Application("app_1"),
            account: Some("victim@x.test"),
            address: None,
        };
        assert!(t.admit(app).await.is_ok());
    }

    #[tokio::test]
    async fn a_success_clears_the_account_but_not_the_address() {
        let clock = Clock::manual();
        let t = CredentialThrottle::in_process(&clock);
        for n in 0..ADDRESS_FREE_ATTEMPTS {
            let email = format!("u{n}@x.test");
            t.failed(who(Some(&email), Some("10.1.1.1"))).await.unwrap();
        }
        t.succeeded(who(Some("mine@x.test"), Some("10.1.1.1")))
            .await
            .unwrap();
        assert!(t.admit(who(None, Some("10.1.1.1"))).await.is_err());
    }

    #[test]
    fn subjects_are_fixed_size_digests() {
        let long = "a".repeat(1 << 20);
        let s = subject(Realm::ControlPlane, "a", &long);
        assert_eq!(s.len(), "control:throttle-a:".len() + 32);
        assert!(!s.contains("aaaa"));
        let app = subject(Realm::Application("app_1"), "a", "x");
        assert_ne!(subject(Realm::ControlPlane, "a", "x"), app);
        // Within the application's names, which its own Redis user reaches.
        assert!(app.starts_with("app:app_1:"), "{app}");
    }
}
