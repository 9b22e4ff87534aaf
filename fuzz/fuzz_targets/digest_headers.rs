//! `Content-Digest`, `Repr-Digest` (RFC 9530) and `Content-MD5`. Each line of the input is one
//! header; its first byte picks which: `C` Content-Digest, `R` Repr-Digest, `M` Content-MD5, `E`
//! Content-Encoding, `G` Content-Range. An accepted digest has its algorithm's length and
//! round-trips; `Repr-Digest` is not checked against partial or encoded content.
#![no_main]

use http::HeaderMap;
use intake::hash::{expected_digests, header_value as digest_value};
use intake_fuzz::{assert_client_error, header_value, lines};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in lines(data) {
        let Some((&kind, value)) = line.split_first() else { continue };
        let Some(value) = header_value(value) else { continue };
        let name = match kind {
            b'R' => "repr-digest",
            b'M' => "content-md5",
            b'E' => "content-encoding",
            b'G' => "content-range",
            _ => "content-digest",
        };
        headers.append(name, value);
    }
    let digests = match expected_digests(&headers) {
        Ok(digests) => digests,
        Err(problem) => {
            assert_client_error(&problem);
            assert_eq!(problem.code(), "invalid_digest");
            return;
        }
    };
    let partial = headers.contains_key("content-encoding") || headers.contains_key("content-range");
    assert!(digests.iter().filter(|d| d.header == "content-md5").count() <= 1);
    for digest in &digests {
        assert_eq!(digest.value.len(), digest.algorithm.output_len(), "{digest:?}");
        match digest.header {
            "content-digest" => {}
            "repr-digest" => assert!(!partial, "Repr-Digest checked against partial content: {headers:?}"),
            "content-md5" => assert_eq!(digest.algorithm.name(), "md5"),
            other => panic!("a digest from {other}"),
        }
        let mut again = HeaderMap::new();
        again.insert("content-digest", digest_value(digest.algorithm, &digest.value).parse().expect("ASCII"));
        let again = expected_digests(&again).expect("a digest written by intake parses");
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].algorithm, &again[0].value), (digest.algorithm, &digest.value));
    }
});
