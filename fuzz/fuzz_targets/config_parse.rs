//! Config parsing and validation on arbitrary text: an error or settings, never a panic.
//! Relative `*_file` paths point into a directory that does not exist.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sessiongate::config::from_str(text, std::path::Path::new("/nonexistent-fuzz-dir"));
    }
});
