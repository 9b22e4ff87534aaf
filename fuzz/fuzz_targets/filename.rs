//! `filename::sanitize` and `filename::extension` on any string: a kept name is never a path,
//! `.`/`..`, a hidden file, or longer than `MAX_NAME_LEN`, and sanitising it again changes nothing.
#![no_main]

use intake::filename::{extension, sanitize};
use intake_fuzz::assert_safe_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let Some(name) = sanitize(raw) else { return };
    assert_safe_name(&name);
    if let Some(ext) = extension(&name) {
        assert!(!ext.is_empty() && !ext.contains('.'), "{ext:?} of {name:?}");
        assert!(name.to_ascii_lowercase().ends_with(&format!(".{ext}")), "{ext:?} of {name:?}");
    }
});
