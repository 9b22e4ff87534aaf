//! Properties shared by the fuzz targets in `fuzz_targets/`.

use http::HeaderValue;
use intake::Problem;

/// A refusal of client input is a client error with a machine-readable code, never a 5xx.
pub fn assert_client_error(problem: &Problem) {
    assert!(problem.status().is_client_error(), "{} for client input: {problem:?}", problem.status());
    assert!(!problem.code().is_empty(), "a problem without a code: {problem:?}");
}

/// What [`intake::filename::sanitize`] promises of a name it returns.
pub fn assert_safe_name(name: &str) {
    assert!(!name.is_empty(), "an empty sanitised name");
    assert!(name.len() <= intake::filename::MAX_NAME_LEN, "{} bytes: {name:?}", name.len());
    assert!(!name.contains(['/', '\\', '\0']), "a path separator or NUL in {name:?}");
    assert!(!name.chars().any(char::is_control), "a control character in {name:?}");
    assert!(!name.starts_with('.'), "a leading dot in {name:?}");
    assert_eq!(intake::filename::sanitize(name).as_deref(), Some(name), "sanitising {name:?} again changes it");
}

/// A media type as [`intake::declared::essence`] returns it: no parameters, trimmed, lowercase.
pub fn assert_essence(essence: &str) {
    assert!(!essence.is_empty());
    assert!(!essence.contains(';'), "parameters left in {essence:?}");
    assert_eq!(essence, essence.trim(), "untrimmed {essence:?}");
    assert_eq!(essence, essence.to_ascii_lowercase(), "not lowercase: {essence:?}");
}

/// The bytes as a header value, when a client could send them as one (hyper refuses the rest).
pub fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

/// Splits an input into `\n`-separated fields: several header values, or a value per header.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}
