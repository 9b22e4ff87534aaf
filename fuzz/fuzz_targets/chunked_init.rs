//! The chunked API's `init` body (JSON). An accepted upload has a sanitised name and a plan
//! whose chunks add up to the file, within the limits; anything else is a 4xx problem.
#![no_main]

use intake::__fuzz;
use intake_fuzz::{assert_client_error, assert_safe_name};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, de::IgnoredAny};

#[derive(Deserialize)]
struct Sizes {
    total_size: u64,
    chunk_size: u64,
}

const MAX_TOTAL: u64 = 1 << 30;

fuzz_target!(|body: &[u8]| {
    let plan = match __fuzz::chunked_init(body, MAX_TOTAL) {
        Ok(plan) => plan,
        Err(problem) => {
            assert_client_error(&problem);
            return;
        }
    };
    assert_safe_name(&plan.name);
    let text = std::str::from_utf8(body).expect("an accepted body is UTF-8");
    serde_json::from_str::<IgnoredAny>(text).expect("an accepted body is JSON");
    // Not through serde_json::Value, which refuses numbers past f64 that JSON allows elsewhere in the body.
    let sizes: Sizes = serde_json::from_str(text).expect("an accepted body has both sizes");
    assert_eq!((sizes.total_size, sizes.chunk_size), (plan.total_size, plan.chunk_size), "{text}");
    assert!((1..=MAX_TOTAL).contains(&plan.total_size), "{plan:?}");
    assert!((1..=__fuzz::MAX_CHUNK_SIZE).contains(&plan.chunk_size), "{plan:?}");
    assert!((1..=__fuzz::MAX_CHUNKS).contains(&plan.total_chunks), "{plan:?}");
    assert!((1..=plan.chunk_size).contains(&plan.last_chunk_len), "{plan:?}");
    assert_eq!((plan.total_chunks - 1) * plan.chunk_size + plan.last_chunk_len, plan.total_size, "{plan:?}");
});
