//! Results that tell the truth and output fit for a terminal: an audit with differing
//! binaries fails; an unreachable node is called unreachable, not a disagreement; bad
//! option values are refused; text from nodes cannot drive the terminal; tables fit it.

use crate::common;
use common::*;
use std::ffi::OsString;

const KEY: &[u8] = b"THE KEY every node should hold";

fn audit(c: &Cluster, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let cluster = c.cluster_file();
    let mut a = Vec::from(argv!["audit", "-c", cluster]);
    a.extend(extra.iter().map(OsString::from));
    keyferry_env(&a, None, env)
}

/// Every node holds the key; dr1's binaries differ from the primary's.
fn cluster_with_different_binaries() -> Cluster {
    let c = Cluster::secret_server(KEY, Some(KEY));
    std::fs::write(c.key_path("dr1"), KEY).unwrap();
    for (node, dll) in [("web1", "v10.9"), ("web2", "v10.9"), ("dr1", "v11.0")] {
        std::fs::create_dir_all(c.app(node).join("bin")).unwrap();
        std::fs::write(c.app(node).join("bin/app.dll"), dll).unwrap();
    }
    c
}

#[test]
fn differing_binaries_fail_the_audit_in_table_summary_and_json() {
    let c = cluster_with_different_binaries();
    let r = audit(&c, &[], &[]);
    r.assert_code(1);
    let out = r.stdout();
    assert!(out.contains("DIFFER: bin/app.dll"), "{out}");
    assert!(out.contains("Problem: different binaries: dr1"), "{out}");
    assert!(!out.contains("All nodes"), "{out}");
    let j = audit(&c, &["--json"], &[]).json();
    assert_eq!(j["ok"], false);
    // Same binaries everywhere: the audit passes.
    std::fs::write(c.app("dr1").join("bin/app.dll"), "v10.9").unwrap();
    audit(&c, &[], &[]).assert_code(0);
}

#[test]
fn an_unreachable_node_is_named_as_such_not_as_a_disagreement() {
    let c = Cluster::secret_server(KEY, Some(KEY));
    std::fs::write(c.key_path("dr1"), KEY).unwrap();
    std::fs::remove_dir_all(c.app("dr1")).unwrap();
    let r = audit(&c, &[], &[]);
    r.assert_code(1);
    let out = r.stdout();
    assert!(
        out.contains("Problem: not reached, so not checked: dr1"),
        "{out}"
    );
    assert!(!out.contains("different keys"), "{out}");
    assert!(!out.contains("Not in agreement"), "{out}");
}

#[test]
fn audit_refuses_zero_jobs_and_shows_only_options_it_uses() {
    let c = Cluster::secret_server(KEY, None);
    let r = audit(&c, &["--jobs", "0"], &[]);
    r.assert_code(2);
    assert!(r.stderr().contains("--jobs"), "{}", r.stderr());
    let help = keyferry(&["audit", "--help"], None).stdout();
    for gone in ["--node", "--profile", "--root", "--role", "--state-dir"] {
        assert!(
            !help.contains(gone),
            "audit --help lists {gone}, which audit does not use"
        );
    }
}

/// A hostile node's report (here: a saved one whose role carries escape sequences) and a
/// pasted log line cannot clear the screen or set the window title: what they carry is
/// shown escaped.
#[test]
fn escape_sequences_from_reports_and_logs_are_shown_escaped() {
    let c = Cluster::secret_server(KEY, Some(KEY));
    let hostile = serde_json::json!({
        "version": 1, "kind": "node-report", "keyferry": "0.1.0", "cluster": "ss-prod",
        "node": "web2", "role": "\u{1b}[2J\u{1b}]0;owned\u{7}\u{202e}", "profile": "secret-server",
        "host": "h", "time": "2026-01-01T00:00:00Z", "status": "complete",
        "fingerprint": null, "files": [],
    });
    std::fs::write(c.path("web2.json"), hostile.to_string()).unwrap();
    let text = std::fs::read_to_string(c.cluster_file()).unwrap().replace(
        "name = \"web2\"\n",
        "name = \"web2\"\naccess = \"report:web2.json\"\n",
    );
    std::fs::write(c.cluster_file(), text).unwrap();
    let r = audit(&c, &[], &[]);
    let all = format!("{}{}", r.stdout(), r.stderr());
    for raw in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(
            !all.contains(raw),
            "raw {raw:?} reached the terminal: {all:?}"
        );
    }
    assert!(all.contains("\\u{1b}"), "{all}");

    let log = c.path("ss.log");
    std::fs::write(
        &log,
        "2026-01-01 ERROR \u{1b}]0;pwned\u{7} Encryption key doesn't match\n",
    )
    .unwrap();
    let r = keyferry(&argv!["diagnose", "--log", &log], None);
    assert!(!r.stdout().contains('\u{1b}'), "{:?}", r.stdout());
    assert!(r.stdout().contains("\\u{1b}]0;pwned"), "{}", r.stdout());
}

#[test]
fn the_audit_table_and_fingerprint_lines_fit_the_terminal() {
    let c = cluster_with_different_binaries();
    let r = audit(&c, &[], &[("COLUMNS", "80")]);
    for line in r.stdout().lines() {
        assert!(
            line.chars().count() <= 80,
            "{} chars: {line}",
            line.chars().count()
        );
    }
    let fp = |cols: &str| {
        keyferry_env(
            &argv!["fingerprint", "-c", &c.cluster_file(), "--node", "web1"],
            None,
            &[("COLUMNS", cols)],
        )
        .stdout()
    };
    let narrow = fp("80");
    assert!(narrow.contains('…'), "{narrow}");
    let wide = fp("200");
    assert!(wide.contains(&sha256_hex(KEY)), "{wide}");
    assert!(wide.contains("bytes"), "{wide}");
}

/// A bundle's source fields come from whoever made the bundle: `keys inspect` shows them
/// escaped.
#[test]
fn a_bundles_source_fields_are_shown_escaped() {
    let c = Cluster::secret_server(KEY, None);
    let mut h = header(&[("encryption.config", KEY)], "2099-01-01T00:00:00Z");
    h["source"]["host"] = serde_json::json!("WEB1\u{1b}[2J\u{1b}]0;owned\u{7}");
    let b = c.path("hostile.kfb");
    seal_raw(&plaintext(&h, &[KEY]), PASSPHRASE, &b);
    let r = keyferry(
        &argv![
            "keys",
            "inspect",
            &b,
            "--passphrase-file",
            &c.path("pass.txt")
        ],
        None,
    );
    r.assert_code(0);
    assert!(!r.stdout().contains('\u{1b}'), "{:?}", r.stdout());
    assert!(r.stdout().contains("WEB1\\u{1b}[2J"), "{}", r.stdout());
}

/// Hostile names (a right-to-left override, DEL, a C1 control, an escape) in the cluster's
/// name and in a file name: every `--json` document is valid JSON that gives the names back
/// exactly, and none of those characters reaches the terminal raw.
#[test]
fn json_output_is_json_whatever_the_names_hold() {
    let hostile = "ss\u{202e}prod\u{7f}\u{85}\u{1b}[2J";
    let c = Cluster::secret_server(b"KEY-A", Some(b"KEY-A"));
    let cl = c.cluster_file();
    let text = std::fs::read_to_string(&cl).unwrap();
    let toml_name = hostile
        .replace('\u{1b}', "\\u001b")
        .replace('\u{7f}', "\\u007f")
        .replace('\u{85}', "\\u0085");
    std::fs::write(
        &cl,
        text.replace("name = \"ss-prod\"", &format!("name = \"{toml_name}\"")),
    )
    .unwrap();
    // A file name holds what the file system allows: NTFS refuses C0 controls (the escape).
    let in_name: String = if cfg!(windows) {
        hostile.chars().filter(|c| u32::from(*c) >= 0x20).collect()
    } else {
        hostile.to_owned()
    };
    std::fs::write(c.app("web1").join(format!("odd{in_name}.dll")), b"x").unwrap();
    let bundle = c.export();
    let cls = cl.to_str().unwrap();
    let pass = c.path("pass.txt");
    let runs: Vec<(Vec<&str>, i32)> = vec![
        (vec!["fingerprint", "-c", cls, "--node", "web1"], 0),
        (
            vec![
                "keys",
                "inspect",
                bundle.to_str().unwrap(),
                "--passphrase-file",
                pass.to_str().unwrap(),
            ],
            0,
        ),
        (vec!["audit", "-c", cls], 1),
        (vec!["sync", "-c", cls, "--node", "web1", "--dry-run"], 0),
    ];
    for (args, code) in runs {
        let mut a = args.clone();
        a.push("--json");
        let r = keyferry(&a, None);
        assert_eq!(r.code(), code, "{args:?}: {}", r.stderr());
        for bad in ['\u{202e}', '\u{7f}', '\u{85}', '\u{1b}'] {
            assert!(!r.stdout().contains(bad), "{args:?}: raw {bad:?} on stdout");
        }
        let j: serde_json::Value = serde_json::from_str(&r.stdout())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", r.stdout()));
        let all = j.to_string();
        let wanted = if args[0] == "sync" {
            format!("odd{in_name}.dll")
        } else {
            hostile.to_owned()
        };
        let back = serde_json::to_string(&wanted).unwrap();
        assert!(
            all.contains(back.trim_matches('"')),
            "{args:?}: {wanted:?} not given back exactly: {all}"
        );
    }
}

/// Off a terminal, with nothing saying the width, a table stays readable in a log or a
/// ticket: no line wider than 120 columns, long cells wrapped inside their column (the full
/// values are in --json); `COLUMNS` still sets the width where given.
#[test]
fn tables_off_a_terminal_wrap_to_a_readable_width() {
    let c = Cluster::secret_server(b"KEY-A", Some(b"KEY-B, which differs"));
    // Deep folders: the audit's rows name them.
    let deep = c.path(&"a-rather-long-folder-name/".repeat(6));
    std::fs::create_dir_all(&deep).unwrap();
    let text = std::fs::read_to_string(c.cluster_file()).unwrap();
    let app2 = c.app("web2");
    let moved = deep.join("web2-application-folder-with-a-long-name");
    std::fs::rename(&app2, &moved).unwrap();
    let cl = c.path("long.toml");
    std::fs::write(
        &cl,
        text.replace(&format!("{:?}", app2), &format!("{:?}", moved)),
    )
    .unwrap();
    let run = |columns: Option<&str>| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(argv!["audit", "-c", &cl]);
        cmd.env_remove("COLUMNS");
        if let Some(c) = columns {
            cmd.env("COLUMNS", c);
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let wide = run(Some("400"));
    assert!(
        wide.lines().any(|l| l.chars().count() > 120),
        "the test needs a row wider than 120 columns:\n{wide}"
    );
    let plain = run(None);
    let widest = plain.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest <= 120, "{widest} columns:\n{plain}");
}

/// `keyferry man` names its sub-pages under SUBCOMMANDS (keyferry-keys(1), ...): every one
/// named, at every depth, can be produced (`keyferry man keys push`), under that name, and
/// each page ends with EXIT STATUS, ENVIRONMENT and FILES.
#[test]
fn every_manual_page_named_can_be_produced() {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut pages = 0;
    while let Some(path) = todo.pop() {
        let mut args = vec!["man"];
        args.extend(path.iter().map(String::as_str));
        let r = keyferry(&args, None);
        r.assert_code(0);
        let page = r.stdout();
        let name = std::iter::once("keyferry".to_owned())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
        for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
            assert!(page.contains(section), "{name}: no {section}");
        }
        pages += 1;
        // The pages this one names: keyferry\-keys\-push(1).
        for line in page.lines() {
            if let Some(named) = line.strip_suffix("(1)") {
                let named = named.replace("\\-", "-");
                if let Some(rest) = named.strip_prefix(&format!("{name}-")) {
                    let mut next = path.clone();
                    next.push(rest.to_owned());
                    todo.push(next);
                }
            }
        }
    }
    assert!(pages >= 30, "only {pages} pages");
    keyferry(&["man", "keys", "nope"], None).assert_code(2);
}

/// keyferry's own words are coloured only when asked or on a terminal (anstream decides):
/// `--color always` styles "error:" and "hint:", `--color never` and a pipe do not, and a
/// style never reaches the message's own text.
#[test]
fn colour_is_asked_for_or_left_out() {
    let args = ["keys", "import", "/nowhere/bundle.age"];
    let always = keyferry(&[&["--color", "always"][..], &args[..]].concat(), None);
    always.assert_code(2);
    let e = always.stderr();
    assert!(e.contains("\u{1b}[31merror:\u{1b}[0m"), "{e:?}");
    assert!(e.contains("\u{1b}[36mhint:\u{1b}[0m"), "{e:?}");
    for run in [
        keyferry(&[&["--color", "never"][..], &args[..]].concat(), None),
        keyferry(&args, None),
        keyferry(&[&["--color", "auto"][..], &args[..]].concat(), None),
    ] {
        run.assert_code(2);
        assert!(!run.stderr().contains('\u{1b}'), "{:?}", run.stderr());
        assert!(run.stderr().starts_with("error: "), "{:?}", run.stderr());
    }
}
