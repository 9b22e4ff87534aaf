//! Parsing and writing the tus headers, strictly: a malformed header is a `400` naming it.

use crate::{config::MetadataLimits, error::Problem, id::UploadId, storage::FileMeta};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::{
    collections::BTreeMap,
    time::{Duration, UNIX_EPOCH},
};

pub(crate) const TUS_RESUMABLE: &str = "tus-resumable";
pub(crate) const TUS_VERSION: &str = "tus-version";
pub(crate) const TUS_EXTENSION: &str = "tus-extension";
pub(crate) const TUS_MAX_SIZE: &str = "tus-max-size";
pub(crate) const TUS_CHECKSUM_ALGORITHM: &str = "tus-checksum-algorithm";
pub(crate) const UPLOAD_OFFSET: &str = "upload-offset";
pub(crate) const UPLOAD_LENGTH: &str = "upload-length";
pub(crate) const UPLOAD_DEFER_LENGTH: &str = "upload-defer-length";
pub(crate) const UPLOAD_METADATA: &str = "upload-metadata";
pub(crate) const UPLOAD_EXPIRES: &str = "upload-expires";
pub(crate) const UPLOAD_CHECKSUM: &str = "upload-checksum";
pub(crate) const UPLOAD_CONCAT: &str = "upload-concat";
pub(crate) const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

pub(crate) fn bad(code: &'static str, detail: impl Into<std::borrow::Cow<'static, str>>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, code, detail)
}

/// A header as text, `None` when absent; a value that is not visible ASCII is a `400`.
pub(crate) fn text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Problem> {
    headers
        .get(name)
        .map(|v| v.to_str().map(str::trim).map_err(|_| bad("invalid_header", format!("{name} is not visible ASCII"))))
        .transpose()
}

/// A non-negative integer header (`Upload-Offset`, `Upload-Length`): digits only.
pub(crate) fn number(headers: &HeaderMap, name: &'static str) -> Result<Option<u64>, Problem> {
    let Some(value) = text(headers, name)? else { return Ok(None) };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("invalid_header", format!("{name} must be a non-negative integer, not {value:?}")));
    }
    value.parse().map(Some).map_err(|_| bad("invalid_header", format!("{name} is too large")))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent). Keys
/// are non-empty ASCII without spaces or commas and unique; values are valid standard base64.
pub(crate) fn metadata(raw: &str, limits: &MetadataLimits) -> Result<BTreeMap<String, Vec<u8>>, Problem> {
    let invalid = |why: String| bad("invalid_metadata", format!("Upload-Metadata: {why}"));
    if raw.len() > limits.max_bytes {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "metadata_too_large",
            format!("Upload-Metadata is {} bytes; this server accepts at most {}", raw.len(), limits.max_bytes),
        )
        .with("limit", limits.max_bytes));
    }
    let pairs = raw.split(',').count();
    if pairs > limits.max_keys {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_metadata_keys",
            format!("Upload-Metadata has {pairs} keys; this server accepts at most {}", limits.max_keys),
        )
        .with("limit", limits.max_keys));
    }
    let mut out = BTreeMap::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    for pair in raw.split(',') {
        let mut it = pair.trim().splitn(2, ' ');
        let key = it.next().unwrap_or_default();
        let value = it.next().unwrap_or("").trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!("{key:?} is not a valid key")));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| invalid(format!("the value of {key:?} is not base64")))?;
        if out.insert(key.to_owned(), decoded).is_some() {
            return Err(invalid(format!("{key:?} appears twice")));
        }
    }
    Ok(out)
}

/// The file name as the client sent it (`filename` or `name`), before sanitising.
pub(crate) fn client_name(pairs: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    let utf8 = |k: &str| pairs.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    utf8("filename").or_else(|| utf8("name"))
}

/// The file metadata tus clients send: `filename`/`name`, `filetype`/`type`/`contentType`; every
/// key that is UTF-8 is kept in `extra`.
pub(crate) fn file_meta(pairs: &BTreeMap<String, Vec<u8>>) -> FileMeta {
    let utf8 = |k: &str| pairs.get(k).and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned);
    let name = utf8("filename").or_else(|| utf8("name")).and_then(|n| crate::filename::sanitize(&n));
    let content_type =
        utf8("filetype").or_else(|| utf8("type")).or_else(|| utf8("contentType")).and_then(|t| crate::declared::essence(&t));
    let extra = pairs.iter().filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.clone()).ok()?))).collect();
    FileMeta { name, content_type, extra }
}

/// `Upload-Concat`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConcatHeader {
    Partial,
    /// The ids named by the final upload's URLs, in order.
    Final(Vec<UploadId>),
}

pub(crate) fn concat(raw: &str) -> Result<ConcatHeader, Problem> {
    if raw == "partial" {
        return Ok(ConcatHeader::Partial);
    }
    let Some(urls) = raw.strip_prefix("final;") else {
        return Err(bad("invalid_concat", "Upload-Concat is \"partial\" or \"final;<url> <url> ...\""));
    };
    let ids = urls
        .split_whitespace()
        .map(|url| {
            let last = url.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
            UploadId::parse(last).ok_or_else(|| bad("invalid_concat", format!("{url:?} is not an upload of this server")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(bad("invalid_concat", "a final upload names at least one partial upload"));
    }
    Ok(ConcatHeader::Final(ids))
}

/// An HTTP date for `Upload-Expires`.
pub(crate) fn http_date(secs: u64) -> HeaderValue {
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    HeaderValue::from_str(&date).expect("an HTTP date is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_parsed_strictly() {
        let metadata = |raw| metadata(raw, &MetadataLimits::default());
        let m = metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential, filetype YXBwbGljYXRpb24vcGRm").unwrap();
        assert_eq!(m["filename"], b"world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], b"");
        let meta = file_meta(&m);
        assert_eq!(meta.name.as_deref(), Some("world_domination_plan.pdf"));
        assert_eq!(meta.content_type.as_deref(), Some("application/pdf"));
        for bad in ["filename not-base64!", "a YQ==,a YQ==", "a YQ== b", ",", "k\u{7f} YQ=="] {
            assert_eq!(metadata(bad).unwrap_err().code(), "invalid_metadata", "{bad:?}");
        }
        assert!(metadata("").unwrap().is_empty());
    }

    #[test]
    fn metadata_is_bounded() {
        let limits = MetadataLimits { max_keys: 3, max_bytes: 20 };
        let cases: [(&str, Result<usize, &str>); 7] = [
            ("", Ok(0)),
            ("a,b,c", Ok(3)),
            ("a,b,c,d", Err("too_many_metadata_keys")),
            ("a YWJj,b,c", Ok(3)),
            ("a YWJjZGVmZ2hpamtsbW4=", Err("metadata_too_large")),
            ("abcdefghijklmnopqrst", Ok(1)),
            ("abcdefghijklmnopqrstu", Err("metadata_too_large")),
        ];
        for (raw, expected) in cases {
            let got = metadata(raw, &limits).map(|m| m.len()).map_err(|p| (p.code(), p.status()));
            assert_eq!(got, expected.map_err(|code| (code, StatusCode::PAYLOAD_TOO_LARGE)), "{raw:?}");
        }
    }

    #[test]
    fn concat_headers() {
        let id = UploadId::random();
        assert_eq!(concat(&format!("final;http://x/files/{id} /files/{id}")).unwrap(), ConcatHeader::Final(vec![id.clone(), id]));
        assert_eq!(concat("partial").unwrap(), ConcatHeader::Partial);
        assert!(concat("final;").is_err() && concat("final;/files/../etc").is_err() && concat("whole").is_err());
    }
}
