//! Dates as HTTP writes them (`Date`, `Last-Modified`, `If-Modified-Since`)
//! and as the log lines begin, computed here from seconds since the epoch.
//!
//! The C library's `gmtime_r` and `strftime` would do the same, but glibc's
//! `gmtime_r` takes the time-zone lock, which its `fork` does not reset:
//! forkserver's child must never wait for a lock another thread held at the
//! fork (README, "Fork safety"). This is arithmetic on integers and takes
//! no lock; the clock is `clock_gettime`, which takes none either.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Seconds since the epoch, now (negative before it).
pub fn now_secs() -> i64 {
    seconds_of(SystemTime::now())
}

/// `t` as whole seconds since the epoch, rounded down.
pub fn seconds_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            -i64::try_from(d.as_secs()).unwrap_or(i64::MAX) - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// A day and time of the proleptic Gregorian calendar, in UTC.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    /// 1 to 12.
    month: u32,
    /// 1 to 31.
    day: u32,
    secs_of_day: u32,
    /// 0 is Sunday.
    weekday: usize,
}

impl Civil {
    fn of(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            secs_of_day: secs.rem_euclid(86_400) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
        }
    }

    fn hms(&self) -> (u32, u32, u32) {
        (self.secs_of_day / 3600, self.secs_of_day / 60 % 60, self.secs_of_day % 60)
    }
}

/// The year, month and day of a count of days since 1970-01-01: the
/// Gregorian calendar's 400-year cycle of 146,097 days, with years taken to
/// begin on 1 March so that the leap day comes last.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// [`civil_from_days`] the other way.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Seconds since the epoch as an HTTP date in its one preferred form,
/// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub struct HttpDate(pub i64);

impl HttpDate {
    /// Appends the date to `out`. Every response's head carries one, so it
    /// is written byte by byte, not through `fmt` (a few times quicker).
    pub fn push_to(&self, out: &mut String) {
        let c = Civil::of(self.0);
        let (h, m, s) = c.hms();
        let year = match u32::try_from(c.year) {
            Ok(year) if year <= 9999 => year,
            _ => {
                // Outside 0000-9999, which no clock or file here has: fmt's way.
                let (day, month) = (DAYS[c.weekday], MONTHS[c.month as usize - 1]);
                let _ = write!(out, "{day}, {:02} {month} {} {h:02}:{m:02}:{s:02} GMT", c.day, c.year);
                return;
            }
        };
        let two = |n: u32| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        let mut b = [0u8; 29];
        b[..3].copy_from_slice(DAYS[c.weekday].as_bytes());
        b[3..5].copy_from_slice(b", ");
        b[5..7].copy_from_slice(&two(c.day));
        b[7] = b' ';
        b[8..11].copy_from_slice(MONTHS[c.month as usize - 1].as_bytes());
        b[11] = b' ';
        b[12..14].copy_from_slice(&two(year / 100));
        b[14..16].copy_from_slice(&two(year % 100));
        b[16] = b' ';
        b[17..19].copy_from_slice(&two(h));
        b[19] = b':';
        b[20..22].copy_from_slice(&two(m));
        b[22] = b':';
        b[23..25].copy_from_slice(&two(s));
        b[25..].copy_from_slice(b" GMT");
        out.push_str(std::str::from_utf8(&b).unwrap_or_default());
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut text = String::with_capacity(29);
        self.push_to(&mut text);
        f.write_str(&text)
    }
}

/// A time as a log line begins: UTC, ISO 8601, to the millisecond, so that
/// lines sort as text: `2026-12-04T20:30:37.123Z`.
pub struct LogTime(pub SystemTime);

impl fmt::Display for LogTime {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let millis = self.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_millis());
        let c = Civil::of(seconds_of(self.0));
        let (h, m, s) = c.hms();
        write!(f, "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z", c.year, c.month, c.day)
    }
}

/// Parses an HTTP date in any of the three forms a recipient must accept
/// (RFC 9110 §5.6.7): IMF-fixdate, the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and C's `asctime` form
/// (`Sun Nov  6 08:49:37 1994`). Seconds since the epoch, or `None` for
/// anything else, including a day or time that does not exist. The day of
/// the week must be a day's name; it is not checked against the date.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let text = text.trim_matches([' ', '\t']);
    let (year, month, day, time) = if let Some((weekday, rest)) = text.split_once(", ") {
        if DAYS.contains(&weekday) {
            imf_fixdate(rest)?
        } else if LONG_DAYS.contains(&weekday) {
            rfc850(rest)?
        } else {
            return None;
        }
    } else {
        asctime(text)?
    };
    let (h, m, s) = time;
    let days_in_month = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days_in_month || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + i64::from(h * 3600 + m * 60 + s.min(59)))
}

type Parts = (i64, u32, u32, (u32, u32, u32));

/// `06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(rest: &str) -> Option<Parts> {
    let mut f = rest.split(' ');
    let day = digits(f.next()?, 2)?;
    let month = month(f.next()?)?;
    let year = digits(f.next()?, 4)?;
    let time = time(f.next()?)?;
    (f.next()? == "GMT" && f.next().is_none()).then_some((i64::from(year), month, day, time))
}

/// `06-Nov-94 08:49:37 GMT`. A two-digit year from 70 on is of the 1900s,
/// below it of the 2000s.
fn rfc850(rest: &str) -> Option<Parts> {
    let mut f = rest.split(' ');
    let mut date = f.next()?.split('-');
    let day = digits(date.next()?, 2)?;
    let month = month(date.next()?)?;
    let yy = digits(date.next()?, 2)?;
    let time = time(f.next()?)?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    let ok = date.next().is_none() && f.next()? == "GMT" && f.next().is_none();
    ok.then_some((i64::from(year), month, day, time))
}

/// `Sun Nov  6 08:49:37 1994`: the day is padded with a space to two places.
fn asctime(text: &str) -> Option<Parts> {
    if text.len() != 24 || !text.is_ascii() || [3, 7, 10, 19].iter().any(|&i| text.as_bytes()[i] != b' ') {
        return None;
    }
    if !DAYS.contains(&&text[..3]) {
        return None;
    }
    let month = month(&text[4..7])?;
    let day = match &text.as_bytes()[8..10] {
        [b' ', d] if d.is_ascii_digit() => u32::from(d - b'0'),
        _ => digits(&text[8..10], 2)?,
    };
    Some((i64::from(digits(&text[20..], 4)?), month, day, time(&text[11..19])?))
}

/// `08:49:37`.
fn time(text: &str) -> Option<(u32, u32, u32)> {
    let mut f = text.split(':');
    let t = (digits(f.next()?, 2)?, digits(f.next()?, 2)?, digits(f.next()?, 2)?);
    f.next().is_none().then_some(t)
}

fn month(name: &str) -> Option<u32> {
    MONTHS.iter().position(|&m| m == name).map(|i| i as u32 + 1)
}

/// Exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<u32> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn the_three_forms_of_rfc_9110() {
        let t = 784_111_777; // RFC 9110's example
        assert_eq!(HttpDate(t).to_string(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT"), Some(-1));
    }

    #[test]
    fn malformed_dates_are_none() {
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "1994-11-06T08:49:37Z",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
        assert_eq!(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400));
    }

    #[test]
    fn log_times_sort_as_text() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_416_237_123);
        assert_eq!(LogTime(t).to_string(), "2026-12-04T20:30:37.123Z");
        assert_eq!(LogTime(UNIX_EPOCH).to_string(), "1970-01-01T00:00:00.000Z");
    }

    proptest! {
        /// The same text as the `httpdate` crate, and back, over 1 to
        /// 9999 AD.
        #[test]
        fn agrees_with_the_httpdate_crate(secs in -62_135_596_800i64..253_402_300_799) {
            let ours = HttpDate(secs).to_string();
            if secs >= 0 {
                let t = UNIX_EPOCH + Duration::from_secs(secs as u64);
                prop_assert_eq!(&ours, &httpdate::fmt_http_date(t));
            }
            prop_assert_eq!(parse_http_date(&ours), Some(secs));
            let c = Civil::of(secs);
            prop_assert_eq!(days_from_civil(c.year, c.month, c.day), secs.div_euclid(86_400));
        }
    }
}
