//! The fields inside event bodies, read and checked: an object size, an S3
//! `sequencer`, an event time (RFC 3339), a URL-encoded key. Every number is
//! checked, never trusted to fit: a time that is not an RFC 3339 time of
//! years 1970 to 9999, a size that is not a whole number of bytes up to
//! [`MAX_EVENT_SIZE`] or a sequencer that is not hex of at most
//! [`MAX_SEQUENCER_LEN`] digits is a [`FieldError`], which makes its record
//! malformed.

use serde_json::Value;

use super::MAX_SEQUENCER_LEN;

/// Largest object size an event may give: what the artifact's `size_bytes`
/// (a signed 64-bit integer) can hold.
pub const MAX_EVENT_SIZE: u64 = i64::MAX as u64;

/// A field of an event whose value is out of range or of the wrong kind.
/// `field` is named as in the event (`s3.object.size`), `value` is shown
/// cut to a readable length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{field}: {value} is not a size in bytes (0 to {MAX_EVENT_SIZE})")]
    Size { field: String, value: String },
    #[error("{field}: {value} is not a sequencer (at most {MAX_SEQUENCER_LEN} hex digits)")]
    Sequencer { field: String, value: String },
    /// A string, but not a time this registry can hold.
    #[error("{field}: {value} is not an RFC 3339 time between 1970 and 9999")]
    TimeOutOfRange { field: String, value: String },
    /// Not even a string.
    #[error("{field}: {value} is not an RFC 3339 time")]
    Time { field: String, value: String },
}

/// The string at `pointer`, if there is one.
pub(super) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The field at `pointer` as it is named in messages (`s3.object.size`).
fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// A size given as a number or a string of digits, up to
/// [`MAX_EVENT_SIZE`]; absent, null or `""` is no size. Anything else
/// (negative, fractional, too large) makes the record malformed.
pub(super) fn size_at(v: &Value, pointer: &str) -> Result<Option<u64>, FieldError> {
    let size = match v.pointer(pointer) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Some(_) => None,
    };
    match size {
        Some(n) if n <= MAX_EVENT_SIZE => Ok(Some(n)),
        _ => Err(FieldError::Size {
            field: field_name(pointer),
            value: v.pointer(pointer).map(short).unwrap_or_default(),
        }),
    }
}

/// S3's ordering token for one key: hex digits, at most
/// [`MAX_SEQUENCER_LEN`] of them; absent, null or `""` is none.
pub(super) fn sequencer_at(v: &Value, pointer: &str) -> Result<Option<String>, FieldError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s))
            if s.len() <= MAX_SEQUENCER_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Some(s.clone()))
        }
        Some(other) => Err(FieldError::Sequencer {
            field: field_name(pointer),
            value: short(other),
        }),
    }
}

/// An event time (RFC 3339, years 1970 to 9999) in milliseconds since the
/// epoch; absent or null is no time.
pub(super) fn time_at(v: &Value, pointer: &str) -> Result<Option<u64>, FieldError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => {
            parse_time_ms(t)
                .map(Some)
                .ok_or_else(|| FieldError::TimeOutOfRange {
                    field: field_name(pointer),
                    value: short(&Value::from(t.as_str())),
                })
        }
        Some(other) => Err(FieldError::Time {
            field: field_name(pointer),
            value: short(other),
        }),
    }
}

/// A value for a message, cut to a readable length.
fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// An ETag without the quotes S3 puts around it.
pub(super) fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Decode `application/x-www-form-urlencoded` text (`+` is a space), as
/// keys of S3 notifications are encoded.
pub fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Milliseconds since the epoch of an RFC 3339 time
/// (`2026-01-02T03:04:05.678Z`, `...+02:00`): four-digit years, two-digit
/// fields, real calendar dates, offsets up to 23:59. `None` for anything
/// else, and for times before 1970. Every step is checked arithmetic.
pub fn parse_time_ms(s: &str) -> Option<u64> {
    let (date, rest) = s.trim().split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, mo, da) = (
        digits(d.next()?, 4)?,
        digits(d.next()?, 2)?,
        digits(d.next()?, 2)?,
    );
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&da) {
        return None;
    }
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off.get(1..)?.split_once(':')?;
        let (oh, om) = (digits(oh, 2)?, digits(om, 2)?);
        if oh > 23 || om > 59 {
            return None;
        }
        (c, sign * (oh * 3600 + om * 60))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((hms, frac)) if !frac.is_empty() => (hms, frac),
        Some(_) => return None,
        None => (clock, ""),
    };
    let mut t = hms.split(':');
    let (h, mi, se) = (
        digits(t.next()?, 2)?,
        digits(t.next()?, 2)?,
        digits(t.next()?, 2)?,
    );
    if t.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = if frac.is_empty() {
        0
    } else {
        format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // algorithm); with four-digit years no step can overflow, and each is
    // checked all the same.
    let (y, m) = if mo <= 2 {
        (y.checked_sub(1)?, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y.checked_sub(era.checked_mul(400)?)?;
    let doy = (153 * m + 2) / 5 + da - 1;
    let doe = yoe
        .checked_mul(365)?
        .checked_add(yoe / 4 - yoe / 100 + doy)?;
    let days = era
        .checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)?;
    let secs = days
        .checked_mul(86_400)?
        .checked_add(h * 3600 + mi * 60 + se)?
        .checked_sub(offset_s)?;
    let ms = secs.checked_mul(1000)?.checked_add(millis)?;
    u64::try_from(ms).ok()
}

/// Exactly `width` ASCII digits, as a number.
fn digits(s: &str, width: usize) -> Option<i64> {
    if s.len() != width || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_keys() {
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time_ms("1970-01-01T01:00:00.5+01:00"), Some(500));
        assert_eq!(
            parse_time_ms("2000-02-29T23:59:59.999999Z"),
            Some(951_868_799_999)
        );
        assert_eq!(parse_time_ms("2000-13-01T00:00:00Z"), None);
        assert_eq!(parse_time_ms("2000-01-01"), None);
        assert_eq!(
            parse_time_ms("9999-12-31T23:59:59.999Z"),
            Some(253_402_300_799_999)
        );
        for bad in [
            "1000000000000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "+999-01-01T00:00:00Z",
            "2001-02-29T00:00:00Z",
            "2000-04-31T00:00:00Z",
            "2000-1-01T00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T00:00:00+99:00",
            "2000-01-01T00:00:00+01",
            "2000-01-01T00:00:00.Z",
            "2000-01-01T00:00:00.1x2Z",
            "2000-01-01T+1:00:00Z",
            "1969-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
        assert_eq!(parse_time_ms("1970-01-01T00:00:00-00:01"), Some(60_000));
        assert_eq!(
            parse_time_ms("2000-01-01T00:00:00.123456789123Z"),
            Some(946_684_800_123)
        );
        assert_eq!(form_decode("a+b%20c%2F"), Some("a b c/".into()));
        assert_eq!(form_decode("%e2%82%ac"), Some("€".into()));
        assert_eq!(form_decode("%"), None);
        assert_eq!(form_decode("%ff"), None);
    }
}
