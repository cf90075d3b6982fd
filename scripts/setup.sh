#!/usr/bin/env bash
# Make this machine able to build and test lifeos (Debian 12, run as root).
#
#  1. apt-get install whatever is missing of: docker.io busybox-static
#     ninja-build docker-registry apache2-utils mmdebstrap postgresql-client redis-tools
#     curl hyperfine musl-tools openssh-client openssh-server procps jq nginx (a ready
#     machine does no apt work at all; musl-tools is for the static release binary,
#     scripts/build-release.sh; the ssh:// engine tests start their own sshd and look
#     for leftover processes with pgrep (procps); jq is for benches/; the registry
#     tests serve docker-registry with an htpasswd file made by apache2-utils; python3
#     runs tests/standin-gcloud, the Cloud Run tests' stand-in gcloud);
#  2. start dockerd in the background unless a Docker Engine already answers
#     (no systemd needed), and wait until it does;
#  3. check that cargo is available.
#
# Idempotent: safe to run any number of times. Environment knobs:
#   DOCKERD_LOG      dockerd log file     (default /var/log/dockerd.log)
#   DOCKERD_TIMEOUT  seconds to wait      (default 60)
#   DOCKERD_FLAGS    extra dockerd flags  (default none; none are needed here)
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()
fi

# ---------------------------------------------------------------- packages

# True if $1 is a statically linked executable (busybox-static's /bin/busybox;
# Debian's plain `busybox` package installs a dynamic one at the same path).
is_static() {
    [[ -x $1 ]] || return 1
    if command -v file >/dev/null 2>&1; then
        file -L "$1" | grep -E 'statically linked|static-pie linked' >/dev/null
    else
        ldd "$1" 2>&1 | grep -E 'not a dynamic executable|statically linked' >/dev/null
    fi
}

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# package -> what proves it is there. A command found on PATH is enough, so
# e.g. Docker CE's dockerd is accepted and docker.io is not forced over it.
have() {
    case $1 in
        docker.io)         command -v docker >/dev/null && command -v dockerd >/dev/null ;;
        time)              [[ -x /usr/bin/time ]] ;;
        busybox-static)    is_static /bin/busybox ;;
        ninja-build)       command -v ninja >/dev/null ;;
        docker-registry)   command -v docker-registry >/dev/null ;;
        apache2-utils)     command -v htpasswd >/dev/null ;;
        mmdebstrap)        command -v mmdebstrap >/dev/null ;;
        postgresql-client) command -v psql >/dev/null ;;
        redis-tools)       command -v redis-cli >/dev/null ;;
        curl)              command -v curl >/dev/null ;;
        hyperfine)         command -v hyperfine >/dev/null ;;
        musl-tools)        command -v musl-gcc >/dev/null ;;
        openssh-client)    command -v ssh >/dev/null && command -v ssh-agent >/dev/null ;;
        openssh-server)    [[ -x /usr/sbin/sshd ]] ;;
        procps)            command -v pgrep >/dev/null ;;
        jq)                command -v jq >/dev/null ;;
        python3)           command -v python3 >/dev/null ;;
        nginx)             [[ -x /usr/sbin/nginx ]] ;;
        *)                 pkg_installed "$1" ;;
    esac
}

packages=(docker.io busybox-static ninja-build docker-registry apache2-utils mmdebstrap
          postgresql-client redis-tools curl hyperfine musl-tools
          openssh-client openssh-server procps jq time nginx python3)
missing=()
for p in "${packages[@]}"; do
    have "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    # docker.io only *recommends* apparmor, but dockerd cannot start
    # containers without apparmor_parser when the kernel enforces AppArmor.
    if [[ " ${missing[*]} " == *" docker.io "* ]] \
        && [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" == Y ]] \
        && ! command -v apparmor_parser >/dev/null 2>&1; then
        missing+=(apparmor)
    fi
    say "installing ${missing[*]}"
    apt_log=$(mktemp /tmp/lifeos-setup-apt.XXXXXX)
    apt_run() {
        # Quiet unless it fails; NEEDRESTART_SUSPEND keeps needrestart's hook
        # (if installed) from restarting services or prompting.
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
            apt-get -q -y -o Dpkg::Use-Pty=0 "$@" >>"$apt_log" 2>&1 || {
            tail -n 30 "$apt_log" | sed 's/^/    /' >&2
            die "apt-get $1 failed (full log: $apt_log)"
        }
    }
    apt_run update
    # No recommends: they would pull in needrestart, criu, cgroupfs-mount, ...
    apt_run install --no-install-recommends "${missing[@]}"
    rm -f "$apt_log"
    for p in "${missing[@]}"; do
        have "$p" || die "apt-get installed $p but it is still not usable"
    done
else
    say "packages: all present"
fi

# ---------------------------------------------------------------- docker engine

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_TIMEOUT=${DOCKERD_TIMEOUT:-60}
sock=/var/run/docker.sock

engine_answers() {
    # A non-default DOCKER_HOST (tcp://, ssh://, another socket) is asked
    # through the CLI; the default socket is pinged directly, which is fast.
    if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != "unix://$sock" ]]; then
        timeout 10 docker info >/dev/null 2>&1
    else
        [[ -S $sock ]] && [[ "$(curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/_ping 2>/dev/null)" == OK ]]
    fi
}

# True while process $1 exists and is not a zombie.
alive() {
    local state
    state=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

dockerd_pid() {
    local pid
    if [[ -s /var/run/docker.pid ]] && pid=$(<"/var/run/docker.pid") && [[ -d /proc/$pid ]] \
        && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]]; then
        echo "$pid"
    else
        pidof dockerd 2>/dev/null | cut -d' ' -f1 | grep .
    fi
}

if engine_answers; then
    say "docker: engine already answering"
else
    [[ -z ${DOCKER_HOST:-} || $DOCKER_HOST == "unix://$sock" ]] \
        || die "no Docker Engine answers at DOCKER_HOST=$DOCKER_HOST (not starting a local one)"
    started_us=${EPOCHREALTIME//[!0-9]/}
    launched=
    if pid=$(dockerd_pid); then
        say "docker: dockerd already running (pid $pid), waiting for it"
    elif [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1 \
        && "${SUDO[@]}" systemctl start docker >/dev/null 2>&1; then
        say "docker: started docker.service via systemd"
    else
        # No systemd (containers, CI VMs): run dockerd directly, in its own
        # session so Ctrl-C or the end of a CI step does not take it down.
        # Plain defaults work on Debian 12 (overlay2 storage, iptables
        # networking); DOCKERD_FLAGS is only an escape hatch.
        if ! { mkdir -p "$(dirname "$DOCKERD_LOG")" && : >>"$DOCKERD_LOG"; } 2>/dev/null; then
            DOCKERD_LOG=/tmp/dockerd.log
        fi
        say "docker: starting dockerd${DOCKERD_FLAGS:+ $DOCKERD_FLAGS} (log: $DOCKERD_LOG)"
        (
            # Do not leak inherited descriptors (e.g. a CI runner's pipes)
            # into the daemon, or whoever waits on them would wait forever.
            for fd in "/proc/$BASHPID"/fd/*; do
                fd=${fd##*/}
                if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
            done
            # shellcheck disable=SC2086 # DOCKERD_FLAGS is a list of flags
            exec "${SUDO[@]}" setsid nohup dockerd ${DOCKERD_FLAGS:-} </dev/null >>"$DOCKERD_LOG" 2>&1
        ) &
        launched=$!
    fi
    until engine_answers; do
        elapsed_ms=$(((${EPOCHREALTIME//[!0-9]/} - started_us) / 1000))
        why=
        if [[ -n $launched ]] && ! alive "$launched"; then
            why="dockerd exited during start-up"
        elif ((elapsed_ms >= DOCKERD_TIMEOUT * 1000)); then
            why="the Docker Engine did not answer within ${DOCKERD_TIMEOUT}s"
        fi
        if [[ -n $why ]]; then
            {
                echo "setup: error: $why"
                if [[ -r $DOCKERD_LOG ]]; then
                    echo "setup: last lines of $DOCKERD_LOG:"
                    tail -n 25 "$DOCKERD_LOG" | sed 's/^/    /'
                fi
            } >&2
            exit 1
        fi
        sleep 0.2
    done
    elapsed_ms=$(((${EPOCHREALTIME//[!0-9]/} - started_us) / 1000))
    say "docker: engine up after $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s"
fi
say "docker: server $(curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/version 2>/dev/null \
    | grep -o '"Version":"[^"]*"' | head -n1 | cut -d'"' -f4 || echo '?')"

# ---------------------------------------------------------------- rust

# The workspace's rust-version (Cargo.toml), e.g. 1.89.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need_rust=$(sed -n 's/^rust-version = "\([0-9.]*\)"/\1/p' "$root/Cargo.toml" | head -n1)
need_rust=${need_rust:-1.89}
# True if the cargo on PATH is at least $need_rust.
rust_ok() {
    local v
    v=$(cargo --version 2>/dev/null | awk '{print $2}') || return 1
    [[ -n $v ]] && [[ $(printf '%s\n%s\n' "$need_rust" "${v%%-*}" | sort -V | head -n1) == "$need_rust" ]]
}

if ! command -v cargo >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! rust_ok; then
    # No (new enough) cargo: rustup's stable toolchain when rustup is here; else Debian's
    # cargo when the mirror has one new enough; else rustup from its installer.
    if command -v rustup >/dev/null 2>&1; then
        say "rust: rustup toolchain install stable"
        rustup toolchain install stable --profile minimal >&2 && rustup default stable >&2
    else
        debian_cargo=$(apt-cache policy cargo 2>/dev/null | awk '/Candidate:/ {print $2}')
        # Debian versions cargo itself: cargo 0.(N+1) comes with Rust 1.N.
        minor=${need_rust#1.}
        cargo_need=0.$((${minor%%.*} + 1))
        if [[ -n $debian_cargo && $debian_cargo != "(none)" ]] \
            && [[ $(printf '%s\n%s\n' "$cargo_need" "${debian_cargo%%[+~-]*}" | sort -V | head -n1) == "$cargo_need" ]]; then
            say "rust: apt-get install cargo ($debian_cargo)"
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends cargo rustc >&2
        else
            say "rust: Debian's cargo (${debian_cargo:-none}) is older than $need_rust; installing rustup"
            curl -fsSL --proto '=https' --tlsv1.2 https://sh.rustup.rs \
                | sh -s -- -y --profile minimal --default-toolchain stable >&2 \
                || die "installing rustup failed: install a Rust toolchain >= $need_rust and put it on PATH"
            # shellcheck disable=SC1091
            . "$HOME/.cargo/env"
        fi
    fi
fi
rust_ok || die "cargo >= $need_rust not found: install a Rust toolchain >= $need_rust (e.g. rustup) and put ~/.cargo/bin on PATH"
say "rust: $(cargo --version)"
say "ready"
