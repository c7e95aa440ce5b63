//! Stripe's API (form-encoded requests with the secret key, `Idempotency-Key` on every
//! create): each paying workspace's customer and subscription, and its usage as billing meter
//! events with idempotent `identifier`s. Through the egress policy like every outbound call.

use zeroize::Zeroizing;

/// Where and how to reach Stripe; without a secret key nothing is sent (billing still computes
/// usage and invoices), without a webhook secret the webhook route does not exist.
#[derive(Clone, Default)]
pub struct StripeSettings {
    pub secret_key: Option<Zeroizing<String>>,
    pub webhook_secret: Option<Zeroizing<String>>,
    /// `https://api.stripe.com` unless set (`AUTHSOME_STRIPE_API_BASE`: a proxy, a test server).
    pub api_base: Option<String>,
}

impl std::fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSettings")
            .field("secret_key", &self.secret_key.as_ref().map(|_| "…"))
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "…"))
            .field("api_base", &self.api_base)
            .finish()
    }
}
