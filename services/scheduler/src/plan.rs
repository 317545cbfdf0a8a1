//! Which fire times to fire now and which to skip, given a schedule's cursor and its catch-up policy.
//! Pure, so the policies are tested without a log.

use aloft_core::schedule::{CatchUp, Schedule};
use chrono::{DateTime, Duration, Utc};

/// Fire times further back than this are "missed" and go through the catch-up policy.
pub const ON_TIME_GRACE_SECONDS: i64 = 30;
/// The most fire times looked at in one pass (a schedule down for years is not walked minute by minute).
const SCAN_LIMIT: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirePlan {
    /// Times to fire, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Missed times up to here are skipped (the cursor moves past them), with how many there were.
    pub skip_through: Option<(DateTime<Utc>, u32)>,
}

pub fn plan(
    schedule: &Schedule,
    policy: CatchUp,
    max: u32,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
) -> FirePlan {
    let due = schedule.times_between(cursor, now, SCAN_LIMIT);
    let grace_start = now - Duration::seconds(ON_TIME_GRACE_SECONDS);
    let (missed, on_time): (Vec<_>, Vec<_>) = due.into_iter().partition(|time| *time < grace_start);
    let fired_missed: Vec<DateTime<Utc>> = match policy {
        CatchUp::All => missed.iter().rev().take(max as usize).rev().copied().collect(),
        CatchUp::Latest => missed.last().copied().into_iter().collect(),
        CatchUp::None => Vec::new(),
    };
    let skipped: Vec<&DateTime<Utc>> = missed
        .iter()
        .filter(|time| !fired_missed.contains(time))
        .collect();
    let skip_through = skipped.last().map(|last| (**last, skipped.len() as u32));
    let mut fire = fired_missed;
    fire.extend(on_time);
    FirePlan { fire, skip_through }
}

#[cfg(test)]
mod tests {
    use aloft_core::schedule::ScheduleSpec;

    use super::*;

    fn every_minute() -> Schedule {
        ScheduleSpec {
            cron: Some("* * * * *".into()),
            fixed_rate: None,
            timezone: None,
            kickoff_time_input: None,
            catch_up: CatchUp::All,
            catch_up_max: None,
        }
        .compile()
        .unwrap()
    }

    fn at(minute: i64) -> DateTime<Utc> {
        // 1_800_000_000 is on the hour (2027-01-15T08:00:00Z).
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    #[test]
    fn ten_missed_minutes_under_each_policy() {
        let now = at(10) + Duration::seconds(40);
        let all = plan(&every_minute(), CatchUp::All, 100, at(0), now);
        assert_eq!(all.fire, (1..=10).map(at).collect::<Vec<_>>());
        assert_eq!(all.skip_through, None);
        let latest = plan(&every_minute(), CatchUp::Latest, 100, at(0), now);
        assert_eq!(latest.fire, vec![at(10)]);
        assert_eq!(latest.skip_through, Some((at(9), 9)));
        let none = plan(&every_minute(), CatchUp::None, 100, at(0), now);
        assert!(none.fire.is_empty());
        assert_eq!(none.skip_through, Some((at(10), 10)));
        let capped = plan(&every_minute(), CatchUp::All, 3, at(0), now);
        assert_eq!(capped.fire, vec![at(8), at(9), at(10)]);
        assert_eq!(capped.skip_through, Some((at(7), 7)));
    }

    #[test]
    fn a_time_within_the_grace_period_fires_under_every_policy() {
        let now = at(1) + Duration::seconds(5);
        for policy in [CatchUp::All, CatchUp::Latest, CatchUp::None] {
            assert_eq!(plan(&every_minute(), policy, 100, at(0), now).fire, vec![at(1)]);
        }
    }
}
