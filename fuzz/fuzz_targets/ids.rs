//! Ids a client names: `UploadId` (URLs, JSON) is exactly 32 lowercase hex digits, `ProgressId`
//! 8 to 64 characters from `[A-Za-z0-9_-]`. Both are compared with a reference predicate.
#![no_main]

use intake::{UploadId, progress::ProgressId};
use intake_fuzz::assert_client_error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let upload_ok = raw.len() == 32 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match UploadId::parse(raw) {
        Some(id) => {
            assert!(upload_ok, "UploadId accepted {raw:?}");
            assert_eq!((id.as_str(), id.to_string().as_str()), (raw, raw));
        }
        None => assert!(!upload_ok, "UploadId refused {raw:?}"),
    }
    let from_json = serde_json::from_value::<UploadId>(serde_json::Value::String(raw.to_owned()));
    assert_eq!(from_json.is_ok(), upload_ok, "UploadId from JSON {raw:?}");

    let progress_ok = (8..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ProgressId::parse(raw) {
        Ok(id) => {
            assert!(progress_ok, "ProgressId accepted {raw:?}");
            assert_eq!(id.as_str(), raw);
        }
        Err(problem) => {
            assert!(!progress_ok, "ProgressId refused {raw:?}");
            assert_client_error(&problem);
        }
    }
});
