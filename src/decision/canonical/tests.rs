//! Unit tests of the canonical request: methods, hosts, paths, header hygiene.

use super::*;

#[test]
fn a_host_value_is_recognised_without_building_it() {
    for raw in [
        "example.com",
        "example.com:8080",
        "EXAMPLE.com.",
        "example.com:08080",
        "[::1]:443",
        "[::1]",
        "a:0",
        "a:65535",
        "a:1",
    ] {
        let Ok(host) = canonical_host(raw.as_bytes()) else {
            assert!(matches!(raw, "a:0" | "example.com:08080"), "{raw}");
            continue;
        };
        let value = host.header_value();
        assert!(host.is_header_value(value.as_bytes()), "{raw}");
        assert_eq!(host.is_header_value(raw.as_bytes()), raw == value, "{raw}");
        for other in [
            format!("{value}0"),
            format!("{value}:"),
            format!("x{value}"),
            value[..value.len() - 1].to_string(),
        ] {
            assert!(!host.is_header_value(other.as_bytes()), "{raw} vs {other}");
        }
    }
}

#[test]
fn normalization_table() {
    let table = [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("//admin", "/admin"),
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2e/admin", "/admin"),
        ("/public/.%2e/admin", "/admin"),
        ("/a/./b/.", "/a/b/"),
        ("/../../etc", "/etc"),
        ("/..", "/"),
        ("/%61dmin", "/admin"),
        ("/a%20b", "/a%20b"),
        ("/a%c3%a9", "/a%C3%A9"),
        ("/a;v=1/b", "/a;v=1/b"),
        ("/a%25b", "/a%25b"),
    ];
    for (raw, want) in table {
        let got = normalize_path(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(got.forward, want, "{raw}");
        assert_eq!(got.routing(), want, "{raw}");
        assert!(!got.encoded_slash, "{raw}");
    }
}

#[test]
fn the_quick_test_agrees_with_the_full_normalization() {
    // Every string of up to six characters over the characters that matter (and one
    // that does not): where the quick test says "already normal", the full way gives
    // the same answer.
    const ALPHABET: &[u8] = b"/.;%2Fea\\#~";
    let mut quick = 0;
    let mut raw = Vec::new();
    fn each(raw: &mut Vec<u8>, left: usize, f: &mut impl FnMut(&[u8])) {
        f(raw);
        if left == 0 {
            return;
        }
        for &c in ALPHABET {
            raw.push(c);
            each(raw, left - 1, f);
            raw.pop();
        }
    }
    each(&mut raw, 6, &mut |raw| {
        let raw = std::str::from_utf8(raw).unwrap();
        if is_canonical(raw) {
            quick += 1;
            assert_eq!(normalize_path(raw), normalize_path_in_full(raw), "{raw:?}");
            assert_eq!(normalize_path(raw).unwrap().forward, raw);
        }
    });
    assert!(quick > 1000, "{quick}");
    for raw in [
        "/api/v2/wallets/59cd7248;v=1/tx",
        "/a-b_c~d/e!f$g&h'i(j)k*l+m,n=o:p@q/",
        "/.well-known/openid-configuration",
        "/a/..b/c.",
    ] {
        assert_eq!(normalize_path(raw), normalize_path_in_full(raw), "{raw}");
    }
}

#[test]
fn encoded_slashes_route_on_the_decoded_form() {
    for (raw, forward, routing) in [
        ("/objects/a%2fb", "/objects/a%2Fb", "/objects/a/b"),
        ("/admin%2Fusers", "/admin%2Fusers", "/admin/users"),
        ("/a%5Cb", "/a%5Cb", "/a/b"),
        ("/x/%2F%2Fadmin", "/x/%2F%2Fadmin", "/x/admin"),
    ] {
        let got = normalize_path(raw).unwrap();
        assert_eq!(
            (got.forward.as_str(), got.routing(), got.encoded_slash),
            (forward, routing, true),
            "{raw}"
        );
    }
    // Dot segments formed through encoded slashes are refused outright.
    for raw in [
        "/public/..%2Fadmin/users",
        "/a/b%2F..%2F..%2Fadmin",
        "/a%2F.%2Fb",
    ] {
        assert_eq!(normalize_path(raw), Err(PathError::Ambiguous), "{raw}");
    }
}

#[test]
fn refused_paths() {
    let table = [
        ("admin", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("/a%zz", PathError::BadEscape),
        ("/a%2", PathError::BadEscape),
        ("/a%+1", PathError::BadEscape),
        ("/public/..;/admin", PathError::Ambiguous),
        ("/public/.;x/admin", PathError::Ambiguous),
        ("/public/%2e%2e;/admin", PathError::Ambiguous),
        ("/public\\..\\admin", PathError::Ambiguous),
        ("/a%00b", PathError::Ambiguous),
        ("/a%0d%0ab", PathError::Ambiguous),
        ("/a%252Fb", PathError::DoubleEncoding),
        ("/a%252e%252e/b", PathError::DoubleEncoding),
        ("/a%255Cb", PathError::DoubleEncoding),
        ("/a%2525b", PathError::DoubleEncoding),
        ("/a%25%32F", PathError::DoubleEncoding),
        ("/a%25%35C", PathError::DoubleEncoding),
        ("/%c0%ae%c0%ae/admin", PathError::BadUtf8),
        ("/a%ff", PathError::BadUtf8),
        ("/caf\u{e9}", PathError::RawByte),
        ("/#\u{e757}i", PathError::RawByte),
        ("/a b", PathError::RawByte),
        ("/a\tb", PathError::RawByte),
        ("/a#frag", PathError::RawByte),
    ];
    for (raw, want) in table {
        assert_eq!(normalize_path(raw), Err(want), "{raw}");
    }
}

#[test]
fn parameters() {
    assert_eq!(without_parameters("/a/b"), None);
    assert_eq!(
        without_parameters("/admin;x=1/users;y").as_deref(),
        Some("/admin/users")
    );
}

#[test]
fn methods() {
    for ok in ["GET", "POST", "PROPFIND", "M-SEARCH"] {
        assert!(check_method(&Method::from_bytes(ok.as_bytes()).unwrap()).is_ok());
    }
    for bad in ["get", "post", "Post", "pOST", "delete"] {
        assert_eq!(
            check_method(&Method::from_bytes(bad.as_bytes()).unwrap()),
            Err(Rejection::Method),
            "{bad}"
        );
    }
}

#[test]
fn hosts() {
    let ok = [
        ("Admin.Internal", "admin.internal"),
        ("admin.internal.", "admin.internal"),
        ("admin.internal.:8080", "admin.internal:8080"),
        ("127.0.0.1:80", "127.0.0.1:80"),
        ("[::1]:8080", "[::1]:8080"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("svc_name.ns", "svc_name.ns"),
    ];
    for (raw, want) in ok {
        assert_eq!(
            canonical_host(raw.as_bytes()).map(|h| h.header_value()),
            Ok(want.to_string()),
            "{raw}"
        );
    }
    for bad in [
        "",
        ".",
        "admin.internal:abc",
        "admin.internal:",
        "admin.internal:65536",
        "admin.internal:0",
        "admin.internal:+80",
        "a:1:2",
        "a..b",
        ".a",
        "admin..",
        "admin..:800",
        "user@admin.internal",
        "admin.internal/x",
        "admin internal",
        "[::1",
        "[::1]x",
        "[zz]",
        "admin%2einternal",
        "a,b",
    ] {
        assert_eq!(
            canonical_host(bad.as_bytes()),
            Err(Rejection::BadHost),
            "{bad:?}"
        );
    }
}

#[test]
fn host_count_by_version() {
    let mut h = HeaderMap::new();
    assert_eq!(
        check_host_count(&h, Version::HTTP_11),
        Err(Rejection::MissingHost)
    );
    assert_eq!(check_host_count(&h, Version::HTTP_10), Ok(()));
    h.append("host", "a".parse().unwrap());
    assert_eq!(check_host_count(&h, Version::HTTP_11), Ok(()));
    h.append("host", "b".parse().unwrap());
    assert_eq!(
        check_host_count(&h, Version::HTTP_11),
        Err(Rejection::DuplicateHost)
    );
}

#[test]
fn header_hygiene() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("x-original-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("x-forwarded-prefix", "/admin"),
        ("x_forwarded_for", "1.2.3.4"),
        ("x_real_ip", "1.2.3.4"),
        ("x_http_method_override", "DELETE"),
        ("x_custom", "kept"),
        ("x-rewrite-url", "/admin"),
        ("content-length", "5"),
    ] {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let keep = HeaderHygiene {
        keep_override: vec![HeaderName::from_static("x-forwarded-prefix")],
    };
    let mut gone: Vec<String> = unwanted_headers(&h, &keep)
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    gone.sort_unstable();
    assert_eq!(
        gone,
        [
            "x-http-method-override",
            "x-original-url",
            "x-rewrite-url",
            "x_forwarded_for",
            "x_http_method_override",
            "x_real_ip"
        ]
    );

    for k in [
        "transfer_encoding",
        "content_length",
        "keep_alive",
        "proxy_connection",
    ] {
        let mut h = HeaderMap::new();
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            "1".parse().unwrap(),
        );
        let r = unwanted_headers(&h, &HeaderHygiene::default());
        assert_eq!(r, Err(Rejection::UnderscoreHeader(k.to_string())), "{k}");
    }
    for lengths in [&["5, 5"][..], &["5", "5"], &["-1"], &[""], &["5 "]] {
        let mut h = HeaderMap::new();
        for l in lengths {
            h.append("content-length", l.parse().unwrap());
        }
        assert_eq!(
            unwanted_headers(&h, &HeaderHygiene::default()),
            Err(Rejection::ContentLengthList),
            "{lengths:?}"
        );
    }
}
