//! `pg_hba.conf` files come from servers keyferry edits. Properties: parsing never panics and
//! keeps every byte (what it reads re-serialises byte for byte); planning the HA pair's lines
//! never panics, and an edit it makes lets both peers in, is stable when planned again, and
//! keeps the file's own lines.

#![no_main]

use keyferry::ha::hba::{parse, plan_edit, PeerRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = parse(text);
    assert_eq!(file.text(), text);
    let want = PeerRules {
        peers: vec!["10.0.0.5".parse().unwrap(), "fd00::6".parse().unwrap()],
        repuser: "repuser".into(),
        method: "md5".into(),
        override_reject: false,
    };
    if let Ok(edit) = plan_edit(text, &want) {
        let after = parse(&edit.text);
        for (c, _, _) in &edit.decisions {
            assert!(after.admits(c), "{c}");
        }
        let again = plan_edit(&edit.text, &want).expect("an edit plans again");
        assert!(!again.changed);
    }
});
