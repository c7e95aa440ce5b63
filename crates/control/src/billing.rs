//! Invoices: at each month's close, one per workspace, priced from the month's usage by
//! `authsome-billing` and stored for good; a draft for the running month, recomputed whenever
//! it is read; usage of a closed month that arrives late is charged as a correction line on the
//! next month's invoice. Billing and invoices are for a workspace's owners and for platform
//! operators, who also close a month on demand (a month closes by itself once it has ended).
//!
//! This module gathers and stores; the prices and the arithmetic are `authsome-billing`'s.

use authsome_billing::invoice::{correction_line, plan_days, price_month};
use authsome_billing::{total, BilledUsage, Correction, Invoice, InvoiceStatus, PlanDays, Pricing};
use authsome_domain::event::DomainEvent;
use authsome_domain::id::{InvoiceId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::{Actor, PaymentStatus, Permission, Plan, Workspace};
use chrono::{DateTime, Utc};

use crate::usage::{month_span, WorkspaceUsage};
use crate::{ControlError, ControlPlane, Result};

/// How long after a month ends it closes by itself: replicas' last request counts of the
/// month are flushed within seconds, so what arrives later is rare (and a correction).
const CLOSE_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// How long a workspace's count of monthly active users answers for sign-ups: a minute, a
/// second once it is within 1% of the limit.
const MAU_COUNT_AGE: std::time::Duration = std::time::Duration::from_secs(60);
const MAU_COUNT_AGE_NEAR_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Each workspace's monthly active users as last counted here, with the sign-ups admitted since.
#[derive(Default)]
pub(crate) struct MauCounts {
    counts: std::sync::Mutex<
        std::collections::HashMap<
            WorkspaceId,
            (authsome_domain::clock::CoarseInstant, String, u64),
        >,
    >,
}

/// Workspaces whose count is remembered (the map is cleared past it; it only saves counting).
const MAX_MAU_COUNTS: usize = 100_000;

/// `GET /control/v1/workspaces/{wsId}/billing`.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BillingView {
    pub plan: Plan,
    pub payment_status: PaymentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    pub current_period: CurrentPeriod,
}

#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CurrentPeriod {
    pub month: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub draft_invoice_id: InvoiceId,
    /// The draft's total so far, in cents.
    pub draft_total_cents: u64,
}

/// What the Stripe webhook did with an event.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceipt {
    pub received: bool,
    /// False when the event was processed before (a redelivery: no second effect).
    pub applied: bool,
}

/// What closing a month did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CloseSummary {
    pub month: String,
    /// Invoices closed now.
    pub closed: u64,
    /// Workspaces whose month was closed before.
    pub already_closed: u64,
}

impl ControlPlane {
    /// Verifies Stripe webhook events with this endpoint secret (`AUTHSOME_STRIPE_WEBHOOK_SECRET`).
    pub fn with_stripe_webhook_secret(mut self, secret: zeroize::Zeroizing<String>) -> Self {
        self.stripe_webhook_secret = Some(secret);
        self
    }

    /// A Stripe webhook delivery: `Stripe-Signature` checked (400 and nothing changed when it
    /// does not verify or is stale), then the event applied once, remembered by its id:
    /// `invoice.payment_failed` makes its customer's workspace past due (the customer API
    /// answers 402), `invoice.paid` current again, `customer.subscription.deleted` free. Other
    /// events, and events of customers that are no workspace's, are acknowledged and ignored.
    pub async fn stripe_webhook(
        &self,
        signature: Option<&str>,
        payload: &[u8],
    ) -> Result<WebhookReceipt> {
        use authsome_billing::stripe;
        let header = signature.ok_or_else(|| {
            authsome_domain::ValidationError::new("Stripe-Signature", "the header is required")
        })?;
        let secret = self
            .stripe_webhook_secret
            .as_ref()
            .ok_or(ControlError::NotFound("route"))?;
        let now = self.clock.now();
        stripe::verify(header, payload, secret, now.timestamp()).map_err(|e| {
            authsome_domain::ValidationError::new("Stripe-Signature", e.to_string())
        })?;
        let event: stripe::Event = serde_json::from_slice(payload)
            .map_err(|_| authsome_domain::ValidationError::new("body", "is not a Stripe event"))?;
        let workspace = match event.customer() {
            Some(customer) => match self
                .store
                .any_workspace_of_stripe_customer(customer)
                .await?
            {
                Some(id) => self.store.any_workspace(&id).await?,
                None => None,
            },
            None => None,
        };
        let (Some(mut ws), Some(effect)) = (workspace, event.effect()) else {
            let applied = self
                .store
                .apply_stripe_event(
                    &event.id,
                    now,
                    None,
                    &authsome_storage::outbox::Outbox::empty(),
                )
                .await?;
            return Ok(WebhookReceipt {
                received: true,
                applied,
            });
        };
        let mut audit = DomainEvent::new("billing.stripe.event")
            .workspace(&ws.id)
            .target(&ws.id)
            .change("event", event.id.as_str())
            .change("type", event.kind.as_str());
        match effect {
            stripe::Effect::PastDue | stripe::Effect::Current => {
                let status = if effect == stripe::Effect::PastDue {
                    PaymentStatus::PastDue
                } else {
                    PaymentStatus::Current
                };
                audit = audit.changed("paymentStatus", &ws.payment_status, &status);
                ws.payment_status = status;
            }
            stripe::Effect::Free => {
                audit = audit.changed("plan", &ws.plan, &Plan::Free);
                ws.plan = Plan::Free;
                ws.limits = Default::default();
            }
        }
        ws.updated_at = now;
        let applied = self
            .audited(None, vec![audit], async |outbox| {
                match self
                    .store
                    .apply_stripe_event(&event.id, now, Some(&ws), outbox)
                    .await
                {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(ControlError::Conflict("processed before".into())),
                    Err(e) => Err(e.into()),
                }
            })
            .await;
        let applied = match applied {
            Ok(()) => true,
            Err(ControlError::Conflict(_)) => false,
            Err(e) => return Err(e),
        };
        if applied {
            if effect == stripe::Effect::Free {
                if let Some(mut customer) = self.store.stripe_customer(&ws.id).await? {
                    customer.subscription_id = None;
                    self.store
                        .set_stripe_customer(&ws.id, &customer, now)
                        .await?;
                }
            }
            self.invalidate(crate::keys::Invalidation::Workspace(ws.id.clone()));
        }
        Ok(WebhookReceipt {
            received: true,
            applied,
        })
    }

    /// Whether the application's workspace takes new users: on free, sign-ups stop once its
    /// applications together counted the plan's monthly active users this month (402, naming
    /// the limit), while users who exist keep signing in. Counted across the applications'
    /// databases at most once a minute per process (every second near the limit), plus this
    /// process's admitted sign-ups since; other replicas' sign-ups in that interval may pass.
    pub async fn admit_sign_up(
        &self,
        application: &authsome_domain::tenancy::Application,
    ) -> Result<()> {
        let ws = self.workspace_view(&application.workspace_id).await?;
        let Some(limit) = ws.monthly_active_users_limit() else {
            return Ok(());
        };
        let month = authsome_domain::identity::month_of(self.clock.now());
        let cached = {
            let counts = self
                .mau_counts
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            counts.get(&ws.id).and_then(|(at, m, n)| {
                let age = if *n >= limit - limit / 100 {
                    MAU_COUNT_AGE_NEAR_LIMIT
                } else {
                    MAU_COUNT_AGE
                };
                (*m == month && self.clock.elapsed(*at) < age).then_some(*n)
            })
        };
        let counted = match cached {
            Some(n) => n,
            None => self.workspace_mau(&ws.id, &month).await?,
        };
        if counted >= limit {
            return Err(ControlError::PaymentRequired(format!(
                "the free plan allows {limit} monthly active users and this month has reached                  them: new sign-ups are refused until next month or an upgrade (existing users                  still sign in)"
            )));
        }
        let mut counts = self
            .mau_counts
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_MAU_COUNTS {
            counts.clear();
        }
        match counts.get_mut(&ws.id) {
            Some(entry) if cached.is_some() => entry.2 += 1,
            _ => {
                counts.insert(ws.id.clone(), (self.clock.instant(), month, counted + 1));
            }
        }
        Ok(())
    }

    /// The workspace's plan, payment standing and running month (owners and operators).
    pub async fn billing(&self, actor: &Actor, ws: &WorkspaceId) -> Result<BillingView> {
        let workspace = self
            .workspace_as_member_or_operator(actor, ws, Permission::Billing)
            .await?;
        let draft = self.draft_invoice(&workspace).await?;
        let stripe = self.store.stripe_customer(ws).await?;
        Ok(BillingView {
            plan: workspace.plan,
            payment_status: workspace.payment_status,
            stripe_customer_id: stripe.as_ref().map(|c| c.customer_id.clone()),
            subscription_id: stripe.and_then(|c| c.subscription_id),
            current_period: CurrentPeriod {
                month: draft.month,
                draft_invoice_id: draft.id,
                draft_total_cents: draft.total_cents,
            },
        })
    }

    /// The workspace's invoices, oldest first, the running month's draft brought up to date.
    pub async fn invoices(
        &self,
        actor: &Actor,
        ws: &WorkspaceId,
        page: &PageRequest,
    ) -> Result<Page<Invoice>> {
        let workspace = self
            .workspace_as_member_or_operator(actor, ws, Permission::Billing)
            .await?;
        self.draft_invoice(&workspace).await?;
        Ok(self.store.invoices(ws, page).await?)
    }

    /// One invoice (a draft brought up to date) and its workspace, for the workspace's owners
    /// and operators; anyone else learns nothing of it.
    pub async fn invoice(&self, actor: &Actor, id: &InvoiceId) -> Result<(Invoice, Workspace)> {
        let invoice = self
            .store
            .invoice(None, id)
            .await?
            .ok_or(ControlError::NotFound("invoice"))?;
        let workspace = self
            .workspace_as_member_or_operator(actor, &invoice.workspace_id, Permission::Billing)
            .await?;
        if invoice.status == InvoiceStatus::Draft {
            let current = crate::usage::month_span(None, self.clock.now())?.0;
            if invoice.month == current {
                let fresh = self.draft_invoice(&workspace).await?;
                return Ok((fresh, workspace));
            }
        }
        Ok((invoice, workspace))
    }

    /// Platform operators: closes `month` for every workspace now (it must have ended).
    pub async fn admin_close_month(&self, actor: &Actor, month: &str) -> Result<CloseSummary> {
        self.require_platform_operator(actor).await?;
        self.close_month(month).await
    }

    /// Closes `month` for every workspace that existed in it: each invoice stored once; a
    /// workspace whose month is closed already is left as it is.
    pub async fn close_month(&self, month: &str) -> Result<CloseSummary> {
        let now = self.clock.now();
        let (month, start, end) = month_span(Some(month), now)?;
        if end > now {
            return Err(ControlError::Conflict(format!(
                "{month} has not ended yet: a month is closed after its last day"
            )));
        }
        self.flush_request_counts().await?;
        let mut summary = CloseSummary {
            month: month.clone(),
            ..CloseSummary::default()
        };
        let mut page = PageRequest::first(100);
        loop {
            let workspaces = self.store.all_workspaces(&page).await?;
            for ws in workspaces
                .items
                .iter()
                .filter(|w| !w.root && w.created_at < end)
            {
                let draft = self.store.invoice_of_month(&ws.id, &month).await?;
                if draft
                    .as_ref()
                    .is_some_and(|d| d.status == InvoiceStatus::Closed)
                {
                    summary.already_closed += 1;
                    continue;
                }
                let mut invoice = self
                    .compute_invoice(ws, &month, start, end, InvoiceStatus::Closed)
                    .await?;
                // The draft's id is the invoice's for good (the store keeps it too).
                if let Some(draft) = draft {
                    invoice.id = draft.id;
                    invoice.created_at = draft.created_at;
                }
                let jobs = self.usage_jobs(ws, &invoice);
                let event = DomainEvent::new("billing.invoice.closed")
                    .workspace(&ws.id)
                    .target(&invoice.id)
                    .change("month", month.as_str())
                    .change("totalCents", invoice.total_cents);
                // Closed meanwhile by another replica: nothing was written (nor audited).
                let closed = self
                    .audited(None, vec![event], async |outbox| {
                        match self.store.close_invoice(&invoice, &jobs, outbox).await {
                            Ok(true) => Ok(()),
                            Ok(false) => Err(ControlError::Conflict("closed already".into())),
                            Err(e) => Err(e.into()),
                        }
                    })
                    .await;
                match closed {
                    Ok(()) => summary.closed += 1,
                    Err(ControlError::Conflict(_)) => summary.already_closed += 1,
                    Err(e) => return Err(e),
                }
            }
            match workspaces.next_cursor {
                Some(cursor) => page = PageRequest::parse(Some(100), Some(&cursor))?,
                None => break,
            }
        }
        Ok(summary)
    }

    /// Closes the month before this one once it has been over for a while, unless this
    /// process did already (the maintenance loop; other replicas' closes are no-ops).
    pub(crate) async fn close_past_month(&self) -> Result<()> {
        let now = self.clock.now();
        let (this_month, start, _) = month_span(None, now)?;
        if now < start + CLOSE_AFTER {
            return Ok(());
        }
        let previous = crate::usage::month_before(&this_month)?;
        {
            let closed = self.month_closed.lock().unwrap_or_else(|e| e.into_inner());
            if closed.as_deref() == Some(previous.as_str()) {
                return Ok(());
            }
        }
        let summary = self.close_month(&previous).await?;
        if summary.closed > 0 {
            tracing::info!(month = %previous, invoices = summary.closed, "month closed");
        }
        *self.month_closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(previous);
        Ok(())
    }

    /// The running month's invoice as it stands now, stored as the month's draft (which keeps
    /// its id while it is rewritten).
    async fn draft_invoice(&self, ws: &Workspace) -> Result<Invoice> {
        let (month, start, end) = month_span(None, self.clock.now())?;
        let draft = self
            .compute_invoice(ws, &month, start, end, InvoiceStatus::Draft)
            .await?;
        Ok(self.store.save_draft_invoice(&draft).await?)
    }

    /// Prices the workspace's `month` from its usage counted now, with a correction for usage
    /// of the month before that arrived after that month was closed.
    async fn compute_invoice(
        &self,
        ws: &Workspace,
        month: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        status: InvoiceStatus,
    ) -> Result<Invoice> {
        let now = self.clock.now();
        let days_in_month = days_between(start, end);
        let usage = billed(&self.count_month(&ws.id, month, start, end).await?);
        let mut history = self.store.plan_history(&ws.id).await?;
        if history.is_empty() {
            history.push((ws.created_at, ws.plan));
        }
        let plans: Vec<PlanDays> = plan_days(&history, start, days_in_month)
            .into_iter()
            .map(|(plan, days)| PlanDays {
                plan,
                pricing: Pricing::for_plan(plan, &ws.limits),
                days,
            })
            .collect();
        let (plan, pricing, mut lines) = price_month(&plans, &usage, days_in_month);
        let mut correction = None;
        let previous = crate::usage::month_before(month)?;
        if let Some(prior) = self.store.invoice_of_month(&ws.id, &previous).await? {
            if prior.status == InvoiceStatus::Closed {
                let (_, p_start, p_end) = month_span(Some(&previous), now)?;
                let counted = billed(&self.count_month(&ws.id, &previous, p_start, p_end).await?);
                let late = Correction {
                    month: previous,
                    billed: prior.usage,
                    counted,
                };
                if let Some(line) =
                    correction_line(&prior.pricing, &late, days_between(p_start, p_end))
                {
                    lines.push(line);
                    correction = Some(late);
                }
            }
        }
        Ok(Invoice {
            id: InvoiceId::new(),
            workspace_id: ws.id.clone(),
            month: month.to_owned(),
            status,
            currency: "usd".into(),
            plan,
            pricing,
            total_cents: total(&lines),
            lines,
            usage,
            correction,
            created_at: now,
            closed_at: (status == InvoiceStatus::Closed).then_some(now),
        })
    }
}

fn days_between(start: DateTime<Utc>, end: DateTime<Utc>) -> u32 {
    u32::try_from((end - start).num_days()).unwrap_or(31)
}

/// What an invoice charges for, from the month's counts.
fn billed(usage: &WorkspaceUsage) -> BilledUsage {
    BilledUsage {
        mau: usage.totals.mau,
        requests: usage.totals.requests,
        storage_byte_days: usage.applications.iter().map(|a| a.storage_byte_days).sum(),
        rotations: usage.totals.rotations,
    }
}
