//! When a secret rotates by itself: every N days after its last rotation, or at the times of a
//! cron expression (five fields, `minute hour day-of-month month day-of-week`) read in a time
//! zone, so `0 3 * * MON` in `Europe/Berlin` is 03:00 Berlin time, summer and winter.

use chrono::{DateTime, Utc};

use crate::InvalidRule;

const MAX_EVERY_DAYS: u32 = 365;

/// `{everyDays}` or `{cron, timeZone?}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// Rotate this many days after the last rotation (1 to 365).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 365))]
    pub every_days: Option<u32>,
    /// Rotate at the times of this five-field cron expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "0 3 * * MON"))]
    pub cron: Option<String>,
    /// The IANA time zone the cron expression is read in (default `UTC`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "Europe/Berlin"))]
    pub time_zone: Option<String>,
}

impl Schedule {
    fn zone(&self) -> Result<chrono_tz::Tz, InvalidRule> {
        match &self.time_zone {
            None => Ok(chrono_tz::UTC),
            Some(z) => z.parse().map_err(|_| {
                InvalidRule::new(
                    "schedule.timeZone",
                    format!("{z:?} is not an IANA time zone"),
                )
            }),
        }
    }

    fn cron(expr: &str) -> Result<croner::Cron, InvalidRule> {
        if expr.split_whitespace().count() != 5 {
            return Err(InvalidRule::new(
                "schedule.cron",
                "five fields: minute hour day-of-month month day-of-week",
            ));
        }
        croner::Cron::new(expr)
            .parse()
            .map_err(|e| InvalidRule::new("schedule.cron", e.to_string()))
    }

    /// What is wrong with it, naming the field.
    pub fn check(&self) -> Result<(), InvalidRule> {
        match (&self.every_days, &self.cron) {
            (Some(days), None) => {
                if !(1..=MAX_EVERY_DAYS).contains(days) {
                    return Err(InvalidRule::new(
                        "schedule.everyDays",
                        format!("between 1 and {MAX_EVERY_DAYS}"),
                    ));
                }
                if self.time_zone.is_some() {
                    return Err(InvalidRule::new(
                        "schedule.timeZone",
                        "applies to a cron expression only",
                    ));
                }
                Ok(())
            }
            (None, Some(expr)) => {
                Self::cron(expr)?;
                self.zone().map(|_| ())
            }
            _ => Err(InvalidRule::new(
                "schedule",
                "give either everyDays or cron (with an optional timeZone)",
            )),
        }
    }

    /// The first time after `last` (the last rotation, or when the schedule was set) that a
    /// rotation is due; `None` for a schedule that never fires.
    pub fn next_after(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Some(days) = self.every_days {
            return Some(last + chrono::Duration::days(i64::from(days)));
        }
        let cron = Self::cron(self.cron.as_deref()?).ok()?;
        let zone = self.zone().ok()?;
        cron.find_next_occurrence(&last.with_timezone(&zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn every_n_days_counts_from_the_last_rotation() {
        let s = Schedule {
            every_days: Some(30),
            cron: None,
            time_zone: None,
        };
        s.check().unwrap();
        assert_eq!(
            s.next_after(at(2026, 12, 1, 10, 0)),
            Some(at(2026, 12, 31, 10, 0))
        );
    }

    #[test]
    fn cron_times_are_local_to_their_zone_in_summer_and_winter() {
        let s = Schedule {
            every_days: None,
            cron: Some("0 3 * * MON".into()),
            time_zone: Some("Europe/Berlin".into()),
        };
        s.check().unwrap();
        // 2026-12-06 is a Sunday; Monday 03:00 in Berlin is 02:00 UTC in winter.
        assert_eq!(
            s.next_after(at(2026, 12, 6, 12, 0)),
            Some(at(2026, 12, 7, 2, 0))
        );
        // And 01:00 UTC in summer (2026-07-06 is a Monday).
        assert_eq!(
            s.next_after(at(2026, 7, 5, 12, 0)),
            Some(at(2026, 7, 6, 1, 0))
        );
        // Strictly after: at the very time, the next week's.
        assert_eq!(
            s.next_after(at(2026, 12, 7, 2, 0)),
            Some(at(2026, 12, 14, 2, 0))
        );
    }

    #[test]
    fn bad_schedules_name_their_field() {
        let cases = [
            (
                Schedule {
                    every_days: Some(0),
                    cron: None,
                    time_zone: None,
                },
                "schedule.everyDays",
            ),
            (
                Schedule {
                    every_days: Some(400),
                    cron: None,
                    time_zone: None,
                },
                "schedule.everyDays",
            ),
            (
                Schedule {
                    every_days: None,
                    cron: Some("* * *".into()),
                    time_zone: None,
                },
                "schedule.cron",
            ),
            (
                Schedule {
                    every_days: None,
                    cron: Some("61 * * * *".into()),
                    time_zone: None,
                },
                "schedule.cron",
            ),
            (
                Schedule {
                    every_days: None,
                    cron: Some("0 3 * * *".into()),
                    time_zone: Some("Moon/Base".into()),
                },
                "schedule.timeZone",
            ),
            (
                Schedule {
                    every_days: Some(3),
                    cron: Some("0 3 * * *".into()),
                    time_zone: None,
                },
                "schedule",
            ),
            (
                Schedule {
                    every_days: None,
                    cron: None,
                    time_zone: None,
                },
                "schedule",
            ),
            (
                Schedule {
                    every_days: Some(3),
                    cron: None,
                    time_zone: Some("UTC".into()),
                },
                "schedule.timeZone",
            ),
        ];
        for (s, field) in cases {
            assert_eq!(s.check().unwrap_err().field, field, "{s:?}");
        }
    }
}
