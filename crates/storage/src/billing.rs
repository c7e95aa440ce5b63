//! Billing's records: each workspace's plan history, the daily samples of its applications'
//! database sizes, and its invoices (a draft for the running month that is rewritten while it
//! runs, then closed once and never changed again).

use authsome_billing::{Invoice, InvoiceStatus};
use authsome_domain::id::{ApplicationId, InvoiceId, WorkspaceId};
use authsome_domain::page::{Page, PageRequest};
use authsome_domain::tenancy::Plan;
use chrono::{DateTime, Utc};

use crate::outbox::Outbox;
use crate::rows::{json, time};
use crate::{Result, StorageError};

/// One application's database size on one day (days since the Unix epoch, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSample {
    pub workspace_id: WorkspaceId,
    pub application_id: ApplicationId,
    pub day: i64,
    pub bytes: u64,
}

#[async_trait::async_trait]
pub trait BillingRepository {
    /// The workspace's plan from its creation and each change since, oldest first.
    async fn plan_history(&self, workspace: &WorkspaceId) -> Result<Vec<(DateTime<Utc>, Plan)>>;
    /// Stores the samples; one already taken for an application and day is kept.
    async fn add_storage_samples(&self, samples: &[StorageSample]) -> Result<()>;
    /// The last day any sample was taken.
    async fn last_storage_day(&self) -> Result<Option<i64>>;
    /// The workspace's samples of days `[from_day, to_day)`.
    async fn storage_samples(
        &self,
        workspace: &WorkspaceId,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<StorageSample>>;
    /// Writes `draft` as the workspace's invoice for its month unless that month is closed;
    /// the invoice stored for the month either way (a draft keeps the id it was first given).
    async fn save_draft_invoice(&self, draft: &Invoice) -> Result<Invoice>;
    /// Stores `invoice` as the month's closed invoice, with `jobs` (sending its usage on),
    /// unless the month was closed already; whether it was closed now (its outbox rows and
    /// jobs are stored only then).
    async fn close_invoice(
        &self,
        invoice: &Invoice,
        jobs: &[authsome_domain::job::Job],
        outbox: &Outbox,
    ) -> Result<bool>;
    async fn invoice_of_month(
        &self,
        workspace: &WorkspaceId,
        month: &str,
    ) -> Result<Option<Invoice>>;
    /// An invoice; with no workspace (the caller's access is checked on the one it names), any.
    async fn invoice(
        &self,
        workspace: Option<&WorkspaceId>,
        id: &InvoiceId,
    ) -> Result<Option<Invoice>>;
    async fn invoices(&self, workspace: &WorkspaceId, page: &PageRequest) -> Result<Page<Invoice>>;
    /// The workspace's Stripe customer and subscription, once made.
    async fn stripe_customer(&self, workspace: &WorkspaceId) -> Result<Option<StripeCustomer>>;
    /// Notes the workspace's Stripe customer and subscription (replacing what was noted).
    async fn set_stripe_customer(
        &self,
        workspace: &WorkspaceId,
        customer: &StripeCustomer,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// The workspace of a Stripe customer (a webhook's event, its signature verified).
    async fn any_workspace_of_stripe_customer(&self, customer: &str)
        -> Result<Option<WorkspaceId>>;
    /// Remembers the webhook event `event_id` and, with it, writes `update` (the workspace as
    /// the event leaves it), unless the event was processed before; whether it was now (the
    /// outbox rows are stored only then).
    async fn apply_stripe_event(
        &self,
        event_id: &str,
        at: DateTime<Utc>,
        update: Option<&authsome_domain::tenancy::Workspace>,
        outbox: &Outbox,
    ) -> Result<bool>;
    /// Forgets the ids of webhook events received before `older_than` (Stripe retries an
    /// event for three days).
    async fn purge_stripe_events(&self, older_than: DateTime<Utc>) -> Result<u64>;
}

/// A workspace's Stripe customer and subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeCustomer {
    pub customer_id: String,
    pub subscription_id: Option<String>,
}

pub(crate) const INVOICE_COLUMNS: &str = "id, workspace_id, status, body, created_at, closed_at";

#[derive(sqlx::FromRow)]
pub(crate) struct InvoiceRow {
    id: String,
    workspace_id: String,
    status: String,
    body: String,
    created_at: i64,
    closed_at: Option<i64>,
}

impl InvoiceRow {
    /// The body, with what the columns decide (id, status, times) taken from them.
    pub(crate) fn into_domain(self) -> Result<Invoice> {
        let corrupt = StorageError::Corrupt;
        let mut invoice: Invoice = json(&self.body, "invoices.body")?;
        invoice.id = InvoiceId::parse(&self.id).map_err(|_| corrupt("invoices.id"))?;
        invoice.workspace_id =
            WorkspaceId::parse(&self.workspace_id).map_err(|_| corrupt("invoices.workspace_id"))?;
        invoice.status = InvoiceStatus::parse(&self.status).ok_or(corrupt("invoices.status"))?;
        invoice.created_at = time(self.created_at, "invoices.created_at")?;
        invoice.closed_at = self
            .closed_at
            .map(|t| time(t, "invoices.closed_at"))
            .transpose()?;
        Ok(invoice)
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SampleRow {
    workspace_id: String,
    application_id: String,
    day: i64,
    bytes: i64,
}

impl SampleRow {
    pub(crate) fn into_domain(self) -> Result<StorageSample> {
        let corrupt = StorageError::Corrupt;
        Ok(StorageSample {
            workspace_id: WorkspaceId::parse(&self.workspace_id)
                .map_err(|_| corrupt("storage_samples.workspace_id"))?,
            application_id: ApplicationId::parse(&self.application_id)
                .map_err(|_| corrupt("storage_samples.application_id"))?,
            day: self.day,
            bytes: u64::try_from(self.bytes).map_err(|_| corrupt("storage_samples.bytes"))?,
        })
    }
}

pub(crate) fn body(invoice: &Invoice) -> String {
    serde_json::to_string(invoice).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn cents(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Implements [`BillingRepository`] for a store.
macro_rules! impl_billing {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::billing::BillingRepository for $store {
            async fn plan_history(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<Vec<(chrono::DateTime<chrono::Utc>, authsome_domain::tenancy::Plan)>>
            {
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT since, plan FROM plan_history WHERE workspace_id = $1 ORDER BY since",
                )
                .bind(workspace.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(since, plan)| {
                        Ok((
                            $crate::rows::time(since, "plan_history.since")?,
                            authsome_domain::tenancy::Plan::parse(&plan)
                                .ok_or($crate::StorageError::Corrupt("plan_history.plan"))?,
                        ))
                    })
                    .collect()
            }

            async fn add_storage_samples(
                &self,
                samples: &[$crate::billing::StorageSample],
            ) -> $crate::Result<()> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                for s in samples {
                    sqlx::query(
                        "INSERT INTO storage_samples (application_id, workspace_id, day, bytes) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (application_id, day) DO NOTHING",
                    )
                    .bind(s.application_id.as_str())
                    .bind(s.workspace_id.as_str())
                    .bind(s.day)
                    .bind($crate::billing::cents(s.bytes))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn last_storage_day(&self) -> $crate::Result<Option<i64>> {
                Ok(sqlx::query_scalar("SELECT MAX(day) FROM storage_samples")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn storage_samples(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                from_day: i64,
                to_day: i64,
            ) -> $crate::Result<Vec<$crate::billing::StorageSample>> {
                sqlx::query_as::<_, $crate::billing::SampleRow>(
                    "SELECT workspace_id, application_id, day, bytes FROM storage_samples \
                     WHERE workspace_id = $1 AND day >= $2 AND day < $3 \
                     ORDER BY application_id, day",
                )
                .bind(workspace.as_str())
                .bind(from_day)
                .bind(to_day)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map($crate::billing::SampleRow::into_domain)
                .collect()
            }

            async fn save_draft_invoice(
                &self,
                d: &authsome_billing::Invoice,
            ) -> $crate::Result<authsome_billing::Invoice> {
                sqlx::query(
                    "INSERT INTO invoices (id, workspace_id, month, status, body, total_cents, \
                     created_at, closed_at) VALUES ($1, $2, $3, 'draft', $4, $5, $6, NULL) \
                     ON CONFLICT (workspace_id, month) DO UPDATE SET body = $4, total_cents = $5 \
                     WHERE invoices.status = 'draft'",
                )
                .bind(d.id.as_str())
                .bind(d.workspace_id.as_str())
                .bind(&d.month)
                .bind($crate::billing::body(d))
                .bind($crate::billing::cents(d.total_cents))
                .bind($crate::rows::ms(d.created_at))
                .execute(&mut *self.writer().await?)
                .await?;
                self.invoice_of_month(&d.workspace_id, &d.month)
                    .await?
                    .ok_or($crate::StorageError::NotFound)
            }

            async fn close_invoice(
                &self,
                i: &authsome_billing::Invoice,
                jobs: &[authsome_domain::job::Job],
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<bool> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                // A draft of the month keeps its id: the one the billing view showed.
                let done = sqlx::query(
                    "INSERT INTO invoices (id, workspace_id, month, status, body, total_cents, \
                     created_at, closed_at) VALUES ($1, $2, $3, 'closed', $4, $5, $6, $7) \
                     ON CONFLICT (workspace_id, month) DO UPDATE SET status = 'closed', \
                     body = $4, total_cents = $5, closed_at = $7 \
                     WHERE invoices.status = 'draft'",
                )
                .bind(i.id.as_str())
                .bind(i.workspace_id.as_str())
                .bind(&i.month)
                .bind($crate::billing::body(i))
                .bind($crate::billing::cents(i.total_cents))
                .bind($crate::rows::ms(i.created_at))
                .bind(i.closed_at.map($crate::rows::ms))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                for job in jobs {
                    Self::insert_job_in(&mut tx, job).await?;
                }
                commit_with_outbox(tx, outbox).await?;
                Ok(true)
            }

            async fn invoice_of_month(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                month: &str,
            ) -> $crate::Result<Option<authsome_billing::Invoice>> {
                let sql = format!(
                    "SELECT {} FROM invoices WHERE workspace_id = $1 AND month = $2",
                    $crate::billing::INVOICE_COLUMNS
                );
                sqlx::query_as::<_, $crate::billing::InvoiceRow>(&sql)
                    .bind(workspace.as_str())
                    .bind(month)
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::billing::InvoiceRow::into_domain)
                    .transpose()
            }

            async fn invoice(
                &self,
                workspace: Option<&authsome_domain::id::WorkspaceId>,
                id: &authsome_domain::id::InvoiceId,
            ) -> $crate::Result<Option<authsome_billing::Invoice>> {
                let sql = format!(
                    "SELECT {} FROM invoices WHERE id = $1 AND ($2 IS NULL OR workspace_id = $2)",
                    $crate::billing::INVOICE_COLUMNS
                );
                sqlx::query_as::<_, $crate::billing::InvoiceRow>(&sql)
                    .bind(id.as_str())
                    .bind(workspace.map(|w| w.as_str()))
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::billing::InvoiceRow::into_domain)
                    .transpose()
            }

            async fn invoices(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                page: &authsome_domain::page::PageRequest,
            ) -> $crate::Result<authsome_domain::page::Page<authsome_billing::Invoice>> {
                $crate::vault::scoped_page!(
                    self,
                    $crate::billing::InvoiceRow,
                    $crate::billing::INVOICE_COLUMNS,
                    "invoices",
                    workspace,
                    page
                )
            }

            async fn stripe_customer(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
            ) -> $crate::Result<Option<$crate::billing::StripeCustomer>> {
                let row: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT customer_id, subscription_id FROM stripe_customers \
                     WHERE workspace_id = $1",
                )
                .bind(workspace.as_str())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(customer_id, subscription_id)| $crate::billing::StripeCustomer {
                    customer_id,
                    subscription_id,
                }))
            }

            async fn set_stripe_customer(
                &self,
                workspace: &authsome_domain::id::WorkspaceId,
                c: &$crate::billing::StripeCustomer,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO stripe_customers (workspace_id, customer_id, subscription_id, \
                     updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO UPDATE \
                     SET customer_id = $2, subscription_id = $3, updated_at = $4",
                )
                .bind(workspace.as_str())
                .bind(&c.customer_id)
                .bind(c.subscription_id.as_deref())
                .bind($crate::rows::ms(at))
                .execute(&mut *self.writer().await?)
                .await
                .map_err($crate::rows::unique)?;
                Ok(())
            }

            async fn any_workspace_of_stripe_customer(
                &self,
                customer: &str,
            ) -> $crate::Result<Option<authsome_domain::id::WorkspaceId>> {
                let id: Option<String> = sqlx::query_scalar(
                    "SELECT workspace_id FROM stripe_customers WHERE customer_id = $1",
                )
                .bind(customer)
                .fetch_optional(&self.pool)
                .await?;
                id.map(|id| {
                    authsome_domain::id::WorkspaceId::parse(&id)
                        .map_err(|_| $crate::StorageError::Corrupt("stripe_customers.workspace_id"))
                })
                .transpose()
            }

            async fn purge_stripe_events(
                &self,
                older_than: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                Ok(sqlx::query("DELETE FROM stripe_events WHERE received_at < $1")
                    .bind($crate::rows::ms(older_than))
                    .execute(&mut *self.writer().await?)
                    .await?
                    .rows_affected())
            }

            async fn apply_stripe_event(
                &self,
                event_id: &str,
                at: chrono::DateTime<chrono::Utc>,
                update: Option<&authsome_domain::tenancy::Workspace>,
                outbox: &$crate::outbox::Outbox,
            ) -> $crate::Result<bool> {
                let mut w = self.writer().await?;
                let mut tx = sqlx::Connection::begin(&mut *w).await?;
                let done = sqlx::query(
                    "INSERT INTO stripe_events (id, received_at) VALUES ($1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(event_id)
                .bind($crate::rows::ms(at))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                if let Some(ws) = update {
                    Self::update_workspace_in(&mut tx, ws).await?;
                }
                commit_with_outbox(tx, outbox).await?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_billing;
