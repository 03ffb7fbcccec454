//! Client header hygiene on arbitrary header sets: lines split on 0x00, name and value on
//! the first `:`. After sanitizing, no header under the identity prefix (any case, `_`
//! for `-`) is left, whatever the client sent. Each value is also read as a `traceparent`
//! (traces): never a panic, and what reads writes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora_http::RequestHeader;
use sessiongate::proxy::headers::{sanitize_request, IdentityHeaders};
use sessiongate::telemetry::trace::{format_traceparent, parse_traceparent};

fuzz_target!(|data: &[u8]| {
    let names = IdentityHeaders::new("X-Auth-").expect("valid prefix");
    let mut req = RequestHeader::build("GET", b"/", None).expect("static request");
    for line in data.split(|b| *b == 0) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        if let Some(p) = parse_traceparent(value.as_bytes()) {
            let written = format_traceparent(&p.trace_id, &p.span_id, p.sampled);
            assert_eq!(parse_traceparent(&written), Some(p));
        }
        let _ = req.append_header(name, value);
    }
    sanitize_request(&mut req, &names);
    for name in req.headers.keys() {
        assert!(!names.is_reserved(name.as_str()), "{name} survived");
        let lower = name.as_str().to_ascii_lowercase().replace('_', "-");
        assert!(!lower.starts_with("x-auth-"), "{name} survived");
    }
});
