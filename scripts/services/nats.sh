#!/usr/bin/env bash
# A throwaway NATS server with JetStream for tests, on loopback only.
#
#   nats.sh start DIR [ARGS...]  start nats-server with JetStream file storage in DIR/js
#                                on a free 127.0.0.1 port and print its URL on stdout
#                                (nothing else); ARGS are extra nats-server options, e.g.
#                                `--user u --pass p` or `-c FILE`
#   nats.sh stop DIR             stop the server started in DIR (SIGTERM, then SIGKILL)
#   nats.sh restart DIR          stop it and start it again on the same port, with the
#                                same JetStream data and the same ARGS
#
# Logs go to DIR/nats.log. Works as root.
set -euo pipefail

die() {
    echo "nats.sh: $*" >&2
    exit 1
}

die_with_log() {
    local log="$1"
    shift
    if [ -f "$log" ]; then
        echo "nats.sh: last lines of $log:" >&2
        tail -n 30 "$log" >&2 || true
    fi
    die "$@"
}

port_in_use() {
    command -v ss >/dev/null 2>&1 || return 1
    ss -Htln 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$1\$"
}

pid_of() {
    local dir="$1" pid
    [ -f "$dir/nats.pid" ] || return 1
    pid="$(cat "$dir/nats.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

find_server() {
    command -v nats-server 2>/dev/null && return 0
    [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server && return 0
    return 1
}

# Starts the server on $2 with the ARGS saved in DIR/args; fails if it does not come up.
launch() {
    local dir="$1" port="$2" args=() line server tries marker
    server="$(find_server)" || return 1
    if [ -f "$dir/args" ]; then
        while IFS= read -r line; do args+=("$line"); done <"$dir/args"
    fi
    mkdir -p "$dir/js"
    rm -f "$dir/nats.pid"
    # The log is appended to, so readiness is judged by the lines after this marker.
    marker=0
    [ -f "$dir/nats.log" ] && marker="$(wc -l <"$dir/nats.log")"
    # setsid and closed stdio: the server must not hold the caller's pipes open or get
    # its terminal signals.
    setsid "$server" -a 127.0.0.1 -p "$port" -js -sd "$dir/js" -P "$dir/nats.pid" \
        -l "$dir/nats.log" ${args[@]+"${args[@]}"} </dev/null >>"$dir/nats.out" 2>&1 &
    for tries in $(seq 1 300); do
        if tail -n +"$((marker + 1))" "$dir/nats.log" 2>/dev/null | grep -q "Server is ready"; then
            pid_of "$dir" >/dev/null && return 0
        fi
        # The server writes its pid file early; a gone pid means it failed (port taken).
        if [ "$tries" -gt 10 ] && ! pid_of "$dir" >/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

start() {
    local dir="$1" port tries
    shift
    find_server >/dev/null ||
        die "nats-server not found; install it (Debian: apt-get install nats-server)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    pid_of "$dir" >/dev/null && die "a server already runs in $dir"
    : >"$dir/args"
    for arg in "$@"; do printf '%s\n' "$arg" >>"$dir/args"; done
    # Another process can take the port between the check and the bind, so a failed
    # start is retried on a new port.
    for tries in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        port_in_use "$port" && continue
        if launch "$dir" "$port"; then
            echo "$port" >"$dir/port"
            echo "nats://127.0.0.1:$port"
            return 0
        fi
        stop "$dir"
    done
    die_with_log "$dir/nats.log" "could not start nats-server after $tries tries"
}

stop() {
    local dir="$1" pid i
    pid="$(pid_of "$dir")" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

restart() {
    local dir="$1" port
    [ -f "$dir/port" ] || die "no server was started in $dir"
    dir="$(cd "$dir" && pwd)"
    port="$(cat "$dir/port")"
    stop "$dir"
    launch "$dir" "$port" || die_with_log "$dir/nats.log" "could not restart nats-server on port $port"
    echo "nats://127.0.0.1:$port"
}

case "${1:-}" in
start)
    [ $# -ge 2 ] || die "usage: $0 start DIR [nats-server options...]"
    dir="$2"
    shift 2
    start "$dir" "$@"
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
    die "usage: $0 start DIR [ARGS...] | stop DIR | restart DIR"
    ;;
esac
