//! Every preset's answer judging and response mapping on arbitrary answers: the first two
//! bytes pick the HTTP status, the rest is the body. No input panics, and no status
//! outside 2xx ever yields a valid identity; a valid identity always has a subject.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use sessiongate::identity::provider::http::judge;
use sessiongate::identity::provider::presets::{kinds, Preset};
use sessiongate::identity::provider::Resolution;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 500;
    let body = &data[2..];
    for kind in kinds() {
        let Some(preset) = Preset::for_kind(kind) else {
            continue;
        };
        let result = judge(
            &preset.outcome,
            &preset.mapping,
            status,
            body,
            SystemTime::now(),
        );
        if let Ok(Resolution::Valid(identity)) = &result {
            assert!(
                (200..300).contains(&status),
                "{kind}: valid identity from HTTP {status}"
            );
            assert!(!identity.subject().is_empty(), "{kind}: empty subject");
        }
    }
});
