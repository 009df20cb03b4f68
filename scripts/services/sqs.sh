#!/usr/bin/env bash
# A throwaway SQS endpoint for tests: moto's server on loopback only.
#
#   sqs.sh start DIR [OWNER_PID]  start moto on a free 127.0.0.1 port, print its URL on
#                                 stdout (nothing else); with OWNER_PID, the server is
#                                 stopped and DIR removed once that process exits
#   sqs.sh stop DIR               stop the server started in DIR
#   sqs.sh restart DIR            stop it and start it again on the same port; returns
#                                 once it accepts connections
#
# moto keeps everything in memory: a restart forgets every queue and message. Installs
# moto[server] from PyPI when neither moto_server nor the moto module is there. Works
# as root or not. Logs go to DIR/server.log.
set -euo pipefail

die() {
    echo "sqs.sh: $*" >&2
    exit 1
}

have_moto_module() {
    python3 -c 'import moto.server, flask' >/dev/null 2>&1
}

# The command that runs moto's server, installing moto if needed.
moto_cmd() {
    if command -v moto_server >/dev/null 2>&1; then
        echo moto_server
        return
    fi
    if ! have_moto_module; then
        # Tests start several servers at once: one install at a time.
        exec 9>"${TMPDIR:-/tmp}/troupe-moto-install.lock"
        flock 9
        if ! have_moto_module; then
            echo "sqs.sh: moto_server not found; installing moto[server] from PyPI" >&2
            python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' >&2 ||
                die "could not install moto[server]"
        fi
        flock -u 9
        exec 9>&-
    fi
    echo "python3 -m moto.server"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts the server on $2 in DIR $1; succeeds once the port answers.
launch() {
    local dir="$1" port="$2" cmd pid
    cmd="$(moto_cmd)"
    # Its own stdin/stdout, so whoever reads this script's output is not kept waiting.
    # shellcheck disable=SC2086
    $cmd -H 127.0.0.1 -p "$port" </dev/null >>"$dir/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if port_in_use "$port"; then
            echo "$port" >"$dir/port"
            return 0
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    return 1
}

# Stops the server whose pid is in DIR, waiting until it is gone.
halt() {
    local dir="$1" pid
    [ -f "$dir/pid" ] || return 0
    pid="$(cat "$dir/pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

# Stops the server and removes DIR once OWNER exits (a test binary that never got to
# clean up must not leave servers behind).
watchdog() {
    local dir="$1" owner="$2" self="$0"
    (
        while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do
            sleep 1
        done
        # Not through `stop`, which would kill this very watchdog first.
        rm -f "$dir/watchdog.pid"
        "$self" stop "$dir" >/dev/null 2>&1 || true
        rm -rf "$dir"
    ) </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/watchdog.pid"
}

start() {
    local dir="$1" owner="${2:-}" port tries
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    for tries in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        port_in_use "$port" && continue
        if launch "$dir" "$port"; then
            break
        fi
        port=""
    done
    if [ -z "${port:-}" ]; then
        tail -n 30 "$dir/server.log" >&2 || true
        die "could not start moto after $tries tries"
    fi
    [ -n "$owner" ] && watchdog "$dir" "$owner"
    echo "http://127.0.0.1:$port"
}

stop() {
    local dir="$1"
    if [ -f "$dir/watchdog.pid" ]; then
        kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
        rm -f "$dir/watchdog.pid"
    fi
    halt "$dir"
}

restart() {
    local dir="$1" port
    [ -f "$dir/port" ] || die "no server was started in $dir"
    port="$(cat "$dir/port")"
    halt "$dir"
    # The old socket may linger for a moment; retry the same port.
    for _ in $(seq 1 50); do
        if launch "$dir" "$port"; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$dir/server.log" >&2 || true
    die "could not restart moto on port $port"
}

case "${1:-}" in
start)
    [ $# -eq 2 ] || [ $# -eq 3 ] || die "usage: $0 start DIR [OWNER_PID]"
    start "$2" "${3:-}"
    ;;
stop)
    [ $# -eq 2 ] || die "usage: $0 stop DIR"
    stop "$2"
    ;;
restart)
    [ $# -eq 2 ] || die "usage: $0 restart DIR"
    restart "$2"
    ;;
*)
    die "usage: $0 start DIR [OWNER_PID] | stop DIR | restart DIR"
    ;;
esac
