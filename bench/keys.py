#!/usr/bin/env python3
"""Benchmark: `keyferry keys export` / `keys import` against bare age scrypt at the same work
factor (examples/scrypt_baseline.rs), wall time and peak memory (max RSS), plus
`keyferry --version` start-up time. Targets: keyferry adds < 5% time and < 32 MiB over scrypt
alone; --version under 10 ms. Release builds only (work factor 18, no test override).

Usage: bench/keys.py [RUNS]   (default 5)
"""
import os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def run(args, **kw):
    """Runs a command; returns (wall seconds, max RSS in MiB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFERRY_")}
    t0 = time.perf_counter()
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {args}\n{err}")
    return wall, ru.ru_maxrss / 1024.0


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "keyferry",
                    "--example", "scrypt_baseline"], cwd=ROOT, check=True)
    kf = os.path.join(ROOT, "target/release/keyferry")
    base = os.path.join(ROOT, "target/release/examples/scrypt_baseline")
    with tempfile.TemporaryDirectory() as d:
        app1, app2 = os.path.join(d, "n1"), os.path.join(d, "n2")
        os.makedirs(app1); os.makedirs(app2)
        key = os.urandom(400)
        with open(os.path.join(app1, "encryption.config"), "wb") as f:
            f.write(key)
        pw = os.path.join(d, "pass")
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"correct horse battery staple orbit lemon")
        os.close(fd)
        node1 = ["--profile", "secret-server", "--root", app1, "--state-dir", os.path.join(d, "s1")]
        node2 = ["--profile", "secret-server", "--root", app2, "--role", "secondary",
                 "--state-dir", os.path.join(d, "s2")]
        bundle = os.path.join(d, "b.kfb")
        plain = os.path.join(app1, "encryption.config")
        base_out = os.path.join(d, "base.age")

        res = {k: [] for k in ["kf_exp", "kf_imp", "base_enc", "base_dec"]}
        for _ in range(RUNS):
            res["base_enc"].append(run([base, "encrypt", plain, base_out, pw]))
            res["base_dec"].append(run([base, "decrypt", base_out, pw]))
            res["kf_exp"].append(run([kf, "keys", "export", *node1, "-o", bundle, "--force",
                                      "--passphrase-file", pw]))
            target = os.path.join(app2, "encryption.config")
            if os.path.exists(target):
                os.remove(target)
            res["kf_imp"].append(run([kf, "keys", "import", bundle, *node2, "--passphrase-file", pw]))

        ver = []
        for _ in range(50):
            ver.append(run([kf, "--version"])[0])

    def med(xs, i):
        return statistics.median(x[i] for x in xs)

    print(f"runs per command: {RUNS} (medians), scrypt work factor 18")
    print(f"{'':18}{'wall s':>9}{'max RSS MiB':>13}")
    for name, k in [("age encrypt", "base_enc"), ("keyferry export", "kf_exp"),
                    ("age decrypt", "base_dec"), ("keyferry import", "kf_imp")]:
        print(f"{name:18}{med(res[k], 0):9.3f}{med(res[k], 1):13.1f}")
    ok = True
    for what, kf_k, b_k in [("export", "kf_exp", "base_enc"), ("import", "kf_imp", "base_dec")]:
        ratio = med(res[kf_k], 0) / med(res[b_k], 0)
        extra = med(res[kf_k], 1) - med(res[b_k], 1)
        good = ratio < 1.05 and extra < 32
        ok &= good
        print(f"{what}: time ratio {ratio:.3f} (target < 1.05), extra memory {extra:.1f} MiB "
              f"(target < 32) {'OK' if good else 'MISSED'}")
    v = statistics.median(ver) * 1000
    ok &= v < 10
    print(f"keyferry --version: median {v:.2f} ms over 50 runs (target < 10) {'OK' if v < 10 else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
