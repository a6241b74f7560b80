//! `pg_hba.conf` files come from servers keyferry edits. Properties: reading any bytes
//! (UTF-8 or not) never panics and keeps every byte (what it reads writes back byte for
//! byte); planning the HA pair's lines never panics, and an edit it makes lets both peers
//! in, is stable when planned again, and keeps the file's own lines; explaining any
//! connection never panics and agrees with the decision.

#![no_main]

use keyferry::ha::hba::{decode, encode, parse, plan_edit, Connection, PeerRules, Server};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, latin1) = decode(data);
    let text = text.as_str();
    let file = parse(text);
    assert_eq!(file.text(), text);
    assert_eq!(encode(&file.text(), latin1), data);
    let c = Connection::new(false, Some("app"), "10.0.0.5".parse().unwrap());
    let x = file.explain(&c);
    let d = file.decide(&c);
    assert_eq!(x.decided_by, d.entry.map(|i| file.entries[i].first + 1));
    let want = PeerRules {
        peers: vec!["10.0.0.5".parse().unwrap(), "fd00::6".parse().unwrap()],
        repuser: "repuser".into(),
        method: "md5".into(),
        override_reject: false,
        server: Server::here(),
    };
    if let Ok(edit) = plan_edit(text, &want, None) {
        let after = parse(&edit.text);
        for (c, _, _) in &edit.decisions {
            assert!(after.admits(c), "{c}");
        }
        let again = plan_edit(&edit.text, &want, None).expect("an edit plans again");
        assert!(!again.changed);
    }
});
