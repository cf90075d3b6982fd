#!/bin/sh
# `lifeos watch`: edit → visible, sync path against rebuild path, in one run.
#
#   benches/watch.sh [LIFEOS_BINARY] [EDITS]        (default: target/release/lifeos, 50 edits)
#
# A temp project with two static sites on busybox httpd (FROM lifeos-base:latest, which the
# example's `lifeos build base` makes): `synced` copies site-a/ into its container
# (`sync`), `rebuilt` has no sync, so an edit to site-b/ rebuilds its image and recreates
# it. Each edit writes a nonce into index.html; the time is from the write until an HTTP
# response carries it (polled every 5 ms). The rebuild path also splits out lifeos's own
# share from its --json lines: edit → build request (the image's task_started; includes the
# 100 ms quiet window) and build done → container create (the service's task_started after
# the image's task_finished). Prints p50/p95 and the load average before and after.
set -eu
bin=${1:-target/release/lifeos}
edits=${2:-50}
case $bin in /*) ;; *) bin=$(pwd)/$bin ;; esac
[ -x "$bin" ] || { echo "no lifeos binary at $bin (scripts/build-release.sh makes one)" >&2; exit 2; }
docker image inspect lifeos-base:latest >/dev/null 2>&1 ||
    { echo "needs lifeos-base:latest: run \`lifeos build base\` in the repository first" >&2; exit 2; }

exec python3 - "$bin" "$edits" <<'EOF'
import json, os, random, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

binary, edits = sys.argv[1], int(sys.argv[2])
token = "%08x" % random.getrandbits(32)
d = tempfile.mkdtemp(prefix="lifeos-watch-bench-")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

pa, pb = free_port(), free_port()
for site in ("site-a", "site-b"):
    os.makedirs(f"{d}/{site}")
    with open(f"{d}/{site}/index.html", "w") as f:
        f.write("start\n")
    for i in range(20):
        with open(f"{d}/{site}/page{i}.html", "w") as f:
            f.write(f"page {i}\n" * 50)
with open(f"{d}/Dockerfile", "w") as f:
    f.write("FROM lifeos-base:latest AS a\nCOPY site-a/ /srv/www/\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv/www\"]\n\n"
            "FROM lifeos-base:latest AS b\nCOPY site-b/ /srv/www/\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv/www\"]\n")
with open(f"{d}/lifeos.toml", "w") as f:
    f.write(f'''[project]
name = "wbench{token}"

[tasks.img-a]
kind = "image"
context = "."
target = "a"
tag = "lifeos-watch-bench-a:{token}"
labels = {{ "lifeos.test" = "bench-watch-{token}" }}

[tasks.img-b]
kind = "image"
context = "."
target = "b"
tag = "lifeos-watch-bench-b:{token}"
labels = {{ "lifeos.test" = "bench-watch-{token}" }}

[tasks.synced]
kind = "service"
image = "img-a"
ports = ["127.0.0.1:{pa}:8080"]
sync = [{{ from = "site-a", to = "/srv/www" }}]

[tasks.rebuilt]
kind = "service"
image = "img-b"
ports = ["127.0.0.1:{pb}:8080"]
''')

def load():
    return open("/proc/loadavg").read().split()[:3]

lines, lock = [], threading.Lock()
proc = subprocess.Popen([binary, "--json", "watch"], cwd=d, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, env=dict(os.environ, CI="1", NO_COLOR="1"))
def reader():
    for raw in proc.stdout:
        t = time.monotonic()
        try:
            v = json.loads(raw)
        except ValueError:
            continue
        with lock:
            lines.append((t, v))
threading.Thread(target=reader, daemon=True).start()

def wait_event(pred, since, timeout=300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with lock:
            for t, v in lines[since:]:
                if pred(v):
                    return t, v
        time.sleep(0.005)
    raise SystemExit("timed out waiting for lifeos watch")

def body(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        out = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
        s.close()
        return out.decode(errors="replace")
    except OSError:
        return ""

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

try:
    before = load()
    wait_event(lambda v: v.get("event") == "watch_ready", 0, 600)
    results = {}
    overhead_in, overhead_out = [], []
    for name, site, port in (("sync", "site-a", pa), ("rebuild", "site-b", pb)):
        lat = []
        for i in range(edits):
            with lock:
                mark = len(lines)
            nonce = f"{name}-{i}-{random.getrandbits(32):08x}"
            t0 = time.monotonic()
            with open(f"{d}/{site}/index.html", "w") as f:
                f.write(nonce + "\n")
            while nonce not in body(port):
                if time.monotonic() - t0 > 300:
                    raise SystemExit(f"{name}: edit {i} never became visible")
                time.sleep(0.005)
            lat.append((time.monotonic() - t0) * 1000)
            # The batch is over before the next edit (one edit, one batch).
            wait_event(lambda v: v.get("event") == "watch_batch" and v.get("actions", 0) > 0, mark)
            if name == "rebuild":
                ts, _ = wait_event(lambda v: v.get("event") == "task_started" and v.get("task") == "img-b", mark)
                tf, _ = wait_event(lambda v: v.get("event") == "task_finished" and v.get("task") == "img-b", mark)
                tc, _ = wait_event(lambda v: v.get("event") == "task_started" and v.get("task") == "rebuilt", mark)
                overhead_in.append((ts - t0) * 1000)
                overhead_out.append((tc - tf) * 1000)
        results[name] = lat
    after = load()
    s50, s95 = pct(results["sync"], 50), pct(results["sync"], 95)
    r50, r95 = pct(results["rebuild"], 50), pct(results["rebuild"], 95)
    print(f"edits per path: {edits}; binary: {binary}")
    print(f"load average before: {' '.join(before)}; after: {' '.join(after)}; cores: {os.cpu_count()}")
    print(f"sync path    edit -> response changed: p50 {s50:7.0f} ms  p95 {s95:7.0f} ms")
    print(f"rebuild path edit -> response changed: p50 {r50:7.0f} ms  p95 {r95:7.0f} ms")
    print(f"ratio (rebuild / sync, p50): {r50 / s50:.1f}x")
    ratio_ok, sync_ok = r50 / s50 >= 10, s50 <= 400
    print(f"goal: ratio >= 10x {'PASS' if ratio_ok else 'FAIL'}; sync response changed p50 <= 400 ms {'PASS' if sync_ok else 'FAIL'}")
    failed = not (ratio_ok and sync_ok)
    print(f"rebuild path, lifeos's own share: edit -> build request p50 {pct(overhead_in, 50):.0f} ms p95 {pct(overhead_in, 95):.0f} ms (100 ms of it the quiet window); "
          f"build done -> container create p50 {pct(overhead_out, 50):.0f} ms p95 {pct(overhead_out, 95):.0f} ms")
finally:
    failed = locals().get("failed", True)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    subprocess.run([binary, "down"], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Every image the run built (each rebuild leaves the one before it untagged).
    ids = subprocess.run(["docker", "images", "-a", "-q", "--filter", f"label=lifeos.test=bench-watch-{token}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rmi", "-f"] + sorted(set(ids)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(d, ignore_errors=True)
sys.exit(1 if failed else 0)
EOF
