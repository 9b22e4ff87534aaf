//! tus integer and text headers (`Upload-Length`, `Upload-Offset`; `Upload-Metadata` & co. as
//! text): a present header is never taken as absent, an accepted integer is exactly its digits.
#![no_main]

use intake::__fuzz;
use intake_fuzz::{assert_client_error, header_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(value) = header_value(data) else { return };
    match __fuzz::tus_number(&value) {
        Ok(Some(n)) => {
            let text = value.to_str().expect("an accepted number is ASCII").trim();
            assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
            let digits = text.trim_start_matches('0');
            assert_eq!(n.to_string(), if digits.is_empty() { "0" } else { digits }, "{text:?}");
        }
        Ok(None) => panic!("a present Upload-Length {value:?} was taken as absent"),
        Err(problem) => {
            assert_client_error(&problem);
            assert_eq!(problem.code(), "invalid_header");
        }
    }
    match __fuzz::tus_text(&value) {
        Ok(Some(text)) => assert_eq!(Some(text.as_str()), value.to_str().ok().map(str::trim)),
        Ok(None) => panic!("a present header {value:?} was taken as absent"),
        Err(problem) => {
            assert_client_error(&problem);
            assert!(value.to_str().is_err(), "visible ASCII {value:?} refused");
        }
    }
});
