//! Payments through Stripe, behind the [`PaymentProvider`] port (the server's
//! `authsome-connect` speaks Stripe's API): a workspace that moves to a paying plan becomes a
//! Stripe customer with a subscription (a `billing.stripe.subscribe` job), and each closed
//! month's usage goes to Stripe as billing meter events (a `billing.stripe.usage` job committed
//! with the invoice's close, so it is never lost). Jobs are retried with backoff while Stripe
//! cannot be reached; every create carries an idempotency key and every meter event an
//! `identifier` derived from the invoice, so a retry after a lost answer duplicates nothing.
//!
//! Without a provider (no `AUTHSOME_STRIPE_SECRET_KEY`) nothing is sent: usage and invoices
//! are computed all the same, and platform operators set payment standing by hand.

use std::time::Duration;

use authsome_billing::Invoice;
use authsome_domain::id::{InvoiceId, WorkspaceId};
use authsome_domain::job::Job;
use authsome_domain::tenancy::{Plan, Workspace};
use authsome_storage::StripeCustomer;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::rotation::Fault;
use crate::{ControlError, ControlPlane};

pub const SUBSCRIBE_JOB: &str = "billing.stripe.subscribe";
pub const USAGE_JOB: &str = "billing.stripe.usage";

/// Attempts before a job gives up (its last wait is hours long).
const MAX_ATTEMPTS: u32 = 12;

/// Why Stripe did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Unreachable, rate-limited or failing (5xx): worth retrying.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Refused the request (4xx): retrying the same would not help.
    #[error("Stripe refused the request: {0}")]
    Rejected(String),
}

/// A usage figure sent to a Stripe meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    /// The meter's event name (`authsome_mau`, …).
    pub event_name: String,
    /// Stripe counts an identifier once.
    pub identifier: String,
    pub value: u64,
    pub timestamp: DateTime<Utc>,
}

/// Stripe, as the control plane uses it.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Creates the workspace's customer (idempotent per workspace); its id.
    async fn create_customer(&self, workspace: &Workspace) -> Result<String, PaymentError>;
    /// Subscribes `customer` to `workspace`'s plan at its price (idempotent per customer and
    /// plan); the subscription's id.
    async fn create_subscription(
        &self,
        customer: &str,
        workspace: &Workspace,
    ) -> Result<String, PaymentError>;
    /// Sends meter events for `customer`, in order.
    async fn send_meter_events(
        &self,
        customer: &str,
        events: &[MeterEvent],
    ) -> Result<(), PaymentError>;
}

impl From<PaymentError> for Fault {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::Unavailable(_) => Fault::Later(Duration::from_secs(30), e.to_string()),
            PaymentError::Rejected(_) => Fault::Failed(e.to_string()),
        }
    }
}

fn storage(e: authsome_storage::StorageError) -> Fault {
    Fault::from(ControlError::from(e))
}

/// The wait before attempt `attempts + 1`: 30 s, doubling, at most about an hour.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(30u64 << attempts.min(7))
}

impl ControlPlane {
    /// Sends customers, subscriptions and usage to `provider` (Stripe).
    pub fn with_payment_provider(mut self, provider: std::sync::Arc<dyn PaymentProvider>) -> Self {
        self.payments = Some(provider);
        self
    }

    /// Enqueues making `ws` a Stripe customer subscribed to its plan, when payments are
    /// configured and the plan is a paying one (once per plan change).
    pub(crate) async fn subscribe_later(&self, ws: &Workspace) -> crate::Result<()> {
        if self.payments.is_none() || ws.plan == Plan::Free || ws.root {
            return Ok(());
        }
        let mut job = Job::new(SUBSCRIBE_JOB, json!({}), Some(&ws.id), self.clock.now());
        job.dedupe_key = Some(format!(
            "{SUBSCRIBE_JOB}:{}:{}",
            ws.id,
            ws.updated_at.timestamp_millis()
        ));
        self.store.enqueue_job(&job).await?;
        Ok(())
    }

    /// The jobs that send a closed invoice's usage on (none without payments or for free).
    pub(crate) fn usage_jobs(&self, ws: &Workspace, invoice: &Invoice) -> Vec<Job> {
        if self.payments.is_none() || invoice.plan == Plan::Free {
            return Vec::new();
        }
        let mut job = Job::new(
            USAGE_JOB,
            json!({"invoice": invoice.id.as_str()}),
            Some(&ws.id),
            self.clock.now(),
        );
        job.dedupe_key = Some(format!("{USAGE_JOB}:{}", invoice.id));
        vec![job]
    }

    fn provider(&self) -> Result<&std::sync::Arc<dyn PaymentProvider>, Fault> {
        self.payments
            .as_ref()
            .ok_or_else(|| Fault::Failed("payments are not configured here".into()))
    }

    fn retry(&self, job: &Job, fault: Fault) -> Fault {
        match fault {
            Fault::Later(_, why) if job.attempts < MAX_ATTEMPTS => {
                Fault::Later(backoff(job.attempts), why)
            }
            other => Fault::Failed(other.message()),
        }
    }

    /// `billing.stripe.subscribe`: the customer (made once and noted), then the subscription.
    pub(crate) async fn stripe_subscribe(&self, job: &Job) -> Result<Option<DateTime<Utc>>, Fault> {
        let Some(ws_id) = job.workspace_id.as_ref() else {
            return Err(Fault::Failed("a subscription without its workspace".into()));
        };
        let Some(ws) = self.store.any_workspace(ws_id).await.map_err(storage)? else {
            return Ok(None);
        };
        if ws.plan == Plan::Free {
            return Ok(None);
        }
        self.subscribe(&ws).await.map_err(|f| self.retry(job, f))?;
        Ok(None)
    }

    async fn subscribe(&self, ws: &Workspace) -> Result<StripeCustomer, Fault> {
        let provider = self.provider()?;
        let now = self.clock.now();
        let mut customer = match self.store.stripe_customer(&ws.id).await.map_err(storage)? {
            Some(c) => c,
            None => {
                let customer = StripeCustomer {
                    customer_id: provider.create_customer(ws).await?,
                    subscription_id: None,
                };
                self.store
                    .set_stripe_customer(&ws.id, &customer, now)
                    .await
                    .map_err(storage)?;
                customer
            }
        };
        if customer.subscription_id.is_none() {
            // Stripe refuses a subscription until the customer has a way to pay (added on
            // Stripe's own pages): wait for it, retried with backoff.
            let subscription = provider
                .create_subscription(&customer.customer_id, ws)
                .await
                .map_err(|e| match e {
                    PaymentError::Rejected(why) => Fault::Later(
                        Duration::from_secs(30),
                        format!("the subscription waits: {why}"),
                    ),
                    other => other.into(),
                })?;
            customer.subscription_id = Some(subscription);
            self.store
                .set_stripe_customer(&ws.id, &customer, now)
                .await
                .map_err(storage)?;
        }
        Ok(customer)
    }

    /// `billing.stripe.usage`: a closed invoice's usage as meter events, identified by the
    /// invoice and meter. Waits for the workspace's customer if it is still being made.
    pub(crate) async fn stripe_usage(&self, job: &Job) -> Result<Option<DateTime<Utc>>, Fault> {
        let ids = (
            job.workspace_id.clone(),
            job.payload["invoice"]
                .as_str()
                .and_then(|i| InvoiceId::parse(i).ok()),
        );
        let (Some(ws), Some(id)) = ids else {
            return Err(Fault::Failed("usage without its invoice".into()));
        };
        let Some(invoice) = self.store.invoice(Some(&ws), &id).await.map_err(storage)? else {
            return Ok(None);
        };
        let sent = self.send_usage(&ws, &invoice).await;
        sent.map_err(|f| self.retry(job, f))?;
        Ok(None)
    }

    async fn send_usage(&self, ws: &WorkspaceId, invoice: &Invoice) -> Result<(), Fault> {
        let provider = self.provider()?;
        let customer = match self.store.stripe_customer(ws).await.map_err(storage)? {
            Some(c) => c,
            None => match self.store.any_workspace(ws).await.map_err(storage)? {
                // The subscription job has not run yet (or failed): make the customer now.
                Some(workspace) => self.subscribe(&workspace).await?,
                None => return Ok(()),
            },
        };
        let events = meter_events(invoice);
        provider
            .send_meter_events(&customer.customer_id, &events)
            .await?;
        tracing::info!(invoice = %invoice.id, events = events.len(), "usage sent to Stripe");
        Ok(())
    }
}

/// A closed invoice's usage as meter events: monthly active users, requests, rotations and
/// storage (MB-months), each a second before the month's end, identified by invoice and
/// meter; figures of zero are not sent.
pub fn meter_events(invoice: &Invoice) -> Vec<MeterEvent> {
    let (start, end) = crate::usage::month_span(Some(&invoice.month), invoice.created_at)
        .map(|(_, start, end)| (start, end))
        .unwrap_or((invoice.created_at, invoice.created_at));
    let days = u64::try_from((end - start).num_days()).unwrap_or(0).max(1);
    let u = &invoice.usage;
    let storage_mb_months = (u.storage_byte_days / days).div_ceil(1_000_000);
    [
        ("authsome_mau", u.mau),
        ("authsome_requests", u.requests),
        ("authsome_rotations", u.rotations),
        ("authsome_storage_mb_months", storage_mb_months),
    ]
    .into_iter()
    .filter(|(_, value)| *value > 0)
    .map(|(name, value)| MeterEvent {
        event_name: name.to_owned(),
        identifier: format!("{}:{name}", invoice.id),
        value,
        timestamp: end - chrono::Duration::seconds(1),
    })
    .collect()
}
