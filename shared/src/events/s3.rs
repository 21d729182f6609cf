//! The shapes storage events come in, read into [`StorageEvent`]s by their
//! content (whatever envelope carried them):
//!
//! - S3 event notifications, `{"Records": [{"eventSource": "aws:s3", ...}]}`
//!   (MinIO sends the same records with `minio:s3` and `s3:`-prefixed event
//!   names), or one record alone (as some CloudEvents sources send it);
//!   records wrapped by SQS (`body`) or SNS (`Sns.Message`) are unwrapped;
//! - EventBridge events from S3 (`source: aws.s3`, `detail-type: "Object
//!   Created" | "Object Deleted"`), or their `detail` alone when a
//!   CloudEvent's type says which;
//! - the S3 test event sent when notifications are configured (ignored).
//!
//! Keys in notification records are URL-encoded (`+` for a space) and are
//! decoded; EventBridge keys are taken as they are.
//!
//! Every number in an event is checked, never trusted to fit: a time that
//! is not an RFC 3339 time of years 0000 to 9999, a size that is not a
//! whole number of bytes up to [`MAX_EVENT_SIZE`], a sequencer that is not
//! hex of at most [`MAX_SEQUENCER_LEN`] digits, or more than
//! [`super::MAX_RECORDS`] records make the payload malformed.

use serde_json::Value;

use crate::domain::uploads::{Change, MAX_SEQUENCER_LEN, StorageEvent};

/// Largest object size an event may give: what the artifact's `size_bytes`
/// (a signed 64-bit integer) can hold.
pub const MAX_EVENT_SIZE: u64 = i64::MAX as u64;

/// Events found in one payload, and what was skipped as not ours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub events: Vec<StorageEvent>,
    /// Why parts of the payload were ignored (valid, but not object changes).
    pub ignored: Vec<String>,
}

impl Parsed {
    fn ignore(reason: impl Into<String>) -> Parsed {
        Parsed {
            events: Vec::new(),
            ignored: vec![reason.into()],
        }
    }

    fn extend(&mut self, other: Parsed) {
        self.events.extend(other.events);
        self.ignored.extend(other.ignored);
    }
}

/// Unwrapping depth (SNS in SQS in ...).
const MAX_DEPTH: usize = 4;

/// Read a payload. `hint` is a CloudEvent type, which can say what an
/// EventBridge `detail` alone means. `Err` says why a payload that claims to
/// be a storage event is malformed.
pub fn read(payload: &Value, hint: Option<&str>) -> Result<Parsed, String> {
    read_at(payload, hint, 0)
}

fn read_at(payload: &Value, hint: Option<&str>, depth: usize) -> Result<Parsed, String> {
    if depth > MAX_DEPTH {
        return Err("events nested too deeply".into());
    }
    let Some(obj) = payload.as_object() else {
        return Ok(Parsed::ignore("payload is not a JSON object"));
    };
    if let Some(records) = obj.get("Records") {
        let records = records.as_array().ok_or("Records: expected an array")?;
        if records.len() > super::MAX_RECORDS {
            return Err(super::too_many_records(records.len()));
        }
        let mut parsed = Parsed::default();
        for (i, record) in records.iter().enumerate() {
            let one = read_record(record, depth).map_err(|e| format!("Records[{i}]: {e}"))?;
            parsed.extend(one);
        }
        return Ok(parsed);
    }
    if obj.contains_key("detail-type") && obj.contains_key("detail") {
        return read_eventbridge(payload);
    }
    if obj.contains_key("s3") && obj.contains_key("eventName") {
        return read_record(payload, depth);
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Parsed::ignore("S3 test event"));
    }
    if obj.contains_key("bucket") && obj.contains_key("object") {
        let change = hint.and_then(change_of_type);
        return match change {
            Some(change) => Ok(Parsed {
                events: vec![eventbridge_detail(payload, change, None)?],
                ignored: Vec::new(),
            }),
            None => Ok(Parsed::ignore(format!(
                "object event of type '{}' is neither a creation nor a removal",
                hint.unwrap_or("")
            ))),
        };
    }
    Ok(Parsed::ignore("not a storage event"))
}

/// What a CloudEvent type says happened, when it names an object change
/// (`com.amazonaws.s3.ObjectCreated:Put`, `com.amazon.s3.objectremoved`,
/// `aws.s3.Object Created`, ...).
pub fn change_of_type(t: &str) -> Option<Change> {
    let t = t.to_ascii_lowercase().replace([' ', '_', '-'], "");
    if t.contains("objectcreated") {
        Some(Change::Created)
    } else if t.contains("objectremoved") || t.contains("objectdeleted") {
        Some(Change::Removed)
    } else {
        None
    }
}

fn read_record(record: &Value, depth: usize) -> Result<Parsed, String> {
    let source = record
        .get("eventSource")
        .or_else(|| record.get("EventSource"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match source {
        "aws:sqs" => {
            let body = record
                .get("body")
                .and_then(Value::as_str)
                .ok_or("SQS record without a body")?;
            let inner: Value = serde_json::from_str(body)
                .map_err(|e| format!("SQS message body is not JSON: {e}"))?;
            read_at(&inner, None, depth + 1)
        }
        "aws:sns" => {
            let message = record
                .pointer("/Sns/Message")
                .and_then(Value::as_str)
                .ok_or("SNS record without Sns.Message")?;
            let inner: Value = serde_json::from_str(message)
                .map_err(|e| format!("SNS message is not JSON: {e}"))?;
            read_at(&inner, None, depth + 1)
        }
        _ if record.get("s3").is_some() => read_s3_record(record),
        other => Ok(Parsed::ignore(format!(
            "record from '{other}' is not a storage event"
        ))),
    }
}

/// One S3 (or MinIO) notification record.
fn read_s3_record(record: &Value) -> Result<Parsed, String> {
    let name = str_at(record, "/eventName").ok_or("eventName missing")?;
    let bare = name.strip_prefix("s3:").unwrap_or(name);
    let change = if bare.starts_with("ObjectCreated:") {
        Change::Created
    } else if bare.starts_with("ObjectRemoved:") || bare.starts_with("LifecycleExpiration:") {
        Change::Removed
    } else {
        return Ok(Parsed::ignore(format!(
            "event {name} does not add or remove an object"
        )));
    };
    let bucket = str_at(record, "/s3/bucket/name").ok_or("s3.bucket.name missing")?;
    let raw_key = str_at(record, "/s3/object/key").ok_or("s3.object.key missing")?;
    let key = form_decode(raw_key)
        .ok_or_else(|| format!("s3.object.key '{raw_key}' is not URL-encoded UTF-8"))?;
    Ok(Parsed {
        events: vec![StorageEvent {
            bucket: bucket.to_string(),
            key,
            change,
            size: size_at(record, "/s3/object/size")?,
            etag: str_at(record, "/s3/object/eTag").map(unquote),
            sequencer: sequencer_at(record, "/s3/object/sequencer")?,
            time_ms: time_at(record, "/eventTime")?,
        }],
        ignored: Vec::new(),
    })
}

/// An EventBridge event (`source`, `detail-type`, `detail`, `time`).
fn read_eventbridge(event: &Value) -> Result<Parsed, String> {
    let source = str_at(event, "/source").unwrap_or_default();
    let detail_type = str_at(event, "/detail-type").unwrap_or_default();
    if source != "aws.s3" {
        return Ok(Parsed::ignore(format!("EventBridge event from '{source}'")));
    }
    let change = match detail_type {
        "Object Created" => Change::Created,
        "Object Deleted" => Change::Removed,
        other => {
            return Ok(Parsed::ignore(format!(
                "S3 EventBridge event '{other}' does not add or remove an object"
            )));
        }
    };
    let time_ms = time_at(event, "/time")?;
    let detail = event.get("detail").ok_or("detail missing")?;
    Ok(Parsed {
        events: vec![eventbridge_detail(detail, change, time_ms)?],
        ignored: Vec::new(),
    })
}

/// The `detail` of an S3 EventBridge event.
fn eventbridge_detail(
    detail: &Value,
    change: Change,
    time_ms: Option<u64>,
) -> Result<StorageEvent, String> {
    let bucket = str_at(detail, "/bucket/name").ok_or("detail.bucket.name missing")?;
    let key = str_at(detail, "/object/key").ok_or("detail.object.key missing")?;
    Ok(StorageEvent {
        bucket: bucket.to_string(),
        key: key.to_string(),
        change,
        size: size_at(detail, "/object/size")?,
        etag: str_at(detail, "/object/etag").map(unquote),
        sequencer: sequencer_at(detail, "/object/sequencer")?,
        time_ms,
    })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The field at `pointer` as it is named in messages (`s3.object.size`).
fn field_name(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// A size given as a number or a string of digits, up to
/// [`MAX_EVENT_SIZE`]; absent, null or `""` is no size. Anything else
/// (negative, fractional, too large) makes the record malformed.
fn size_at(v: &Value, pointer: &str) -> Result<Option<u64>, String> {
    let size = match v.pointer(pointer) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Some(_) => None,
    };
    match size {
        Some(n) if n <= MAX_EVENT_SIZE => Ok(Some(n)),
        _ => Err(format!(
            "{}: {} is not a size in bytes (0 to {MAX_EVENT_SIZE})",
            field_name(pointer),
            v.pointer(pointer).map(short).unwrap_or_default()
        )),
    }
}

/// S3's ordering token for one key: hex digits, at most
/// [`MAX_SEQUENCER_LEN`] of them; absent, null or `""` is none.
fn sequencer_at(v: &Value, pointer: &str) -> Result<Option<String>, String> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s))
            if s.len() <= MAX_SEQUENCER_LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Some(s.clone()))
        }
        Some(other) => Err(format!(
            "{}: {} is not a sequencer (at most {MAX_SEQUENCER_LEN} hex digits)",
            field_name(pointer),
            short(other)
        )),
    }
}

/// An event time (RFC 3339, years 0000 to 9999) in milliseconds since the
/// epoch; absent or null is no time.
fn time_at(v: &Value, pointer: &str) -> Result<Option<u64>, String> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => parse_time_ms(t).map(Some).ok_or_else(|| {
            format!(
                "{}: {} is not an RFC 3339 time between 1970 and 9999",
                field_name(pointer),
                short(&Value::from(t.as_str()))
            )
        }),
        Some(other) => Err(format!(
            "{}: {} is not an RFC 3339 time",
            field_name(pointer),
            short(other)
        )),
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

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Decode `application/x-www-form-urlencoded` text (`+` is a space).
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
    use serde_json::json;

    fn s3_record(name: &str, key: &str) -> Value {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-03-04T05:06:07.089Z", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "ml", "arn": "arn:aws:s3:::ml"},
                   "object": {"key": key, "size": 42, "eTag": "0123abcd", "sequencer": "0062E99A88DC407460"}}
        })
    }

    #[test]
    fn reads_s3_notifications() {
        let p = read(
            &json!({"Records": [s3_record("ObjectCreated:Put", "models/my+model/1/a%2Bb.onnx")]}),
            None,
        )
        .unwrap();
        assert_eq!(p.events.len(), 1);
        let e = &p.events[0];
        assert_eq!(e.bucket, "ml");
        assert_eq!(e.key, "models/my model/1/a+b.onnx");
        assert_eq!(e.change, Change::Created);
        assert_eq!(e.size, Some(42));
        assert_eq!(e.etag.as_deref(), Some("0123abcd"));
        assert_eq!(e.sequencer.as_deref(), Some("0062E99A88DC407460"));
        assert_eq!(e.time_ms, Some(1_772_600_767_089));
        let removed = read(&s3_record("ObjectRemoved:DeleteMarkerCreated", "k"), None).unwrap();
        assert_eq!(removed.events[0].change, Change::Removed);
        let restore = read(
            &json!({"Records": [s3_record("ObjectRestore:Post", "k")]}),
            None,
        )
        .unwrap();
        assert!(restore.events.is_empty() && restore.ignored.len() == 1);
    }

    #[test]
    fn reads_minio_webhooks() {
        let mut record = s3_record(
            "s3:ObjectCreated:CompleteMultipartUpload",
            "models%2Fm%2F1%2Fw.bin",
        );
        record["eventSource"] = json!("minio:s3");
        record["s3"]["object"]["size"] = json!("7");
        let p = read(&json!({"EventName": "s3:ObjectCreated:CompleteMultipartUpload", "Key": "ml/models/m/1/w.bin", "Records": [record]}), None).unwrap();
        assert_eq!(p.events[0].key, "models/m/1/w.bin");
        assert_eq!(p.events[0].size, Some(7));
    }

    #[test]
    fn unwraps_sqs_and_sns() {
        let notification = json!({"Records": [s3_record("ObjectCreated:Put", "models/m/1/f")]});
        let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": notification.to_string()}}]});
        let sqs = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "1", "body": sns.to_string()}]});
        assert_eq!(read(&sqs, None).unwrap().events[0].key, "models/m/1/f");
    }

    #[test]
    fn reads_eventbridge() {
        let event = json!({
            "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created", "source": "aws.s3", "account": "111122223333",
            "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
            "resources": ["arn:aws:s3:::ml"],
            "detail": {"version": "0", "bucket": {"name": "ml"},
                       "object": {"key": "models/m/1/f.bin", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "00617F08299329D189"},
                       "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject"}
        });
        let e = &read(&event, None).unwrap().events[0];
        assert_eq!(e.key, "models/m/1/f.bin");
        assert_eq!(e.change, Change::Created);
        assert_eq!(e.time_ms, Some(1_636_675_200_000));
        let mut deleted = event.clone();
        deleted["detail-type"] = json!("Object Deleted");
        assert_eq!(
            read(&deleted, None).unwrap().events[0].change,
            Change::Removed
        );
        let mut tags = event.clone();
        tags["detail-type"] = json!("Object Tags Added");
        assert!(read(&tags, None).unwrap().events.is_empty());
        let detail_only = read(&event["detail"], Some("com.amazonaws.s3.ObjectCreated")).unwrap();
        assert_eq!(detail_only.events[0].bucket, "ml");
        let unknown = read(&event["detail"], Some("com.example.other")).unwrap();
        assert!(unknown.events.is_empty());
    }

    #[test]
    fn malformed_and_unrelated() {
        assert!(read(&json!({"Records": "x"}), None).is_err());
        let mut no_key = s3_record("ObjectCreated:Put", "k");
        no_key["s3"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("key");
        assert!(
            read(&json!({"Records": [no_key]}), None)
                .unwrap_err()
                .contains("Records[0]")
        );
        assert!(read(&s3_record("ObjectCreated:Put", "bad%zz"), None).is_err());
        let mut bad_time = s3_record("ObjectCreated:Put", "k");
        bad_time["eventTime"] = json!("yesterday");
        assert!(read(&bad_time, None).is_err());
        for unrelated in [
            json!({"hello": "world"}),
            json!([1, 2]),
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "ml"}),
            json!({"Records": [{"eventSource": "aws:dynamodb"}]}),
            json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
        ] {
            let p = read(&unrelated, None).unwrap();
            assert!(p.events.is_empty() && !p.ignored.is_empty(), "{unrelated}");
        }
    }

    #[test]
    fn numbers_out_of_range_make_the_record_malformed() {
        for (field, value, expect) in [
            (
                "eventTime",
                json!("1000000000000-01-01T00:00:00Z"),
                "eventTime",
            ),
            ("eventTime", json!(1_700_000_000_000u64), "eventTime"),
            ("size", json!(-1), "s3.object.size"),
            ("size", json!(1.5), "s3.object.size"),
            ("size", json!(1e300), "s3.object.size"),
            ("size", json!(u64::MAX), "s3.object.size"),
            ("size", json!("99999999999999999999999"), "s3.object.size"),
            ("size", json!("-1"), "s3.object.size"),
            (
                "sequencer",
                json!("F".repeat(MAX_SEQUENCER_LEN + 1)),
                "sequencer",
            ),
            ("sequencer", json!("not hex"), "sequencer"),
            ("sequencer", json!(12), "sequencer"),
        ] {
            let mut record = s3_record("ObjectRemoved:Delete", "models/m/1/f");
            match field {
                "eventTime" => record["eventTime"] = value,
                other => record["s3"]["object"][other] = value,
            }
            let err = read(&json!({"Records": [record]}), None).unwrap_err();
            assert!(err.contains(expect), "{field}: {err}");
        }
        let mut fine = s3_record("ObjectCreated:Put", "models/m/1/f");
        fine["s3"]["object"]["size"] = json!(MAX_EVENT_SIZE);
        fine["s3"]["object"]["sequencer"] = json!("F".repeat(MAX_SEQUENCER_LEN));
        fine["eventTime"] = json!("9999-12-31T23:59:59.999Z");
        let e = &read(&fine, None).unwrap().events[0];
        assert_eq!(e.size, Some(MAX_EVENT_SIZE));
        assert_eq!(e.time_ms, Some(253_402_300_799_999));
        let mut bridge = json!({"detail-type": "Object Deleted", "source": "aws.s3",
            "time": "1000000000000-01-01T00:00:00Z",
            "detail": {"bucket": {"name": "ml"}, "object": {"key": "models/m/1/f"}}});
        assert!(read(&bridge, None).unwrap_err().contains("time"));
        bridge["time"] = json!("2026-01-01T00:00:00Z");
        bridge["detail"]["object"]["size"] = json!(-5);
        assert!(read(&bridge, None).unwrap_err().contains("object.size"));
    }

    #[test]
    fn at_most_so_many_records() {
        let records =
            |n: usize| json!({"Records": vec![s3_record("ObjectCreated:Put", "datasets/x"); n]});
        assert_eq!(
            read(&records(super::super::MAX_RECORDS), None)
                .unwrap()
                .events
                .len(),
            super::super::MAX_RECORDS
        );
        let err = read(&records(super::super::MAX_RECORDS + 1), None).unwrap_err();
        assert!(err.contains("at most 1000 records"), "{err}");
    }

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
        assert_eq!(
            change_of_type("com.amazon.s3.objectcreated"),
            Some(Change::Created)
        );
        assert_eq!(
            change_of_type("aws.s3.Object Deleted"),
            Some(Change::Removed)
        );
        assert_eq!(change_of_type("dev.knative.apiserver.resource.add"), None);
    }
}
