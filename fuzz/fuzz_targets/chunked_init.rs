//! The chunked API's `init` body (JSON). An accepted upload has a sanitised name and a plan
//! whose chunks add up to the file, within the limits; anything else is a 4xx problem.
#![no_main]

use intake::__fuzz;
use intake_fuzz::{assert_client_error, assert_safe_name};
use libfuzzer_sys::fuzz_target;

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
    let json: serde_json::Value = serde_json::from_slice(body).expect("an accepted body is JSON");
    assert_eq!(json["total_size"].as_u64(), Some(plan.total_size), "{json}");
    assert_eq!(json["chunk_size"].as_u64(), Some(plan.chunk_size), "{json}");
    assert!((1..=MAX_TOTAL).contains(&plan.total_size), "{plan:?}");
    assert!((1..=__fuzz::MAX_CHUNK_SIZE).contains(&plan.chunk_size), "{plan:?}");
    assert!((1..=__fuzz::MAX_CHUNKS).contains(&plan.total_chunks), "{plan:?}");
    assert!((1..=plan.chunk_size).contains(&plan.last_chunk_len), "{plan:?}");
    assert_eq!((plan.total_chunks - 1) * plan.chunk_size + plan.last_chunk_len, plan.total_size, "{plan:?}");
});
