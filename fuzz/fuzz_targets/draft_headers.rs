//! The resumable-upload draft's structured fields: the integer (`Upload-Offset`,
//! `Upload-Length`), the boolean (`Upload-Complete`) and `Upload-Draft-Interop-Version`, each
//! given the same value.
#![no_main]

use intake::__fuzz;
use intake_fuzz::{assert_client_error, header_value};
use libfuzzer_sys::fuzz_target;

/// The bare item of a structured field: what precedes its parameters.
fn bare(value: &http::HeaderValue) -> &str {
    value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim()
}

fuzz_target!(|data: &[u8]| {
    let Some(value) = header_value(data) else { return };
    let integer = __fuzz::draft_integer(&value);
    match &integer {
        Ok(Some(n)) => {
            assert!(*n <= 999_999_999_999_999, "RFC 9651 integers have at most 15 digits: {n}");
            assert_eq!(bare(&value).parse::<u64>().ok(), Some(*n), "{value:?}");
        }
        Ok(None) => panic!("a present integer field {value:?} was taken as absent"),
        Err(problem) => assert_client_error(problem),
    }
    match __fuzz::draft_boolean(&value) {
        Ok(Some(b)) => assert_eq!(bare(&value), if b { "?1" } else { "?0" }),
        Ok(None) => panic!("a present boolean field {value:?} was taken as absent"),
        Err(problem) => assert_client_error(&problem),
    }
    match __fuzz::draft_version(&value) {
        Ok(version) => {
            assert!((5..=9).contains(&version), "interop version {version} served");
            assert_eq!(integer.ok().flatten(), Some(version as u64));
        }
        Err(problem) => assert_client_error(&problem),
    }
});
