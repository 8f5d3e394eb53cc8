# shellcheck shell=bash
# lib.sh: shared by scripts/test and scripts/demo (sourced, not run).
#
# shoal_install_deps  installs what building and testing shoal needs, with apt-get:
#                     as root directly, else through sudo; without either it names the
#                     packages to install and exits 2.
# shoal_stop_pid PID [SECONDS]
#                     SIGTERM, then waits for PID to exit (a zombie counts as exited:
#                     PID 1 may reap slowly), SIGKILL after SECONDS (default 10).

SHOAL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Commands, and the Debian package that brings each.
SHOAL_TOOL_PACKAGES="gcc:gcc make:make cmake:cmake pkg-config:pkg-config \
clang-format:clang-format"
# Libraries (pkg-config module, Debian package).
SHOAL_LIB_PACKAGES="libzmq:libzmq3-dev libczmq:libczmq-dev msgpack:libmsgpack-dev \
lmdb:liblmdb-dev cmocka:libcmocka-dev"

shoal_log() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
}

shoal_missing_packages() {
    local pair cmd pkg missing=()
    for pair in $SHOAL_TOOL_PACKAGES; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    for pair in $SHOAL_LIB_PACKAGES; do
        cmd=${pair%%:*} pkg=${pair#*:}
        if command -v dpkg-query >/dev/null 2>&1; then
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
                missing+=("$pkg")
        elif ! pkg-config --exists "$cmd" 2>/dev/null; then
            missing+=("$pkg")
        fi
    done
    echo "${missing[@]}"
}

shoal_install_deps() {
    local missing sudo=()
    missing=$(shoal_missing_packages)
    [ -z "$missing" ] && return 0
    shoal_log "missing: $missing"
    if ! command -v apt-get >/dev/null 2>&1; then
        shoal_log "no apt-get here: install the equivalents of these Debian packages: $missing"
        exit 2
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            shoal_log "not root and no sudo: as root, run"
            echo "    apt-get update && apt-get install -y $missing" >&2
            exit 2
        fi
        sudo=(sudo)
    fi
    shoal_log "installing with ${sudo[*]:-root} apt-get: $missing"
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
        ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends $missing; then
        shoal_log "apt-get failed; install these packages and try again: $missing"
        exit 2
    fi
    missing=$(shoal_missing_packages)
    if [ -n "$missing" ]; then
        shoal_log "still missing after apt-get: $missing"
        exit 2
    fi
}

# True while PID exists and is not a zombie (kill -0 succeeds on zombies).
shoal_pid_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    case $stat in
    Z* | X*) return 1 ;;
    esac
    return 0
}

shoal_stop_pid() {
    local pid=$1 secs=${2:-10} i
    shoal_pid_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < secs * 20; i++)); do
        shoal_pid_alive "$pid" || break
        sleep 0.05
    done
    if shoal_pid_alive "$pid"; then
        shoal_log "pid $pid did not stop within ${secs}s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# Configures and builds DIR with the extra cmake arguments given.
shoal_build() {
    local dir=$1
    shift
    cmake -S "$SHOAL_ROOT" -B "$SHOAL_ROOT/$dir" "$@" >/dev/null &&
        cmake --build "$SHOAL_ROOT/$dir" -j "$(nproc)"
}
