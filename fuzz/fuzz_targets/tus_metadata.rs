//! tus `Upload-Metadata` (within the default bounds): an accepted value round-trips, and the file
//! metadata kept from it is safe (a sanitised name, a bare media type).
#![no_main]

use base64::{Engine, engine::general_purpose::STANDARD};
use intake::__fuzz;
use intake_fuzz::{assert_client_error, assert_essence, assert_safe_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let pairs = match __fuzz::tus_metadata(raw) {
        Ok(pairs) => pairs,
        Err(problem) => {
            assert_client_error(&problem);
            let code = problem.code();
            assert!(["invalid_metadata", "metadata_too_large", "too_many_metadata_keys"].contains(&code), "code {code}");
            return;
        }
    };
    for key in pairs.keys() {
        assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b','), "key {key:?}");
    }
    // Written back in the canonical form, the same pairs come out.
    let written: Vec<String> =
        pairs.iter().map(|(k, v)| if v.is_empty() { k.clone() } else { format!("{k} {}", STANDARD.encode(v)) }).collect();
    let written = written.join(",");
    assert!(written.len() <= raw.len(), "canonical {written:?} is longer than {raw:?}");
    assert_eq!(__fuzz::tus_metadata(&written).ok().as_ref(), Some(&pairs), "{raw:?} rewritten as {written:?}");

    let meta = __fuzz::tus_file_meta(&pairs);
    if let Some(name) = &meta.name {
        assert_safe_name(name);
    }
    if let Some(content_type) = &meta.content_type {
        assert_essence(content_type);
    }
    for (key, value) in &meta.extra {
        assert_eq!(pairs.get(key).map(Vec::as_slice), Some(value.as_bytes()), "extra {key:?}");
    }
});
