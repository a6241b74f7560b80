//! Node reports from other machines are untrusted. Properties: `NodeReport::parse` never
//! panics; an accepted report serialises and parses back to the same value, so every accepted
//! report is well-formed by construction.

#![no_main]

use keyferry::audit::NodeReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = NodeReport::parse(data) {
        let text = serde_json::to_vec(&r).expect("serialise");
        let back = NodeReport::parse(&text).expect("a written report parses");
        assert_eq!(back, r);
    }
});
