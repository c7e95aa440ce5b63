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

const API: &str = "https://api.stripe.com";
const MAX_ANSWER: usize = 256 * 1024;

/// Stripe's API with the deployment's secret key.
pub struct StripeClient {
    outbound: crate::Outbound,
    base: String,
    secret_key: Zeroizing<String>,
}

impl StripeClient {
    /// `None` without a secret key. A configured API base is the operator's own (a proxy, a
    /// test server): called as configured, like `AUTHSOME_AWS_ENDPOINT`; Stripe's own through
    /// the egress policy.
    pub fn new(
        settings: &StripeSettings,
        policy: authsome_domain::egress::EgressPolicy,
    ) -> Option<Self> {
        let secret_key = settings.secret_key.clone()?;
        let (outbound, base) = match &settings.api_base {
            Some(base) => (crate::Outbound::trusted(), base.clone()),
            None => (crate::Outbound::new(policy), API.to_owned()),
        };
        Some(Self {
            outbound,
            base,
            secret_key,
        })
    }

    /// One request, form-encoded; the JSON answer, or why not.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<serde_json::Value, PaymentError> {
        let body = {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                s.append_pair(k, v);
            }
            s.finish()
        };
        let authorization = Zeroizing::new(format!("Bearer {}", self.secret_key.as_str()));
        let answer = self
            .outbound
            .send(
                method,
                &format!("{}{path}", self.base),
                |r| {
                    let r = r
                        .header("Authorization", authorization.as_str())
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .header("Stripe-Version", "2024-06-20")
                        .body(body);
                    match idempotency_key {
                        Some(key) => r.header("Idempotency-Key", key),
                        None => r,
                    }
                },
                MAX_ANSWER,
            )
            .await
            .map_err(|e| match e {
                crate::egress::CallError::Refused(m) => PaymentError::Rejected(m),
                crate::egress::CallError::Failed(m) => PaymentError::Unavailable(m),
            })?;
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let status = answer.status.as_u16();
        if answer.status.is_success() {
            return Ok(json);
        }
        // Stripe's error body: {"error": {"type", "code", "message"}}; never the request.
        let message = json["error"]["message"]
            .as_str()
            .or(json["error"]["code"].as_str())
            .unwrap_or("no message")
            .chars()
            .take(200)
            .collect::<String>();
        let why = format!("{path} answered {status}: {message}");
        Err(if status == 429 || status >= 500 {
            PaymentError::Unavailable(why)
        } else {
            PaymentError::Rejected(why)
        })
    }

    fn id_of(answer: &serde_json::Value, what: &str) -> Result<String, PaymentError> {
        answer["id"].as_str().map(str::to_owned).ok_or_else(|| {
            PaymentError::Rejected(format!("Stripe answered a {what} without an id"))
        })
    }

    /// The monthly plan a workspace subscribes to, made unless it exists: `authsome_pro`, or
    /// an enterprise fee's own.
    async fn plan(&self, workspace: &Workspace) -> Result<String, PaymentError> {
        let pricing = authsome_billing::Pricing::for_plan(workspace.plan, &workspace.limits);
        let (id, name) = match workspace.plan {
            Plan::Enterprise => (
                format!("authsome_enterprise_{}", pricing.base_cents),
                "AuthSome Enterprise",
            ),
            _ => ("authsome_pro".to_owned(), "AuthSome Pro"),
        };
        match self
            .call(reqwest::Method::GET, &format!("/v1/plans/{id}"), &[], None)
            .await
        {
            Ok(_) => return Ok(id),
            Err(PaymentError::Rejected(_)) => {}
            Err(e) => return Err(e),
        }
        let form = [
            ("id", id.clone()),
            ("amount", pricing.base_cents.to_string()),
            ("currency", "usd".to_owned()),
            ("interval", "month".to_owned()),
            ("product[name]", name.to_owned()),
        ];
        self.call(
            reqwest::Method::POST,
            "/v1/plans",
            &form,
            Some(&format!("authsome-plan-{id}")),
        )
        .await?;
        Ok(id)
    }
}

use authsome_control::payments::{MeterEvent, PaymentError, PaymentProvider};
use authsome_domain::tenancy::{Plan, Workspace};

#[async_trait::async_trait]
impl PaymentProvider for StripeClient {
    async fn create_customer(&self, workspace: &Workspace) -> Result<String, PaymentError> {
        let form = [
            ("name", workspace.name.clone()),
            ("metadata[workspace_id]", workspace.id.to_string()),
        ];
        let answer = self
            .call(
                reqwest::Method::POST,
                "/v1/customers",
                &form,
                Some(&format!("authsome-customer-{}", workspace.id)),
            )
            .await?;
        Self::id_of(&answer, "customer")
    }

    async fn create_subscription(
        &self,
        customer: &str,
        workspace: &Workspace,
    ) -> Result<String, PaymentError> {
        let plan = self.plan(workspace).await?;
        let form = [
            ("customer", customer.to_owned()),
            ("items[0][plan]", plan.clone()),
            ("metadata[workspace_id]", workspace.id.to_string()),
        ];
        let answer = self
            .call(
                reqwest::Method::POST,
                "/v1/subscriptions",
                &form,
                Some(&format!("authsome-subscription-{customer}-{plan}")),
            )
            .await?;
        Self::id_of(&answer, "subscription")
    }

    async fn send_meter_events(
        &self,
        customer: &str,
        events: &[MeterEvent],
    ) -> Result<(), PaymentError> {
        for e in events {
            let form = [
                ("event_name", e.event_name.clone()),
                ("payload[stripe_customer_id]", customer.to_owned()),
                ("payload[value]", e.value.to_string()),
                ("identifier", e.identifier.clone()),
                ("timestamp", e.timestamp.timestamp().to_string()),
            ];
            self.call(
                reqwest::Method::POST,
                "/v1/billing/meter_events",
                &form,
                Some(&e.identifier),
            )
            .await?;
        }
        Ok(())
    }
}
