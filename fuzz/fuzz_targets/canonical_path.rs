//! The canonical path on arbitrary request paths. Whatever is accepted: normalizing the
//! forwarded form again changes nothing (the upstream reads what was routed); the
//! forwarded and routing forms have no dot segments, no `//`, no backslash and no
//! double-encoded `.`, `/` or `\`; decoding every escape gives UTF-8; and the routing form
//! has no encoded slash. The host canonicalization is idempotent too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiongate::decision::canonical::{canonical_host, normalize_path};

fn no_dot_segments(path: &str) -> bool {
    !path.split('/').any(|s| s == "." || s == "..") && !path[1..].contains("//")
}

fuzz_target!(|data: &[u8]| {
    let (path_bytes, host_bytes) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(raw) = std::str::from_utf8(path_bytes) {
        if let Ok(p) = normalize_path(raw) {
            let again = normalize_path(&p.forward).expect("a canonical path stays valid");
            assert_eq!(again.forward, p.forward, "normalizing twice changed {raw:?}");
            assert_eq!(again.routing(), p.routing());
            for form in [p.forward.as_str(), p.routing()] {
                assert!(form.starts_with('/'));
                assert!(no_dot_segments(form) || form == "/", "{raw:?} -> {form:?}");
                assert!(!form.contains('\\'));
                let upper = form.to_ascii_uppercase();
                for bad in ["%252E", "%252F", "%255C", "%2525"] {
                    assert!(!upper.contains(bad), "{raw:?} -> {form:?}");
                }
            }
            assert!(!p.routing().contains("%2F") && !p.routing().contains("%5C"));
            assert_eq!(
                p.encoded_slash,
                p.forward.contains("%2F") || p.forward.contains("%5C")
            );
        }
    }
    if let Ok(h) = canonical_host(host_bytes) {
        let again =
            canonical_host(h.header_value().as_bytes()).expect("canonical host stays valid");
        assert_eq!(again, h);
    }
});
