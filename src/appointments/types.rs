//! Validated values of the appointments domain: statuses and their transitions, weekdays,
//! local times, durations and windows. Parsers return `AppError::Validation` naming the
//! field, never echoing the input.
use async_graphql::Enum;
use chrono::{DateTime, NaiveTime, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::availability::{self, Schedule, WeeklyHours};
use crate::error::{AppError, AppResult};

/// Where an appointment stands. SCHEDULED is the only state it leaves.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Hash)]
pub enum AppointmentStatus {
    /// Booked and still to happen (or to be marked).
    Scheduled,
    /// The visit took place.
    Completed,
    /// Called off before it took place.
    Cancelled,
    /// The patient did not come.
    NoShow,
}

crate::text_enum!(AppointmentStatus {
    Scheduled => "SCHEDULED",
    Completed => "COMPLETED",
    Cancelled => "CANCELLED",
    NoShow => "NO_SHOW",
});

impl AppointmentStatus {
    /// SCHEDULED may become any other status; nothing else changes (VALIDATION).
    pub fn check_transition(self, to: AppointmentStatus) -> AppResult<()> {
        if self == AppointmentStatus::Scheduled && to != AppointmentStatus::Scheduled {
            return Ok(());
        }
        Err(AppError::validation(
            "status",
            "only a SCHEDULED appointment can change; this one is already settled",
        ))
    }

    /// Only a SCHEDULED appointment moves (VALIDATION otherwise).
    pub fn check_movable(self) -> AppResult<()> {
        if self == AppointmentStatus::Scheduled {
            return Ok(());
        }
        Err(AppError::validation(
            "status",
            "only a SCHEDULED appointment can be rescheduled",
        ))
    }
}

/// A day of the week, as working hours recur on it.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl From<Weekday> for chrono::Weekday {
    fn from(d: Weekday) -> Self {
        match d {
            Weekday::Monday => chrono::Weekday::Mon,
            Weekday::Tuesday => chrono::Weekday::Tue,
            Weekday::Wednesday => chrono::Weekday::Wed,
            Weekday::Thursday => chrono::Weekday::Thu,
            Weekday::Friday => chrono::Weekday::Fri,
            Weekday::Saturday => chrono::Weekday::Sat,
            Weekday::Sunday => chrono::Weekday::Sun,
        }
    }
}

impl From<chrono::Weekday> for Weekday {
    fn from(d: chrono::Weekday) -> Self {
        match d {
            chrono::Weekday::Mon => Weekday::Monday,
            chrono::Weekday::Tue => Weekday::Tuesday,
            chrono::Weekday::Wed => Weekday::Wednesday,
            chrono::Weekday::Thu => Weekday::Thursday,
            chrono::Weekday::Fri => Weekday::Friday,
            chrono::Weekday::Sat => Weekday::Saturday,
            chrono::Weekday::Sun => Weekday::Sunday,
        }
    }
}

/// A local wall-clock time as the API writes it: `HH:MM`, 24-hour, `00:00` to `23:59`.
pub fn parse_local_time(field: &'static str, raw: &str) -> AppResult<NaiveTime> {
    let bad = || AppError::validation(field, "must be a local time written HH:MM (24-hour)");
    let (h, m) = raw.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(h) && digits(m)) {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

/// `HH:MM`, as [`parse_local_time`] reads it.
pub fn format_local_time(t: NaiveTime) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// An IANA time zone name (`Europe/Berlin`).
pub fn parse_time_zone(raw: &str) -> AppResult<chrono_tz::Tz> {
    availability::parse_time_zone(raw).ok_or(AppError::validation(
        "timeZone",
        "is not an IANA time zone name",
    ))
}

/// Shortest and longest appointment, in minutes.
pub const DURATION_MINUTES: std::ops::RangeInclusive<i32> = 5..=480;

/// An appointment's length.
pub fn parse_duration(minutes: i32) -> AppResult<TimeDelta> {
    if !DURATION_MINUTES.contains(&minutes) {
        return Err(AppError::validation(
            "durationMinutes",
            "must be between 5 and 480 minutes",
        ));
    }
    Ok(TimeDelta::minutes(i64::from(minutes)))
}

/// When an appointment starts: on a whole minute, and not in the past.
pub fn parse_start(t: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    if t.second() != 0 || t.nanosecond() != 0 {
        return Err(AppError::validation(
            "startsAt",
            "must be on a whole minute",
        ));
    }
    if t <= now {
        return Err(AppError::validation("startsAt", "must be in the future"));
    }
    Ok(t)
}

/// Longest window availability and calendars are asked for.
pub const MAX_WINDOW_DAYS: i64 = 31;

/// A window `[from, to)` of at most [`MAX_WINDOW_DAYS`].
pub fn parse_window(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    if to <= from {
        return Err(AppError::validation("to", "must be after from"));
    }
    if to - from > TimeDelta::days(MAX_WINDOW_DAYS) {
        return Err(AppError::validation(
            "to",
            "the window may span at most 31 days",
        ));
    }
    Ok((from, to))
}

/// Longest absence one `addTimeOff` records.
pub const MAX_TIME_OFF_DAYS: i64 = 366;

/// An absence `[from, to)`: whole seconds, ending in the future, at most a year long.
pub fn parse_time_off(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    use chrono::SubsecRound;
    let (from, to) = (from.trunc_subsecs(0), to.trunc_subsecs(0));
    if to <= from {
        return Err(AppError::validation("to", "must be after from"));
    }
    if to <= now {
        return Err(AppError::validation("to", "must be in the future"));
    }
    if to - from > TimeDelta::days(MAX_TIME_OFF_DAYS) {
        return Err(AppError::validation(
            "to",
            "time off may span at most 366 days",
        ));
    }
    Ok((from, to))
}

/// One interval of the recurring week as stored (and as the API writes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHours {
    pub weekday: Weekday,
    pub start: String,
    pub end: String,
}

/// The stored JSON of a schedule's weekly hours.
pub fn weekly_to_json(weekly: &[WeeklyHours]) -> AppResult<String> {
    let rows: Vec<StoredHours> = weekly
        .iter()
        .map(|w| StoredHours {
            weekday: w.weekday.into(),
            start: format_local_time(w.start),
            end: format_local_time(w.end),
        })
        .collect();
    serde_json::to_string(&rows).map_err(AppError::internal)
}

/// The schedule stored on a provider's row, if one was set.
pub fn stored_schedule(
    time_zone: Option<&str>,
    slot_minutes: Option<i32>,
    weekly: Option<&str>,
) -> AppResult<Option<Schedule>> {
    let (Some(tz), Some(slot), Some(weekly)) = (time_zone, slot_minutes, weekly) else {
        return Ok(None);
    };
    let bad = || AppError::internal_msg("a stored schedule does not decode");
    let time_zone = availability::parse_time_zone(tz).ok_or_else(bad)?;
    // Times only, no PHI: serde's message could be logged, but it is not needed either.
    let rows: Vec<StoredHours> = serde_json::from_str(weekly).map_err(|_| bad())?;
    let weekly = rows
        .iter()
        .map(|r| {
            Ok(WeeklyHours {
                weekday: r.weekday.into(),
                start: parse_local_time("weekly", &r.start).map_err(|_| bad())?,
                end: parse_local_time("weekly", &r.end).map_err(|_| bad())?,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    Ok(Some(Schedule {
        time_zone,
        slot_minutes: u32::try_from(slot).map_err(|_| bad())?,
        weekly,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn only_scheduled_changes() {
        use AppointmentStatus::*;
        for to in [Completed, Cancelled, NoShow] {
            assert!(Scheduled.check_transition(to).is_ok());
            for from in [Completed, Cancelled, NoShow] {
                assert_eq!(from.check_transition(to).unwrap_err().code(), "VALIDATION");
            }
        }
        assert!(Scheduled.check_transition(Scheduled).is_err());
        assert!(Scheduled.check_movable().is_ok());
        assert!(Cancelled.check_movable().is_err());
    }

    #[test]
    fn local_times_are_hh_mm() {
        assert_eq!(
            parse_local_time("start", "09:30").unwrap(),
            NaiveTime::from_hms_opt(9, 30, 0).unwrap()
        );
        assert_eq!(
            format_local_time(parse_local_time("s", "23:59").unwrap()),
            "23:59"
        );
        for bad in [
            "9:30", "24:00", "12:60", "12-30", "", "ab:cd", "09:30:00", "+9:30",
        ] {
            let e = parse_local_time("start", bad).unwrap_err();
            assert_eq!(e.code(), "VALIDATION", "{bad}");
            assert!(
                !e.to_string().contains(bad) || bad.is_empty(),
                "{bad} echoed"
            );
        }
    }

    #[test]
    fn windows_durations_and_starts() {
        let t = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap();
        assert!(parse_window(t(1, 0), t(31, 0)).is_ok());
        assert!(parse_window(t(1, 0), t(1, 0)).is_err());
        let far = t(1, 0) + TimeDelta::days(31) + TimeDelta::minutes(1);
        assert!(parse_window(t(1, 0), far).is_err());
        assert!(parse_duration(4).is_err() && parse_duration(481).is_err());
        assert_eq!(parse_duration(30).unwrap(), TimeDelta::minutes(30));
        assert!(parse_start(t(2, 9), t(1, 0)).is_ok());
        assert!(parse_start(t(1, 0), t(2, 0)).is_err());
        assert!(parse_start(t(2, 9) + TimeDelta::seconds(5), t(1, 0)).is_err());
        assert!(parse_time_off(t(2, 0), t(3, 0), t(1, 0)).is_ok());
        assert!(parse_time_off(t(2, 0), t(1, 0), t(1, 0)).is_err());
    }

    #[test]
    fn a_stored_week_round_trips() {
        let weekly = vec![WeeklyHours {
            weekday: chrono::Weekday::Mon,
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(12, 0, 0).unwrap(),
        }];
        let json = weekly_to_json(&weekly).unwrap();
        assert_eq!(
            json,
            r#"[{"weekday":"MONDAY","start":"09:00","end":"12:00"}]"#
        );
        let s = stored_schedule(Some("Europe/Berlin"), Some(30), Some(&json))
            .unwrap()
            .unwrap();
        assert_eq!(s.weekly, weekly);
        assert_eq!(s.time_zone, chrono_tz::Tz::Europe__Berlin);
        assert!(
            stored_schedule(None, Some(30), Some(&json))
                .unwrap()
                .is_none()
        );
    }
}
