//! `diagnose --log` reads logs that clients and other machines wrote: any bytes, any length,
//! any script. Properties: the scan never panics (a line of `İ`, whose lower case is longer,
//! once did); its counts add up; each error's first and last lines lie within the log; and
//! any `pg_hba.conf` line it suggests, whatever names the log holds, is one rule for one host
//! with a password method (a client-chosen name once turned into a `trust` line for all).

#![no_main]

use keyferry::diagnose::scan_log;
use keyferry::ha::hba::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let scan = scan_log(&text, None);
    assert_eq!(scan.matched + scan.unmatched, scan.lines);
    for e in &scan.explained {
        let seen = e.seen.as_ref().expect("a log's matches say where");
        assert!(seen.count >= 1 && seen.first_line <= seen.last_line);
        assert!(seen.last_line <= scan.lines);
        if let Some(fix) = &e.specific_fix {
            if let Some(line) = fix.lines().last().filter(|l| l.trim_start().starts_with("host")) {
                let file = parse(&format!("{}\n", line.trim()));
                let rule = file.rule(0).expect("one rule");
                assert_eq!(file.entries.len(), 1, "{line}");
                assert_eq!(rule.method, "md5", "{line}");
                assert!(rule.options.is_empty(), "{line}");
            }
        }
    }
});
