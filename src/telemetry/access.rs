//! The access log: one line per request (target `sessiongate::access`, level `info`).
//!
//! Formatted here by hand, in exactly the text or JSON layout the `tracing` subscriber
//! writes for any other event (timestamp, level, target, `request`, then the fields), so
//! the log reads as one stream — but at a fraction of the cost: `tracing`'s generic
//! formatter visited sixteen fields through `dyn` calls, quoted every string character by
//! character and formatted the timestamp from scratch, +16% CPU per proxied request at
//! `level: info` (BENCHMARKS.md). The line goes to the logging sink's buffer, written with
//! its neighbours (see [`crate::telemetry::logging`]).
//!
//! The level filter still decides: nothing is formatted when `sessiongate::access` is not
//! enabled at `info`. Without [`logging::init`](crate::telemetry::logging::init) (tests,
//! embedding), or with colours, the line is an ordinary `tracing` event with the same
//! fields.

use std::cell::RefCell;
use std::fmt::{Display, Write as _};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::telemetry::logging::{self, LogFormat};

/// One request's access-log fields, in the order they are written. `None` fields are left
/// out.
pub(crate) struct AccessRecord<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) route: &'a str,
    pub(crate) method: &'a str,
    /// As forwarded, without the query string.
    pub(crate) path: &'a str,
    /// 0 when no response was written.
    pub(crate) status: u16,
    pub(crate) outcome: &'a str,
    pub(crate) subject: Option<&'a str>,
    pub(crate) provider: Option<&'a str>,
    pub(crate) cache: Option<&'a str>,
    pub(crate) stale_age_s: Option<u64>,
    /// The token's reference (the first 12 hex characters of its keyed hash), never the
    /// token.
    pub(crate) token: Option<&'a str>,
    pub(crate) client: Option<IpAddr>,
    pub(crate) would_deny: Option<&'a str>,
    /// The rate-limit policy the request was over (refused, or let through in report
    /// mode).
    pub(crate) rate_limit: Option<&'a str>,
    /// `decision` for a front proxy's question (decision mode); absent for a proxied
    /// request.
    pub(crate) mode: Option<&'static str>,
    /// With `tracing:`: the trace id and the gateway's server span id, lower-case hex.
    pub(crate) trace: Option<&'a crate::telemetry::trace::HexIds>,
    pub(crate) auth: Option<Duration>,
    pub(crate) total: Duration,
    pub(crate) error: Option<&'a dyn Display>,
}

/// Whether the filter lets `sessiongate::access` through: check before building a record.
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: "sessiongate::access", tracing::Level::INFO)
}

/// Writes the access-log line for `r` (call when [`enabled`]).
pub(crate) fn log(r: &AccessRecord<'_>) {
    let Some(format) = logging::access_format() else {
        return log_through_tracing(r);
    };
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        write_line(&mut line, r, SystemTime::now(), format);
        logging::Sink::global().append(&line);
    });
}

thread_local! {
    /// This thread's line buffer, reused for every request.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// The last timestamp's whole seconds and their `YYYY-MM-DDTHH:MM:SS` spelling.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// The same fields as a `tracing` event (no subscriber of ours installed).
fn log_through_tracing(r: &AccessRecord<'_>) {
    tracing::info!(
        target: "sessiongate::access",
        request_id = %r.request_id,
        route = r.route,
        method = %r.method,
        path = r.path,
        status = r.status,
        outcome = r.outcome,
        subject = r.subject,
        provider = r.provider,
        cache = r.cache,
        stale_age_s = r.stale_age_s,
        token = r.token,
        client = r.client.map(|c| c.to_string()),
        would_deny = r.would_deny,
        rate_limit = r.rate_limit,
        mode = r.mode,
        trace_id = r.trace.map(|t| t.trace_id()),
        span_id = r.trace.map(|t| t.span_id()),
        auth_ms = r.auth.map(millis),
        total_ms = millis(r.total),
        error = r.error.map(|e| e.to_string()),
        "request"
    );
}

fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

/// The line for `r` in `format`: one field list, two layouts — `tracing`'s text
/// (`<timestamp>  INFO sessiongate::access: request key=value …`, strings quoted and
/// escaped as Rust's `Debug` does) and its JSON with `flatten_event` (timestamp, level,
/// message, the fields, target).
fn write_line(out: &mut Vec<u8>, r: &AccessRecord<'_>, now: SystemTime, format: LogFormat) {
    let mut line = Line { out, format };
    line.start(now);
    line.token("request_id", r.request_id);
    line.string("route", r.route);
    line.token("method", r.method);
    line.string("path", r.path);
    line.number("status", u64::from(r.status));
    line.string("outcome", r.outcome);
    if let Some(v) = r.subject {
        line.string("subject", v);
    }
    if let Some(v) = r.provider {
        line.string("provider", v);
    }
    if let Some(v) = r.cache {
        line.string("cache", v);
    }
    if let Some(v) = r.stale_age_s {
        line.number("stale_age_s", v);
    }
    if let Some(v) = r.token {
        line.string("token", v);
    }
    if let Some(ip) = r.client {
        line.ip("client", ip);
    }
    if let Some(v) = r.would_deny {
        line.string("would_deny", v);
    }
    if let Some(v) = r.rate_limit {
        line.string("rate_limit", v);
    }
    if let Some(v) = r.mode {
        line.string("mode", v);
    }
    if let Some(t) = r.trace {
        line.token("trace_id", t.trace_id());
        line.token("span_id", t.span_id());
    }
    if let Some(d) = r.auth {
        line.millis("auth_ms", d);
    }
    line.millis("total_ms", r.total);
    if let Some(e) = r.error {
        line.string("error", &e.to_string());
    }
    line.end();
}

/// A line being written in one of the two layouts.
struct Line<'o> {
    out: &'o mut Vec<u8>,
    format: LogFormat,
}

impl Line<'_> {
    fn start(&mut self, now: SystemTime) {
        match self.format {
            LogFormat::Text => {
                timestamp(self.out, now);
                self.out
                    .extend_from_slice(b"  INFO sessiongate::access: request");
            }
            LogFormat::Json => {
                self.out.extend_from_slice(b"{\"timestamp\":\"");
                timestamp(self.out, now);
                self.out
                    .extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
            }
        }
    }

    fn end(&mut self) {
        match self.format {
            LogFormat::Text => self.out.push(b'\n'),
            LogFormat::Json => self
                .out
                .extend_from_slice(b",\"target\":\"sessiongate::access\"}\n"),
        }
    }

    /// ` key=` or `,"key":`.
    fn key(&mut self, key: &str) {
        match self.format {
            LogFormat::Text => {
                self.out.push(b' ');
                self.out.extend_from_slice(key.as_bytes());
                self.out.push(b'=');
            }
            LogFormat::Json => {
                self.out.extend_from_slice(b",\"");
                self.out.extend_from_slice(key.as_bytes());
                self.out.extend_from_slice(b"\":");
            }
        }
    }

    /// A string, quoted and escaped as the layout does (`Debug` in text, JSON's escapes).
    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        if plain(value) {
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else {
            match self.format {
                LogFormat::Text => {
                    let mut quoted = String::new();
                    let _ = write!(quoted, "{value:?}");
                    self.out.extend_from_slice(quoted.as_bytes());
                }
                // serde_json's own escaping: what the `tracing` JSON layer wrote.
                LogFormat::Json => {
                    let _ = serde_json::to_writer(&mut *self.out, value);
                }
            }
        }
    }

    /// A value the text layout writes unquoted (request id, method: both validated
    /// tokens); quoted after all if it somehow is not one, so that no value can break the
    /// line. A string in JSON.
    fn token(&mut self, key: &str, value: &str) {
        let bare = !value.is_empty() && plain(value) && !value.contains(' ');
        if self.format == LogFormat::Text && bare {
            self.key(key);
            self.out.extend_from_slice(value.as_bytes());
        } else {
            self.string(key, value);
        }
    }

    fn number(&mut self, key: &str, n: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// Milliseconds with microsecond precision: `0.021`, `12.500`.
    fn millis(&mut self, key: &str, d: Duration) {
        self.key(key);
        ms(self.out, d);
    }

    /// An address, quoted in both layouts.
    fn ip(&mut self, key: &str, ip: IpAddr) {
        self.key(key);
        self.out.push(b'"');
        ip_addr(self.out, ip);
        self.out.push(b'"');
    }
}

/// Printable ASCII with nothing either format escapes: written as it is.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Milliseconds to the microsecond.
fn ms(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros();
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let frac = (micros % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

fn ip_addr(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(*octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(39);
            let _ = write!(s, "{v6}");
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// `2026-12-03T17:13:50.507008Z` (UTC, microseconds), as `tracing`'s default timer
/// writes it; the date and time of day are worked out once per second per thread.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, date_time(secs));
        }
        out.extend_from_slice(&cached.1);
    });
    let micros = since.subsec_micros();
    let mut frac = [b'.', 0, 0, 0, 0, 0, 0, b'Z'];
    let mut rest = micros;
    for slot in frac[1..7].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&frac);
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the Unix epoch (UTC; years 1970–9999).
fn date_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let in_day = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;
    let mut b = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, in_day / 3600);
    put(14, 2, in_day / 60 % 60);
    put(17, 2, in_day % 60);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn record<'a>(error: Option<&'a dyn Display>) -> AccessRecord<'a> {
        AccessRecord {
            request_id: "d1757427e9208e208d8d6537ac48bd78",
            route: "api",
            method: "GET",
            path: "/x/y",
            status: 200,
            outcome: "allowed",
            subject: Some("bench"),
            provider: Some("idp"),
            cache: Some("hit"),
            stale_age_s: None,
            token: Some("c8bb30cd10a3"),
            client: Some("127.0.0.1".parse().unwrap()),
            would_deny: None,
            rate_limit: None,
            mode: None,
            trace: None,
            auth: Some(Duration::from_nanos(20_600)),
            total: Duration::from_micros(220_207),
            error,
        }
    }

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_796_318_030_507_008)
    }

    fn text(r: &AccessRecord<'_>) -> String {
        let mut out = Vec::new();
        write_line(&mut out, r, at(), LogFormat::Text);
        String::from_utf8(out).unwrap()
    }

    fn json(r: &AccessRecord<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        write_line(&mut out, r, at(), LogFormat::Json);
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).expect("one JSON object per line")
    }

    #[test]
    fn text_lines_read_as_the_tracing_layout() {
        assert_eq!(
            text(&record(None)),
            "2026-12-03T17:13:50.507008Z  INFO sessiongate::access: request \
             request_id=d1757427e9208e208d8d6537ac48bd78 route=\"api\" method=GET \
             path=\"/x/y\" status=200 outcome=\"allowed\" subject=\"bench\" provider=\"idp\" \
             cache=\"hit\" token=\"c8bb30cd10a3\" client=\"127.0.0.1\" auth_ms=0.020 \
             total_ms=220.207\n"
        );
    }

    /// What `tracing`'s own subscriber writes for the same record (the fallback event).
    fn through_tracing(r: &AccessRecord<'_>, json: bool) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false);
        if json {
            let subscriber = builder.json().flatten_event(true).finish();
            tracing::subscriber::with_default(subscriber, || log_through_tracing(r));
        } else {
            tracing::subscriber::with_default(builder.finish(), || log_through_tracing(r));
        }
        let out = capture.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_match_what_the_tracing_subscriber_writes() {
        // Times whose shortest f64 spelling has three decimals, as ours always has.
        let error = "connect refused: \"10.0.0.1\"";
        let mut r = record(Some(&error));
        r.auth = Some(Duration::from_micros(20_123));
        r.total = Duration::from_micros(220_207);
        r.stale_age_s = Some(42);
        r.would_deny = Some("insufficient_scope");
        r.rate_limit = Some("per-user");
        r.mode = Some("decision");
        r.subject = Some("ünïcode \"quoted\"\n");
        let ours = text(&r);
        let theirs = through_tracing(&r, false);
        let (stamp, rest) = ours.split_at(27);
        assert!(stamp.ends_with('Z'), "{ours}");
        assert_eq!(rest, &theirs[theirs.find("  INFO").expect(&theirs)..]);
        let mut ours = json(&r);
        let mut theirs: serde_json::Value =
            serde_json::from_str(&through_tracing(&r, true)).unwrap();
        ours.as_object_mut().unwrap().remove("timestamp");
        theirs.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn json_lines_carry_every_field() {
        let v = json(&record(Some(&"upstream refused")));
        assert_eq!(v["timestamp"], "2026-12-03T17:13:50.507008Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request");
        assert_eq!(v["target"], "sessiongate::access");
        assert_eq!(v["status"], 200);
        assert_eq!(v["cache"], "hit");
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["auth_ms"], 0.02);
        assert_eq!(v["total_ms"], 220.207);
        assert_eq!(v["error"], "upstream refused");
        assert!(v.get("stale_age_s").is_none() && v.get("would_deny").is_none());
    }

    #[test]
    fn hostile_values_cannot_break_a_line() {
        // A subject (the provider's text) and an error with quotes, backslashes, newlines,
        // control and non-ASCII characters; a request id that is not a token.
        let subject = "eve\"\\\n\r\t\u{1b}[31m\u{7f}é\u{2028}";
        let error = "line one\nfake=\"entry\"";
        let mut r = record(Some(&error));
        r.subject = Some(subject);
        r.request_id = "a b\"c";
        r.client = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let line = text(&r);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        assert!(line.contains(&format!(" subject={subject:?} ")), "{line}");
        assert!(line.contains(&format!(" error={error:?}")), "{line}");
        assert!(line.contains(" request_id=\"a b\\\"c\" "), "{line}");
        assert!(line.contains(" client=\"::1\" "), "{line}");
        let v = json(&r);
        assert_eq!(v["subject"], subject);
        assert_eq!(v["error"], error);
        assert_eq!(v["request_id"], "a b\"c");
        assert_eq!(v["client"], "::1");
    }

    #[test]
    fn dates_agree_with_the_time_crate() {
        // Epoch, leap days, century rules, year ends, and a spread of ordinary seconds.
        let mut samples = vec![
            0,
            951_782_399,
            951_782_400,
            951_868_799,
            4_107_542_400,
            1_796_318_030,
            253_402_300_799,
        ];
        samples.extend((0..2_000u64).map(|i| i * 126_230_417 % 253_402_300_799));
        for secs in samples {
            let expected = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(
                std::str::from_utf8(&date_time(secs)).unwrap(),
                &expected[..19],
                "{secs}"
            );
        }
    }

    #[test]
    fn milliseconds_keep_microseconds() {
        for (d, want) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_nanos(999), "0.000"),
            (Duration::from_micros(1), "0.001"),
            (Duration::from_micros(12_500), "12.500"),
            (Duration::from_secs(90), "90000.000"),
        ] {
            let mut out = Vec::new();
            ms(&mut out, d);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
