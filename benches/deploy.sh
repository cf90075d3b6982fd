#!/usr/bin/env bash
# The release path under load (issue 12): with the images built, the time from
# `lifeos run promote-api` (a new version) to the canary answering through the router, and
# the requests that fail while ~200 req/s go through the router during the deploy, canary,
# check and promote (goal: 0). The router image is the example's (example/router, made
# offline from the Debian mirror); the app is busybox httpd answering its $VERSION.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lifeos=${LIFEOS:-$("$root/scripts/build-release.sh")}
[[ -x $lifeos ]] || { echo "deploy: LIFEOS=$lifeos is not an executable" >&2; exit 2; }
rate=${RATE:-200}
runs=${RUNS:-3}

dir=$(mktemp -d /tmp/lifeos-bench-deploy.XXXXXX)
project="benchdeploy$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    (cd "$dir" && "$lifeos" down --volumes >/dev/null 2>&1 || true)
    docker rm -f "$project-default-router-state" >/dev/null 2>&1 || true
    docker volume rm "$project-default-router" >/dev/null 2>&1 || true
    docker rmi "$project-app:latest" "$project-router:latest" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

# The router's root filesystem: the tests' build when there is one, else the graph's.
rootfs=""
for f in "$root"/target/tmp/lifeos-it-router-rootfs/router/rootfs.tar "${CARGO_TARGET_DIR:-/nonexistent}"/tmp/lifeos-it-router-rootfs/router/rootfs.tar "$root/example/router/rootfs.tar"; do
    [[ -s $f ]] && { rootfs=$f; break; }
done
if [[ -z $rootfs ]]; then
    CI=1 "$lifeos" -C "$root" run router-rootfs >/dev/null
    rootfs=$root/example/router/rootfs.tar
fi
mkdir -p "$dir/router" "$dir/app/www/cgi-bin"
cp "$root/example/router/Dockerfile" "$dir/router/"
ln "$rootfs" "$dir/router/rootfs.tar" 2>/dev/null || cp "$rootfs" "$dir/router/rootfs.tar"
cp /bin/busybox "$dir/app/busybox"
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s\\n" "$VERSION"\n' > "$dir/app/www/cgi-bin/v"
chmod +x "$dir/app/www/cgi-bin/v"
echo ok > "$dir/app/www/ready.txt"
cat > "$dir/app/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www /www
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE

cat > "$dir/lifeos.toml" <<TOML
[project]
name = "$project"

[vars]
version = "v0"

[router]
image = "router"
labels = { "lifeos.test" = "bench" }

[tasks.router]
kind = "image"
context = "router"
tag = "$project-router:latest"
labels = { "lifeos.test" = "bench" }

[tasks.app]
kind = "image"
context = "app"
tag = "$project-app:latest"
builder = "classic"
labels = { "lifeos.test" = "bench" }

[tasks.deploy-api]
kind = "deploy"
service = "api"
image = "app"
port = 8080
publish = "127.0.0.1:$port"
ready = "/ready.txt"
traffic = 0
env = ["VERSION=\${vars.version}"]
labels = { "lifeos.test" = "bench" }

[tasks.canary-api]
kind = "canary"
deploy = "deploy-api"
percent = 10

[tasks.check-canary]
kind = "check"
target = "canary-api"
window = "5s"
interval = "1s"
success_rate = 0.99
min_requests = 20
on_failure = "rollback"

[tasks.promote-api]
kind = "promote"
deploy = "deploy-api"
deps = ["check-canary"]
TOML

cd "$dir"
export CI=1
"$lifeos" build router app >/dev/null
"$lifeos" run deploy-api >/dev/null
echo "load before: $(uptime)"
echo
echo "| run | to canary serving (s) | whole run (s) | requests | failed | achieved req/s |"
echo "|---|---|---|---|---|---|"
for i in $(seq 1 "$runs"); do
    python3 - "$lifeos" "$port" "$rate" "v$i" <<'PY'
import subprocess, sys, threading, time, http.client
lifeos, port, rate, version = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stop = threading.Event()
lock = threading.Lock()
stats = {"sent": 0, "failed": 0, "first_new": None}
start = [None]
def worker(n):
    period = n / rate
    nxt = time.monotonic()
    while not stop.is_set():
        nxt += period
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/cgi-bin/v")
            r = c.getresponse()
            body = r.read().decode().strip()
            ok = r.status == 200
            c.close()
        except Exception:
            ok, body = False, ""
        with lock:
            stats["sent"] += 1
            if not ok:
                stats["failed"] += 1
            if body == version and stats["first_new"] is None and start[0]:
                stats["first_new"] = time.monotonic() - start[0]
        time.sleep(max(0, nxt - time.monotonic()))
threads = 8
ts = [threading.Thread(target=worker, args=(threads,)) for _ in range(threads)]
for t in ts: t.start()
time.sleep(1)
start[0] = time.monotonic()
p = subprocess.run([lifeos, "run", "promote-api", "--set", f"version={version}"], capture_output=True, text=True)
whole = time.monotonic() - start[0]
time.sleep(1)
stop.set()
for t in ts: t.join()
if p.returncode != 0:
    print(p.stdout, p.stderr, file=sys.stderr)
    sys.exit(1)
n = stats["sent"]
fn = stats["first_new"]
print(f"| {version} | {fn:.2f} | {whole:.2f} | {n} | {stats['failed']} | {n / (whole + 2):.0f} |" if fn is not None else f"| {version} | never | {whole:.2f} | {n} | {stats['failed']} | {n / (whole + 2):.0f} |")
PY
done
