//! The workspace: the customer account, with its plan and its standing (status, KYC, payment).

use chrono::{DateTime, Utc};

use crate::id::WorkspaceId;
use crate::tenancy::Environment;

macro_rules! string_enum {
    ($(#[doc = $doc:literal])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        // Written by hand: utoipa's derive does not see a `rename` passed through a macro, and
        // would document the variants' Rust names instead of what the API speaks.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let lines: &[&str] = &[$($doc),*];
                let description = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join("\n");
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .description((!description.is_empty()).then_some(description))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use string_enum;

string_enum!(
    /// The billing plan; decides rate limits, quotas and retention.
    Plan { Free => "free", Pro => "pro", Enterprise => "enterprise" });
string_enum!(
    /// A suspended workspace keeps its data but loses access.
    WorkspaceStatus { Active => "active", Suspended => "suspended" });
string_enum!(
    /// Know-your-customer standing, set by platform operators.
    KycStatus { Pending => "pending", Completed => "completed", Partial => "partial", ReKycDue => "reKycDue" });
string_enum!(
    /// Billing standing; `pastDue` closes the customer API with 402.
    PaymentStatus { Current => "current", PastDue => "pastDue" });

/// Enterprise overrides of the plan's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub requests_per_second_per_key: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub requests_per_month: Option<u64>,
    /// Days audit entries are kept (enterprise; default 365).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub audit_retention_days: Option<u32>,
    /// Rotations a month (enterprise; a hard stop when set, unlimited when not).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub rotations_per_month: Option<u64>,
    /// Enterprise prices (the standard pro prices for storage and rotations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing: Option<EnterprisePricing>,
}

/// An enterprise workspace's own prices, set by a platform operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnterprisePricing {
    /// The monthly fee in cents.
    #[cfg_attr(feature = "openapi", schema(maximum = 100_000_000_000_u64))]
    pub base_cents: u64,
    /// Monthly active users the fee includes.
    pub included_mau: u64,
    /// Cents for each monthly active user beyond those.
    #[cfg_attr(feature = "openapi", schema(maximum = 1_000_000))]
    pub mau_cents: u64,
}

/// A plan's monthly rotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RotationAllowance {
    /// Rotations included a month; none: unlimited.
    pub included: Option<u64>,
    /// Past `included`, rotations stop (otherwise they are counted as overage).
    pub hard_stop: bool,
}

/// The largest per-key rate an enterprise workspace may be given (one request per microsecond,
/// the rate limiter's resolution).
pub const MAX_REQUESTS_PER_SECOND_PER_KEY: u32 = 1_000_000;

impl WorkspaceLimits {
    /// Each limit, when set, within what the entry point can enforce.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        if let Some(rps) = self.requests_per_second_per_key {
            if !(1..=MAX_REQUESTS_PER_SECOND_PER_KEY).contains(&rps) {
                return Err(crate::ValidationError::new(
                    "limits.requestsPerSecondPerKey",
                    "must be between 1 and 1000000",
                ));
            }
        }
        if self.requests_per_month == Some(0) {
            return Err(crate::ValidationError::new(
                "limits.requestsPerMonth",
                "must be at least 1",
            ));
        }
        if self.audit_retention_days == Some(0) {
            return Err(crate::ValidationError::new(
                "limits.auditRetentionDays",
                "must be at least 1",
            ));
        }
        if self.rotations_per_month == Some(0) {
            return Err(crate::ValidationError::new(
                "limits.rotationsPerMonth",
                "must be at least 1",
            ));
        }
        if let Some(p) = self.pricing {
            if p.base_cents > 100_000_000_000 {
                return Err(crate::ValidationError::new(
                    "limits.pricing.baseCents",
                    "must be at most 100000000000",
                ));
            }
            if p.mau_cents > 1_000_000 {
                return Err(crate::ValidationError::new(
                    "limits.pricing.mauCents",
                    "must be at most 1000000",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "ws_01jd4v0z3c8x2m5q7w9e1r6t0y"))]
    pub id: WorkspaceId,
    pub name: String,
    pub slug: String,
    pub plan: Plan,
    pub status: WorkspaceStatus,
    pub kyc_status: KycStatus,
    pub payment_status: PaymentStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub limits: WorkspaceLimits,
    /// The platform operators' own workspace, created by `authsome init`.
    pub root: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a workspace may not do something right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandingError {
    #[error("the workspace is suspended")]
    Suspended,
    #[error("the workspace's KYC is not completed: only staging and development applications can be created")]
    KycIncomplete,
}

impl Workspace {
    /// Creating applications needs an active workspace, and production ones a completed KYC.
    pub fn may_create_application(&self, environment: Environment) -> Result<(), StandingError> {
        if self.status == WorkspaceStatus::Suspended {
            return Err(StandingError::Suspended);
        }
        if environment == Environment::Production && self.kyc_status != KycStatus::Completed {
            return Err(StandingError::KycIncomplete);
        }
        Ok(())
    }

    /// Requests per second each key of this workspace may make on the customer API: free 10,
    /// pro 100, enterprise as configured (default 1,000).
    pub fn requests_per_second_per_key(&self) -> u32 {
        match self.plan {
            Plan::Free => 10,
            Plan::Pro => 100,
            Plan::Enterprise => self.limits.requests_per_second_per_key.unwrap_or(1000),
        }
    }

    /// Customer-API requests per calendar month (UTC) across the workspace's applications:
    /// free 100,000, pro 10,000,000, enterprise as configured (unlimited if not).
    pub fn requests_per_month(&self) -> Option<u64> {
        match self.plan {
            Plan::Free => Some(100_000),
            Plan::Pro => Some(10_000_000),
            Plan::Enterprise => self.limits.requests_per_month,
        }
    }

    /// Monthly active users beyond which sign-ups are refused (existing users keep signing
    /// in): free 10,000; pro and enterprise bill users beyond those included instead.
    pub fn monthly_active_users_limit(&self) -> Option<u64> {
        match self.plan {
            Plan::Free => Some(10_000),
            Plan::Pro | Plan::Enterprise => None,
        }
    }

    /// Applications (not deleted) the workspace may have: free 3; pro and enterprise without
    /// a limit.
    pub fn applications_limit(&self) -> Option<u64> {
        match self.plan {
            Plan::Free => Some(3),
            Plan::Pro | Plan::Enterprise => None,
        }
    }

    /// Live keys (publishable and secret together) one application may have: free 10, pro 50,
    /// enterprise 500. Each key has its own rate limit, so an unbounded number would be an
    /// unbounded rate.
    pub fn keys_per_application(&self) -> u64 {
        match self.plan {
            Plan::Free => 10,
            Plan::Pro => 50,
            Plan::Enterprise => 500,
        }
    }

    /// How long audit entries keep their bodies: free 7 days, pro 30, enterprise as
    /// configured (default a year). Hashes and signed checkpoints are kept for ever.
    pub fn audit_retention(&self) -> chrono::Duration {
        let days = match self.plan {
            Plan::Free => 7,
            Plan::Pro => 30,
            Plan::Enterprise => self.limits.audit_retention_days.unwrap_or(365),
        };
        chrono::Duration::days(i64::from(days.max(1)))
    }

    /// Rotations a month: how many the plan includes, and whether that is a hard stop (free:
    /// 100, hard; pro: 10,000 included, then counted as overage; enterprise: its limit, hard,
    /// or unlimited).
    pub fn rotation_allowance(&self) -> RotationAllowance {
        match self.plan {
            Plan::Free => RotationAllowance {
                included: Some(100),
                hard_stop: true,
            },
            Plan::Pro => RotationAllowance {
                included: Some(10_000),
                hard_stop: false,
            },
            Plan::Enterprise => RotationAllowance {
                included: self.limits.rotations_per_month,
                hard_stop: true,
            },
        }
    }

    /// Any write other than reading needs an active workspace.
    pub fn may_write(&self) -> Result<(), StandingError> {
        match self.status {
            WorkspaceStatus::Active => Ok(()),
            WorkspaceStatus::Suspended => Err(StandingError::Suspended),
        }
    }
}
