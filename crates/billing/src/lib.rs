//! Billing's rules as plain functions, without I/O: what each plan costs ([`Pricing`]) and how
//! a month's usage becomes invoice lines ([`lines`]), every amount in integer cents.
//!
//! Prices finer than a cent (1.5 cents per monthly active user) are kept in millicents (a
//! thousandth of a cent) and each line's amount is rounded half up to a cent once, so a line's
//! amount is what its quantity times its unit price says, and the total is the sum of the lines.
//! Floats never touch money.
//!
//! This crate owns the price list, the arithmetic and what an invoice is ([`invoice`]: which
//! plan a month is priced by, corrections for late usage, CSV and a printable page). It knows
//! nothing of storage, permissions or how usage was counted: the control plane gathers
//! a month's usage, asks here for the lines, and stores the invoice. `stripe` checks Stripe's
//! webhook signatures and reads its events (what they change), without calling Stripe.

pub mod invoice;
pub mod stripe;

pub use invoice::{BilledUsage, Correction, Invoice, InvoiceStatus, PlanDays};

use authsome_domain::tenancy::{Plan, WorkspaceLimits};

/// Millicents in a cent.
const MILLI: u64 = 1000;
/// Bytes in the GB that storage is priced by (decimal, as the providers bill it).
pub const GB: u64 = 1_000_000_000;
/// Bytes in the MB that storage lines count (a GB-month priced per MB-month).
const MB: u64 = 1_000_000;

/// A tier of a per-unit price: units counted up to `up_to` (of the month's total, inclusive;
/// none: without end) cost `unit_millicents` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    pub up_to: Option<u64>,
    pub unit_millicents: u64,
}

/// What a plan costs a month.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// The monthly fee, pro-rated by day for part of a month on the plan.
    pub base_cents: u64,
    /// Monthly active users the fee covers.
    pub included_mau: u64,
    /// The price of each user beyond those, by the month's total (tiers in order).
    pub mau_tiers: Vec<Tier>,
    /// Storage the fee covers (the applications' databases, averaged over the month).
    pub included_storage_bytes: u64,
    /// The price of a GB-month beyond it.
    pub storage_cents_per_gb_month: u64,
    /// Rotations the fee covers.
    pub included_rotations: u64,
    /// The price of each rotation beyond them.
    pub rotation_millicents: u64,
    /// The price of a customer-API request (none on the standard plans: requests are listed).
    pub request_millicents: u64,
}

impl Pricing {
    /// Free: nothing to pay; the plan's limits stop usage instead.
    pub fn free() -> Self {
        Self {
            base_cents: 0,
            included_mau: 10_000,
            mau_tiers: Vec::new(),
            included_storage_bytes: 0,
            storage_cents_per_gb_month: 0,
            included_rotations: 100,
            rotation_millicents: 0,
            request_millicents: 0,
        }
    }

    /// Pro: $25 a month with 10,000 users, then 2 cents each to 100,000, 1.5 cents to
    /// 1,000,000 and 1 cent beyond; 1 GB of storage then 10 cents a GB-month; 10,000
    /// rotations then 1 cent each.
    pub fn pro() -> Self {
        Self {
            base_cents: 2_500,
            included_mau: 10_000,
            mau_tiers: vec![
                Tier {
                    up_to: Some(100_000),
                    unit_millicents: 2_000,
                },
                Tier {
                    up_to: Some(1_000_000),
                    unit_millicents: 1_500,
                },
                Tier {
                    up_to: None,
                    unit_millicents: 1_000,
                },
            ],
            included_storage_bytes: GB,
            storage_cents_per_gb_month: 10,
            included_rotations: 10_000,
            rotation_millicents: MILLI,
            request_millicents: 0,
        }
    }

    /// Enterprise: the workspace's own fee, included users and price per user beyond them (one
    /// tier); storage and rotations as on pro.
    pub fn enterprise(base_cents: u64, included_mau: u64, mau_cents: u64) -> Self {
        Self {
            base_cents,
            included_mau,
            mau_tiers: vec![Tier {
                up_to: None,
                unit_millicents: mau_cents.saturating_mul(MILLI),
            }],
            ..Self::pro()
        }
    }
}

impl Pricing {
    /// The prices of `plan`; an enterprise workspace's from its limits (pro's until an
    /// operator sets them).
    pub fn for_plan(plan: Plan, limits: &WorkspaceLimits) -> Self {
        match (plan, limits.pricing) {
            (Plan::Free, _) => Self::free(),
            (Plan::Pro, _) | (Plan::Enterprise, None) => Self::pro(),
            (Plan::Enterprise, Some(p)) => {
                Self::enterprise(p.base_cents, p.included_mau, p.mau_cents)
            }
        }
    }
}

/// A workspace's usage in one month, as the control plane counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub mau: u64,
    pub requests: u64,
    /// The applications' database sizes summed over the month's days (one sample a day).
    pub storage_byte_days: u128,
    pub rotations: u64,
    /// Days in the month.
    pub days_in_month: u32,
    /// Days of the month the workspace was on this plan (the month's days when it was all of it).
    pub days_on_plan: u32,
}

/// What a line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    Base,
    Mau,
    Requests,
    Storage,
    Rotations,
    /// Usage of an earlier month that arrived after it was closed.
    Correction,
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    pub quantity: u64,
    /// The unit price in cents, as a decimal (`"1.5"`): Stripe's `unit_amount_decimal`.
    pub unit_amount_decimal: String,
    pub amount_cents: u64,
}

/// `millicents` as cents in decimal: `1500` -> `"1.5"`, `2000` -> `"2"`, `10` -> `"0.01"`.
pub fn cents_decimal(millicents: u64) -> String {
    let (whole, part) = (millicents / MILLI, millicents % MILLI);
    if part == 0 {
        return whole.to_string();
    }
    let fraction = format!("{part:03}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// `quantity` units at `unit_millicents` each, in cents rounded half up.
pub fn amount(quantity: u64, unit_millicents: u64) -> u64 {
    let exact = u128::from(quantity) * u128::from(unit_millicents);
    u64::try_from((exact + u128::from(MILLI / 2)) / u128::from(MILLI)).unwrap_or(u64::MAX)
}

fn line(kind: LineKind, description: String, quantity: u64, unit_millicents: u64) -> Line {
    Line {
        kind,
        description,
        quantity,
        unit_amount_decimal: cents_decimal(unit_millicents),
        amount_cents: amount(quantity, unit_millicents),
    }
}

pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The invoice lines for a month's `usage` under `pricing`: the fee (pro-rated by the days on
/// the plan), one line per tier of users beyond those included, requests, storage beyond the
/// included bytes (in MB-months), and rotations beyond those included. Lines that charge
/// nothing are kept when they count something, so the invoice shows all the usage.
pub fn lines(pricing: &Pricing, usage: &Usage) -> Vec<Line> {
    let mut out = Vec::new();
    let days = usage.days_in_month.max(1);
    let on_plan = usage.days_on_plan.min(days);
    if pricing.base_cents > 0 {
        let cents =
            (u64::from(on_plan) * pricing.base_cents * 2 + u64::from(days)) / (2 * u64::from(days));
        let description = if on_plan == days {
            "Monthly fee".to_owned()
        } else {
            format!("Monthly fee, {on_plan} of {days} days")
        };
        out.push(Line {
            kind: LineKind::Base,
            description,
            quantity: 1,
            unit_amount_decimal: cents.to_string(),
            amount_cents: cents,
        });
    }
    // Users: the included ones, then each tier's share of the rest.
    out.push(line(
        LineKind::Mau,
        format!(
            "Monthly active users included ({})",
            thousands(pricing.included_mau)
        ),
        usage.mau.min(pricing.included_mau),
        0,
    ));
    let mut counted = pricing.included_mau;
    for tier in &pricing.mau_tiers {
        if usage.mau <= counted {
            break;
        }
        let top = tier.up_to.map_or(usage.mau, |t| t.min(usage.mau));
        if top <= counted {
            continue;
        }
        let description = match tier.up_to {
            Some(t) => format!(
                "Monthly active users {} to {}",
                thousands(counted + 1),
                thousands(t)
            ),
            None => format!("Monthly active users from {}", thousands(counted + 1)),
        };
        out.push(line(
            LineKind::Mau,
            description,
            top - counted,
            tier.unit_millicents,
        ));
        counted = top;
    }
    if usage.requests > 0 || pricing.request_millicents > 0 {
        out.push(line(
            LineKind::Requests,
            "Customer API requests".into(),
            usage.requests,
            pricing.request_millicents,
        ));
    }
    let average = u64::try_from(usage.storage_byte_days / u128::from(days)).unwrap_or(u64::MAX);
    let over = average.saturating_sub(pricing.included_storage_bytes);
    if over > 0 && pricing.storage_cents_per_gb_month > 0 {
        // A GB-month at `storage_cents_per_gb_month`: an MB-month at a thousandth of it.
        out.push(line(
            LineKind::Storage,
            format!(
                "Storage beyond {} GB (MB-months)",
                pricing.included_storage_bytes / GB
            ),
            over.div_ceil(MB),
            pricing.storage_cents_per_gb_month * MILLI * MB / GB,
        ));
    }
    if usage.rotations > 0 {
        let beyond = usage.rotations.saturating_sub(pricing.included_rotations);
        out.push(line(
            LineKind::Rotations,
            format!(
                "Rotations included ({})",
                thousands(pricing.included_rotations)
            ),
            usage.rotations - beyond,
            0,
        ));
        if beyond > 0 && pricing.rotation_millicents > 0 {
            out.push(line(
                LineKind::Rotations,
                "Rotations beyond those included".into(),
                beyond,
                pricing.rotation_millicents,
            ));
        }
    }
    out
}

/// The sum of the lines' amounts.
pub fn total(lines: &[Line]) -> u64 {
    lines.iter().map(|l| l.amount_cents).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(mau: u64) -> Usage {
        Usage {
            mau,
            days_in_month: 30,
            days_on_plan: 30,
            ..Usage::default()
        }
    }

    #[test]
    fn pro_prices_users_by_tier() {
        let pro = Pricing::pro();
        // Within the included users: the fee only.
        let l = lines(&pro, &month(9_000));
        assert_eq!(total(&l), 2_500);
        assert_eq!(l[1].quantity, 9_000);
        // 150,000 users: 90,000 at 2 cents, 50,000 at 1.5 cents.
        let l = lines(&pro, &month(150_000));
        let tiers: Vec<(u64, &str, u64)> = l
            .iter()
            .filter(|x| x.kind == LineKind::Mau && x.amount_cents > 0)
            .map(|x| (x.quantity, x.unit_amount_decimal.as_str(), x.amount_cents))
            .collect();
        assert_eq!(tiers, [(90_000, "2", 180_000), (50_000, "1.5", 75_000)]);
        assert_eq!(total(&l), 2_500 + 180_000 + 75_000);
        // Beyond a million: a cent each.
        let l = lines(&pro, &month(1_000_010));
        let last = l.iter().rfind(|x| x.kind == LineKind::Mau).unwrap();
        assert_eq!((last.quantity, last.amount_cents), (10, 10));
        assert_eq!(last.description, "Monthly active users from 1,000,001");
    }

    #[test]
    fn fractional_prices_round_half_up_once_per_line() {
        assert_eq!(amount(1, 1_500), 2, "1.5 cents is 2");
        assert_eq!(amount(3, 1_500), 5, "4.5 cents is 5");
        assert_eq!(amount(1, 1_499), 1);
        assert_eq!(cents_decimal(1_500), "1.5");
        assert_eq!(cents_decimal(2_000), "2");
        assert_eq!(cents_decimal(10), "0.01");
        assert_eq!(cents_decimal(0), "0");
    }

    #[test]
    fn the_fee_is_pro_rated_by_day_and_usage_past_the_allowances_is_charged() {
        let pro = Pricing::pro();
        let mut usage = month(0);
        usage.days_on_plan = 10;
        let l = lines(&pro, &usage);
        assert_eq!(l[0].amount_cents, 833, "2,500 for 10 of 30 days");
        assert_eq!(l[0].description, "Monthly fee, 10 of 30 days");
        // 3 GB all month: 2 GB beyond the included one, 20 cents.
        usage = month(0);
        usage.storage_byte_days = u128::from(3 * GB) * 30;
        let storage = lines(&pro, &usage)
            .into_iter()
            .find(|x| x.kind == LineKind::Storage)
            .unwrap();
        assert_eq!(
            (
                storage.quantity,
                storage.unit_amount_decimal.as_str(),
                storage.amount_cents
            ),
            (2_000, "0.01", 20)
        );
        // 10,250 rotations: 250 at a cent.
        usage = month(0);
        usage.rotations = 10_250;
        let l = lines(&pro, &usage);
        let over = l.last().unwrap();
        assert_eq!((over.quantity, over.amount_cents), (250, 250));
        // Free charges nothing, whatever the usage.
        usage.mau = 9_999;
        assert_eq!(total(&lines(&Pricing::free(), &usage)), 0);
    }

    #[test]
    fn enterprise_uses_the_workspace_prices() {
        let e = Pricing::enterprise(100_000, 50_000, 1);
        let l = lines(&e, &month(60_000));
        assert_eq!(total(&l), 100_000 + 10_000);
    }

    proptest::proptest! {
        #[test]
        fn every_user_is_priced_once_and_the_total_is_the_lines(mau in 0u64..3_000_000) {
            let l = lines(&Pricing::pro(), &month(mau));
            let users: u64 = l.iter().filter(|x| x.kind == LineKind::Mau).map(|x| x.quantity).sum();
            proptest::prop_assert_eq!(users, mau);
            proptest::prop_assert_eq!(total(&l), l.iter().map(|x| x.amount_cents).sum::<u64>());
            // More users never cost less.
            let more = lines(&Pricing::pro(), &month(mau + 1));
            proptest::prop_assert!(total(&more) >= total(&l));
        }
    }
}
