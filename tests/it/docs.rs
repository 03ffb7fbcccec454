//! The sample provider answers in `docs/providers.md` are what the presets read: each JSON
//! block marked `<!-- sample answer: <kind>, subject "<id>" -->` is judged by that kind's
//! preset (the pure part of a provider call) and must give a valid identity with that
//! subject — so a preset change that the page does not follow fails here.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use sessiongate::identity::provider::http::judge;
use sessiongate::identity::provider::presets::Preset;
use sessiongate::identity::provider::{ProviderKind, Resolution};

#[test]
fn every_preset_has_a_sample_answer_that_it_reads_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/providers.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut seen = Vec::new();
    for (at, _) in text.match_indices("<!-- sample answer: ") {
        let marker = &text[at..at + text[at..].find("-->").unwrap()];
        let (kind, subject) = marker["<!-- sample answer: ".len()..]
            .split_once(", subject ")
            .unwrap_or_else(|| panic!("{marker}: write `<kind>, subject \"<id>\"`"));
        let subject = subject.trim().trim_matches('"');
        let rest = &text[at..];
        let start = rest
            .find("```json\n")
            .expect("a json block after the marker")
            + 8;
        let json = &rest[start..start + rest[start..].find("\n```").unwrap()];
        let kind = ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .unwrap_or_else(|| panic!("{marker}: no provider kind {kind}"));
        let preset = Preset::for_kind(kind).unwrap_or_else(|| panic!("{marker}: not a preset"));
        // 2023-11-14: before every sample's expiry.
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        match judge(&preset.outcome, &preset.mapping, 200, json.as_bytes(), now) {
            Ok(Resolution::Valid(identity)) => {
                assert_eq!(identity.subject(), subject, "{marker}");
                if let Some(expires) = identity.expires_at() {
                    assert!(expires > now, "{marker}: the sample has expired");
                }
            }
            other => panic!("{marker}: the preset reads the sample as {other:?}"),
        }
        seen.push(kind);
    }
    let presets: Vec<ProviderKind> = sessiongate::identity::provider::presets::kinds()
        .filter(|k| *k != ProviderKind::Http)
        .collect();
    for kind in presets {
        assert!(
            seen.contains(&kind),
            "docs/providers.md has no sample answer for `{}`",
            kind.as_str()
        );
    }
}
