//! Rotation policies: rules set at three levels (workspace, provider, secret). For one level
//! chain the nearest level that sets a field decides it ([`Rules::under`]); a rotation that
//! touches several providers is judged under each chain, and the most restrictive outcome of
//! all the rules wins ([`decide`]). Every decision lists the rules that made it.

use authsome_domain::tenancy::Role;
use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};

use crate::InvalidRule;

/// What a policy says about a rotation, from least to most restrictive.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Warn,
    RequireApproval,
    Block,
}

/// A limit with a warning before it: past `soft` a rotation warns, past `hard` it is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Threshold {
    pub soft: Option<u32>,
    pub hard: Option<u32>,
}

/// When rotations may run: on `days`, from `start` to `end` (`HH:MM`, local to `timeZone`; an
/// `end` before `start` runs past midnight into the next day).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// `mon` … `sun`; empty or absent: every day.
    #[serde(default)]
    pub days: Vec<Day>,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "02:00", pattern = "^[0-2][0-9]:[0-5][0-9]$")
    )]
    pub start: String,
    #[cfg_attr(
        feature = "openapi",
        schema(example = "05:00", pattern = "^[0-2][0-9]:[0-5][0-9]$")
    )]
    pub end: String,
    /// An IANA time zone (`Europe/Berlin`); default `UTC`.
    #[cfg_attr(feature = "openapi", schema(example = "Europe/Berlin"))]
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn of(d: Weekday) -> Self {
        match d {
            Weekday::Mon => Self::Mon,
            Weekday::Tue => Self::Tue,
            Weekday::Wed => Self::Wed,
            Weekday::Thu => Self::Thu,
            Weekday::Fri => Self::Fri,
            Weekday::Sat => Self::Sat,
            Weekday::Sun => Self::Sun,
        }
    }
}

/// One level's rules; an absent field is inherited from the level above.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// Rotations of one secret in any 24 hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotations_per_secret_per_day: Option<Threshold>,
    /// Rotations in the workspace in a calendar month (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotations_per_workspace_per_month: Option<Threshold>,
    /// A dry run must precede each rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_first: Option<bool>,
    /// A second person must approve each rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_approval: Option<bool>,
    /// Redeploy the targets after pushing (off unless a level turns it on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_redeploy: Option<bool>,
    /// Seconds that must pass after a secret's last rotation.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 31_536_000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds: Option<u32>,
    /// How long an approval request stays open (default a day; 5 minutes to 7 days).
    #[cfg_attr(feature = "openapi", schema(minimum = 300, maximum = 604_800))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_timeout_seconds: Option<u32>,
    /// The roles whose members may approve (default owner and admin; an owner always may).
    /// Of owner, admin and operator: a viewer or auditor cannot change a secret, so cannot
    /// approve a change to one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>, example = json!(["owner", "admin"])))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver_roles: Option<Vec<Role>>,
}

/// Who approves unless a policy says otherwise.
pub const DEFAULT_APPROVER_ROLES: [Role; 2] = [Role::Owner, Role::Admin];

/// Where the rules were set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Workspace,
    Provider,
    Secret,
}

const MAX_COOLDOWN: u32 = 365 * 24 * 3600;
const MIN_APPROVAL_TIMEOUT: u32 = 300;
const MAX_APPROVAL_TIMEOUT: u32 = 7 * 24 * 3600;
/// How long an approval request stays open unless a policy says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: u32 = 24 * 3600;

fn parse_time(field: &'static str, s: &str) -> Result<NaiveTime, InvalidRule> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| InvalidRule::new(field, "must be a time HH:MM (00:00 to 23:59)"))
}

fn parse_zone(name: Option<&str>) -> Result<chrono_tz::Tz, InvalidRule> {
    match name {
        None => Ok(chrono_tz::UTC),
        Some(n) => n.parse().map_err(|_| {
            InvalidRule::new(
                "maintenanceWindow.timeZone",
                format!("{n:?} is not an IANA time zone"),
            )
        }),
    }
}

impl Rules {
    /// What is wrong with the rules, naming the field.
    pub fn check(&self) -> Result<(), InvalidRule> {
        if let Some(w) = &self.maintenance_window {
            parse_time("maintenanceWindow.start", &w.start)?;
            let (start, end) = (
                parse_time("maintenanceWindow.start", &w.start)?,
                parse_time("maintenanceWindow.end", &w.end)?,
            );
            if start == end {
                return Err(InvalidRule::new(
                    "maintenanceWindow.end",
                    "must differ from start",
                ));
            }
            parse_zone(w.time_zone.as_deref())?;
        }
        for (field, t) in [
            (
                "rotationsPerSecretPerDay",
                &self.rotations_per_secret_per_day,
            ),
            (
                "rotationsPerWorkspacePerMonth",
                &self.rotations_per_workspace_per_month,
            ),
        ] {
            if let Some(Threshold {
                soft: Some(s),
                hard: Some(h),
            }) = t
            {
                if s > h {
                    return Err(InvalidRule::new(field, "soft must not exceed hard"));
                }
            }
        }
        if self
            .approval_timeout_seconds
            .is_some_and(|t| !(MIN_APPROVAL_TIMEOUT..=MAX_APPROVAL_TIMEOUT).contains(&t))
        {
            return Err(InvalidRule::new(
                "approvalTimeoutSeconds",
                format!("between {MIN_APPROVAL_TIMEOUT} and {MAX_APPROVAL_TIMEOUT}"),
            ));
        }
        if let Some(roles) = &self.approver_roles {
            if roles.is_empty() {
                return Err(InvalidRule::new("approverRoles", "name at least one role"));
            }
            if let Some(r) = roles
                .iter()
                .find(|r| !matches!(r, Role::Owner | Role::Admin | Role::Operator))
            {
                return Err(InvalidRule::new(
                    "approverRoles",
                    format!(
                        "{} cannot approve: only owner, admin or operator",
                        r.as_str()
                    ),
                ));
            }
        }
        if self.cooldown_seconds.is_some_and(|c| c > MAX_COOLDOWN) {
            return Err(InvalidRule::new(
                "cooldownSeconds",
                format!("at most {MAX_COOLDOWN}"),
            ));
        }
        Ok(())
    }

    /// These rules with `nearer`'s set fields in place of theirs.
    pub fn under(&self, nearer: &Rules) -> Rules {
        Rules {
            maintenance_window: nearer
                .maintenance_window
                .clone()
                .or_else(|| self.maintenance_window.clone()),
            rotations_per_secret_per_day: nearer
                .rotations_per_secret_per_day
                .or(self.rotations_per_secret_per_day),
            rotations_per_workspace_per_month: nearer
                .rotations_per_workspace_per_month
                .or(self.rotations_per_workspace_per_month),
            preview_first: nearer.preview_first.or(self.preview_first),
            require_approval: nearer.require_approval.or(self.require_approval),
            auto_redeploy: nearer.auto_redeploy.or(self.auto_redeploy),
            cooldown_seconds: nearer.cooldown_seconds.or(self.cooldown_seconds),
            approval_timeout_seconds: nearer
                .approval_timeout_seconds
                .or(self.approval_timeout_seconds),
            approver_roles: nearer
                .approver_roles
                .clone()
                .or_else(|| self.approver_roles.clone()),
        }
    }

    /// The rules for one chain: workspace, then provider, then secret (each optional).
    pub fn chain(levels: &[Option<&Rules>]) -> Rules {
        levels
            .iter()
            .flatten()
            .fold(Rules::default(), |acc, level| acc.under(level))
    }
}

/// What the control plane knows when it asks.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// Rotations of this secret in the 24 hours before `now`.
    pub secret_rotations_last_day: u32,
    /// Rotations in the workspace this calendar month.
    pub workspace_rotations_this_month: u32,
    pub last_rotation_at: Option<DateTime<Utc>>,
    /// A dry run of this secret's rotation came after its last rotation.
    pub previewed: bool,
    /// A second person approved this rotation.
    pub approved: bool,
}

/// One rule's say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub rule: String,
    pub outcome: Outcome,
    pub message: String,
}

/// The decision and the rules that made it (those that said more than `allow`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub outcome: Outcome,
    pub findings: Vec<Finding>,
    /// Whether the effective rules turn redeploys on.
    pub auto_redeploy: bool,
    /// How long an approval request stays open: the shortest any chain sets.
    pub approval_timeout_seconds: u32,
    /// Who may approve: the roles every chain allows, and always the owner.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    #[serde(default = "default_approvers")]
    pub approver_roles: Vec<Role>,
}

fn default_approvers() -> Vec<Role> {
    DEFAULT_APPROVER_ROLES.to_vec()
}

impl Decision {
    /// Whether a member of `role` may approve what was decided.
    pub fn may_approve(&self, role: Role) -> bool {
        role == Role::Owner || self.approver_roles.contains(&role)
    }
}

fn inside(window: &MaintenanceWindow, now: DateTime<Utc>) -> bool {
    let (Ok(start), Ok(end), Ok(zone)) = (
        parse_time("start", &window.start),
        parse_time("end", &window.end),
        parse_zone(window.time_zone.as_deref()),
    ) else {
        // Rules are checked when saved; an unreadable window opens nothing.
        return false;
    };
    let local = now.with_timezone(&zone);
    let time = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second())
        .unwrap_or(NaiveTime::MIN);
    let today = Day::of(local.weekday());
    let yesterday = Day::of(local.weekday().pred());
    let on = |d: Day| window.days.is_empty() || window.days.contains(&d);
    if start < end {
        on(today) && start <= time && time < end
    } else {
        // Past midnight: the evening part belongs to today, the morning part to yesterday.
        (on(today) && time >= start) || (on(yesterday) && time < end)
    }
}

fn threshold(rule: &str, count: u32, limit: Option<Threshold>, findings: &mut Vec<Finding>) {
    let Some(limit) = limit else { return };
    let next = count.saturating_add(1);
    if let Some(hard) = limit.hard.filter(|h| next > *h) {
        findings.push(Finding {
            rule: rule.into(),
            outcome: Outcome::Block,
            message: format!("this would be rotation {next}; the hard limit is {hard}"),
        });
    } else if let Some(soft) = limit.soft.filter(|s| next > *s) {
        findings.push(Finding {
            rule: rule.into(),
            outcome: Outcome::Warn,
            message: format!("this would be rotation {next}; the soft limit is {soft}"),
        });
    }
}

fn judge(rules: &Rules, facts: &Facts, findings: &mut Vec<Finding>) {
    if let Some(w) = &rules.maintenance_window {
        if !inside(w, facts.now) {
            findings.push(Finding {
                rule: "maintenanceWindow".into(),
                outcome: Outcome::Block,
                message: format!(
                    "outside the maintenance window ({}-{} {})",
                    w.start,
                    w.end,
                    w.time_zone.as_deref().unwrap_or("UTC")
                ),
            });
        }
    }
    threshold(
        "rotationsPerSecretPerDay",
        facts.secret_rotations_last_day,
        rules.rotations_per_secret_per_day,
        findings,
    );
    threshold(
        "rotationsPerWorkspacePerMonth",
        facts.workspace_rotations_this_month,
        rules.rotations_per_workspace_per_month,
        findings,
    );
    if rules.preview_first == Some(true) && !facts.previewed {
        findings.push(Finding {
            rule: "previewFirst".into(),
            outcome: Outcome::Block,
            message: "a dry run must precede the rotation".into(),
        });
    }
    if let (Some(cooldown), Some(last)) = (rules.cooldown_seconds, facts.last_rotation_at) {
        let ready = last + chrono::Duration::seconds(i64::from(cooldown));
        if facts.now < ready {
            findings.push(Finding {
                rule: "cooldownSeconds".into(),
                outcome: Outcome::Block,
                message: format!("in cooldown until {}", ready.to_rfc3339()),
            });
        }
    }
    if rules.require_approval == Some(true) && !facts.approved {
        findings.push(Finding {
            rule: "requireApproval".into(),
            outcome: Outcome::RequireApproval,
            message: "a second person must approve the rotation".into(),
        });
    }
}

/// The decision under every chain of rules (one per provider the rotation touches; one chain
/// of workspace and secret rules when it touches none): the most restrictive outcome wins.
pub fn decide(chains: &[Rules], facts: &Facts) -> Decision {
    let mut findings = Vec::new();
    for rules in chains {
        judge(rules, facts, &mut findings);
    }
    findings.dedup();
    Decision {
        outcome: findings
            .iter()
            .map(|f| f.outcome)
            .max()
            .unwrap_or(Outcome::Allow),
        findings,
        auto_redeploy: chains.iter().any(|r| r.auto_redeploy == Some(true)),
        approval_timeout_seconds: chains
            .iter()
            .filter_map(|r| r.approval_timeout_seconds)
            .min()
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
        approver_roles: {
            // The most restrictive: roles every chain allows (each chain's own, or the default).
            let mut roles = vec![Role::Owner];
            for role in [Role::Admin, Role::Operator] {
                let everywhere = chains.iter().all(|r| {
                    r.approver_roles
                        .as_deref()
                        .unwrap_or(&DEFAULT_APPROVER_ROLES)
                        .contains(&role)
                });
                if everywhere {
                    roles.push(role);
                }
            }
            roles
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn window(days: &[Day], start: &str, end: &str, tz: &str) -> Rules {
        Rules {
            maintenance_window: Some(MaintenanceWindow {
                days: days.to_vec(),
                start: start.into(),
                end: end.into(),
                time_zone: Some(tz.into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn approvers_are_the_roles_every_chain_allows_and_always_owners() {
        let facts = Facts::default();
        let named = |roles: &[Role]| Rules {
            approver_roles: Some(roles.to_vec()),
            ..Rules::default()
        };
        let by_default = decide(&[Rules::default()], &facts);
        assert_eq!(by_default.approver_roles, [Role::Owner, Role::Admin]);
        assert!(by_default.may_approve(Role::Admin) && !by_default.may_approve(Role::Operator));
        let widened = decide(&[named(&[Role::Operator])], &facts);
        assert_eq!(widened.approver_roles, [Role::Owner, Role::Operator]);
        // Two chains: only what both allow.
        let both = decide(
            &[
                named(&[Role::Admin, Role::Operator]),
                named(&[Role::Operator]),
            ],
            &facts,
        );
        assert_eq!(both.approver_roles, [Role::Owner, Role::Operator]);
        let narrowed = decide(&[named(&[Role::Admin]), named(&[Role::Operator])], &facts);
        assert_eq!(narrowed.approver_roles, [Role::Owner]);
        assert!(narrowed.may_approve(Role::Owner) && !narrowed.may_approve(Role::Admin));
        for bad in [vec![], vec![Role::Viewer], vec![Role::Auditor]] {
            assert!(named(&bad).check().is_err(), "{bad:?}");
        }
        // A decision stored before approver roles existed reads as the default.
        let old: Decision = serde_json::from_value(serde_json::json!({
            "outcome": "require_approval", "findings": [], "autoRedeploy": false,
            "approvalTimeoutSeconds": 600
        }))
        .unwrap();
        assert_eq!(old.approver_roles, [Role::Owner, Role::Admin]);
    }

    #[test]
    fn the_nearest_level_sets_each_field() {
        let workspace = Rules {
            require_approval: Some(true),
            cooldown_seconds: Some(3600),
            auto_redeploy: Some(true),
            ..Default::default()
        };
        let provider = Rules {
            cooldown_seconds: Some(60),
            ..Default::default()
        };
        let secret = Rules {
            require_approval: Some(false),
            ..Default::default()
        };
        let rules = Rules::chain(&[Some(&workspace), Some(&provider), Some(&secret)]);
        assert_eq!(rules.require_approval, Some(false));
        assert_eq!(rules.cooldown_seconds, Some(60));
        assert_eq!(rules.auto_redeploy, Some(true));
        assert_eq!(Rules::chain(&[None, None]), Rules::default());
    }

    #[test]
    fn windows_are_local_to_their_zone_and_may_cross_midnight() {
        // 02:00-05:00 in Berlin on weekdays; 2026-12-07 is a Monday, Berlin is UTC+1 in winter.
        let rules = window(&[Day::Mon, Day::Tue], "02:00", "05:00", "Europe/Berlin");
        let facts = |now| Facts {
            now,
            ..Default::default()
        };
        assert_eq!(
            decide(std::slice::from_ref(&rules), &facts(at(2026, 12, 7, 1, 30))).outcome,
            Outcome::Allow
        );
        let late = decide(std::slice::from_ref(&rules), &facts(at(2026, 12, 7, 4, 0)));
        assert_eq!(late.outcome, Outcome::Block);
        assert_eq!(late.findings[0].rule, "maintenanceWindow");
        // Sunday 02:30 Berlin is not a listed day.
        assert_eq!(
            decide(&[rules], &facts(at(2026, 12, 6, 1, 30))).outcome,
            Outcome::Block
        );
        // 22:00-02:00 UTC on Fridays: Friday night and the small hours of Saturday.
        let night = window(&[Day::Fri], "22:00", "02:00", "UTC");
        assert_eq!(
            decide(
                std::slice::from_ref(&night),
                &facts(at(2026, 12, 11, 23, 0))
            )
            .outcome,
            Outcome::Allow
        );
        assert_eq!(
            decide(std::slice::from_ref(&night), &facts(at(2026, 12, 12, 1, 0))).outcome,
            Outcome::Allow
        );
        assert_eq!(
            decide(std::slice::from_ref(&night), &facts(at(2026, 12, 11, 1, 0))).outcome,
            Outcome::Block
        );
        assert_eq!(
            decide(&[night], &facts(at(2026, 12, 12, 23, 0))).outcome,
            Outcome::Block
        );
    }

    #[test]
    fn thresholds_warn_then_block_and_the_most_restrictive_wins() {
        let rules = Rules {
            rotations_per_secret_per_day: Some(Threshold {
                soft: Some(2),
                hard: Some(3),
            }),
            ..Default::default()
        };
        let facts = |n| Facts {
            now: at(2026, 12, 7, 12, 0),
            secret_rotations_last_day: n,
            ..Default::default()
        };
        assert_eq!(
            decide(std::slice::from_ref(&rules), &facts(1)).outcome,
            Outcome::Allow
        );
        assert_eq!(
            decide(std::slice::from_ref(&rules), &facts(2)).outcome,
            Outcome::Warn
        );
        assert_eq!(
            decide(std::slice::from_ref(&rules), &facts(3)).outcome,
            Outcome::Block
        );
        // Two providers: one asks for approval, the other blocks; block wins, both are listed.
        let approval = Rules {
            require_approval: Some(true),
            ..Default::default()
        };
        let decision = decide(&[approval.clone(), rules], &facts(3));
        assert_eq!(decision.outcome, Outcome::Block);
        let rules: Vec<_> = decision.findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["requireApproval", "rotationsPerSecretPerDay"]);
        let approved = Facts {
            approved: true,
            ..facts(0)
        };
        assert_eq!(
            decide(std::slice::from_ref(&approval), &approved).outcome,
            Outcome::Allow
        );
        assert_eq!(
            decide(&[approval], &facts(0)).outcome,
            Outcome::RequireApproval
        );
    }

    #[test]
    fn preview_and_cooldown_block_until_met() {
        let rules = Rules {
            preview_first: Some(true),
            cooldown_seconds: Some(600),
            ..Default::default()
        };
        let now = at(2026, 12, 7, 12, 0);
        let blocked = decide(
            std::slice::from_ref(&rules),
            &Facts {
                now,
                last_rotation_at: Some(now - chrono::Duration::seconds(300)),
                ..Default::default()
            },
        );
        assert_eq!(blocked.outcome, Outcome::Block);
        assert_eq!(blocked.findings.len(), 2);
        let ok = decide(
            &[rules],
            &Facts {
                now,
                last_rotation_at: Some(now - chrono::Duration::seconds(601)),
                previewed: true,
                ..Default::default()
            },
        );
        assert_eq!(ok.outcome, Outcome::Allow);
        assert!(!ok.auto_redeploy, "redeploys are off unless turned on");
    }

    #[test]
    fn bad_rules_name_their_field() {
        let cases = [
            (
                window(&[], "25:00", "05:00", "UTC"),
                "maintenanceWindow.start",
            ),
            (
                window(&[], "02:00", "02:00", "UTC"),
                "maintenanceWindow.end",
            ),
            (
                window(&[], "02:00", "03:00", "Mars/Olympus"),
                "maintenanceWindow.timeZone",
            ),
            (
                Rules {
                    rotations_per_workspace_per_month: Some(Threshold {
                        soft: Some(10),
                        hard: Some(5),
                    }),
                    ..Default::default()
                },
                "rotationsPerWorkspacePerMonth",
            ),
            (
                Rules {
                    cooldown_seconds: Some(MAX_COOLDOWN + 1),
                    ..Default::default()
                },
                "cooldownSeconds",
            ),
        ];
        for (rules, field) in cases {
            assert_eq!(rules.check().unwrap_err().field, field);
        }
        assert!(serde_json::from_str::<Rules>(r#"{"unknown": 1}"#).is_err());
    }
}
