#!/usr/bin/env bash
# A throwaway Pub/Sub endpoint for tests: Google's Pub/Sub emulator on loopback only.
#
#   pubsub.sh start DIR [OWNER_PID]  start the emulator on a free 127.0.0.1 port, print
#                                    its URL on stdout (nothing else); with OWNER_PID,
#                                    it is stopped and DIR removed once that process exits
#   pubsub.sh stop DIR               stop the emulator started in DIR
#   pubsub.sh restart DIR            stop it and start it again on the same port;
#                                    returns once it accepts connections
#
# The emulator keeps everything in memory: a restart forgets every topic, subscription
# and message. It ships with the Google Cloud CLI (Debian package
# google-cloud-cli-pubsub-emulator, from Google's apt repository, not Debian's) and
# needs Java 11+; set PUBSUB_EMULATOR_BIN to use one elsewhere. Exits 3 when either is
# missing, so callers can tell "not installed" from "failed". Works as root or not.
# Logs go to DIR/server.log.
set -euo pipefail

die() {
    echo "pubsub.sh: $*" >&2
    exit 1
}

# The emulator's launcher script.
emulator_bin() {
    local c sdk
    for c in "${PUBSUB_EMULATOR_BIN:-}" \
        "$(command -v gcloud >/dev/null 2>&1 && sdk="$(dirname "$(dirname "$(readlink -f "$(command -v gcloud)")")")" && echo "$sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")" \
        /usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator \
        /usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator \
        /opt/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator \
        "${HOME:-/root}/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return
        fi
    done
    echo "pubsub.sh: the Pub/Sub emulator is not installed (google-cloud-cli-pubsub-emulator, or set PUBSUB_EMULATOR_BIN)" >&2
    exit 3
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts the server on $2 in DIR $1; succeeds once the port answers.
launch() {
    local dir="$1" port="$2" bin pid
    bin="$(emulator_bin)" || exit 3
    command -v java >/dev/null 2>&1 || {
        echo "pubsub.sh: the Pub/Sub emulator needs Java (apt-get install openjdk-17-jre-headless)" >&2
        exit 3
    }
    # A small heap is plenty for tests; its own stdin/stdout, so whoever reads this
    # script's output is not kept waiting. The launcher execs java: $! is the JVM.
    JAVA_OPTS="${JAVA_OPTS:--Xmx512m}" "$bin" --host=127.0.0.1 --port="$port" \
        </dev/null >>"$dir/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    for _ in $(seq 1 600); do
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

# Stops the emulator whose pid is in DIR, waiting until it is gone.
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
        die "could not start the Pub/Sub emulator after $tries tries"
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
    die "could not restart the Pub/Sub emulator on port $port"
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
