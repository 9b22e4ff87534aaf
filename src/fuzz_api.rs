//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that reach the crate-private
//! parsers of client input. Built only with `--cfg fuzzing` (which cargo-fuzz and
//! `tests/fuzz/run.sh` pass) and for this crate's own unit tests, so the public API does not
//! grow; nothing here is meant for applications or stable.
//!
//! The parsers that are public already ([`expected_digests`](crate::hash::expected_digests),
//! [`PeerIp::client_ip`](crate::rate_limit::PeerIp::client_ip),
//! [`DeclaredFile::from_request`](crate::declared::DeclaredFile::from_request),
//! [`filename::sanitize`](crate::filename::sanitize), [`UploadId::parse`](crate::UploadId::parse),
//! [`ProgressId::parse`](crate::progress::ProgressId::parse)) and the form handler, through
//! [`Uploads`](crate::Uploads), are fuzzed through the public API and have no wrapper here.

use crate::{error::Problem, hash::HashAlgorithm, id::UploadId, router, storage::FileMeta, tus};
use http::{HeaderMap, HeaderValue};
use std::{collections::BTreeMap, ops::Range};

/// The largest chunk the chunked API accepts.
pub const MAX_CHUNK_SIZE: u64 = router::chunked::MAX_CHUNK_SIZE;
/// The most chunks one chunked upload may have.
pub const MAX_CHUNKS: u64 = router::chunked::MAX_CHUNKS;

/// A map holding the one header `name: value`, as a request would carry it.
fn one(name: &'static str, value: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, value.clone());
    headers
}

/// tus `Upload-Metadata`.
pub fn tus_metadata(raw: &str) -> Result<BTreeMap<String, Vec<u8>>, Problem> {
    tus::headers::metadata(raw, &tus::MetadataLimits::default())
}

/// The file metadata a tus upload keeps from its parsed `Upload-Metadata`.
pub fn tus_file_meta(pairs: &BTreeMap<String, Vec<u8>>) -> FileMeta {
    tus::headers::file_meta(pairs)
}

/// tus `Upload-Concat`: `None` for `partial`, the named partial uploads for `final;…`.
pub fn tus_concat(raw: &str) -> Result<Option<Vec<UploadId>>, Problem> {
    Ok(match tus::headers::concat(raw)? {
        tus::headers::ConcatHeader::Partial => None,
        tus::headers::ConcatHeader::Final(ids) => Some(ids),
    })
}

/// A parsed tus `Upload-Checksum`.
#[derive(Debug)]
pub struct TusChecksum {
    /// The hash algorithm, `None` for CRC32.
    pub algorithm: Option<HashAlgorithm>,
    /// The digest the client expects.
    pub expected: Vec<u8>,
    /// What the checksummer this header starts computes over no bytes: the digest the
    /// expected one will be compared with.
    pub of_nothing: Vec<u8>,
}

/// tus `Upload-Checksum`.
pub fn tus_checksum(raw: &str) -> Result<TusChecksum, Problem> {
    let checksum = crate::resumable::Checksum::parse(raw)?;
    let algorithm = checksum.hash_algorithm();
    let of_nothing = checksum.start().finalize();
    Ok(TusChecksum { algorithm, expected: checksum.expected, of_nothing })
}

/// A tus integer header (`Upload-Length`, `Upload-Offset`) with this value.
pub fn tus_number(value: &HeaderValue) -> Result<Option<u64>, Problem> {
    tus::headers::number(&one(tus::headers::UPLOAD_LENGTH, value), tus::headers::UPLOAD_LENGTH)
}

/// A tus text header (`Upload-Metadata`, `Upload-Concat`, `Upload-Checksum` are read as text
/// first) with this value.
pub fn tus_text(value: &HeaderValue) -> Result<Option<String>, Problem> {
    tus::headers::text(&one(tus::headers::UPLOAD_METADATA, value), tus::headers::UPLOAD_METADATA).map(|t| t.map(str::to_owned))
}

/// The draft's structured-field integer (`Upload-Offset`, `Upload-Length`) with this value.
pub fn draft_integer(value: &HeaderValue) -> Result<Option<u64>, Problem> {
    tus::draft::sf_integer(&one("upload-offset", value), "upload-offset")
}

/// The draft's structured-field boolean (`Upload-Complete`) with this value.
pub fn draft_boolean(value: &HeaderValue) -> Result<Option<bool>, Problem> {
    tus::draft::sf_boolean(&one("upload-complete", value), "upload-complete")
}

/// The interop version a draft request with this `Upload-Draft-Interop-Version` is served with.
pub fn draft_version(value: &HeaderValue) -> Result<i64, Problem> {
    tus::draft::version(&one(tus::draft::INTEROP_VERSION, value))
}

/// The byte range a download with this `Range` header serves of a file of `size` bytes.
pub fn range(value: &HeaderValue, size: u64) -> Result<Option<Range<u64>>, Problem> {
    crate::files::requested_range(&one("range", value), size)
}

/// The file name a `Content-Disposition` value gives, before sanitising.
pub fn disposition_filename(value: &str) -> Option<String> {
    crate::declared::disposition_filename(value)
}

/// An accepted chunked-upload `init` request.
#[derive(Debug)]
pub struct ChunkedPlan {
    /// The sanitised file name.
    pub name: String,
    /// The file's size.
    pub total_size: u64,
    /// The size of every chunk but the last.
    pub chunk_size: u64,
    /// How many chunks make the file.
    pub total_chunks: u64,
    /// The size of the last chunk.
    pub last_chunk_len: u64,
}

/// The chunked API's `init` body, for a server whose largest upload is `max_total` bytes.
pub fn chunked_init(body: &[u8], max_total: u64) -> Result<ChunkedPlan, Problem> {
    let (name, plan, _) = router::chunked::parse_init(body, max_total)?;
    let last_chunk_len = plan.chunk_len(plan.total_chunks - 1);
    Ok(ChunkedPlan {
        name,
        total_size: plan.total_size,
        chunk_size: plan.chunk_size,
        total_chunks: plan.total_chunks,
        last_chunk_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    /// Each wrapper reaches its parser: one accepted and one refused value each.
    #[test]
    fn wrappers_reach_their_parsers() {
        assert_eq!(tus_metadata("k YQ==").unwrap()["k"], b"a");
        assert_eq!(tus_metadata("k !").unwrap_err().code(), "invalid_metadata");
        assert_eq!(tus_file_meta(&tus_metadata("filename YS50eHQ=").unwrap()).name.as_deref(), Some("a.txt"));
        assert_eq!(tus_concat("partial").unwrap(), None);
        assert_eq!(tus_concat("final;/x/0123456789abcdef0123456789abcdef").unwrap().unwrap().len(), 1);
        assert_eq!(tus_concat("final;").unwrap_err().code(), "invalid_concat");
        let crc = tus_checksum("crc32 AAAAAA==").unwrap();
        assert_eq!((crc.algorithm, crc.expected.len(), crc.of_nothing.len()), (None, 4, 4));
        assert_eq!(tus_checksum("sha1 AAAA").unwrap_err().code(), "invalid_checksum");
        assert_eq!(tus_number(&v("42")).unwrap(), Some(42));
        assert_eq!(tus_number(&v("-1")).unwrap_err().code(), "invalid_header");
        assert_eq!(tus_text(&v(" a ")).unwrap().as_deref(), Some("a"));
        assert_eq!(tus_text(&HeaderValue::from_bytes(b"\xff").unwrap()).unwrap_err().code(), "invalid_header");
        assert_eq!(draft_integer(&v("7;x")).unwrap(), Some(7));
        assert_eq!(draft_integer(&v("1000000000000000")).unwrap_err().code(), "invalid_header");
        assert_eq!(draft_boolean(&v("?0")).unwrap(), Some(false));
        assert_eq!(draft_boolean(&v("?2")).unwrap_err().code(), "invalid_header");
        assert_eq!(draft_version(&v("8")).unwrap(), 8);
        assert_eq!(draft_version(&v("4")).unwrap_err().code(), "unsupported_interop_version");
        assert_eq!(range(&v("bytes=1-2"), 4).unwrap(), Some(1..3));
        assert_eq!(range(&v("bytes=4-"), 4).unwrap_err().status(), http::StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(disposition_filename("attachment; filename=a.txt").as_deref(), Some("a.txt"));
        assert_eq!(disposition_filename("attachment"), None);
        let plan = chunked_init(br#"{"filename":"a.bin","total_size":10,"chunk_size":4}"#, 100).unwrap();
        assert_eq!((plan.name.as_str(), plan.total_chunks, plan.last_chunk_len), ("a.bin", 3, 2));
        assert_eq!(chunked_init(b"{", 100).unwrap_err().code(), "invalid_json");
    }
}
