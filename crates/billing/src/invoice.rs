//! An invoice: one workspace's month priced into lines, with the usage it was computed from,
//! and how it is printed (JSON through serde, CSV and a printable HTML page here).
//!
//! Which plan a month is priced by: the fee of each paid plan the workspace was on, pro-rated
//! by the days it ended on that plan; usage by the last paid plan of the month (so moving to
//! free on the last day does not waive a month of usage), or free when there was none.

use authsome_domain::id::{InvoiceId, WorkspaceId};
use authsome_domain::tenancy::Plan;
use chrono::{DateTime, Utc};

use crate::{lines, total, Line, LineKind, Pricing, Usage};

/// A draft is recomputed whenever it is read; a closed invoice never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Closed,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(Self::Draft),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// The usage an invoice charges for, as counted when it was computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BilledUsage {
    pub mau: u64,
    pub requests: u64,
    /// The applications' database sizes summed over the month's daily samples.
    pub storage_byte_days: u64,
    pub rotations: u64,
}

impl BilledUsage {
    /// Whether any count is above `other`'s.
    pub fn exceeds(&self, other: &BilledUsage) -> bool {
        self.mau > other.mau
            || self.requests > other.requests
            || self.storage_byte_days > other.storage_byte_days
            || self.rotations > other.rotations
    }
}

/// Usage of the month before that arrived after its invoice was closed: what was billed, what
/// is counted now, and the difference charged on this invoice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Correction {
    pub month: String,
    pub billed: BilledUsage,
    pub counted: BilledUsage,
}

/// A workspace's invoice for a month.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "ivc_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: InvoiceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub workspace_id: WorkspaceId,
    /// `YYYY-MM` (UTC).
    pub month: String,
    pub status: InvoiceStatus,
    /// Always `usd`.
    pub currency: String,
    /// The plan the usage was priced by.
    pub plan: Plan,
    /// Its prices, as applied.
    pub pricing: Pricing,
    pub lines: Vec<Line>,
    pub total_cents: u64,
    pub usage: BilledUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correction: Option<Correction>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
}

/// The days of a month a workspace ended on one plan, and that plan's prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDays {
    pub plan: Plan,
    pub pricing: Pricing,
    pub days: u32,
}

/// The days of the month starting at `start` (of `days_in_month` days) that ended on each
/// plan, in order of first appearance, from the workspace's plan history (each change with
/// its time, the first being the workspace's creation). Days that ended before the workspace
/// existed count for no plan.
pub fn plan_days(
    history: &[(DateTime<Utc>, Plan)],
    start: DateTime<Utc>,
    days_in_month: u32,
) -> Vec<(Plan, u32)> {
    let mut out: Vec<(Plan, u32)> = Vec::new();
    for day in 0..days_in_month {
        let end = start + chrono::Duration::days(i64::from(day) + 1);
        let Some((_, plan)) = history
            .iter()
            .filter(|(at, _)| *at < end)
            .max_by_key(|(at, _)| *at)
        else {
            continue;
        };
        match out.iter_mut().find(|(p, _)| p == plan) {
            Some((_, n)) => *n += 1,
            None => out.push((*plan, 1)),
        }
    }
    out
}

/// Prices a month: each paid plan's fee for its days, and the usage under the last paid plan
/// (free when there was none). The plan and prices the usage was priced by, and the lines.
pub fn price_month(
    plans: &[PlanDays],
    usage: &BilledUsage,
    days_in_month: u32,
) -> (Plan, Pricing, Vec<Line>) {
    let paid = |p: &&PlanDays| p.plan != Plan::Free && p.days > 0;
    let by = plans
        .iter()
        .rfind(paid)
        .or(plans.last())
        .cloned()
        .unwrap_or(PlanDays {
            plan: Plan::Free,
            pricing: Pricing::free(),
            days: 0,
        });
    let mut out = Vec::new();
    for other in plans.iter().filter(paid).filter(|p| p.plan != by.plan) {
        let fee = lines(
            &other.pricing,
            &Usage {
                days_in_month,
                days_on_plan: other.days,
                ..Usage::default()
            },
        );
        out.extend(fee.into_iter().filter(|l| l.kind == LineKind::Base));
    }
    out.extend(lines(&by.pricing, &as_usage(usage, days_in_month, by.days)));
    (by.plan, by.pricing, out)
}

fn as_usage(usage: &BilledUsage, days_in_month: u32, days_on_plan: u32) -> Usage {
    Usage {
        mau: usage.mau,
        requests: usage.requests,
        storage_byte_days: u128::from(usage.storage_byte_days),
        rotations: usage.rotations,
        days_in_month,
        days_on_plan,
    }
}

/// The line charging for usage of `correction.month` counted after it was closed: what the
/// counted usage costs under the prices that month was billed by, less what was billed.
/// `None` when nothing more was counted.
pub fn correction_line(
    pricing: &Pricing,
    correction: &Correction,
    days_in_month: u32,
) -> Option<Line> {
    if !correction.counted.exceeds(&correction.billed) {
        return None;
    }
    // The fee is the same in both and cancels out.
    let cost = |u: &BilledUsage| total(&lines(pricing, &as_usage(u, days_in_month, 0)));
    let amount = cost(&correction.counted).saturating_sub(cost(&correction.billed));
    let (c, b) = (&correction.counted, &correction.billed);
    let mut what = Vec::new();
    for (n, name) in [
        (c.mau.saturating_sub(b.mau), "monthly active users"),
        (c.requests.saturating_sub(b.requests), "requests"),
        (c.rotations.saturating_sub(b.rotations), "rotations"),
    ] {
        if n > 0 {
            what.push(format!("{n} {name}"));
        }
    }
    if c.storage_byte_days > b.storage_byte_days {
        what.push("storage".into());
    }
    Some(Line {
        kind: LineKind::Correction,
        description: format!(
            "Usage of {} counted after it was closed: {}",
            correction.month,
            what.join(", ")
        ),
        quantity: 1,
        unit_amount_decimal: amount.to_string(),
        amount_cents: amount,
    })
}

/// `cents` as dollars: `2500` -> `$25.00`.
pub fn dollars(cents: u64) -> String {
    format!("${}.{:02}", crate::thousands(cents / 100), cents % 100)
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

impl Invoice {
    /// One row per line (`kind,description,quantity,unitAmountDecimal,amountCents`), then
    /// the total; amounts in cents.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("kind,description,quantity,unitAmountDecimal,amountCents\n");
        for l in &self.lines {
            let kind = serde_json::to_value(l.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            out.push_str(&format!(
                "{kind},{},{},{},{}\n",
                csv_field(&l.description),
                l.quantity,
                l.unit_amount_decimal,
                l.amount_cents
            ));
        }
        out.push_str(&format!("total,,,,{}\n", self.total_cents));
        out
    }

    /// A printable page (every value escaped by the template engine).
    pub fn to_html(&self, workspace_name: &str) -> String {
        let page = InvoicePage {
            invoice: self,
            workspace_name,
            rows: self
                .lines
                .iter()
                .map(|l| Row {
                    description: &l.description,
                    quantity: crate::thousands(l.quantity),
                    unit: format!("{}¢", l.unit_amount_decimal),
                    amount: dollars(l.amount_cents),
                })
                .collect(),
            total: dollars(self.total_cents),
        };
        askama::Template::render(&page).unwrap_or_else(|e| format!("invoice: {e}"))
    }
}

struct Row<'a> {
    description: &'a str,
    quantity: String,
    unit: String,
    amount: String,
}

#[derive(askama::Template)]
#[template(path = "invoice.html")]
struct InvoicePage<'a> {
    invoice: &'a Invoice,
    workspace_name: &'a str,
    rows: Vec<Row<'a>>,
    total: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn a_day_counts_for_the_plan_it_ended_on() {
        let start = at(1, 0);
        // Created on the 5th on free, pro from the 11th at noon.
        let history = [(at(5, 9), Plan::Free), (at(11, 12), Plan::Pro)];
        assert_eq!(
            plan_days(&history, start, 30),
            [(Plan::Free, 6), (Plan::Pro, 20)]
        );
        // Created before the month: all of it.
        let before = [(at(1, 0) - chrono::Duration::days(40), Plan::Pro)];
        assert_eq!(plan_days(&before, start, 30), [(Plan::Pro, 30)]);
    }

    #[test]
    fn usage_is_priced_by_the_last_paid_plan_and_each_fee_by_its_days() {
        let plans = [
            PlanDays {
                plan: Plan::Pro,
                pricing: Pricing::pro(),
                days: 20,
            },
            PlanDays {
                plan: Plan::Free,
                pricing: Pricing::free(),
                days: 10,
            },
        ];
        let usage = BilledUsage {
            mau: 20_000,
            ..BilledUsage::default()
        };
        let (plan, _, l) = price_month(&plans, &usage, 30);
        assert_eq!(plan, Plan::Pro);
        // 20 of 30 days of $25, and 10,000 users beyond the included at 2 cents.
        assert_eq!(total(&l), 1_667 + 20_000);
        // Free all month: nothing.
        let free = [PlanDays {
            plan: Plan::Free,
            pricing: Pricing::free(),
            days: 30,
        }];
        assert_eq!(total(&price_month(&free, &usage, 30).2), 0);
    }

    #[test]
    fn late_usage_is_charged_once_as_a_correction() {
        let billed = BilledUsage {
            mau: 10_000,
            ..BilledUsage::default()
        };
        let mut c = Correction {
            month: "2026-10".into(),
            billed,
            counted: billed,
        };
        assert_eq!(correction_line(&Pricing::pro(), &c, 31), None);
        c.counted.mau = 10_100;
        c.counted.requests = 7;
        let line = correction_line(&Pricing::pro(), &c, 31).unwrap();
        assert_eq!(
            line.amount_cents, 200,
            "100 users beyond the included at 2 cents"
        );
        assert_eq!(
            line.description,
            "Usage of 2026-10 counted after it was closed: 100 monthly active users, 7 requests"
        );
    }

    #[test]
    fn csv_quotes_and_html_escapes() {
        let invoice = Invoice {
            id: InvoiceId::new(),
            workspace_id: WorkspaceId::new(),
            month: "2026-11".into(),
            status: InvoiceStatus::Closed,
            currency: "usd".into(),
            plan: Plan::Pro,
            pricing: Pricing::pro(),
            lines: lines(
                &Pricing::pro(),
                &Usage {
                    mau: 12_000,
                    days_in_month: 30,
                    days_on_plan: 30,
                    ..Usage::default()
                },
            ),
            total_cents: 6_500,
            usage: BilledUsage::default(),
            correction: None,
            created_at: at(1, 0),
            closed_at: Some(at(30, 0)),
        };
        let csv = invoice.to_csv();
        assert!(csv.contains("mau,\"Monthly active users included (10,000)\",10000,0,0\n"));
        assert!(csv.ends_with("total,,,,6500\n"));
        let html = invoice.to_html("<script>alert(1)</script> & Co");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("$65.00"));
        assert!(html.contains("Monthly active users 10,001 to 100,000"));
    }
}
