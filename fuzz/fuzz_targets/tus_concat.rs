//! tus `Upload-Concat`: `partial` exactly, or `final;` and at least one URL, each ending in an
//! upload id (32 lowercase hex digits) that the value names.
#![no_main]

use intake::__fuzz;
use intake_fuzz::assert_client_error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    match __fuzz::tus_concat(raw) {
        Ok(None) => assert_eq!(raw, "partial"),
        Ok(Some(ids)) => {
            let urls = raw.strip_prefix("final;").expect("a final concatenation starts with final;");
            assert!(!ids.is_empty());
            assert_eq!(ids.len(), urls.split_whitespace().count(), "one id per URL in {raw:?}");
            for (id, url) in ids.iter().zip(urls.split_whitespace()) {
                let id = id.as_str();
                assert!(id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{id:?}");
                assert!(url.trim_end_matches('/').ends_with(id), "{id} is not the end of {url:?}");
            }
        }
        Err(problem) => {
            assert_client_error(&problem);
            assert_eq!(problem.code(), "invalid_concat");
        }
    }
});
