#!/usr/bin/env python3
"""Benchmark: `keyferry sync` and `sync verify` against rsync (same excludes) and cp -a on a
deterministic application-like tree (about 5,000 files, 330 MB, from
../shared/bench/gen_tree.py), alternating runs, medians. Installs rsync if missing. Release
build. Each timed run starts from the same state, prepared untimed, after `sync` (so one
run's write-back does not land in the next one's time).

Targets (issue 9): fresh copy <= 1.0x rsync -a and <= 1.3x cp -a; no-op re-sync <= 1.0x
rsync -a --delete; upgrade delta (5% rewritten, 2% added, 2% deleted, 2 large DLLs
replaced) <= 1.0x rsync -a --delete; full verify <= 0.5x rsync -a --delete -c -n; peak
memory < 64 MiB.

keyferry does more than rsync in every scenario but the no-op: it verifies the whole new
tree by content before swapping it in, and flushes it to disk (syncfs) first.

Where: run as root with mkfs.ext4 at hand, on a fresh journaled ext4 volume of its own (an
8 GiB sparse image, loop-mounted, removed afterwards), so that what earlier runs left on
the machine's disks does not weigh on one tool more than another (a journal-less ext4 root
makes file creation right after mass deletion several times slower; a direct-I/O loop device
so the host does not cache the image twice); otherwise in BENCH_DIR
or the temporary folder. Peak memory is measured by GNU time around each keyferry run (a
child's rusage would count the Python interpreter it was forked from).

Usage: bench/sync.py [RUNS]   (default 5)
"""
import contextlib, os, random, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "..", "shared", "bench", "gen_tree.py")
RUNS = max(5, int(sys.argv[1]) if len(sys.argv) > 1 else 5)
# What keyferry leaves alone, said to rsync: protected files, volatile folders and names.
EXCLUDES = ["--exclude=database.config", "--exclude=encryption.config", "--exclude=*.log",
            "--exclude=*.tmp", "--exclude=.keyferry-*"] + [
    f"--exclude=/{d}" for d in ["App_Data", "log", "logs", "temp", "tmp"]]


def run(args, ok=(0,)):
    """Wall time and peak memory (MiB, GNU time's maximum resident set) of one command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFERRY_")}
    with tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *args], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if p.returncode not in ok:
            sys.exit(f"failed ({p.returncode}): {' '.join(args)}\n{p.stderr.decode()}")
        kib = int(rss.read().split()[-1])
    return wall, kib / 1024.0


@contextlib.contextmanager
def volume():
    """A folder on a fresh ext4 volume (root), else in BENCH_DIR or the temporary folder."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None or os.environ.get("BENCH_DIR"):
        with volume() as (d, how):
            yield d, "as found"
        return
    with tempfile.TemporaryDirectory() as img_dir:
        img, mnt = os.path.join(img_dir, "ext4.img"), os.path.join(img_dir, "mnt")
        os.makedirs(mnt)
        with open(img, "wb") as f:
            f.truncate(8 << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
        # Direct I/O: the image's blocks are not cached a second time by the host file system
        # (that copy would cost every writer CPU that a real disk does not).
        dev = subprocess.run(["losetup", "--direct-io=on", "-f", "--show", img], check=True,
                             capture_output=True, text=True).stdout.strip()
        try:
            subprocess.run(["mount", dev, mnt], check=True)
            try:
                yield mnt, "fresh, journaled, 8 GiB image on a direct-I/O loop device"
            finally:
                subprocess.run(["umount", mnt], check=True)
        finally:
            subprocess.run(["losetup", "-d", dev], check=True)


def rm(*paths):
    for p in paths:
        if os.path.lexists(p):
            shutil.rmtree(p)


def settle():
    os.sync()


def mutate(tree, seed=7):
    """An upgrade: 5% of files rewritten, 2% added, 2% deleted, 2 large DLLs replaced."""
    rng = random.Random(seed)
    files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(tree) for f in fs
                   if not f.endswith(".config"))
    n = len(files)
    rng.shuffle(files)
    rewrite, delete = files[: n * 5 // 100], files[n * 5 // 100: n * 7 // 100]
    for f in rewrite:
        size = os.path.getsize(f)
        with open(f, "wb") as h:
            h.write(rng.randbytes(max(size, 1)))
    for f in delete:
        os.remove(f)
    for i in range(n * 2 // 100):
        p = os.path.join(tree, "Scripts", "v12", f"new{i:04}.js")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as h:
            h.write(rng.randbytes(rng.randint(200, 40_000)))
    for i in (0, 1):
        p = os.path.join(tree, "bin", f"Product.Core{i}.dll")
        with open(p, "wb") as h:
            h.write(rng.randbytes(25 << 20))
    return len(rewrite), len(delete), n * 2 // 100


def median(xs):
    return statistics.median(xs)


def main():
    for tool, pkg in (("rsync", "rsync"), ("/usr/bin/time", "time")):
        if shutil.which(tool) is None:
            subprocess.run(["apt-get", "install", "-y", "-qq", pkg], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "keyferry"], cwd=ROOT, check=True)
    kf = os.path.join(ROOT, "target/release/keyferry")
    rsync_v = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    with volume() as (d, how):
        src, src2 = os.path.join(d, "src"), os.path.join(d, "src2")
        subprocess.run([sys.executable, GEN, src], check=True)
        subprocess.run(["cp", "-a", src, src2], check=True)
        rewritten, deleted, added = mutate(src2)
        files = sum(len(fs) for _, _, fs in os.walk(src))
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(src) for f in fs)
        T, R, C, st = (os.path.join(d, x) for x in ("www/T", "www/R", "www/C", "state"))
        os.makedirs(os.path.join(d, "www"))
        kargs = lambda s, extra=(): [kf, "sync", *extra, "--profile", "secret-server", "--from", s,
                                     "--root", T, "--state-dir", st]
        times = {k: [] for k in ["kf_fresh", "rsync_fresh", "cp_fresh", "kf_noop", "rsync_noop",
                                 "kf_delta", "rsync_delta", "kf_verify", "rsync_verify"]}
        peak = 0.0
        for i in range(RUNS):
            # Fresh copy into an empty target; the three take turns at going first.
            rm(T, T + ".keyferry-prev", R, C); os.makedirs(T); settle()
            fresh = [("kf_fresh", kargs(src, ["--new-target"])),
                     ("rsync_fresh", ["rsync", "-a", *EXCLUDES, src + "/", R + "/"]),
                     ("cp_fresh", ["cp", "-a", src, C])]
            for k, args in fresh[i % 3:] + fresh[:i % 3]:
                w, m = run(args); times[k].append(w); settle()
                if k == "kf_fresh":
                    peak = max(peak, m)
            # No-op re-sync.
            w, m = run(kargs(src)); times["kf_noop"].append(w); peak = max(peak, m)
            w, _ = run(["rsync", "-a", "--delete", *EXCLUDES, src + "/", R + "/"]); times["rsync_noop"].append(w)
            # Upgrade delta: from the synced state to src2.
            settle()
            w, m = run(kargs(src2)); times["kf_delta"].append(w); peak = max(peak, m)
            settle()
            w, _ = run(["rsync", "-a", "--delete", *EXCLUDES, src2 + "/", R + "/"]); times["rsync_delta"].append(w)
            settle()
            # Full verify of the unchanged (now synced) tree.
            w, m = run([kf, "sync", "verify", "--profile", "secret-server", "--from", src2, "--root", T]); times["kf_verify"].append(w); peak = max(peak, m)
            w, _ = run(["rsync", "-a", "--delete", "-c", "-n", *EXCLUDES, src2 + "/", R + "/"]); times["rsync_verify"].append(w)
            # Back to the source state for the next round's delta (untimed).
            run(kargs(src)); rm(T + ".keyferry-prev")
            run(["rsync", "-a", "--delete", *EXCLUDES, src + "/", R + "/"])
        med = {k: median(v) for k, v in times.items()}
        fs = subprocess.run(["df", "-T", d], capture_output=True, text=True).stdout.split("\n")[1].split()[1]
        print(f"tree: {files} files, {size / 1e6:.0f} MB; delta: {rewritten} rewritten, {added} added, "
              f"{deleted} deleted, 2 large DLLs replaced")
        print(f"file system: {fs} ({how}); cores: {os.cpu_count()} (keyferry hashes and copies on all of them); "
              f"{rsync_v}; medians of {RUNS} alternating runs")
        rows = [
            ("fresh copy", "kf_fresh", "rsync_fresh", "rsync -a", 1.0),
            ("fresh copy", "kf_fresh", "cp_fresh", "cp -a", 1.3),
            ("no-op re-sync", "kf_noop", "rsync_noop", "rsync -a --delete", 1.0),
            ("upgrade delta", "kf_delta", "rsync_delta", "rsync -a --delete", 1.0),
            ("full verify", "kf_verify", "rsync_verify", "rsync -a --delete -c -n", 0.5),
        ]
        ok = True
        for name, k, b, bname, target in rows:
            ratio = med[k] / med[b]
            good = ratio <= target
            ok &= good
            print(f"{name:14} keyferry {med[k]:.3f}s  {bname:24} {med[b]:.3f}s  ratio {ratio:.2f} "
                  f"(target <= {target}) {'ok' if good else 'MISSED'}")
        print(f"peak memory (max RSS of any keyferry run): {peak:.1f} MiB (target < 64) "
              f"{'ok' if peak < 64 else 'MISSED'}")
        return 0 if ok and peak < 64 else 1


if __name__ == "__main__":
    sys.exit(main())
