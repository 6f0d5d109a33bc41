//! WHEN: the moments users name backups by (`--as-of`, `NAME@WHEN`, and
//! the history commands' `--since`/`--until`).
//!
//! Accepted forms, read in the local time zone ([`crate::clock`]):
//! * an RFC 3339 / ISO 8601 datetime, with an offset (`2024-01-07T03:00Z`,
//!   `2024-01-07T03:00:00+01:00`) or without (local time; `T` or a space
//!   between date and time; seconds optional);
//! * a date alone (`2024-01-07`), `today` and `yesterday`: the **end** of
//!   that local day, so "as of Tuesday" includes Tuesday's backups;
//! * a span back from now: `3 days ago`, `2w ago`, `36h ago`, `1 month ago`
//!   (units: `s`/`sec`/`second`, `min`/`minute`, `h`/`hour`, `d`/`day`,
//!   `w`/`week`, `mo`/`month`, `y`/`year`, plurals too; a bare `m` is
//!   refused as ambiguous). Months and years are calendar arithmetic.
//!
//! The result is the last instant the WHEN covers; comparisons are by whole
//! seconds, as the cache records times.

use jiff::civil::{Date, DateTime, Time};
use jiff::{Span, Timestamp, Zoned};

/// A WHEN that could not be read; the message lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a time: {why} (give an ISO date or datetime such as 2024-01-07 or \
     2024-01-07T03:00, `today`, `yesterday`, or a span such as `3 days ago` or `2w ago`)"
)]
pub(crate) struct WhenError {
    text: String,
    why: String,
}

/// Reads `text` as a WHEN relative to `now` (in `now`'s time zone): the
/// newest instant it names, as Unix seconds.
pub(crate) fn parse(text: &str, now: &Zoned) -> Result<i64, WhenError> {
    parse_at(text, now, DayEdge::End)
}

/// [`parse`] for the start of a range (`--since`): a date alone, `today`
/// and `yesterday` are the **start** of that day.
pub(crate) fn parse_start(text: &str, now: &Zoned) -> Result<i64, WhenError> {
    parse_at(text, now, DayEdge::Start)
}

/// Which end of a day a date alone means.
#[derive(Clone, Copy)]
enum DayEdge {
    Start,
    End,
}

fn parse_at(text: &str, now: &Zoned, edge: DayEdge) -> Result<i64, WhenError> {
    let fail = |why: &str| WhenError {
        // Whatever was pasted, never echo a cap.
        text: crate::tahoe::redact(text),
        why: why.to_owned(),
    };
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if lower.is_empty() {
        return Err(fail("it is empty"));
    }
    let day_end = |date: Date| -> Result<i64, WhenError> {
        let time = match edge {
            DayEdge::Start => Time::midnight(),
            DayEdge::End => Time::constant(23, 59, 59, 0),
        };
        let end = date
            .to_datetime(time)
            .to_zoned(now.time_zone().clone())
            .map_err(|e| fail(&e.to_string()))?;
        Ok(end.timestamp().as_second())
    };
    match lower.as_str() {
        "today" => return day_end(now.date()),
        "yesterday" => {
            let date = now.date().yesterday().map_err(|e| fail(&e.to_string()))?;
            return day_end(date);
        }
        "now" => return Ok(now.timestamp().as_second()),
        _ => {}
    }
    if let Some(span) = lower.strip_suffix("ago") {
        let span = parse_span(span.trim()).map_err(|why| fail(&why))?;
        let then = now.checked_sub(span).map_err(|e| fail(&e.to_string()))?;
        return Ok(then.timestamp().as_second());
    }
    // With an offset: an instant.
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts.as_second());
    }
    // A local datetime, `T` or space between date and time.
    let spaced = t.replacen(' ', "T", 1);
    if let Ok(dt) = spaced.parse::<DateTime>() {
        // Only a datetime that says its time: a date alone parses too.
        if spaced.contains('T') {
            let zoned = dt
                .to_zoned(now.time_zone().clone())
                .map_err(|e| fail(&e.to_string()))?;
            return Ok(zoned.timestamp().as_second());
        }
    }
    if let Ok(date) = t.parse::<Date>() {
        return day_end(date);
    }
    Err(fail("not a date, a datetime or a span"))
}

/// `3 days`, `2w`, `36h`, `1 month`: one number and one unit.
fn parse_span(text: &str) -> Result<Span, String> {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let n: i64 = number
        .parse()
        .map_err(|_| "a span needs a whole number before its unit".to_owned())?;
    let unit = unit.trim();
    let span = Span::new();
    let too_large = |e: jiff::Error| format!("the span is too large ({e})");
    match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => span.try_seconds(n).map_err(too_large),
        "min" | "mins" | "minute" | "minutes" => span.try_minutes(n).map_err(too_large),
        "h" | "hour" | "hours" => span.try_hours(n).map_err(too_large),
        "d" | "day" | "days" => span.try_days(n).map_err(too_large),
        "w" | "week" | "weeks" => span.try_weeks(n).map_err(too_large),
        "mo" | "month" | "months" => span.try_months(n).map_err(too_large),
        "y" | "year" | "years" => span.try_years(n).map_err(too_large),
        "m" => Err("`m` could mean minutes or months: write `min` or `mo`".to_owned()),
        "" => Err("a span needs a unit, such as `3 days ago`".to_owned()),
        other => Err(format!("unknown unit {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        // Sunday 2024-01-07 03:00 in UTC+1.
        "2024-01-07T03:00:00+01:00[+01:00]"
            .parse()
            .expect("valid zoned time")
    }

    fn at(text: &str) -> String {
        let secs = parse(text, &now()).unwrap_or_else(|e| panic!("{text}: {e}"));
        Timestamp::from_second(secs)
            .expect("in range")
            .to_zoned(now().time_zone().clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    #[test]
    fn the_accepted_forms() {
        let table = [
            ("today", "2024-01-07T23:59:59+01:00"),
            ("Yesterday", "2024-01-06T23:59:59+01:00"),
            ("now", "2024-01-07T03:00:00+01:00"),
            ("2024-01-03", "2024-01-03T23:59:59+01:00"),
            ("2024-01-03T10:30", "2024-01-03T10:30:00+01:00"),
            ("2024-01-03 10:30:15", "2024-01-03T10:30:15+01:00"),
            ("2024-01-03T10:30:00Z", "2024-01-03T11:30:00+01:00"),
            ("2024-01-03T10:30:00+05:00", "2024-01-03T06:30:00+01:00"),
            ("3 days ago", "2024-01-04T03:00:00+01:00"),
            ("2w ago", "2023-12-24T03:00:00+01:00"),
            ("36h ago", "2024-01-05T15:00:00+01:00"),
            ("90 min ago", "2024-01-07T01:30:00+01:00"),
            ("1 month ago", "2023-12-07T03:00:00+01:00"),
            ("1y ago", "2023-01-07T03:00:00+01:00"),
            ("  2 DAYS AGO ", "2024-01-05T03:00:00+01:00"),
        ];
        for (text, want) in table {
            assert_eq!(at(text), want, "{text}");
        }
    }

    #[test]
    fn a_range_starts_at_the_start_of_a_day() {
        let start = parse_start("2024-01-03", &now()).expect("valid");
        assert_eq!(start, parse("2024-01-02", &now()).expect("valid") + 1);
        let today = parse_start("today", &now()).expect("valid");
        assert_eq!(today, parse("2024-01-07T00:00", &now()).expect("valid"));
        assert_eq!(
            parse_start("3 days ago", &now()),
            parse("3 days ago", &now()),
            "spans are instants"
        );
    }

    #[test]
    fn what_is_refused_says_why() {
        let table = [
            ("", "it is empty"),
            ("3m ago", "`m` could mean minutes or months"),
            ("days ago", "a whole number"),
            ("3 ago", "needs a unit"),
            ("3 fortnights ago", "unknown unit \"fortnights\""),
            ("last tuesday", "not a date, a datetime or a span"),
            ("2024-13-01", "not a date"),
            ("99999999999 years ago", "too large"),
        ];
        for (text, why) in table {
            let e = parse(text, &now()).expect_err(text).to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("2w ago"), "the forms are listed: {e}");
        }
    }
}
