//! `Range` on a download. The first byte gives the file's size (0-199, or from 200 up the next 8
//! bytes, little-endian, any u64); the rest is the header. A served range lies inside the file,
//! is never empty, and is exactly the one asked for when the value is a plain `bytes=a-b`.
#![no_main]

use intake::__fuzz;
use intake_fuzz::{assert_client_error, header_value};
use libfuzzer_sys::fuzz_target;

/// `bytes=a-b` with a <= b, when the value is exactly that.
fn plain(value: &str) -> Option<(u64, u64)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (a, b) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b).then_some((a, b))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let (size, rest) = if first < 200 {
        (u64::from(first), rest)
    } else if rest.len() >= 8 {
        let (size, rest) = rest.split_at(8);
        (u64::from_le_bytes(size.try_into().expect("8 bytes")), rest)
    } else {
        return;
    };
    let Some(value) = header_value(rest) else { return };
    match __fuzz::range(&value, size) {
        Ok(Some(range)) => {
            assert!(range.start < range.end && range.end <= size, "{range:?} of {size} bytes for {value:?}");
            if let Some((a, b)) = value.to_str().ok().and_then(plain).filter(|&(_, b)| b < size) {
                assert_eq!(range, a..b + 1, "{value:?} of {size} bytes");
            }
        }
        Ok(None) => {}
        Err(problem) => {
            assert_client_error(&problem);
            assert_eq!(problem.status(), http::StatusCode::RANGE_NOT_SATISFIABLE);
        }
    }
});
