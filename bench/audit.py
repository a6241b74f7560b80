#!/usr/bin/env python3
"""Benchmark `keyferry audit`:
  1. 200 nodes from saved reports (target: under 1 s);
  2. 32 nodes over ssh with --jobs 8 against a real sshd on 127.0.0.1 (target: within 1.5x of
     (32 / 8) x one ssh round trip). Needs root and openssh-server (scripts/setup installs it).
Release build. Node addresses in the generated cluster files are never contacted: audit reaches
nodes only through their `access` (saved files, or ssh to 127.0.0.1).

Usage: bench/audit.py [RUNS]   (default 5)
"""
import json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
KF = os.path.join(ROOT, "target/release/keyferry")


def timed(args, ok_codes=(0, 1)):
    t0 = time.perf_counter()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode not in ok_codes:
        sys.exit(f"failed ({p.returncode}): {args}\n{p.stderr.decode()}")
    return dt, p.stdout


def cluster_text(n, access, d, remote_bin=None):
    out = ['name = "bench"', 'profile = "secret-server"']
    for i in range(n):
        app = os.path.join(d, f"n{i}", "app")
        role = "primary" if i == 0 else "secondary"
        out += ["", "[[node]]", f'name = "n{i}"', f'role = "{role}"',
                f'address = "10.200.{i // 250}.{i % 250 + 1}"', f"paths = {{ app = {json.dumps(app)} }}",
                f'access = "{access(i)}"']
        if remote_bin:
            out.append(f"remote_keyferry = {json.dumps(remote_bin)}")
    return "\n".join(out) + "\n"


def make_nodes(d, n):
    for i in range(n):
        app = os.path.join(d, f"n{i}", "app")
        os.makedirs(os.path.join(app, "bin"), exist_ok=True)
        with open(os.path.join(app, "encryption.config"), "wb") as f:
            f.write(b"K" * 300)
        with open(os.path.join(app, "bin", "SecretServer.dll"), "wb") as f:
            f.write(b"\0" * 4096)


def bench_reports(d):
    n = 200
    make_nodes(d, 2)
    base = os.path.join(d, "base.toml")
    with open(base, "w") as f:
        f.write(cluster_text(2, lambda i: "paths", d))
    templates = {}
    for i, role in [(0, "primary"), (1, "secondary")]:
        _, out = timed([KF, "fingerprint", "-c", base, "--node", f"n{i}", "--json"], (0,))
        templates[role] = json.loads(out)
    for i in range(n):
        r = dict(templates["primary" if i == 0 else "secondary"], node=f"n{i}", cluster="bench")
        with open(os.path.join(d, f"r{i}.json"), "w") as f:
            json.dump(r, f)
    cl = os.path.join(d, "reports.toml")
    with open(cl, "w") as f:
        f.write(cluster_text(n, lambda i: f"report:r{i}.json", d))
    times = [timed([KF, "audit", "-c", cl, "--json"])[0] for _ in range(RUNS)]
    _, out = timed([KF, "audit", "-c", cl, "--json"])
    assert json.loads(out)["ok"], "all 200 saved reports should match"
    return statistics.median(times)


def bench_ssh(d):
    if os.geteuid() != 0 or not os.path.exists("/usr/sbin/sshd"):
        print("ssh part SKIPPED: needs root and /usr/sbin/sshd")
        return None
    n, jobs = 32, 8
    make_nodes(d, n)
    for k in ["host_key", "user_key"]:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, k)], check=True)
    os.replace(os.path.join(d, "user_key.pub"), os.path.join(d, "authorized_keys"))
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    os.makedirs("/run/sshd", exist_ok=True)
    pidfile = os.path.join(d, "sshd.pid")
    subprocess.run(["/usr/sbin/sshd", "-f", "/dev/null", "-p", str(port), "-o", "ListenAddress=127.0.0.1",
                    "-o", "StrictModes=no", "-h", os.path.join(d, "host_key"),
                    "-o", f"AuthorizedKeysFile={os.path.join(d, 'authorized_keys')}",
                    "-o", f"PidFile={pidfile}", "-o", "MaxStartups=64"], check=True)
    try:
        for _ in range(100):
            if os.path.exists(pidfile):
                break
            time.sleep(0.02)
        cfg = os.path.join(d, "ssh_config")
        with open(cfg, "w") as f:
            f.write(f"Host *\n  IdentityFile {d}/user_key\n  UserKnownHostsFile /dev/null\n"
                    "  StrictHostKeyChecking no\n  LogLevel ERROR\n")
        cl = os.path.join(d, "ssh.toml")
        with open(cl, "w") as f:
            f.write(cluster_text(n, lambda i: f"ssh://root@127.0.0.1:{port}", d, KF))
        one = [timed(["ssh", "-F", cfg, "-o", "BatchMode=yes", "-p", str(port), "root@127.0.0.1",
                      KF, "fingerprint", "--json", "--batch", "--cluster", cl, "--node", "n1"], (0,))[0]
               for _ in range(RUNS)]
        rt = statistics.median(one)
        # The same ssh work without keyferry: n plain round trips, `jobs` at a time.
        import concurrent.futures as cf
        plain = ["ssh", "-F", cfg, "-o", "BatchMode=yes", "-p", str(port), "root@127.0.0.1", "true"]
        base_times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(jobs) as ex:
                list(ex.map(lambda _: subprocess.run(plain, check=True), range(n)))
            base_times.append(time.perf_counter() - t0)
        base = statistics.median(base_times)
        times = []
        for _ in range(RUNS):
            dt, out = timed([KF, "audit", "-c", cl, "--json", "--jobs", str(jobs), "--ssh-config", cfg])
            assert json.loads(out)["ok"], json.loads(out)
            times.append(dt)
        return rt, statistics.median(times), n, jobs, base
    finally:
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), 15)


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "keyferry"], cwd=ROOT, check=True)
    ok = True
    with tempfile.TemporaryDirectory() as d:
        t = bench_reports(d)
        good = t < 1.0
        ok &= good
        print(f"audit of 200 saved reports: median {t * 1000:.0f} ms over {RUNS} runs (target < 1000 ms) "
              f"{'OK' if good else 'MISSED'}")
    with tempfile.TemporaryDirectory() as d:
        r = bench_ssh(d)
        if r:
            rt, t, n, jobs, base = r
            bound = 1.5 * (n / jobs) * rt
            good = t <= bound
            ok &= good
            print(f"one ssh round trip (keyferry fingerprint): median {rt * 1000:.0f} ms")
            print(f"audit of {n} nodes over ssh, --jobs {jobs}: median {t * 1000:.0f} ms; bound 1.5 x {n}/{jobs} x "
                  f"round trip = {bound * 1000:.0f} ms; ratio {t / ((n / jobs) * rt):.2f} {'OK' if good else 'MISSED'}")
            print(f"the same {n} ssh round trips without keyferry ({jobs} at a time, `ssh host true`): median "
                  f"{base * 1000:.0f} ms; keyferry audit / plain ssh = {t / base:.2f} "
                  f"(on {os.cpu_count()} cores ssh round trips are CPU-bound, so {jobs}-way parallelism "
                  f"cannot reach {jobs}x)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
