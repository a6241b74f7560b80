//! Privilege Secure: `keys.exp` (opaque, temporary) and the HA `appsettings.json`, split by
//! role; the vendor import step; and `keys cleanup` of `keys.exp` on target and source.

use crate::common;
use common::*;
use std::path::PathBuf;

const KEYS_EXP: &[u8] = b"SBPAM-EXPORT\x00\x01opaque vendor bytes \xde\xad\xbe\xef";
const APPSETTINGS: &[u8] = b"{\r\n  \"HA\": { \"PrimaryIp\": \"10.9.1.1\" }\r\n}\r\n";

struct Ps {
    dir: tempfile::TempDir,
}

impl Ps {
    fn new() -> Ps {
        let dir = tempfile::tempdir().unwrap();
        let mut toml = String::from("name = \"nps\"\nprofile = \"privilege-secure\"\n");
        for (name, role, ip) in [
            ("nps1", "primary", "10.9.1.1"),
            ("nps2", "secondary", "10.9.1.2"),
            ("act1", "action", "10.9.1.3"),
            ("prx1", "proxy", "10.9.1.4"),
        ] {
            let kt = dir.path().join(name).join("KeyTools");
            let ha = dir.path().join(name).join("HA");
            std::fs::create_dir_all(&kt).unwrap();
            std::fs::create_dir_all(&ha).unwrap();
            toml.push_str(&format!(
                "\n[[node]]\nname = \"{name}\"\nrole = \"{role}\"\naddress = \"{ip}\"\nstate_dir = {:?}\npaths = {{ keytools = {kt:?}, ha = {ha:?} }}\n",
                dir.path().join(name).join("state"),
            ));
        }
        std::fs::write(dir.path().join("cluster.toml"), toml).unwrap();
        std::fs::write(dir.path().join("nps1/KeyTools/keys.exp"), KEYS_EXP).unwrap();
        std::fs::write(dir.path().join("nps1/HA/appsettings.json"), APPSETTINGS).unwrap();
        let pass = dir.path().join("pass.txt");
        std::fs::write(&pass, PASSPHRASE).unwrap();
        private(&pass);
        Ps { dir }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn run<A: AsRef<std::ffi::OsStr>>(&self, node: &str, args: &[A]) -> Run {
        let mut a: Vec<std::ffi::OsString> = args.iter().map(|s| s.as_ref().to_owned()).collect();
        a.extend(argv![
            "-c",
            self.p("cluster.toml"),
            "--node",
            node,
            "--passphrase-file",
            self.p("pass.txt"),
        ]);
        keyferry(&a, None)
    }
}

#[test]
fn secondary_gets_both_action_gets_keys_exp_proxy_nothing() {
    let ps = Ps::new();
    let b = ps.p("b.kfb");
    ps.run("nps1", &argv!["keys", "export", "-o", &b])
        .assert_code(0);

    let copy = ps.p("b2.kfb");
    std::fs::copy(&b, &copy).unwrap();
    let r = ps.run("nps2", &argv!["keys", "import", &copy]);
    r.assert_code(0);
    assert_eq!(
        std::fs::read(ps.p("nps2/KeyTools/keys.exp")).unwrap(),
        KEYS_EXP
    );
    assert_eq!(
        std::fs::read(ps.p("nps2/HA/appsettings.json")).unwrap(),
        APPSETTINGS
    );
    assert!(
        r.stderr()
            .contains("SbPAM.RotateKey.exe import -n keys.exp"),
        "{}",
        r.stderr()
    );

    let r = ps.run(
        "act1",
        &argv!["keys", "import", &b, "--keep-bundle", "--json"],
    );
    r.assert_code(0);
    let j = r.json();
    assert_eq!(
        j["plan"]["skipped"],
        serde_json::json!(["appsettings.json"])
    );
    assert_eq!(
        std::fs::read(ps.p("act1/KeyTools/keys.exp")).unwrap(),
        KEYS_EXP
    );
    assert!(!ps.p("act1/HA/appsettings.json").exists());

    let before = snapshot(ps.dir.path());
    let r = ps.run("prx1", &argv!["keys", "import", &b, "--json"]);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "wrong-role");
    assert_eq!(before, snapshot(ps.dir.path()));

    // Cleanup removes keys.exp on the target and the kept bundle; and keys.exp on the source.
    let cl = ps.p("cluster.toml");
    keyferry(&argv!["keys", "cleanup", "-c", &cl, "--node", "act1"], None).assert_code(0);
    assert!(!ps.p("act1/KeyTools/keys.exp").exists());
    assert!(!b.exists());
    keyferry(&argv!["keys", "cleanup", "-c", &cl, "--node", "nps1"], None).assert_code(0);
    assert!(!ps.p("nps1/KeyTools/keys.exp").exists());
    assert!(
        ps.p("nps1/HA/appsettings.json").exists(),
        "appsettings.json is not temporary"
    );
}

#[test]
fn export_without_vendor_export_file_says_to_run_vendor_tool() {
    let ps = Ps::new();
    std::fs::remove_file(ps.p("nps1/KeyTools/keys.exp")).unwrap();
    let before = snapshot(ps.dir.path());
    let r = ps.run("nps1", &argv!["keys", "export", "-o", &ps.p("b.kfb")]);
    r.assert_code(2);
    assert!(
        r.stderr()
            .contains("SbPAM.RotateKey.exe export -n keys.exp"),
        "{}",
        r.stderr()
    );
    assert_eq!(before, snapshot(ps.dir.path()));
}

#[test]
fn bundle_from_action_host_lacks_appsettings_for_secondary() {
    let ps = Ps::new();
    std::fs::write(ps.p("act1/KeyTools/keys.exp"), KEYS_EXP).unwrap();
    let b = ps.p("a.kfb");
    ps.run(
        "act1",
        &argv!["keys", "export", "-o", &b, "--from-non-primary"],
    )
    .assert_code(0);
    let before = snapshot(ps.dir.path());
    let r = ps.run("nps2", &argv!["keys", "import", &b, "--json"]);
    r.assert_code(2);
    assert_eq!(r.json()["error"]["code"], "bundle-incomplete");
    assert_eq!(before, snapshot(ps.dir.path()));
}

/// The vendor says to delete `keys.exp` everywhere once imported: a `keys.exp` left on any
/// node is an audit finding (exit 1, "export files left", the node and path named), gone once
/// `keys cleanup` removed it there.
#[test]
fn an_export_file_left_on_any_node_fails_the_audit() {
    let ps = Ps::new();
    std::fs::write(ps.p("nps2/HA/appsettings.json"), APPSETTINGS).unwrap();
    std::fs::write(ps.p("nps2/KeyTools/keys.exp"), KEYS_EXP).unwrap();
    std::fs::write(ps.p("act1/KeyTools/keys.exp"), KEYS_EXP).unwrap();
    let audit = || keyferry(&argv!["audit", "-c", &ps.p("cluster.toml"), "--json"], None);
    let r = audit();
    r.assert_code(1);
    let j = r.json();
    let left = |node: &str| -> Vec<String> {
        j["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .unwrap()["export_files_left"]
            .as_array()
            .map(|a| a.iter().map(|p| p.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    for n in ["nps1", "nps2", "act1"] {
        assert_eq!(left(n).len(), 1, "{n}: {j}");
        assert!(left(n)[0].ends_with("keys.exp"), "{n}: {j}");
    }
    assert!(left("prx1").is_empty());
    let text = keyferry(&argv!["audit", "-c", &ps.p("cluster.toml")], None);
    assert!(
        text.stdout().contains("export files left") || text.stderr().contains("export files left"),
        "{}{}",
        text.stdout(),
        text.stderr()
    );
    // Removed by hand (as the vendor says) on every node: the audit agrees again.
    for n in ["nps1", "nps2", "act1"] {
        std::fs::remove_file(ps.p(&format!("{n}/KeyTools/keys.exp"))).unwrap();
    }
    audit().assert_code(0);
}

/// A replace keeps the replaced appsettings.json in the node's backup, but never the replaced
/// keys.exp (the vendor says to delete the export file everywhere): no copy of it is left in
/// any backup, and `keys restore --list` names only what is kept.
#[test]
fn a_replaced_keys_exp_is_not_kept_in_the_backup() {
    let ps = Ps::new();
    let b = ps.p("b.kfb");
    ps.run("nps1", &argv!["keys", "export", "-o", &b])
        .assert_code(0);
    // nps2 holds an older export file and other settings.
    std::fs::write(ps.p("nps2/KeyTools/keys.exp"), b"an older export").unwrap();
    std::fs::write(ps.p("nps2/HA/appsettings.json"), b"{ \"old\": 1 }").unwrap();
    let r = ps.run(
        "nps2",
        &argv!["keys", "import", &b, "--replace", "--keep-bundle", "--json"],
    );
    r.assert_code(0);
    assert_eq!(
        std::fs::read(ps.p("nps2/KeyTools/keys.exp")).unwrap(),
        KEYS_EXP
    );
    let backups = ps.p("nps2/state/backups/nps2");
    let kept: Vec<(String, Vec<u8>)> = walk_files(&backups);
    assert!(
        kept.iter()
            .any(|(n, b)| n == "appsettings.json" && b == b"{ \"old\": 1 }"),
        "{kept:?}"
    );
    assert!(
        !kept
            .iter()
            .any(|(n, b)| n == "keys.exp" || b == b"an older export"),
        "{kept:?}"
    );
    let record = kept
        .iter()
        .find(|(n, _)| n == "backup.json")
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .unwrap();
    assert!(!record.contains("keys.exp"), "{record}");
}

/// Every file under `root` (name, bytes).
fn walk_files(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    out
}
