#!/usr/bin/env python3
"""keyferry ha against bare PostgreSQL tools, on two real servers in network namespaces.

  sudo bench/ha.py [--scale N] [--runs N]

- `ha status` over both nodes vs. one `psql -c 'select 1'` per node, both run in parallel
  (whole-process wall time, median of --runs); target: at most 1.5x.
- `ha replica init` vs. bare `pg_basebackup -X stream --checkpoint=fast` of the same primary
  into a fresh folder (median of --init-runs, taking turns); target: within 1.2x. The database is pgbench's at
  --scale (about 15 MB per unit).

Needs root, PostgreSQL 15 (/usr/lib/postgresql/15/bin) and iproute2; builds keyferry in
release mode. Everything is made under /tmp/kf-bench-ha and removed afterwards.
"""

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time

BIN = "/usr/lib/postgresql/15/bin"
ADDR = ["10.232.0.1", "10.232.0.2"]
NS = ["kfbencha", "kfbenchb"]
NAMES = ["nps1", "nps2"]
ROOT = "/tmp/kf-bench-ha"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def as_pg(i, prog, *args, **kw):
    return sh("ip", "netns", "exec", NS[i], "runuser", "-u", "postgres", "--",
              f"{BIN}/{prog}", *args, cwd="/", **kw)


def data(i):
    return f"{ROOT}/{NAMES[i]}/data"


def teardown():
    for i in range(2):
        d = f"{ROOT}/{NAMES[i]}"
        if os.path.isdir(d):
            for e in os.listdir(d):
                if os.path.exists(f"{d}/{e}/postmaster.pid"):
                    subprocess.run(["ip", "netns", "exec", NS[i], "runuser", "-u", "postgres", "--",
                                    f"{BIN}/pg_ctl", "stop", "-D", f"{d}/{e}", "-m", "immediate"],
                                   cwd="/", capture_output=True)
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(ROOT, ignore_errors=True)


def chown(p):
    shutil.chown(p, "postgres", "postgres")


def setup(scale):
    teardown()
    os.makedirs(ROOT)
    os.chmod(ROOT, 0o755)
    chown(ROOT)
    for ns in NS:
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "kfbva", "type", "veth", "peer", "name", "kfbvb")
    for i, (ns, v) in enumerate(zip(NS, ["kfbva", "kfbvb"])):
        sh("ip", "link", "set", v, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{ADDR[i]}/24", "dev", v)
        sh("ip", "-n", ns, "link", "set", v, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    admin, rep = secrets.token_hex(12), secrets.token_hex(12)
    passfile = f"{ROOT}/pgpass"
    with open(passfile, "w") as f:
        f.write(f"*:5432:*:postgres:{admin}\n*:5432:*:repuser:{rep}\n")
    os.chmod(passfile, 0o600)
    chown(passfile)
    for i in range(2):
        d = f"{ROOT}/{NAMES[i]}"
        os.makedirs(f"{d}/sock")
        for p in (d, f"{d}/sock"):
            chown(p)
        pw = f"{d}/pw"
        with open(pw, "w") as f:
            f.write(admin + "\n")
        chown(pw)
        as_pg(i, "initdb", "-D", data(i), "-U", "postgres", "-A", "scram-sha-256", "--no-sync",
              f"--pwfile={pw}", stdout=subprocess.DEVNULL)
        os.remove(pw)
        with open(f"{data(i)}/postgresql.conf", "a") as f:
            f.write(f"\nlisten_addresses = '{ADDR[i]}'\nunix_socket_directories = '{d}/sock'\n"
                    "wal_log_hints = on\n")
        with open(f"{data(i)}/pg_hba.conf", "w") as f:
            f.write("local all all trust\nhost all postgres 10.232.0.0/24 scram-sha-256\n")
        as_pg(i, "pg_ctl", "start", "-D", data(i), "-l", f"{d}/server.log", "-w",
              stdout=subprocess.DEVNULL)
    psql0 = ["-h", f"{ROOT}/nps1/sock", "-U", "postgres", "-d", "postgres", "-qX"]
    as_pg(0, "psql", *psql0, "-f", "-",
          input=f"CREATE ROLE repuser REPLICATION LOGIN PASSWORD '{rep}';\n".encode())
    as_pg(0, "pgbench", "-i", "-q", "-s", str(scale), "-h", f"{ROOT}/nps1/sock", "-U", "postgres",
          "postgres", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    size = subprocess.run(["ip", "netns", "exec", NS[0], "runuser", "-u", "postgres", "--",
                           f"{BIN}/psql", *psql0, "-At", "-c",
                           "SELECT sum(pg_database_size(oid)) FROM pg_database"],
                          cwd="/", check=True, capture_output=True, text=True).stdout.strip()
    cluster = f"{ROOT}/cluster.toml"
    with open(cluster, "w") as f:
        f.write(f'name = "bench"\nprofile = "privilege-secure"\n[ha]\npassfile = "{passfile}"\n'
                f'bin = "{BIN}"\n')
        for i in range(2):
            d = f"{ROOT}/{NAMES[i]}"
            f.write(f'[[node]]\nname = "{NAMES[i]}"\nrole = "{["primary", "secondary"][i]}"\n'
                    f'address = "{ADDR[i]}"\nstate_dir = "{d}/state"\n'
                    f'paths = {{ keytools = "{d}/keytools", ha = "{d}/ha" }}\n'
                    f'ha = {{ data = "{data(i)}" }}\n')
    return cluster, passfile, int(size)


PHASES = []


def kf(exe, cluster, i, *args):
    r = sh("ip", "netns", "exec", NS[i], exe, "ha", *args, "-c", cluster, "--node", NAMES[i],
           stdout=subprocess.PIPE, text=True)
    if args[:2] == ("replica", "init"):
        PHASES.append(next(line.strip() for line in r.stdout.splitlines()
                           if line.startswith("  ") and " s," in line))
    return r


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=20)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--init-runs", type=int, default=5)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/ha.py needs root (network namespaces, runuser)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sh("cargo", "build", "--release", "--quiet", cwd=repo)
    exe = f"{repo}/target/release/keyferry"
    try:
        cluster, passfile, size = setup(a.scale)
        for i in range(2):
            kf(exe, cluster, i, "hba")
        kf(exe, cluster, 1, "replica", "init", "--remove-old")  # warm-up, and the pair for status

        # ha status vs. psql select 1 on both nodes in parallel.
        def psql_both():
            ps = [subprocess.Popen(["ip", "netns", "exec", NS[0], f"{BIN}/psql",
                                    f"host={ADDR[i]} user=postgres dbname=postgres passfile={passfile}",
                                    "-XAtqc", "select 1"], stdout=subprocess.DEVNULL)
                  for i in range(2)]
            for p in ps:
                assert p.wait() == 0

        status, psql = [], []
        for r in range(a.runs):
            order = [0, 1] if r % 2 == 0 else [1, 0]
            for o in order:
                if o == 0:
                    status.append(timed(lambda: kf(exe, cluster, 0, "status")))
                else:
                    psql.append(timed(psql_both))
        ms, mp = statistics.median(status), statistics.median(psql)

        # replica init vs. bare pg_basebackup of the same primary.
        conninfo = (f"host={ADDR[0]} port=5432 user=repuser passfile={passfile} "
                    "application_name=bench")
        inits, bares = [], []
        for _ in range(a.init_runs):
            inits.append(timed(lambda: kf(exe, cluster, 1, "replica", "init", "--remove-old")))
            target = f"{ROOT}/nps2/bare"

            def bare():
                as_pg(1, "pg_basebackup", "-d", conninfo, "-D", target, "-X", "stream",
                      "--checkpoint=fast", "--no-password")
            bares.append(timed(bare))
            shutil.rmtree(target)
        mi, mb = statistics.median(inits), statistics.median(bares)
        print(f"cores: {os.cpu_count()}, PostgreSQL 15, database {size / 1e6:.0f} MB "
              f"(pgbench scale {a.scale})")
        print(f"ha status (both nodes): {ms * 1000:.1f} ms vs psql select 1 x2 in parallel "
              f"{mp * 1000:.1f} ms: ratio {ms / mp:.2f} (target <= 1.5), median of {a.runs}")
        print(f"ha replica init: {mi:.2f} s vs bare pg_basebackup {mb:.2f} s: ratio "
              f"{mi / mb:.2f} (target <= 1.2), median of {a.init_runs}")
        print(f"  runs: ha replica init {[round(x, 2) for x in inits]}, "
              f"pg_basebackup {[round(x, 2) for x in bares]}")
        print(f"  phases of the last ha replica init: {PHASES[-1]}")
    finally:
        teardown()


if __name__ == "__main__":
    main()
