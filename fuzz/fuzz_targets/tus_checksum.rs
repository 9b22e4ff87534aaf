//! tus `Upload-Checksum`: an accepted digest has the length of what its algorithm computes, and
//! round-trips.
#![no_main]

use base64::{Engine, engine::general_purpose::STANDARD};
use intake::{__fuzz, hash::HashAlgorithm};
use intake_fuzz::assert_client_error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let checksum = match __fuzz::tus_checksum(raw) {
        Ok(checksum) => checksum,
        Err(problem) => {
            assert_client_error(&problem);
            assert!(matches!(problem.code(), "invalid_checksum" | "unsupported_checksum"), "{problem:?}");
            return;
        }
    };
    assert_eq!(checksum.expected.len(), checksum.of_nothing.len(), "{raw:?} can never match");
    let name = match checksum.algorithm {
        Some(HashAlgorithm::Sha1) => "sha1",
        Some(HashAlgorithm::Sha256) => "sha256",
        Some(HashAlgorithm::Md5) => "md5",
        None => "crc32",
        Some(other) => panic!("{raw:?} chose {other:?}, which tus does not offer"),
    };
    assert!(raw.to_ascii_lowercase().starts_with(name), "{raw:?} parsed as {name}");
    let again = __fuzz::tus_checksum(&format!("{name} {}", STANDARD.encode(&checksum.expected))).expect("round trip");
    assert_eq!((again.algorithm, again.expected), (checksum.algorithm, checksum.expected));
});
