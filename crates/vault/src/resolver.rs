//! The credential resolver's rules, without I/O: how long a resolved credential may be kept
//! per mode, how retries back off, and when a provider configuration's circuit opens.
//! The control plane runs the resolution (it reads the vault, calls KMS, the token endpoint or
//! the customer's endpoint) and asks these rules at each step; time is passed in, so tests
//! move it instead of sleeping.

use std::time::Duration;

use authsome_domain::clock::CoarseInstant;
use authsome_domain::provider::CredentialMode;

/// How long a `hosted` credential is kept after it is read from the vault.
pub const HOSTED_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a `kms` credential is kept after KMS decrypted it.
pub const KMS_TTL: Duration = Duration::from_secs(10 * 60);
/// An OAuth access token is dropped this long before it expires.
pub const OAUTH_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Attempts at a source per resolution (the first included).
pub const ATTEMPTS: u32 = 3;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Consecutive failed resolutions that open a configuration's circuit.
pub const BREAKER_THRESHOLD: u32 = 5;
/// How long an open circuit refuses before it lets one probe through.
pub const BREAKER_OPEN_FOR: Duration = Duration::from_secs(30);

/// How long a credential resolved in `mode` may be served from the cache: `None` never
/// (`api_key` is used once and discarded). `lifetime`: what the source said (an OAuth token's
/// `expires_in`).
pub fn cache_for(mode: CredentialMode, lifetime: Option<Duration>) -> Option<Duration> {
    match mode {
        CredentialMode::Hosted => Some(HOSTED_TTL),
        CredentialMode::Kms => Some(KMS_TTL),
        CredentialMode::OAuth => lifetime
            .and_then(|l| l.checked_sub(OAUTH_EXPIRY_MARGIN))
            .filter(|l| !l.is_zero()),
        CredentialMode::ApiKey => None,
    }
}

/// The pause before retry `attempt` (1 for the first retry): exponential from a base, capped,
/// with full jitter (`unit` in `[0, 1)`, drawn by the caller) so that replicas retrying the
/// same source spread out.
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// One provider configuration's circuit: closed while its source answers; open after
/// [`BREAKER_THRESHOLD`] consecutive failures, refusing at once for [`BREAKER_OPEN_FOR`];
/// then half-open, letting one probe through, whose outcome closes or reopens it.
#[derive(Debug, Clone, Default)]
pub struct Breaker {
    failures: u32,
    opened_at: Option<CoarseInstant>,
    /// When the half-open circuit's probe went out (a probe that never reports, its caller
    /// gone, is replaced after [`BREAKER_OPEN_FOR`]).
    probing: Option<CoarseInstant>,
}

/// What the circuit says about a resolution about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Closed,
    /// Go ahead as the one probe of a half-open circuit.
    Probe,
    /// Refuse without calling the source; it may be tried again after this long.
    Open(Duration),
}

impl Breaker {
    /// Whether a resolution may call the source `now`.
    pub fn admit(&mut self, now: CoarseInstant) -> Admission {
        let Some(opened) = self.opened_at else {
            return Admission::Closed;
        };
        let waited = now.since(opened);
        if waited < BREAKER_OPEN_FOR {
            return Admission::Open(BREAKER_OPEN_FOR - waited);
        }
        if let Some(sent) = self.probing {
            if now.since(sent) < BREAKER_OPEN_FOR {
                // The probe is out: others wait for its outcome.
                return Admission::Open(Duration::from_secs(1));
            }
        }
        self.probing = Some(now);
        Admission::Probe
    }

    /// The source answered.
    pub fn succeeded(&mut self) {
        *self = Self::default();
    }

    /// The source failed (after its retries).
    pub fn failed(&mut self, now: CoarseInstant) {
        self.failures = self.failures.saturating_add(1);
        if self.probing.is_some() || self.failures >= BREAKER_THRESHOLD {
            self.opened_at = Some(now);
            self.probing = None;
        }
    }

    pub fn is_open(&self) -> bool {
        self.opened_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_is_kept_as_long_as_its_rule_says() {
        assert_eq!(cache_for(CredentialMode::Hosted, None), Some(HOSTED_TTL));
        let kms = cache_for(CredentialMode::Kms, None).unwrap();
        assert!(kms >= Duration::from_secs(300) && kms <= Duration::from_secs(900));
        assert_eq!(
            cache_for(CredentialMode::OAuth, Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(3570))
        );
        assert_eq!(
            cache_for(CredentialMode::OAuth, Some(Duration::from_secs(10))),
            None
        );
        assert_eq!(cache_for(CredentialMode::OAuth, None), None);
        assert_eq!(
            cache_for(CredentialMode::ApiKey, Some(Duration::from_secs(60))),
            None
        );
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_below_it() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(40, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(3, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn the_circuit_opens_after_consecutive_failures_then_lets_one_probe_through() {
        let start = CoarseInstant::now();
        let mut breaker = Breaker::default();
        for _ in 0..BREAKER_THRESHOLD - 1 {
            assert_eq!(breaker.admit(start), Admission::Closed);
            breaker.failed(start);
        }
        assert!(!breaker.is_open());
        breaker.failed(start);
        assert!(breaker.is_open());
        assert_eq!(breaker.admit(start), Admission::Open(BREAKER_OPEN_FOR));
        let later = start.after(BREAKER_OPEN_FOR);
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert!(
            matches!(breaker.admit(later), Admission::Open(_)),
            "one probe at a time"
        );
        // The probe fails: open again for the full time.
        breaker.failed(later);
        assert!(matches!(breaker.admit(later), Admission::Open(d) if d == BREAKER_OPEN_FOR));
        let again = later.after(BREAKER_OPEN_FOR);
        assert_eq!(breaker.admit(again), Admission::Probe);
        breaker.succeeded();
        assert_eq!(breaker.admit(again), Admission::Closed);
        // A success resets the count: failures must be consecutive.
        breaker.failed(again);
        breaker.succeeded();
        for _ in 0..BREAKER_THRESHOLD - 1 {
            breaker.failed(again);
        }
        assert!(!breaker.is_open());
    }
}
