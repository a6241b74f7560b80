//! The fault suite for `keyferry sync`, on a small real ext4 volume of its own (a loop-mounted
//! image, root only): the disk filling at several points, the volume going read-only, an
//! immutable file (`chattr +i`), and SIGKILL at seeded random moments. After each fault: the
//! target is entirely old or entirely new, byte for byte; the protected files are the same
//! bytes, owner and mode; the exit code and message say what happened. After the cause is
//! gone, a rerun finishes (nothing of keyferry's left beside the target), `sync verify` says
//! identical, and `sync rollback` brings the old tree back with the same protected files.
//!
//! `KF_FAULT_KILLS=N` sets how many random kills run (default 12; `bench/` or a long run may
//! ask for hundreds).

#![cfg(all(target_os = "linux", feature = "failpoints"))]
// The SKIPPED lines and the counts must be visible in test output.
#![allow(clippy::print_stderr)]

use crate::common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A fresh ext4 volume, loop-mounted; unmounted and removed when dropped.
struct Volume {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Volume {
    fn new(mib: u64) -> Option<Volume> {
        let dir = tempfile::tempdir().unwrap();
        let (img, mnt) = (dir.path().join("ext4.img"), dir.path().join("mnt"));
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let ok = |c: &mut std::process::Command| c.output().is_ok_and(|o| o.status.success());
        if !ok(std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&img))
            || !ok(std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt))
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root with mkfs.ext4: a loop mount must work"
            );
            eprintln!("SKIPPED: a loop-mounted ext4 volume needs root and mkfs.ext4");
            return None;
        }
        Some(Volume { _dir: dir, mnt })
    }
    fn remount(&self, how: &str) {
        let s = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{how}")])
            .arg(&self.mnt)
            .status()
            .unwrap();
        assert!(s.success(), "remount {how}");
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mount")
            .args(["-o", "remount,rw"])
            .arg(&self.mnt)
            .status();
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}

const KEY: &[u8] = b"TARGET KEY, the service's own";
const DB: &[u8] = b"target database connection";
/// The application's service account (not root) owns the target.
const SERVICE: u32 = 4321;

/// A source (the new version) and a target (the old one, owned by the service account, its
/// keys 0640) on the volume.
struct Bed<'v> {
    vol: &'v Volume,
    /// keyferry's state folder (journals, the node's lock): on the volume, or beside it
    /// (Linux will not remount a volume read-only while the lock file is open there).
    state: PathBuf,
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

impl<'v> Bed<'v> {
    fn new(vol: &'v Volume) -> Bed<'v> {
        for p in [
            vol.mnt.join("src"),
            vol.mnt.join("www"),
            vol.mnt.join("state"),
            vol.mnt.join("../state"),
        ] {
            if p.exists() {
                std::process::Command::new("chattr")
                    .args(["-R", "-i"])
                    .arg(&p)
                    .output()
                    .unwrap();
                std::fs::remove_dir_all(&p).unwrap();
            }
        }
        let b = Bed {
            vol,
            state: vol.mnt.join("state"),
        };
        let (s, t) = (b.src(), b.dst());
        write(&s, "web.config", b"<configuration v='11'/>");
        write(&t, "web.config", b"<configuration v='10'/>");
        for i in 0..40 {
            write(&s, &format!("bin/lib{i}.dll"), &vec![b'n'; 1000 + i * 10]);
            write(&t, &format!("bin/lib{i}.dll"), &vec![b'o'; 900 + i * 10]);
        }
        for i in 0..20 {
            write(&s, &format!("Areas/New/v{i}.cshtml"), b"new view");
            write(&t, &format!("Areas/Old/v{i}.cshtml"), b"old view");
            write(&s, &format!("Scripts/same{i}.js"), b"same");
            write(&t, &format!("Scripts/same{i}.js"), b"same");
        }
        write(&s, "bin/Big.dll", &vec![7u8; 2 << 20]);
        write(&s, "encryption.config", b"SOURCE KEY");
        write(&t, "encryption.config", KEY);
        write(&t, "database.config", DB);
        write(&t, "logs/app.log", b"log line");
        // The old version's files are older than the new one's.
        backdate(&t);
        std::process::Command::new("chown")
            .args(["-R", &format!("{SERVICE}:{SERVICE}")])
            .arg(&t)
            .status()
            .unwrap();
        for k in ["encryption.config", "database.config"] {
            std::fs::set_permissions(t.join(k), std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        b
    }
    fn src(&self) -> PathBuf {
        self.vol.mnt.join("src")
    }
    fn dst(&self) -> PathBuf {
        self.vol.mnt.join("www").join("SecretServer")
    }
    fn args(&self, cmd: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        for (k, v) in [
            ("--profile", "secret-server".to_string()),
            ("--from", self.src().display().to_string()),
            ("--root", self.dst().display().to_string()),
            ("--state-dir", self.state.display().to_string()),
        ] {
            a.push(k.into());
            a.push(v);
        }
        a
    }
    fn run(&self, cmd: &[&str], env: &[(&str, &str)]) -> Run {
        let a = self.args(cmd);
        keyferry_env(&a.iter().map(String::as_str).collect::<Vec<_>>(), None, env)
    }
    /// The target's content, without the protected files (checked on their own) and
    /// keyferry's marks in it (the sync id a swapped-in tree carries until the run finishes).
    fn tree(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let root = self.dst();
        snapshot(&root)
            .into_iter()
            .map(|(k, v)| (k.strip_prefix(&root).unwrap().to_owned(), v))
            .filter(|(k, _)| {
                !k.ends_with("encryption.config")
                    && !k.ends_with("database.config")
                    && !k.to_string_lossy().starts_with(".keyferry-")
            })
            .collect()
    }
    /// Each protected file: bytes, owner, group, mode, inode.
    fn protected(&self) -> Vec<(Vec<u8>, u32, u32, u32, u64)> {
        ["encryption.config", "database.config"]
            .iter()
            .map(|k| {
                let p = self.dst().join(k);
                let m = std::fs::metadata(&p).unwrap();
                (
                    std::fs::read(&p).unwrap(),
                    m.uid(),
                    m.gid(),
                    m.mode() & 0o7777,
                    m.ino(),
                )
            })
            .collect()
    }
    /// keyferry's folders beside the target other than kept trees, and journals.
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.vol.mnt.join("www"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "SecretServer" && !n.starts_with("SecretServer.keyferry-prev"))
            .collect();
        if let Ok(rd) = std::fs::read_dir(self.state.join("sync")) {
            v.extend(
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".last.json")),
            );
        }
        v
    }
    fn unfill(&self) {
        let _ = std::fs::remove_file(self.vol.mnt.join("filler"));
        let _ = std::fs::remove_file(self.vol.mnt.join("filler2"));
    }
}

type Snap = BTreeMap<PathBuf, Vec<u8>>;

/// The names where two snapshots differ (a short message, not two whole trees).
fn differ(a: &Snap, b: &Snap) -> Vec<PathBuf> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
        .take(8)
        .collect()
}

/// The target after a fault: old or new, whole; protected files untouched; then the cause
/// removed, a rerun finishes, verify and rollback hold.
fn settle(
    bed: &Bed,
    what: &str,
    old: &BTreeMap<PathBuf, Vec<u8>>,
    new: &BTreeMap<PathBuf, Vec<u8>>,
    keys: &[(Vec<u8>, u32, u32, u32, u64)],
) {
    let now = bed.tree();
    assert!(
        now == *old || now == *new,
        "{what}: the target is neither the old nor the new tree: {:?} / {:?}",
        differ(&now, old),
        differ(&now, new)
    );
    assert_eq!(bed.protected(), keys, "{what}: protected files changed");
    let r = bed.run(&["sync"], &[]);
    r.assert_code(0);
    assert_eq!(
        bed.tree(),
        *new,
        "{what}: the rerun did not make the target new"
    );
    assert_eq!(bed.protected(), keys, "{what}");
    assert_eq!(bed.leftovers(), Vec::<String>::new(), "{what}");
    bed.run(&["sync", "verify"], &[]).assert_code(0);
    let r = bed.run(&["sync", "rollback", "--older"], &[]);
    r.assert_code(0);
    assert_eq!(
        bed.tree(),
        *old,
        "{what}: the rollback did not bring the old tree back"
    );
    assert_eq!(bed.protected(), keys, "{what}");
}

/// The new tree as a sync without faults makes it.
fn reference(vol: &Volume) -> (BTreeMap<PathBuf, Vec<u8>>, BTreeMap<PathBuf, Vec<u8>>) {
    let bed = Bed::new(vol);
    let old = bed.tree();
    bed.run(&["sync"], &[]).assert_code(0);
    (old, bed.tree())
}

fn hook(vol: &Volume, name: &str, body: &str) -> PathBuf {
    shell_script(&vol.mnt.join("..").join(format!("{name}.sh")), body)
}

#[test]
fn a_full_disk_read_only_volume_and_immutable_file_leave_old_or_new() {
    let Some(vol) = Volume::new(64) else { return };
    let (old, new) = reference(&vol);
    let mut tried = 0;
    // The disk fills at each stage of the run: before the copy, after it, before the swap.
    for point in [
        "sync:after-journal",
        "sync:copied",
        "sync:built",
        "sync:installing",
    ] {
        let bed = Bed::new(&vol);
        let keys = bed.protected();
        let fill = hook(
            &vol,
            "fill",
            &format!(
                "sync -f {0}; fallocate -l $(df --output=avail -B1 {0} | tail -1) {0}/filler; \
                 dd if=/dev/zero of={0}/filler2 bs=1k >/dev/null 2>&1; sync -f {0}; exit 0",
                vol.mnt.display()
            ),
        );
        let spec = format!("{point}={}", fill.display());
        let r = bed.run(&["sync"], &[("KEYFERRY_FAILPOINT_RUN", &spec)]);
        assert_ne!(
            r.code(),
            0,
            "{point}: a full disk went unnoticed: {} {}",
            r.stdout(),
            r.stderr()
        );
        assert!(r.stderr().contains("No space"), "{point}: {}", r.stderr());
        // Exit 2 only when nothing changed; 3 when the target is already new.
        if bed.tree() == old {
            r.assert_code(2);
        } else {
            assert_eq!(r.code(), 3, "{point}: {}", r.stderr());
        }
        bed.unfill();
        settle(&bed, &format!("full disk at {point}"), &old, &new, &keys);
        tried += 1;
    }
    // The volume goes read-only in the middle of the run.
    for point in ["sync:after-journal", "sync:copied", "sync:installing"] {
        let mut bed = Bed::new(&vol);
        bed.state = vol.mnt.join("../state");
        let keys = bed.protected();
        let ro = hook(
            &vol,
            "ro",
            // Linux will not remount a volume read-only while a file on it is open for
            // writing: right after the copy, keyferry's writeback thread may still hold the
            // last copied files for a moment. Tried again until it closes them.
            &format!(
                "for i in $(seq 100); do mount -o remount,ro {} 2>/dev/null && exit 0; \
                 sleep 0.05; done; echo 'the volume stayed busy' >&2",
                vol.mnt.display()
            ),
        );
        let spec = format!("{point}={}", ro.display());
        let r = bed.run(&["sync"], &[("KEYFERRY_FAILPOINT_RUN", &spec)]);
        let ro = std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .any(|l| l.contains(vol.mnt.to_str().unwrap()) && l.contains(" ro,"));
        assert!(
            ro,
            "{point}: the volume could not be made read-only: {}",
            r.stderr()
        );
        assert_ne!(r.code(), 0, "{point}: a read-only volume went unnoticed");
        assert!(r.stderr().contains("ead-only"), "{point}: {}", r.stderr());
        vol.remount("rw");
        settle(&bed, &format!("read-only at {point}"), &old, &new, &keys);
        tried += 1;
    }
    // A file of the target that the sync replaces is immutable. A swap is not stopped by it
    // (the old file stays in the kept tree); moving files in one by one is, at that file.
    for in_place in [false, true] {
        let bed = Bed::new(&vol);
        let keys = bed.protected();
        let f = bed.dst().join("bin/lib3.dll");
        let chattr = |flag: &str| {
            assert!(std::process::Command::new("chattr")
                .arg(flag)
                .arg(&f)
                .status()
                .unwrap()
                .success())
        };
        chattr("+i");
        let extra: &[&str] = if in_place {
            &["sync", "--in-place"]
        } else {
            &["sync"]
        };
        let r = bed.run(extra, &[]);
        if in_place {
            assert!(r.stderr().contains("lib3.dll"), "{}", r.stderr());
            let now = bed.tree();
            if now == old {
                r.assert_code(2);
            } else {
                // Stopped part-way: said so (3), and the rerun finishes it.
                assert_eq!(r.code(), 3, "{}", r.stderr());
            }
            assert_eq!(bed.protected(), keys);
            chattr("-i");
            if r.code() == 3 {
                // The rerun finishes what the journal says was under way.
                bed.run(&["sync"], &[]).assert_code(0);
            }
        } else {
            r.assert_code(0);
            assert!(differ(&bed.tree(), &new).is_empty());
            let kept = bed.dst().with_file_name("SecretServer.keyferry-prev");
            chattr("-i");
            std::process::Command::new("chattr")
                .arg("-i")
                .arg(kept.join("bin/lib3.dll"))
                .status()
                .unwrap();
        }
        settle(
            &bed,
            &format!("immutable file (in place: {in_place})"),
            &old,
            &new,
            &keys,
        );
        tried += 1;
    }
    eprintln!("fault cases tried and held: {tried}");
}

#[test]
fn a_sync_killed_at_random_moments_ends_old_or_new() {
    let Some(vol) = Volume::new(64) else { return };
    let (old, new) = reference(&vol);
    let kills: u64 = std::env::var("KF_FAULT_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    // How long an undisturbed sync takes here, to spread the kills over it.
    let bed = Bed::new(&vol);
    let t0 = std::time::Instant::now();
    bed.run(&["sync"], &[]).assert_code(0);
    let span = t0.elapsed().as_micros().max(1000) as u64;
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut killed = 0;
    for i in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = std::time::Duration::from_micros(seed % span);
        let bed = Bed::new(&vol);
        let keys = bed.protected();
        let a = bed.args(&["sync"]);
        let mut child = std::process::Command::new(bin())
            .args(&a)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        settle(
            &bed,
            &format!("kill {i} after {after:?}"),
            &old,
            &new,
            &keys,
        );
    }
    eprintln!(
        "random kills: {kills} runs, {killed} killed mid-run (over {span} µs), each old or new, \
         rerun, verify and rollback held"
    );
}
