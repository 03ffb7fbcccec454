//! The syntactic token check each provider applies before any lookup: length bounds, an
//! alphabet, an optional prefix, or the JWT shape. A token that fails it is refused with
//! a 401 without touching the cache or the provider, so malformed junk costs nothing.

use std::fmt;

/// Characters a token may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Any visible ASCII character (what `Authorization` parsing already enforces).
    Visible,
    /// RFC 6750 `b64token`: letters, digits, `-._~+/`, then `=` padding only at the end.
    B64token,
    /// Letters, digits, `-` and `_`.
    Base64url,
    /// `0-9a-fA-F`.
    Hex,
    /// Letters and digits.
    Alphanumeric,
    /// Three base64url segments separated by dots (a JWS compact serialization).
    Jwt,
}

impl Charset {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "visible" => Charset::Visible,
            "b64token" => Charset::B64token,
            "base64url" => Charset::Base64url,
            "hex" => Charset::Hex,
            "alphanumeric" => Charset::Alphanumeric,
            "jwt" => Charset::Jwt,
            _ => return None,
        })
    }
}

/// One provider's token format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFormat {
    pub min_length: usize,
    pub max_length: usize,
    pub charset: Charset,
    pub prefix: Option<String>,
}

impl TokenFormat {
    /// The default for opaque tokens: 1–8192 visible characters (what `Authorization`
    /// parsing accepts anyway: large JWTs sent to an introspection endpoint fit).
    pub(crate) fn opaque() -> Self {
        TokenFormat {
            min_length: 1,
            max_length: crate::identity::token::DEFAULT_MAX_TOKEN_BYTES,
            charset: Charset::Visible,
            prefix: None,
        }
    }

    /// The default for `jwt` providers: JWT-shaped, at most 8192 bytes.
    pub(crate) fn jwt() -> Self {
        TokenFormat {
            min_length: 16,
            max_length: 8192,
            charset: Charset::Jwt,
            prefix: None,
        }
    }

    /// Whether `token` has this format.
    pub fn check(&self, token: &str) -> Result<(), FormatError> {
        if token.len() < self.min_length {
            return Err(FormatError::TooShort);
        }
        if token.len() > self.max_length {
            return Err(FormatError::TooLong);
        }
        let body = match &self.prefix {
            Some(p) => token.strip_prefix(p.as_str()).ok_or(FormatError::Prefix)?,
            None => token,
        };
        let b = body.as_bytes();
        let url = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
        let ok = match self.charset {
            Charset::Visible => b.iter().all(|c| c.is_ascii_graphic()),
            Charset::B64token => {
                let end = b.len() - b.iter().rev().take_while(|c| **c == b'=').count();
                end > 0
                    && b[..end]
                        .iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"-._~+/".contains(c))
            }
            Charset::Base64url => b.iter().all(url),
            Charset::Hex => b.iter().all(u8::is_ascii_hexdigit),
            Charset::Alphanumeric => b.iter().all(u8::is_ascii_alphanumeric),
            Charset::Jwt => {
                let mut parts = b.split(|c| *c == b'.');
                let (h, p, s) = (parts.next(), parts.next(), parts.next());
                parts.next().is_none()
                    && [h, p]
                        .iter()
                        .all(|x| x.is_some_and(|x| !x.is_empty() && x.iter().all(url)))
                    && s.is_some_and(|x| x.iter().all(url))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(FormatError::Charset)
        }
    }
}

/// Why a token failed its provider's format (for logs; never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    TooShort,
    TooLong,
    Prefix,
    Charset,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FormatError::TooShort => "shorter than the provider's tokens",
            FormatError::TooLong => "longer than the provider's tokens",
            FormatError::Prefix => "lacks the provider's token prefix",
            FormatError::Charset => "has characters or a shape the provider's tokens do not",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(charset: Charset) -> TokenFormat {
        TokenFormat {
            charset,
            ..TokenFormat::opaque()
        }
    }

    #[test]
    fn charsets() {
        let table: &[(Charset, &str, bool)] = &[
            (Charset::Visible, "abc!$%", true),
            (Charset::B64token, "abc-._~+/==", true),
            (Charset::B64token, "a=b", false),
            (Charset::B64token, "===", false),
            (Charset::Base64url, "aZ09-_", true),
            (Charset::Base64url, "a+b", false),
            (Charset::Hex, "deadBEEF09", true),
            (Charset::Hex, "xyz", false),
            (Charset::Alphanumeric, "abc123", true),
            (Charset::Alphanumeric, "abc-123", false),
            (Charset::Jwt, "eyJh.eyJi.c2ln", true),
            (Charset::Jwt, "eyJh.eyJi.", true),
            (Charset::Jwt, "eyJh.eyJi", false),
            (Charset::Jwt, "a.b.c.d", false),
            (Charset::Jwt, ".b.c", false),
            (Charset::Jwt, "a.b+.c", false),
        ];
        for (charset, token, ok) in table {
            assert_eq!(
                fmt(*charset).check(token).is_ok(),
                *ok,
                "{charset:?} {token}"
            );
        }
    }

    #[test]
    fn length_and_prefix() {
        let f = TokenFormat {
            min_length: 5,
            max_length: 8,
            charset: Charset::Hex,
            prefix: Some("v2x".into()),
        };
        assert_eq!(f.check("v2x"), Err(FormatError::TooShort));
        assert_eq!(f.check("v2xabcdef0"), Err(FormatError::TooLong));
        assert_eq!(f.check("xxxabcd"), Err(FormatError::Prefix));
        assert_eq!(f.check("v2xzz"), Err(FormatError::Charset));
        assert_eq!(f.check("v2xab12"), Ok(()));
    }
}
