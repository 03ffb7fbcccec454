//! Path templates on arbitrary templates and request paths (issue #36). Whatever a
//! template matches, on the canonical path: a `{name}` parameter is never empty and never
//! holds `/` or `\` (a backend cannot re-split it); matching the canonical form again gives
//! the same parameters (the upstream reads what was matched); a match with case folding
//! off is one with it on, with the same parameter values (values are never folded); and a
//! template of literal segments only matches exactly its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiongate::decision::canonical::normalize_path;
use sessiongate::decision::template::PathTemplate;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|b| *b == 0) else {
        return;
    };
    let (Ok(template), Ok(raw)) = (
        std::str::from_utf8(&data[..split]),
        std::str::from_utf8(&data[split + 1..]),
    ) else {
        return;
    };
    let Ok(t) = PathTemplate::parse(template) else {
        return;
    };
    let Ok(path) = normalize_path(raw) else {
        return;
    };
    let names: Vec<&str> = t.names().collect();
    let tail = template.ends_with("*}");
    let exact = t.matches(&path.forward, false);
    if let Some(params) = &exact {
        assert_eq!(params.len(), names.len(), "{template:?} on {raw:?}");
        for (i, (name, value)) in params.iter().enumerate() {
            assert_eq!(&**name, names[i]);
            let is_tail = tail && i + 1 == params.len();
            if !is_tail {
                assert!(!value.is_empty(), "{template:?} on {raw:?}: empty {name}");
                assert!(
                    !value.contains('/') && !value.contains('\\'),
                    "{template:?} on {raw:?}: {name} = {value:?}"
                );
            }
        }
        let again = normalize_path(&path.forward).expect("canonical stays valid");
        assert_eq!(t.matches(&again.forward, false).as_ref(), Some(params));
        assert_eq!(
            t.matches(&path.forward, true).as_ref(),
            Some(params),
            "{template:?} on {raw:?}: folding case changed the parameters"
        );
    }
    if names.is_empty() {
        assert_eq!(exact.is_some(), path.forward == template, "{template:?} on {raw:?}");
    }
});
