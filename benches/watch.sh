#!/bin/sh
# `lifeos watch`: edit → visible, sync path against rebuild path, in one run.
#
#   benches/watch.sh [LIFEOS_BINARY] [EDITS]        (default: target/release/lifeos, 50 edits)
#
# A temp project with two static sites on busybox httpd (FROM lifeos-base:latest, which the
# example's `lifeos build base` makes): `synced` copies site-a/ into its container
# (`sync`), `rebuilt` has no sync, so an edit to site-b/ rebuilds its image and recreates
# it. Each edit writes a nonce into index.html; the time runs from the write until an HTTP
# response carries it. Both paths are polled the same way, every 1 ms: an HTTP GET, and on
# the sync path first a read of the file in the container's own root file system on this
# host (its overlay `MergedDir`; no Engine API call, which would take the container's lock
# the copy needs), for "file visible". Every measured time includes the quiet window.
#
# Also printed: where the sync path's time goes after the window (lifeos's `phases_ms`: find
# the container, compare the files, the copy: `via` its resident receiver, `stream`, or the
# archive endpoint), and lifeos's own share of the rebuild path from its --json lines:
# edit → build request (the image's task_started;
# includes the 100 ms quiet window) and build done → container create (the service's
# task_started after the image's task_finished). Prints p50/p95 and the load average before
# and after. Needs root (the MergedDir read) and a local engine with the overlay2 driver;
# without them "file visible" is left out.
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

def merged_file(task, rel):
    """The file as the container sees it, read on the host through its overlay root."""
    ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=lifeos.project=wbench{token}",
                          "--filter", f"label=lifeos.task={task}"], capture_output=True, text=True).stdout.split()
    if len(ids) != 1:
        return None
    m = subprocess.run(["docker", "inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", ids[0]],
                       capture_output=True, text=True).stdout.strip()
    p = os.path.join(m, rel)
    try:
        open(p).read()
    except OSError:
        return None
    return p

def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return ""

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

try:
    before = load()
    wait_event(lambda v: v.get("event") == "watch_ready", 0, 600)
    results, visible = {}, []
    overhead_in, overhead_out = [], []
    phases, vias = {}, {}
    merged = merged_file("synced", "srv/www/index.html")
    for name, site, port in (("sync", "site-a", pa), ("rebuild", "site-b", pb)):
        lat = []
        for i in range(edits):
            with lock:
                mark = len(lines)
            nonce = f"{name}-{i}-{random.getrandbits(32):08x}"
            watch_file = merged if name == "sync" else None
            seen = None
            t0 = time.monotonic()
            with open(f"{d}/{site}/index.html", "w") as f:
                f.write(nonce + "\n")
            while True:
                if watch_file and seen is None and nonce in read(watch_file):
                    seen = time.monotonic()
                if nonce in body(port):
                    break
                if time.monotonic() - t0 > 300:
                    raise SystemExit(f"{name}: edit {i} never became visible")
                time.sleep(0.001)
            t1 = time.monotonic()
            lat.append((t1 - t0) * 1000)
            if watch_file:
                visible.append(((seen or t1) - t0) * 1000)
            # The batch is over before the next edit (one edit, one batch).
            _, b = wait_event(lambda v: v.get("event") == "watch_batch" and v.get("actions", 0) > 0, mark)
            if name == "sync":
                _, a = wait_event(lambda v: v.get("event") == "watch_action" and v.get("action") == "sync", mark)
                vias[a.get("via", "archive")] = vias.get(a.get("via", "archive"), 0) + 1
                for k, v in a.get("phases_ms", {}).items():
                    phases.setdefault(k, []).append(v)
                for k, v in b.get("phases_ms", {}).items():
                    phases.setdefault("batch " + k, []).append(v)
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
    if merged:
        print(f"sync path    edit -> file visible:     p50 {pct(visible, 50):7.0f} ms  p95 {pct(visible, 95):7.0f} ms  (read in the container's root fs)")
    else:
        print("sync path    edit -> file visible:     not measured (no readable overlay MergedDir)")
    print(f"sync path    edit -> response changed: p50 {s50:7.0f} ms  p95 {s95:7.0f} ms")
    print(f"rebuild path edit -> response changed: p50 {r50:7.0f} ms  p95 {r95:7.0f} ms")
    print(f"ratio (rebuild / sync, p50): {r50 / s50:.1f}x")
    print("sync path after the quiet window, lifeos's phases_ms p50/p95 (copies via "
          + ", ".join(f"{k}: {v}" for k, v in sorted(vias.items())) + "):")
    order = ["batch open", "host", "find", "compare", "copy", "after", "batch synced", "batch planned"]
    for k in order + sorted(set(phases) - set(order)):
        if k in phases:
            print(f"  {k:14} p50 {pct(phases[k], 50):6.1f} ms  p95 {pct(phases[k], 95):6.1f} ms")
    ratio_ok, sync_ok = r50 / s50 >= 10, s50 <= 400
    vis_ok = not merged or pct(visible, 50) <= 250
    print(f"goal: ratio >= 10x {'PASS' if ratio_ok else 'FAIL'}; sync response changed p50 <= 400 ms {'PASS' if sync_ok else 'FAIL'}; "
          f"file visible p50 <= 250 ms {'PASS' if vis_ok else 'FAIL'}")
    own = [a + b for a, b in zip(overhead_in, overhead_out)]
    own_ok = pct(own, 50) <= 300
    print(f"rebuild path, lifeos's own share: edit -> build request p50 {pct(overhead_in, 50):.0f} ms p95 {pct(overhead_in, 95):.0f} ms (100 ms of it the quiet window); "
          f"build done -> container create p50 {pct(overhead_out, 50):.0f} ms p95 {pct(overhead_out, 95):.0f} ms; "
          f"sum p50 {pct(own, 50):.0f} ms p95 {pct(own, 95):.0f} ms (goal <= 300 ms: {'PASS' if own_ok else 'FAIL'})")
    failed = not (ratio_ok and sync_ok and vis_ok and own_ok)
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
