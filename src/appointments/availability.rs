//! A provider's free appointment slots, computed from weekly wall-clock hours in an IANA time
//! zone. Pure: no database, no clock; the caller passes `now` and the busy intervals.
//!
//! Local hours are kept across daylight-saving changes. A local time that does not exist
//! (spring forward) resolves to the instant the clocks jumped; an ambiguous one (fall back)
//! to its earliest instant for a start and its latest for an end.
use std::fmt;

use chrono::{
    DateTime, Datelike, Days, MappedLocalTime, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

/// Shortest and longest slot a schedule may have, in minutes.
const SLOT_MINUTES: std::ops::RangeInclusive<u32> = 5..=240;
/// Most intervals a schedule may have.
const MAX_INTERVALS: usize = 50;

/// Working hours on one weekday, in local wall-clock time: `[start, end)`, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklyHours {
    /// The day these hours recur on.
    pub weekday: chrono::Weekday,
    /// First working instant, local time.
    pub start: chrono::NaiveTime,
    /// End of work (exclusive), local time, on the same day.
    pub end: chrono::NaiveTime,
}

/// A provider's recurring week: working hours in `time_zone`, cut into `slot_minutes` slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The zone the weekly hours are read in.
    pub time_zone: chrono_tz::Tz,
    /// Length of one bookable slot.
    pub slot_minutes: u32,
    /// The working hours, in any order.
    pub weekly: Vec<WeeklyHours>,
}

/// Why a [`Schedule`] is refused. Names the field; never echoes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleError {
    /// `slot_minutes` is outside 5..=240.
    SlotLength,
    /// More than 50 intervals.
    TooManyIntervals,
    /// An interval does not start before it ends.
    EmptyInterval,
    /// Two intervals on the same weekday overlap.
    OverlappingIntervals,
}

impl ScheduleError {
    /// The input field at fault, as the API names it.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::SlotLength => "slotMinutes",
            ScheduleError::TooManyIntervals
            | ScheduleError::EmptyInterval
            | ScheduleError::OverlappingIntervals => "weekly",
        }
    }

    /// A short English reason, fit for the client.
    pub fn message(&self) -> &'static str {
        match self {
            ScheduleError::SlotLength => "must be between 5 and 240 minutes",
            ScheduleError::TooManyIntervals => "must have at most 50 intervals",
            ScheduleError::EmptyInterval => "each interval must start before it ends",
            ScheduleError::OverlappingIntervals => "intervals on the same weekday must not overlap",
        }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field(), self.message())
    }
}

impl std::error::Error for ScheduleError {}

impl Schedule {
    /// Checks the slot length (5..=240 minutes), the number of intervals (at most 50), that
    /// each interval starts before it ends, and that intervals of one weekday do not overlap
    /// (touching is fine).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if !SLOT_MINUTES.contains(&self.slot_minutes) {
            return Err(ScheduleError::SlotLength);
        }
        if self.weekly.len() > MAX_INTERVALS {
            return Err(ScheduleError::TooManyIntervals);
        }
        if self.weekly.iter().any(|w| w.start >= w.end) {
            return Err(ScheduleError::EmptyInterval);
        }
        for (i, a) in self.weekly.iter().enumerate() {
            for b in &self.weekly[i + 1..] {
                if a.weekday == b.weekday && a.start < b.end && b.start < a.end {
                    return Err(ScheduleError::OverlappingIntervals);
                }
            }
        }
        Ok(())
    }
}

/// The IANA time zone of that exact name (`"Europe/Berlin"`), or `None`.
pub fn parse_time_zone(name: &str) -> Option<chrono_tz::Tz> {
    name.parse().ok()
}

/// A half-open UTC interval `[start, end)`.
pub type Interval = (DateTime<Utc>, DateTime<Utc>);

/// The schedule's working hours as UTC intervals, clipped to `[from, to)`, sorted and
/// disjoint. Empty if `from >= to`. Cost grows with the window's number of days.
pub fn working_intervals(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    raw_intervals(s, from, to)
        .into_iter()
        .map(|(a, b)| (a.max(from), b.min(to)))
        .collect()
}

/// Free slots of `slot_minutes`, aligned to the start of their working interval, wholly
/// inside it and inside `[from, to)`, starting at or after `now`, overlapping no `busy`
/// interval (touching is not overlapping). Sorted. `busy` may be unsorted and overlapping;
/// empty or inverted busy intervals are ignored. Empty for a zero slot length.
pub fn free_slots(
    s: &Schedule,
    busy: &[Interval],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Interval> {
    let step = TimeDelta::minutes(i64::from(s.slot_minutes));
    let earliest = from.max(now);
    if step <= TimeDelta::zero() || earliest >= to {
        return Vec::new();
    }
    let busy = merged_busy(busy, earliest, to);
    let mut out = Vec::new();
    let mut j = 0;
    for (w0, w1) in raw_intervals(s, earliest, to) {
        let limit = w1.min(to);
        let mut start = w0;
        while let Some(end) = start.checked_add_signed(step) {
            if end > limit {
                break;
            }
            if start >= earliest {
                // Slots come in time order, and so do the disjoint busy intervals: skip
                // those that end before this slot starts, then look at the next one only.
                while j < busy.len() && busy[j].1 <= start {
                    j += 1;
                }
                if !(j < busy.len() && busy[j].0 < end) {
                    out.push((start, end));
                }
            }
            start = end;
        }
    }
    out
}

/// Whether all of `[start, end)` lies inside one working interval; any duration, aligned or
/// not. False if `start >= end`.
pub fn fits(s: &Schedule, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    start < end
        && raw_intervals(s, start, end)
            .iter()
            .any(|&(w0, w1)| w0 <= start && end <= w1)
}

/// Busy intervals that reach into `[from, to)`, sorted and merged into disjoint ones.
fn merged_busy(busy: &[Interval], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    let mut v: Vec<Interval> = busy
        .iter()
        .copied()
        .filter(|&(a, b)| a < b && b > from && a < to)
        .collect();
    v.sort_unstable();
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Whole (unclipped) working intervals that overlap `[from, to)`, sorted. Intervals that
/// overlap (possible only around a fall-back change) are merged; touching ones are kept apart.
fn raw_intervals(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    if from >= to {
        return Vec::new();
    }
    let tz = s.time_zone;
    // Two days' margin on each side: local dates and UTC dates differ by at most one, and
    // the margin covers the rare day-long jumps too.
    let local_date = |t: DateTime<Utc>| local_reading(tz, t).unwrap_or(t.naive_utc()).date();
    let first = local_date(from);
    let first = first.checked_sub_days(Days::new(2)).unwrap_or(first);
    let last = local_date(to);
    let last = last.checked_add_days(Days::new(2)).unwrap_or(last);

    let mut v = Vec::new();
    let mut day = Some(first);
    while let Some(d) = day.filter(|d| *d <= last) {
        for w in s.weekly.iter().filter(|w| w.weekday == d.weekday()) {
            let start = to_utc(tz, d.and_time(w.start), Edge::Start);
            let end = to_utc(tz, d.and_time(w.end), Edge::End);
            if let (Some(a), Some(b)) = (start, end)
                && a < b
                && b > from
                && a < to
            {
                v.push((a, b));
            }
        }
        day = d.succ_opt();
    }
    v.sort_unstable();
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a < last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

/// The UTC instant of a local wall-clock time: the earliest (start) or latest (end) of an
/// ambiguous one, the instant the clocks jumped for one that does not exist.
fn to_utc(tz: Tz, local: NaiveDateTime, edge: Edge) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        MappedLocalTime::Single(t) => Some(t.with_timezone(&Utc)),
        MappedLocalTime::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            Some(match edge {
                Edge::Start => a.min(b),
                Edge::End => a.max(b),
            })
        }
        MappedLocalTime::None => first_instant_at_or_after(tz, local),
    }
}

/// The local wall-clock reading at `t`; `None` past the ends of chrono's range.
fn local_reading(tz: Tz, t: DateTime<Utc>) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}

/// The first whole-second instant whose local reading is at or after `local`. For a local
/// time in a gap that is the instant the clocks jumped (offsets are whole seconds).
fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // UTC offsets stay within ±1 day, so the answer lies between these two.
    let span = TimeDelta::hours(36);
    let reading = |secs: i64| DateTime::from_timestamp(secs, 0).and_then(|t| local_reading(tz, t));
    // Invariant: the reading at `lo` is before `local`; at `hi` it is not.
    let mut lo = local.checked_sub_signed(span)?.and_utc().timestamp();
    let mut hi = local.checked_add_signed(span)?.and_utc().timestamp();
    if reading(lo)? >= local || reading(hi)? < local {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reading(mid)? >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Timelike, Weekday};
    use proptest::prelude::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn hours(weekday: Weekday, start: NaiveTime, end: NaiveTime) -> WeeklyHours {
        WeeklyHours {
            weekday,
            start,
            end,
        }
    }

    const ALL_DAYS: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    fn every_day(tz: Tz, start: NaiveTime, end: NaiveTime) -> Schedule {
        Schedule {
            time_zone: tz,
            slot_minutes: 30,
            weekly: ALL_DAYS.iter().map(|&d| hours(d, start, end)).collect(),
        }
    }

    /// Monday to Friday 09:00–17:00 UTC, 30-minute slots.
    fn office_utc() -> Schedule {
        Schedule {
            time_zone: Tz::UTC,
            slot_minutes: 30,
            weekly: ALL_DAYS[..5]
                .iter()
                .map(|&d| hours(d, hm(9, 0), hm(17, 0)))
                .collect(),
        }
    }

    fn starts(slots: &[Interval]) -> Vec<(u32, u32, u32)> {
        slots
            .iter()
            .map(|(a, _)| (a.day(), a.hour(), a.minute()))
            .collect()
    }

    #[test]
    fn berlin_keeps_local_hours_across_spring_forward() {
        let s = every_day(Tz::Europe__Berlin, hm(9, 0), hm(17, 0));
        // 2026-03-29 (Sunday): CET (+1) to CEST (+2) at 02:00 local.
        let got = working_intervals(&s, utc(2026, 3, 28, 0, 0), utc(2026, 3, 30, 0, 0));
        assert_eq!(
            got,
            vec![
                (utc(2026, 3, 28, 8, 0), utc(2026, 3, 28, 16, 0)),
                (utc(2026, 3, 29, 7, 0), utc(2026, 3, 29, 15, 0)),
            ]
        );
        let day = (utc(2026, 3, 29, 0, 0), utc(2026, 3, 30, 0, 0));
        let slots = free_slots(&s, &[], day.0, day.1, day.0);
        assert_eq!(slots.len(), 16);
        assert_eq!(slots[0], (utc(2026, 3, 29, 7, 0), utc(2026, 3, 29, 7, 30)));
        assert_eq!(slots[15].1, utc(2026, 3, 29, 15, 0));
    }

    #[test]
    fn berlin_keeps_local_hours_across_fall_back() {
        let s = every_day(Tz::Europe__Berlin, hm(9, 0), hm(17, 0));
        // 2026-10-25 (Sunday): CEST (+2) to CET (+1) at 03:00 local.
        let got = working_intervals(&s, utc(2026, 10, 24, 0, 0), utc(2026, 10, 26, 0, 0));
        assert_eq!(
            got,
            vec![
                (utc(2026, 10, 24, 7, 0), utc(2026, 10, 24, 15, 0)),
                (utc(2026, 10, 25, 8, 0), utc(2026, 10, 25, 16, 0)),
            ]
        );
    }

    #[test]
    fn new_york_keeps_local_hours_across_both_changes() {
        let s = every_day(Tz::America__New_York, hm(9, 0), hm(17, 0));
        // 2026-03-08: EST (-5) to EDT (-4).
        let spring = working_intervals(&s, utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 0, 0));
        assert_eq!(
            spring,
            vec![
                (utc(2026, 3, 7, 14, 0), utc(2026, 3, 7, 22, 0)),
                (utc(2026, 3, 8, 13, 0), utc(2026, 3, 8, 21, 0)),
            ]
        );
        // 2026-11-01: EDT (-4) to EST (-5).
        let autumn = working_intervals(&s, utc(2026, 10, 31, 12, 0), utc(2026, 11, 2, 0, 0));
        assert_eq!(
            autumn,
            vec![
                (utc(2026, 10, 31, 13, 0), utc(2026, 10, 31, 21, 0)),
                (utc(2026, 11, 1, 14, 0), utc(2026, 11, 1, 22, 0)),
            ]
        );
        let slots = free_slots(
            &s,
            &[],
            utc(2026, 11, 1, 0, 0),
            utc(2026, 11, 2, 0, 0),
            utc(2026, 1, 1, 0, 0),
        );
        assert_eq!(slots.len(), 16);
        assert_eq!(slots[0].0, utc(2026, 11, 1, 14, 0));
    }

    #[test]
    fn local_times_in_the_spring_gap_start_when_the_clocks_jump() {
        // Berlin, 2026-03-29: 02:00–03:00 local does not exist; 03:00 CEST = 01:00 UTC.
        let day = (utc(2026, 3, 29, 0, 0), utc(2026, 3, 30, 0, 0));
        let tz = Tz::Europe__Berlin;
        let starts_in_gap = every_day(tz, hm(2, 30), hm(4, 0));
        assert_eq!(
            working_intervals(&starts_in_gap, day.0, day.1),
            vec![(utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 2, 0))]
        );
        let ends_in_gap = every_day(tz, hm(1, 0), hm(2, 30));
        assert_eq!(
            working_intervals(&ends_in_gap, day.0, utc(2026, 3, 29, 12, 0)),
            vec![(utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 0))]
        );
        let inside_gap = every_day(tz, hm(2, 0), hm(2, 45));
        assert!(working_intervals(&inside_gap, day.0, day.1).is_empty());
        assert!(free_slots(&inside_gap, &[], day.0, day.1, day.0).is_empty());

        // New York, 2026-03-08: 02:00–03:00 local does not exist; 03:00 EDT = 07:00 UTC.
        let ny = every_day(Tz::America__New_York, hm(2, 15), hm(5, 0));
        let got = working_intervals(&ny, utc(2026, 3, 8, 0, 0), utc(2026, 3, 9, 0, 0));
        assert_eq!(got, vec![(utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 9, 0))]);
    }

    #[test]
    fn ambiguous_local_times_take_earliest_start_and_latest_end() {
        // Berlin, 2026-10-25: 02:00–03:00 local happens twice, at 00:00 and 01:00 UTC.
        let day = (utc(2026, 10, 24, 12, 0), utc(2026, 10, 26, 0, 0));
        let tz = Tz::Europe__Berlin;
        let both = every_day(tz, hm(2, 30), hm(2, 45));
        let got = working_intervals(&both, day.0, day.1);
        assert_eq!(
            got,
            vec![(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 45))]
        );
        let ends = every_day(tz, hm(1, 0), hm(2, 30));
        let got = working_intervals(&ends, day.0, day.1);
        assert_eq!(
            got,
            vec![(utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 1, 30))]
        );
        // Back to back around the repeated hour: the two would overlap in UTC; merged.
        let mut pair = every_day(tz, hm(1, 0), hm(2, 0));
        pair.weekly.push(hours(Weekday::Sun, hm(2, 0), hm(3, 30)));
        let got = working_intervals(&pair, utc(2026, 10, 25, 0, 0), day.1);
        assert_eq!(
            got,
            vec![(utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 30))]
        );
        let slots = free_slots(&pair, &[], utc(2026, 10, 24, 22, 0), day.1, day.0);
        assert!(slots.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    #[test]
    fn a_day_skipped_entirely_gives_no_hours_and_no_panic() {
        // Samoa skipped 2011-12-30 when it crossed the date line.
        let s = every_day(Tz::Pacific__Apia, hm(9, 0), hm(17, 0));
        let got = working_intervals(&s, utc(2011, 12, 28, 0, 0), utc(2012, 1, 2, 0, 0));
        assert!(got.iter().all(|(a, b)| a < b));
        let dates: Vec<_> = got
            .iter()
            .map(|(a, _)| a.with_timezone(&Tz::Pacific__Apia).date_naive().day())
            .collect();
        assert!(!dates.contains(&30));
        assert!(dates.contains(&29) && dates.contains(&31));
    }

    #[test]
    fn the_ends_of_time_do_not_panic() {
        let s = every_day(Tz::Pacific__Kiritimati, hm(0, 0), hm(23, 59));
        let min = DateTime::<Utc>::MIN_UTC;
        let max = DateTime::<Utc>::MAX_UTC;
        let _ = free_slots(&s, &[(min, max)], min, min + TimeDelta::days(3), min);
        let _ = free_slots(&s, &[], max - TimeDelta::days(3), max, min);
        let _ = fits(&s, max - TimeDelta::hours(1), max);
        let _ = working_intervals(&s, max, min);
    }

    #[test]
    fn busy_removes_exactly_the_overlapping_slots() {
        let s = office_utc();
        // Monday 2026-03-02.
        let (from, to) = (utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 0, 0));
        assert_eq!(free_slots(&s, &[], from, to, from).len(), 16);
        let busy = [
            // Touches 10:00–10:30 and 11:00–11:30, overlaps only 10:30–11:00.
            (utc(2026, 3, 2, 10, 30), utc(2026, 3, 2, 11, 0)),
            // Overlaps 13:00–13:30 and 13:30–14:00.
            (utc(2026, 3, 2, 13, 15), utc(2026, 3, 2, 13, 45)),
            // Unsorted, overlapping the previous one, and one empty and one inverted.
            (utc(2026, 3, 2, 13, 20), utc(2026, 3, 2, 13, 25)),
            (utc(2026, 3, 2, 15, 0), utc(2026, 3, 2, 15, 0)),
            (utc(2026, 3, 2, 16, 0), utc(2026, 3, 2, 15, 0)),
            // Wholly outside working hours.
            (utc(2026, 3, 2, 7, 0), utc(2026, 3, 2, 9, 0)),
            (utc(2026, 3, 2, 17, 0), utc(2026, 3, 2, 18, 0)),
        ];
        let slots = free_slots(&s, &busy, from, to, from);
        assert_eq!(slots.len(), 13);
        let got = starts(&slots);
        for gone in [(2, 10, 30), (2, 13, 0), (2, 13, 30)] {
            assert!(!got.contains(&gone), "{gone:?} should be busy");
        }
        for kept in [
            (2, 9, 0),
            (2, 10, 0),
            (2, 11, 0),
            (2, 14, 0),
            (2, 15, 0),
            (2, 16, 30),
        ] {
            assert!(got.contains(&kept), "{kept:?} should be free");
        }
        assert!(slots.windows(2).all(|w| w[0].1 <= w[1].0));
    }

    #[test]
    fn time_off_spanning_days_removes_everything_inside_it() {
        let s = office_utc();
        // Tuesday 12:00 to Thursday 10:00, 2026-03-03..05.
        let off = [(utc(2026, 3, 3, 12, 0), utc(2026, 3, 5, 10, 0))];
        let (from, to) = (utc(2026, 3, 3, 0, 0), utc(2026, 3, 6, 0, 0));
        let slots = free_slots(&s, &off, from, to, from);
        let got = starts(&slots);
        assert_eq!(got.iter().filter(|d| d.0 == 3).count(), 6);
        assert_eq!(got.iter().filter(|d| d.0 == 4).count(), 0);
        assert_eq!(got.iter().filter(|d| d.0 == 5).count(), 14);
        assert_eq!(got.last(), Some(&(5, 16, 30)));
        assert!(got.contains(&(3, 11, 30)) && got.contains(&(5, 10, 0)));
    }

    #[test]
    fn now_in_the_middle_of_a_day_keeps_the_grid() {
        let s = office_utc();
        let (from, to) = (utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 0, 0));
        let slots = free_slots(&s, &[], from, to, utc(2026, 3, 2, 10, 10));
        assert_eq!(slots[0].0, utc(2026, 3, 2, 10, 30));
        assert_eq!(slots.len(), 13);
        // A slot starting exactly at `now` is offered.
        let slots = free_slots(&s, &[], from, to, utc(2026, 3, 2, 10, 30));
        assert_eq!(slots[0].0, utc(2026, 3, 2, 10, 30));
        // After the day's hours: nothing today.
        assert!(free_slots(&s, &[], from, to, utc(2026, 3, 2, 16, 31)).is_empty());
    }

    #[test]
    fn the_window_clips() {
        let s = office_utc();
        let (from, to) = (utc(2026, 3, 2, 10, 10), utc(2026, 3, 2, 11, 45));
        assert_eq!(working_intervals(&s, from, to), vec![(from, to)]);
        let slots = free_slots(&s, &[], from, to, utc(2000, 1, 1, 0, 0));
        assert_eq!(
            slots,
            vec![
                (utc(2026, 3, 2, 10, 30), utc(2026, 3, 2, 11, 0)),
                (utc(2026, 3, 2, 11, 0), utc(2026, 3, 2, 11, 30)),
            ]
        );
        // A week: five working days, weekends skipped.
        let week = working_intervals(&s, utc(2026, 3, 2, 0, 0), utc(2026, 3, 9, 0, 0));
        assert_eq!(week.len(), 5);
        assert!(working_intervals(&s, to, from).is_empty());
        assert!(free_slots(&s, &[], to, from, from).is_empty());
    }

    #[test]
    fn slots_align_to_each_interval_start() {
        let s = Schedule {
            time_zone: Tz::UTC,
            slot_minutes: 45,
            weekly: vec![
                hours(Weekday::Mon, hm(9, 0), hm(12, 0)),
                hours(Weekday::Mon, hm(13, 10), hm(15, 0)),
            ],
        };
        let (from, to) = (utc(2026, 3, 2, 0, 0), utc(2026, 3, 3, 0, 0));
        let got = starts(&free_slots(&s, &[], from, to, from));
        assert_eq!(
            got,
            vec![
                (2, 9, 0),
                (2, 9, 45),
                (2, 10, 30),
                (2, 11, 15),
                (2, 13, 10),
                (2, 13, 55)
            ]
        );
    }

    #[test]
    fn fits_checks_one_working_interval() {
        let mut s = office_utc();
        // Monday 2026-03-02.
        assert!(fits(&s, utc(2026, 3, 2, 10, 0), utc(2026, 3, 2, 11, 0)));
        assert!(fits(&s, utc(2026, 3, 2, 10, 10), utc(2026, 3, 2, 11, 10)));
        assert!(fits(&s, utc(2026, 3, 2, 9, 0), utc(2026, 3, 2, 17, 0)));
        assert!(fits(&s, utc(2026, 3, 2, 16, 0), utc(2026, 3, 2, 17, 0)));
        assert!(!fits(&s, utc(2026, 3, 2, 16, 30), utc(2026, 3, 2, 17, 30)));
        assert!(!fits(&s, utc(2026, 3, 2, 8, 30), utc(2026, 3, 2, 9, 30)));
        assert!(!fits(&s, utc(2026, 3, 2, 10, 0), utc(2026, 3, 2, 10, 0)));
        assert!(!fits(&s, utc(2026, 3, 2, 11, 0), utc(2026, 3, 2, 10, 0)));
        // Sunday 2026-03-01 has no hours.
        assert!(!fits(&s, utc(2026, 3, 1, 10, 0), utc(2026, 3, 1, 11, 0)));
        // Two touching intervals are still two.
        s.weekly = vec![
            hours(Weekday::Mon, hm(9, 0), hm(12, 0)),
            hours(Weekday::Mon, hm(12, 0), hm(17, 0)),
        ];
        assert!(!fits(&s, utc(2026, 3, 2, 11, 30), utc(2026, 3, 2, 12, 30)));
        assert!(fits(&s, utc(2026, 3, 2, 12, 0), utc(2026, 3, 2, 13, 0)));
        // Local hours in a zone: Berlin summer, 09:00 local is 07:00 UTC.
        let berlin = every_day(Tz::Europe__Berlin, hm(9, 0), hm(17, 0));
        assert!(fits(&berlin, utc(2026, 7, 1, 7, 0), utc(2026, 7, 1, 8, 0)));
        assert!(!fits(
            &berlin,
            utc(2026, 7, 1, 6, 30),
            utc(2026, 7, 1, 7, 30)
        ));
    }

    #[test]
    fn validate_accepts_a_good_schedule() {
        let mut s = office_utc();
        assert_eq!(s.validate(), Ok(()));
        // Touching on one day, and the same hours on another day, are fine.
        s.weekly.push(hours(Weekday::Mon, hm(17, 0), hm(18, 0)));
        s.weekly.push(hours(Weekday::Sat, hm(9, 0), hm(17, 0)));
        assert_eq!(s.validate(), Ok(()));
        for m in [5, 7, 240] {
            s.slot_minutes = m;
            assert_eq!(s.validate(), Ok(()));
        }
    }

    #[test]
    fn validate_refuses_bad_schedules() {
        let good = office_utc();
        for m in [0, 4, 241, u32::MAX] {
            let s = Schedule {
                slot_minutes: m,
                ..good.clone()
            };
            assert_eq!(s.validate(), Err(ScheduleError::SlotLength));
        }
        let mut s = good.clone();
        s.weekly.push(hours(Weekday::Tue, hm(16, 59), hm(18, 0)));
        assert_eq!(s.validate(), Err(ScheduleError::OverlappingIntervals));
        let mut s = good.clone();
        s.weekly.push(hours(Weekday::Wed, hm(10, 0), hm(11, 0)));
        assert_eq!(s.validate(), Err(ScheduleError::OverlappingIntervals));
        let mut s = good.clone();
        s.weekly.push(hours(Weekday::Sun, hm(10, 0), hm(10, 0)));
        assert_eq!(s.validate(), Err(ScheduleError::EmptyInterval));
        s.weekly.pop();
        s.weekly.push(hours(Weekday::Sun, hm(11, 0), hm(10, 0)));
        assert_eq!(s.validate(), Err(ScheduleError::EmptyInterval));
        let s = Schedule {
            weekly: (0..51)
                .map(|i| hours(ALL_DAYS[i % 7], hm(0, 0), hm(0, 1)))
                .collect(),
            ..good.clone()
        };
        assert_eq!(s.validate(), Err(ScheduleError::TooManyIntervals));

        let e = ScheduleError::SlotLength;
        assert_eq!(e.field(), "slotMinutes");
        assert_eq!(e.message(), "must be between 5 and 240 minutes");
        assert_eq!(
            ScheduleError::OverlappingIntervals.to_string(),
            "invalid weekly: intervals on the same weekday must not overlap"
        );
    }

    #[test]
    fn parses_iana_names_only() {
        assert_eq!(parse_time_zone("Europe/Berlin"), Some(Tz::Europe__Berlin));
        assert_eq!(
            parse_time_zone("America/New_York"),
            Some(Tz::America__New_York)
        );
        assert_eq!(parse_time_zone("UTC"), Some(Tz::UTC));
        assert_eq!(parse_time_zone("Mars/Olympus"), None);
        assert_eq!(parse_time_zone(""), None);
        assert_eq!(parse_time_zone(" Europe/Berlin"), None);
    }

    #[test]
    fn a_month_with_hundreds_of_busy_intervals() {
        let s = every_day(Tz::Europe__Berlin, hm(8, 0), hm(18, 0));
        let from = utc(2026, 3, 1, 0, 0);
        let to = utc(2026, 4, 1, 0, 0);
        // 600 busy half-hours, every 73 minutes, newest first.
        let busy: Vec<Interval> = (0..600)
            .rev()
            .map(|i| {
                let a = from + TimeDelta::minutes(73 * i);
                (a, a + TimeDelta::minutes(30))
            })
            .collect();
        let slots = free_slots(&s, &busy, from, to, from);
        assert!(!slots.is_empty());
        assert_eq!(slots, brute_force(&s, &busy, from, to, from));
    }

    /// The same answer, the slow way: every aligned slot checked against every busy one.
    fn brute_force(
        s: &Schedule,
        busy: &[Interval],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<Interval> {
        let step = TimeDelta::minutes(i64::from(s.slot_minutes));
        let mut out = Vec::new();
        for (w0, w1) in raw_intervals(s, from, to) {
            let mut a = w0;
            while a + step <= w1 {
                let b = a + step;
                let free = busy.iter().all(|&(x, y)| !(x < b && a < y));
                if free && a >= from && a >= now && b <= to {
                    out.push((a, b));
                }
                a = b;
            }
        }
        out
    }

    const ZONES: [Tz; 6] = [
        Tz::UTC,
        Tz::Europe__Berlin,
        Tz::America__New_York,
        Tz::Australia__Lord_Howe,
        Tz::Asia__Kathmandu,
        Tz::Pacific__Apia,
    ];

    fn schedule_strategy() -> impl Strategy<Value = Schedule> {
        let interval = (0usize..7, 0u32..24 * 60, 1u32..12 * 60).prop_map(|(d, start, len)| {
            let end = (start + len).min(24 * 60 - 1);
            let t = |m: u32| NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap();
            hours(ALL_DAYS[d], t(start.min(end - 1)), t(end))
        });
        (
            0usize..ZONES.len(),
            prop::sample::select(vec![5u32, 15, 20, 30, 45, 60, 240]),
            prop::collection::vec(interval, 1..12),
        )
            .prop_map(|(z, slot_minutes, mut weekly)| {
                // Keep intervals that do not overlap an earlier one of the same weekday.
                let mut kept: Vec<WeeklyHours> = Vec::new();
                for w in weekly.drain(..) {
                    if !kept
                        .iter()
                        .any(|k| k.weekday == w.weekday && k.start < w.end && w.start < k.end)
                    {
                        kept.push(w);
                    }
                }
                Schedule {
                    time_zone: ZONES[z],
                    slot_minutes,
                    weekly: kept,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn free_slots_lie_in_hours_and_avoid_busy(
            s in schedule_strategy(),
            // Around both 2026 changes in Europe and North America.
            from_h in prop::sample::select(vec![
                -24i64 * 60, 0, 1_560, 2_064, 4_000, 7_104, 7_272,
            ]),
            span_h in 1i64..24 * 10,
            now_h in 0i64..24 * 10,
            busy in prop::collection::vec((0i64..24 * 60 * 12, 1i64..6 * 60), 0..30),
        ) {
            prop_assert_eq!(s.validate(), Ok(()));
            let base = utc(2026, 1, 1, 0, 0);
            let from = base + TimeDelta::hours(from_h);
            let to = from + TimeDelta::hours(span_h);
            let now = from + TimeDelta::hours(now_h) - TimeDelta::hours(24);
            let busy: Vec<Interval> = busy
                .into_iter()
                .map(|(a, len)| {
                    let a = from - TimeDelta::hours(24) + TimeDelta::minutes(a);
                    (a, a + TimeDelta::minutes(len))
                })
                .collect();
            let hours = working_intervals(&s, from, to);
            prop_assert!(hours.windows(2).all(|w| w[0].1 <= w[1].0));
            prop_assert!(hours.iter().all(|&(a, b)| from <= a && a < b && b <= to));
            let slots = free_slots(&s, &busy, from, to, now);
            let step = TimeDelta::minutes(i64::from(s.slot_minutes));
            for &(a, b) in &slots {
                prop_assert_eq!(b - a, step);
                prop_assert!(a >= now && a >= from && b <= to);
                prop_assert!(hours.iter().any(|&(x, y)| x <= a && b <= y));
                prop_assert!(busy.iter().all(|&(x, y)| !(x < b && a < y)));
                prop_assert!(fits(&s, a, b));
            }
            prop_assert!(slots.windows(2).all(|w| w[0].1 <= w[1].0));
            prop_assert_eq!(slots, brute_force(&s, &busy, from, to, now));
        }
    }
}
