//! Client-sent digests: `Content-Digest` and `Repr-Digest` (RFC 9530) and `Content-MD5`.

use super::HashAlgorithm;
use crate::error::Problem;
use base64::{Engine, engine::general_purpose::STANDARD};
use http::{HeaderMap, StatusCode};

/// A digest the client sent, to be checked against the bytes received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedDigest {
    /// The algorithm.
    pub algorithm: HashAlgorithm,
    /// The digest bytes.
    pub value: Vec<u8>,
    /// The header it came from.
    pub header: &'static str,
}

fn invalid(header: &str, why: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_digest", format!("the {header} header is malformed: {why}"))
        .with("header", header.to_owned())
}

fn decode(header: &'static str, algorithm: HashAlgorithm, b64: &str) -> Result<ExpectedDigest, Problem> {
    let value = STANDARD.decode(b64.trim()).map_err(|e| invalid(header, e))?;
    if value.len() != algorithm.output_len() {
        return Err(invalid(
            header,
            format_args!("a {algorithm} digest has {} bytes, not {}", algorithm.output_len(), value.len()),
        ));
    }
    Ok(ExpectedDigest { algorithm, value, header })
}

/// The digests a request asks to be verified. Algorithms this build does not know are
/// ignored, as RFC 9530 allows; a malformed value for a known one is an error.
///
/// `Repr-Digest` is only checked for requests without `Content-Encoding` and `Content-Range`,
/// where the representation is exactly the bytes received.
pub fn expected_digests(headers: &HeaderMap) -> Result<Vec<ExpectedDigest>, Problem> {
    let mut out = Vec::new();
    let whole_representation =
        !headers.contains_key(http::header::CONTENT_ENCODING) && !headers.contains_key(http::header::CONTENT_RANGE);
    for header in ["content-digest", "repr-digest"] {
        if header == "repr-digest" && !whole_representation {
            continue;
        }
        for value in headers.get_all(header) {
            let value = value.to_str().map_err(|e| invalid(header, e))?;
            for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let (key, rest) = member.split_once('=').ok_or_else(|| invalid(header, "expected key=:base64:"))?;
                let Some(algorithm) = HashAlgorithm::from_name(key) else { continue };
                let rest = rest.split(';').next().unwrap_or("").trim();
                let b64 = rest
                    .strip_prefix(':')
                    .and_then(|r| r.strip_suffix(':'))
                    .ok_or_else(|| invalid(header, "a digest is a byte sequence, :base64:"))?;
                out.push(decode(header, algorithm, b64)?);
            }
        }
    }
    if let Some(md5) = headers.get("content-md5") {
        let md5 = md5.to_str().map_err(|e| invalid("content-md5", e))?;
        out.push(decode("content-md5", HashAlgorithm::Md5, md5)?);
    }
    Ok(out)
}

/// A `Content-Digest`-style value (`sha-256=:…:`) for a digest.
pub fn header_value(algorithm: HashAlgorithm, digest: &[u8]) -> String {
    format!("{}=:{}:", algorithm.name(), STANDARD.encode(digest))
}

/// Standard base64 of a digest.
pub fn base64(digest: &[u8]) -> String {
    STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(pairs: &[(&'static str, &'static str)]) -> Result<Vec<ExpectedDigest>, Problem> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        expected_digests(&h)
    }

    #[test]
    fn parses_rfc_9530_dictionaries() {
        let d = parse(&[("content-digest", "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=:, unixsum=:AAA=:")]).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].algorithm, HashAlgorithm::Sha256);
        assert_eq!(crate::id::to_hex(&d[0].value), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let d = parse(&[("repr-digest", "md5=:kAFQmDzST7DWlj99KOF/cg==:"), ("content-md5", "kAFQmDzST7DWlj99KOF/cg==")]).unwrap();
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn refuses_malformed_values_for_known_algorithms() {
        for bad in ["sha-256=abc", "sha-256=:not base64!:", "sha-256=:AAAA:", "sha-256"] {
            let err = parse(&[("content-digest", bad)]).unwrap_err();
            assert_eq!(err.code(), "invalid_digest", "{bad}");
        }
    }

    #[test]
    fn ignores_repr_digest_of_partial_content() {
        let d = parse(&[("repr-digest", "sha-256=:AAAA:"), ("content-range", "bytes 0-1/4")]).unwrap();
        assert!(d.is_empty());
    }
}
