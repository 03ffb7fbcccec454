//! `Authorization` parsing and the token pre-check on arbitrary bytes: header values are
//! split on 0x00, an optional query string follows 0x01. A token that comes out is
//! 1..=8192 visible ASCII characters; no input panics. The same values are also read as
//! `Cookie` and `X-Api-Key` headers through every token source, and a credential cookie
//! removed from them never leaves its name behind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiongate::identity::provider::format::{Charset, TokenFormat};
use sessiongate::identity::provider::ProviderId;
use sessiongate::identity::token::{
    extract_bearer, extract_token, without_cookie, TokenHasher, TokenSource,
};

fuzz_target!(|data: &[u8]| {
    let (headers, query) = match data.iter().position(|b| *b == 1) {
        Some(i) => (&data[..i], std::str::from_utf8(&data[i + 1..]).ok()),
        None => (data, None),
    };
    let values: Vec<&[u8]> = if headers.is_empty() {
        Vec::new()
    } else {
        headers.split(|b| *b == 0).collect()
    };
    let sources = [
        TokenSource::Authorization,
        TokenSource::Cookie("sid".into()),
        TokenSource::Header("x-api-key".into()),
    ];
    let mut map = http::HeaderMap::new();
    for (i, v) in values.iter().enumerate() {
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            let name = ["authorization", "cookie", "x-api-key"][i % 3];
            map.append(name, v);
        }
    }
    if let Ok((token, source)) = extract_token(&sources, &map, query, 8192) {
        assert!(source < sources.len());
        assert!(!token.is_empty() && token.len() <= 8192);
        assert!(token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
    }
    for v in &values {
        if let Some(rest) = without_cookie(v, "sid") {
            let again = without_cookie(&rest, "sid");
            assert_eq!(again.as_deref(), Some(&rest[..]), "removing twice changes nothing");
        }
    }
    if let Ok(token) = extract_bearer(values.iter().copied(), query, 8192) {
        assert!(!token.is_empty() && token.len() <= 8192);
        assert!(token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
        let _ = TokenHasher::with_key(&[7; 32]).key(&ProviderId::new("p", 0), token);
        for charset in [
            Charset::Visible,
            Charset::B64token,
            Charset::Base64url,
            Charset::Hex,
            Charset::Alphanumeric,
            Charset::Jwt,
        ] {
            let format = TokenFormat {
                min_length: 1,
                max_length: 8192,
                charset,
                prefix: Some("v2x".into()),
            };
            let _ = format.check(token);
        }
    }
});
