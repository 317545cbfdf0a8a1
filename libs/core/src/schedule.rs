//! Schedules of launch plans: 5-field cron expressions (with `@hourly`-style aliases and an optional time
//! zone) and fixed rates. Pure: given a time, they say when the next fire is.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::types::parse_duration_millis;

/// What a scheduler does with fire times it missed while it was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Every missed time, oldest first, up to `catch_up_max`.
    All,
    /// Only the most recent missed time.
    #[default]
    Latest,
    /// None of them.
    None,
}

/// A launch plan's schedule, as written in its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Five fields (minute hour day-of-month month day-of-week) or an alias (`@hourly`, `@daily`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Every N minutes, hours or days, e.g. `15m`, `2h`, `1d`; fires at multiples of the rate since the
    /// Unix epoch, so every replica computes the same times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_rate: Option<String>,
    /// IANA time zone of the cron expression, e.g. `Europe/Berlin`; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A `datetime` workflow input that receives the scheduled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kickoff_time_input: Option<String>,
    #[serde(default)]
    pub catch_up: CatchUp,
    /// The most missed times `catch_up: all` fires (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_max: Option<u32>,
}

/// What is wrong with a launch plan's schedule; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule: give either cron or fixed_rate, not both")]
    CronAndRate,
    #[error("schedule: needs cron or fixed_rate")]
    NeitherCronNorRate,
    #[error("schedule.timezone: unknown time zone {name:?}")]
    TimeZone { name: String },
    #[error("schedule.timezone applies to cron schedules only")]
    TimeZoneWithRate,
    #[error("schedule.fixed_rate: {0}")]
    Rate(crate::types::ValueError),
    #[error("schedule.fixed_rate: {rate:?} is too small; the rate must be at least 1m")]
    RateTooSmall { rate: String },
    #[error("schedule.fixed_rate: {rate:?} must be whole minutes")]
    RateNotMinutes { rate: String },
    #[error(
        "cron: unknown alias {alias:?}; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"
    )]
    CronAlias { alias: String },
    #[error(
        "cron: {expression:?} has {count} fields; expected 5 (minute hour day-of-month month day-of-week)"
    )]
    CronFields { expression: String, count: usize },
    #[error("cron field {field}: {problem}")]
    CronField {
        field: String,
        problem: CronFieldProblem,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronFieldProblem {
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{number} is out of range {min}-{max}")]
    OutOfRange { number: u32, min: u32, max: u32 },
    #[error("step {0:?} is not a number")]
    Step(String),
    #[error("a step of 0 never advances")]
    ZeroStep,
    #[error("range {0:?} runs backwards")]
    Backwards(String),
}

impl ScheduleSpec {
    /// Parses and checks the schedule; errors name the field that is wrong.
    pub fn compile(&self) -> Result<Schedule, ScheduleError> {
        match (&self.cron, &self.fixed_rate) {
            (Some(_), Some(_)) => Err(ScheduleError::CronAndRate),
            (None, None) => Err(ScheduleError::NeitherCronNorRate),
            (Some(expression), None) => {
                let timezone = match &self.timezone {
                    Some(name) => {
                        Tz::from_str(name).map_err(|_| ScheduleError::TimeZone { name: name.clone() })?
                    }
                    None => Tz::UTC,
                };
                Ok(Schedule::Cron(Box::new(Cron::parse(expression)?), timezone))
            }
            (None, Some(rate)) => {
                if self.timezone.is_some() {
                    return Err(ScheduleError::TimeZoneWithRate);
                }
                let millis = parse_duration_millis(rate).map_err(ScheduleError::Rate)?;
                if millis < 60_000 {
                    return Err(ScheduleError::RateTooSmall { rate: rate.clone() });
                }
                if millis % 60_000 != 0 {
                    return Err(ScheduleError::RateNotMinutes { rate: rate.clone() });
                }
                Ok(Schedule::FixedRate(Duration::milliseconds(millis)))
            }
        }
    }

    pub fn catch_up_max(&self) -> u32 {
        self.catch_up_max.unwrap_or(100)
    }
}

/// A compiled schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Cron(Box<Cron>, Tz),
    FixedRate(Duration),
}

impl Schedule {
    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::FixedRate(rate) => {
                let period = rate.num_milliseconds();
                let next = (after.timestamp_millis().div_euclid(period) + 1) * period;
                DateTime::from_timestamp_millis(next)
            }
            Schedule::Cron(cron, timezone) => cron.next_after(after, *timezone),
        }
    }

    /// Every fire time in `(after, until]`, at most `limit` of them, oldest first.
    pub fn times_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut times = Vec::new();
        let mut cursor = after;
        while times.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= until => {
                    times.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        times
    }
}

/// A parsed 5-field cron expression; each field is the set of allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days_of_month: Vec<bool>,
    months: Vec<bool>,
    days_of_week: Vec<bool>,
    /// Standard cron: when both day fields are restricted, a day matches if either does.
    days_of_month_restricted: bool,
    days_of_week_restricted: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, ScheduleError> {
        let expanded = match expression.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(ScheduleError::CronAlias {
                    alias: other.to_string(),
                })
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::CronFields {
                expression: expression.to_string(),
                count: fields.len(),
            });
        }
        let (days_of_week, days_of_week_restricted) =
            parse_field("day-of-week", fields[4], 0, 7, &DAY_NAMES)?;
        // 7 is Sunday too.
        let mut days_of_week = days_of_week;
        if days_of_week[7] {
            days_of_week[0] = true;
        }
        let (days_of_month, days_of_month_restricted) = parse_field("day-of-month", fields[2], 1, 31, &[])?;
        Ok(Cron {
            minutes: parse_field("minute", fields[0], 0, 59, &[])?.0,
            hours: parse_field("hour", fields[1], 0, 23, &[])?.0,
            days_of_month,
            months: parse_field("month", fields[3], 1, 12, &MONTH_NAMES)?.0,
            days_of_week,
            days_of_month_restricted,
            days_of_week_restricted,
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let by_month = self.days_of_month[date.day() as usize];
        let by_week = self.days_of_week[date.weekday().num_days_from_sunday() as usize];
        match (self.days_of_month_restricted, self.days_of_week_restricted) {
            (true, true) => by_month || by_week,
            (true, false) => by_month,
            (false, true) => by_week,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `after`, in `timezone`. Skips local times that do not
    /// exist (spring-forward gaps); an ambiguous local time fires once, at its earlier instant.
    pub fn next_after(&self, after: DateTime<Utc>, timezone: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&timezone).naive_local();
        let mut date = local.date();
        let mut minute_of_day = local.hour() * 60 + local.minute() + 1;
        // Eight years covers every valid expression (Feb 29 on a given weekday included).
        let last_date = date.checked_add_signed(Duration::days(366 * 8))?;
        while date <= last_date {
            if self.months[date.month() as usize] && self.day_matches(date) {
                while minute_of_day < 24 * 60 {
                    let (hour, minute) = (minute_of_day / 60, minute_of_day % 60);
                    if !self.hours[hour as usize] {
                        minute_of_day = (hour + 1) * 60;
                        continue;
                    }
                    if self.minutes[minute as usize] {
                        let naive = date.and_hms_opt(hour, minute, 0)?;
                        if let Some(instant) = timezone.from_local_datetime(&naive).earliest() {
                            let instant = instant.with_timezone(&Utc);
                            if instant > after {
                                return Some(instant);
                            }
                        }
                    }
                    minute_of_day += 1;
                }
            }
            date = date.succ_opt()?;
            minute_of_day = 0;
        }
        None
    }
}

/// Parses one field into a table indexed by value (`max + 1` entries); the flag says whether the field
/// restricts anything (is not `*`).
fn parse_field(
    name: &str,
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<(Vec<bool>, bool), ScheduleError> {
    let field_error = |problem| ScheduleError::CronField {
        field: name.to_string(),
        problem,
    };
    let mut allowed = vec![false; max as usize + 1];
    let value = |token: &str| -> Result<u32, ScheduleError> {
        let lower = token.to_ascii_lowercase();
        if let Some(index) = names.iter().position(|n| *n == lower) {
            // Month names are 1-based, day names 0-based.
            return Ok(index as u32 + if names.len() == 12 { 1 } else { 0 });
        }
        let number: u32 = token
            .parse()
            .map_err(|_| field_error(CronFieldProblem::NotANumber(token.to_string())))?;
        if number < min || number > max {
            return Err(field_error(CronFieldProblem::OutOfRange { number, min, max }));
        }
        Ok(number)
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| field_error(CronFieldProblem::Step(step.to_string())))?;
                if step == 0 {
                    return Err(field_error(CronFieldProblem::ZeroStep));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (start, end) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((start, end)) => (value(start)?, value(end)?),
                None if step > 1 => (value(range)?, max),
                None => {
                    let single = value(range)?;
                    (single, single)
                }
            },
        };
        if start > end {
            return Err(field_error(CronFieldProblem::Backwards(range.to_string())));
        }
        for allowed_value in (start..=end).step_by(step as usize) {
            allowed[allowed_value as usize] = true;
        }
    }
    Ok((allowed, text != "*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn cron(expression: &str) -> Schedule {
        ScheduleSpec {
            cron: Some(expression.into()),
            fixed_rate: None,
            timezone: None,
            kickoff_time_input: None,
            catch_up: CatchUp::All,
            catch_up_max: None,
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn every_minute_fires_sixty_times_an_hour() {
        let times =
            cron("*/1 * * * *").times_between(at("2026-01-01T00:00:00Z"), at("2026-01-01T01:00:00Z"), 1000);
        assert_eq!(times.len(), 60);
        assert_eq!(times[0], at("2026-01-01T00:01:00Z"));
        assert_eq!(times[59], at("2026-01-01T01:00:00Z"));
    }

    #[test]
    fn fields_lists_ranges_steps_names_and_aliases() {
        let schedule = cron("15,45 9-17/4 * jan-mar mon-fri");
        assert_eq!(
            schedule.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T09:15:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-01-01T09:15:00Z")),
            Some(at("2026-01-01T09:45:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-01-01T17:45:00Z")),
            Some(at("2026-01-02T09:15:00Z"))
        );
        // 2026-01-03 is a Saturday: the next weekday is Monday the 5th.
        assert_eq!(
            schedule.next_after(at("2026-01-02T17:45:00Z")),
            Some(at("2026-01-05T09:15:00Z"))
        );
        assert_eq!(
            cron("@daily").next_after(at("2026-03-01T10:00:00Z")),
            Some(at("2026-03-02T00:00:00Z"))
        );
        assert_eq!(
            cron("@hourly").next_after(at("2026-03-01T10:00:00Z")),
            Some(at("2026-03-01T11:00:00Z"))
        );
        assert_eq!(
            cron("0 0 29 2 *").next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn time_zones_shift_the_fire_time() {
        let spec = ScheduleSpec {
            cron: Some("0 9 * * *".into()),
            fixed_rate: None,
            timezone: Some("Europe/Berlin".into()),
            kickoff_time_input: None,
            catch_up: CatchUp::Latest,
            catch_up_max: None,
        };
        let schedule = spec.compile().unwrap();
        assert_eq!(
            schedule.next_after(at("2026-01-10T00:00:00Z")),
            Some(at("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-07-10T00:00:00Z")),
            Some(at("2026-07-10T07:00:00Z"))
        );
    }

    #[test]
    fn fixed_rates_are_aligned_to_the_epoch() {
        let spec = ScheduleSpec {
            cron: None,
            fixed_rate: Some("15m".into()),
            timezone: None,
            kickoff_time_input: None,
            catch_up: CatchUp::All,
            catch_up_max: None,
        };
        let schedule = spec.compile().unwrap();
        assert_eq!(
            schedule.next_after(at("2026-01-01T10:07:00Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-01-01T10:15:00Z")),
            Some(at("2026-01-01T10:30:00Z"))
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let error = |cron: &str| Cron::parse(cron).unwrap_err();
        assert!(
            error("61 * * * *").to_string().contains("minute")
                && error("61 * * * *").to_string().contains("0-59")
        );
        assert!(error("0 25 * * *").to_string().contains("hour"));
        assert!(error("0 0 * 13 *").to_string().contains("month"));
        assert!(error("0 0 * * funday").to_string().contains("day-of-week"));
        assert!(error("0 0 * *").to_string().contains("5"));
        assert!(error("@sometimes").to_string().contains("alias"));
        assert!(error("*/0 * * * *").to_string().contains("step"));
        let rate = |text: &str| {
            ScheduleSpec {
                cron: None,
                fixed_rate: Some(text.into()),
                timezone: None,
                kickoff_time_input: None,
                catch_up: CatchUp::All,
                catch_up_max: None,
            }
            .compile()
            .unwrap_err()
        };
        assert!(rate("0m").to_string().contains("fixed_rate"));
        assert!(rate("soon").to_string().contains("fixed_rate"));
        let zone = ScheduleSpec {
            cron: Some("@daily".into()),
            fixed_rate: None,
            timezone: Some("Mars/Olympus".into()),
            kickoff_time_input: None,
            catch_up: CatchUp::All,
            catch_up_max: None,
        };
        assert!(zone.compile().unwrap_err().to_string().contains("timezone"));
    }
}
