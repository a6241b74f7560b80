#!/usr/bin/env python3
"""Benchmark: `keyferry sync` and `sync verify` against cp -a and rsync (same excludes), one
honest comparison per mode, on a deterministic application-like tree (about 5,000 files,
330 MB, from ../shared/bench/gen_tree.py), alternating runs, medians. Installs rsync if
missing. Release build. Each timed run starts from the same state, prepared untimed, after
`sync` (so one run's write-back does not land in the next one's time).

Targets (issue 20):
  fresh copy into an empty target                      <= 1.0x cp -a
  upgrade delta, default mode (quick check, then every
  file written verified by content)                    <= 1.0x rsync -a --delete
  upgrade delta, --checksum (every file by content)    <= 0.8x rsync -a --delete -c
  the same delta to three targets, --checksum          <= 0.5x three rsync -a --delete -c runs
  sync verify of an unchanged tree                     <= 1.0x rsync -a --delete -c -n
  peak memory                                          < 64 MiB
The no-op re-sync against rsync -a --delete is shown as well.

keyferry does more than the others in every scenario but the no-op: it reads back every
file it wrote and compares it with the source before swapping the new tree in, and flushes
it to disk (syncfs) first; cp and rsync leave their writes in the page cache. For the fresh
copy, `cp -a` followed by `sync -f` (the same copy made durable) is shown as well, for
reference; the target stays the one against `cp -a`.

Where: run as root with mkfs.ext4 at hand, on a fresh journaled ext4 volume of its own (an
8 GiB sparse image, loop-mounted, removed afterwards; a direct-I/O loop device so the host
does not cache the image twice), and also in the machine's ordinary temporary folder (its
own file system as found); BENCH_DIR=PATH runs only there. Peak memory is measured by GNU
time around each keyferry run (a child's rusage would count the Python interpreter).

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
def fresh_ext4():
    """A folder on a fresh ext4 volume (needs root and mkfs.ext4)."""
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


@contextlib.contextmanager
def as_found(base=None):
    """A folder in BENCH_DIR or the temporary folder, on whatever file system it is."""
    with tempfile.TemporaryDirectory(dir=base) as d:
        yield d, "the machine's own, as found"


def volumes():
    """Where to measure: BENCH_DIR alone if set; else the fresh ext4 volume (as root) and
    the temporary folder."""
    if os.environ.get("BENCH_DIR"):
        return [lambda: as_found(os.environ["BENCH_DIR"])]
    vols = [as_found]
    if os.geteuid() == 0 and shutil.which("mkfs.ext4") and shutil.which("losetup"):
        vols.insert(0, fresh_ext4)
    return vols


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


def measure(kf, rsync_v, vol):
    with vol() as (d, how):
        src, src2 = os.path.join(d, "src"), os.path.join(d, "src2")
        subprocess.run([sys.executable, GEN, src], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cp", "-a", src, src2], check=True)
        rewritten, deleted, added = mutate(src2)
        files = sum(len(fs) for _, _, fs in os.walk(src))
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(src) for f in fs)
        www = os.path.join(d, "www")
        T, C, st = os.path.join(www, "T"), os.path.join(www, "C"), os.path.join(d, "state")
        T3 = [os.path.join(www, f"T{i}") for i in (1, 2, 3)]
        R3 = [os.path.join(www, f"R{i}") for i in (1, 2, 3)]
        R = R3[0]
        os.makedirs(www)
        kargs = lambda s, root, extra=(): [kf, "sync", *extra, "--profile", "secret-server",
                                           "--from", s, "--root", root, "--state-dir", st,
                                           "--keep", "1"]
        rs = lambda s, dst, extra=(): ["rsync", "-a", "--delete", *extra, *EXCLUDES, s + "/", dst + "/"]
        keys = ["kf_fresh", "cp_fresh", "cp_sync_fresh", "kf_noop", "rsync_noop", "kf_delta", "rsync_delta",
                "kf_delta_c", "rsync_delta_c", "kf_three_c", "rsync_three_c", "kf_verify",
                "rsync_verify"]
        times = {k: [] for k in keys}
        peak = 0.0

        def kf_run(key, args):
            nonlocal peak
            w, m = run(args)
            times[key].append(w)
            peak = max(peak, m)
            settle()

        def other(key, *cmds):
            t = 0.0
            for c in cmds:
                t += run(c)[0]
            times[key].append(t)
            settle()

        def at_old(*roots):
            """Every root back to the source's state (untimed)."""
            for r in roots:
                if r.startswith(os.path.join(www, "T")):
                    run(kargs(src, r))
                    rm(r + ".keyferry-prev")
                else:
                    run(rs(src, r))
            settle()

        # A config file per node, as Secret Server has: protected, never copied.
        def new_target(root):
            rm(root, root + ".keyferry-prev")
            os.makedirs(root)

        for i in range(RUNS):
            # Fresh copy into an empty target; the two take turns at going first.
            new_target(T); rm(C); settle()
            fresh = [("kf_fresh", lambda: kf_run("kf_fresh", kargs(src, T, ["--new-target"]))),
                     ("cp_fresh", lambda: other("cp_fresh", ["cp", "-a", src, C]))]
            for _, f in fresh[i % 2:] + fresh[:i % 2]:
                f()
            # The same copy made durable, as keyferry's is before it swaps (for reference).
            rm(C); settle()
            other("cp_sync_fresh", ["sh", "-c", 'cp -a "$1" "$2" && sync -f "$2"', "sh", src, C])
            for r in T3:
                new_target(r)
                run(kargs(src, r, ["--new-target"]))
            for r in R3:
                rm(r)
                run(rs(src, r))
            settle()
            # No-op re-sync.
            kf_run("kf_noop", kargs(src, T))
            other("rsync_noop", rs(src, R))
            # Upgrade delta, default mode, then --checksum; each from the old state.
            pairs = [(lambda: kf_run("kf_delta", kargs(src2, T)),
                      lambda: other("rsync_delta", rs(src2, R))),
                     (lambda: kf_run("kf_delta_c", kargs(src2, T, ["--checksum"])),
                      lambda: other("rsync_delta_c", rs(src2, R, ["-c"])))]
            for a, b in pairs:
                for f in ([a, b] if i % 2 == 0 else [b, a]):
                    f()
                at_old(T, R)
            # Full verify of the unchanged tree (T is at src).
            kf_run("kf_verify", [kf, "sync", "verify", "--profile", "secret-server", "--from", src, "--root", T])
            other("rsync_verify", rs(src, R, ["-c", "-n"]))
            # Three targets, --checksum: one keyferry run (a cluster file: web1 the source,
            # three other web nodes the targets) against three rsync runs one after another.
            cluster = os.path.join(d, "cluster.toml")
            with open(cluster, "w") as f:
                f.write('name = "bench"\nprofile = "secret-server"\n')
                for n, (role, app) in enumerate([("primary", src2)] + [("secondary", r) for r in T3]):
                    f.write(f'[[node]]\nname = "web{n + 1}"\nrole = "{role}"\n'
                            f'address = "10.0.0.{n + 11}"\npaths = {{ app = "{app}" }}\n')
            three = [kf, "sync", "--checksum", "-c", cluster, "--node", "web1", "--state-dir", st,
                     "--keep", "1"]
            if i % 2 == 0:
                kf_three(kf, three, T3, src2, kf_run)
                other("rsync_three_c", *[rs(src2, r, ["-c"]) for r in R3])
            else:
                other("rsync_three_c", *[rs(src2, r, ["-c"]) for r in R3])
                kf_three(kf, three, T3, src2, kf_run)
        med = {k: median(v) for k, v in times.items()}
        fs = subprocess.run(["df", "-T", d], capture_output=True, text=True).stdout.split("\n")[1].split()[1]
        print(f"tree: {files} files, {size / 1e6:.0f} MB; delta: {rewritten} rewritten, {added} added, "
              f"{deleted} deleted, 2 large DLLs replaced")
        print(f"file system: {fs} ({how}); cores: {os.cpu_count()} (keyferry hashes and copies on all of them, "
              f"rsync runs two processes); {rsync_v}; medians of {RUNS} alternating runs")
        rows = [
            ("fresh copy", "kf_fresh", "cp_fresh", "cp -a", 1.0),
            ("no-op re-sync", "kf_noop", "rsync_noop", "rsync -a --delete", 1.0),
            ("delta, default", "kf_delta", "rsync_delta", "rsync -a --delete", 1.0),
            ("delta, checksum", "kf_delta_c", "rsync_delta_c", "rsync -a --delete -c", 0.8),
            ("3 targets, -c", "kf_three_c", "rsync_three_c", "3x rsync -a --delete -c", 0.5),
            ("sync verify", "kf_verify", "rsync_verify", "rsync -a --delete -c -n", 1.0),
        ]
        ok = True
        ref = med["kf_fresh"] / med["cp_sync_fresh"]
        print(f"{'(reference)':16} fresh copy vs cp -a then sync -f (durable, as keyferry's is): "
              f"{med['kf_fresh']:.3f}s / {med['cp_sync_fresh']:.3f}s = {ref:.2f}")
        for name, k, b, bname, target in rows:
            ratio = med[k] / med[b]
            good = ratio <= target
            ok &= good
            print(f"{name:16} keyferry {med[k]:.3f}s  {bname:24} {med[b]:.3f}s  ratio {ratio:.2f} "
                  f"(target <= {target}) {'ok' if good else 'MISSED'}")
        print(f"peak memory (max RSS of any keyferry run): {peak:.1f} MiB (target < 64) "
              f"{'ok' if peak < 64 else 'MISSED'}")
        print()
        return ok and peak < 64


def kf_three(kf, args, roots, src2, kf_run):
    """One keyferry run to three targets (timed), then the three back to the old state."""
    kf_run("kf_three_c", args)
    for r in roots:
        rm(r + ".keyferry-prev")


def main():
    for tool, pkg in (("rsync", "rsync"), ("/usr/bin/time", "time")):
        if shutil.which(tool) is None:
            subprocess.run(["apt-get", "install", "-y", "-qq", pkg], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "keyferry"], cwd=ROOT, check=True)
    kf = os.path.join(ROOT, "target/release/keyferry")
    rsync_v = subprocess.run(["rsync", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    ok = True
    for vol in volumes():
        ok &= measure(kf, rsync_v, vol)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
