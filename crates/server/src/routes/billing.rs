//! Billing: a workspace's plan and running month (`…/billing`), its invoices (JSON, a printable
//! HTML page, CSV), and platform operators closing a month.

use authsome_billing::Invoice;
use authsome_control::billing::{BillingView, CloseSummary, WebhookReceipt};
use authsome_domain::id::{InvoiceId, WorkspaceId};
use authsome_domain::ValidationError;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, ListParams, Query};
use crate::views::List;
use crate::AppState;

/// The workspace's plan, payment standing and running month with its draft invoice. Owners
/// and platform operators.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/billing", tag = "billing",
    params(("wsId" = String, Path)),
    responses((status = 200, body = BillingView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn billing(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<BillingView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(axum::Json(state.control.billing(&caller.actor, &ws).await?))
}

/// The workspace's invoices, oldest first: one per closed month, and the running month's
/// draft. Owners and platform operators.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/invoices", tag = "billing",
    params(("wsId" = String, Path), ListParams),
    responses((status = 200, body = List<Invoice>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn invoices(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<List<Invoice>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let page = state
        .control
        .invoices(&caller.actor, &ws, &params.page()?)
        .await?;
    Ok(axum::Json(List::from_page(page, |i| i)))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceParams {
    /// `json` (default), `html` (a printable page) or `csv` (one row per line, then the total).
    #[param(schema_with = format_schema)]
    pub format: Option<String>,
}

fn format_schema() -> utoipa::openapi::Object {
    authsome_domain::schema::one_of(
        &["json", "html", "csv"],
        "The invoice's format (default `json`)",
    )
}

/// An invoice, amounts in integer cents: as JSON, a printable HTML page or CSV. A draft (the
/// running month) is brought up to date when read; a closed one never changes. Owners of its
/// workspace and platform operators.
#[utoipa::path(get, path = "/control/v1/invoices/{ivcId}", tag = "billing",
    params(("ivcId" = String, Path), InvoiceParams),
    responses((status = 200, description = "The invoice",
            content((Invoice = "application/json"), (String = "text/html"), (String = "text/csv"))),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn invoice(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<InvoiceParams>,
) -> Result<Response, ApiError> {
    let id: InvoiceId = path_id(&id, "invoice")?;
    let format = params.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "html" | "csv") {
        return Err(ValidationError::new("format", "must be json, html or csv").into());
    }
    let (invoice, workspace) = state.control.invoice(&caller.actor, &id).await?;
    let name = format!("invoice-{}-{}", invoice.month, invoice.id);
    Ok(match format {
        "html" => {
            let mut response = invoice.to_html(&workspace.name).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            // A page of text and inline style: nothing else may load or run in it.
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            response
        }
        "csv" => {
            let mut response = invoice.to_csv().into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        _ => axum::Json(invoice).into_response(),
    })
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CloseParams {
    /// The month to close, `YYYY-MM` (UTC); it must have ended.
    #[param(schema_with = authsome_domain::schema::month)]
    pub month: String,
}

/// Platform operators: closes a month for every workspace now, each invoice stored once.
/// Idempotent: closing a month again changes nothing. (A month closes by itself shortly after
/// it ends.)
#[utoipa::path(post, path = "/control/v1/admin/billing/close", tag = "admin",
    params(CloseParams),
    responses((status = 200, body = CloseSummary), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<CloseParams>,
) -> Result<axum::Json<CloseSummary>, ApiError> {
    Ok(axum::Json(
        state
            .control
            .admin_close_month(&caller.actor, &params.month)
            .await?,
    ))
}

/// Stripe's webhook: the `Stripe-Signature` header verified (Stripe's scheme, 300 s
/// tolerance, any of several `v1` signatures) before anything is read; `invoice.payment_failed`
/// makes the customer's workspace past due, `invoice.paid` current, and
/// `customer.subscription.deleted` free. Each event applies once (redeliveries answer
/// `applied: false`). A missing, bad or stale signature is 400 and changes nothing. Exists
/// when `AUTHSOME_STRIPE_WEBHOOK_SECRET` is set (404 otherwise).
#[utoipa::path(post, path = "/control/v1/billing/stripe/webhook", tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256>`")),
    request_body(content = Object, content_type = "application/json", description = "A Stripe event"),
    responses((status = 200, body = WebhookReceipt), (status = "4XX", body = ErrorBody)))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<WebhookReceipt>, ApiError> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    Ok(axum::Json(
        state.control.stripe_webhook(signature, &body).await?,
    ))
}
