#!/usr/bin/env bash
# A throwaway Redis server for tests, on loopback only.
#
#   redis.sh start DIR [ARGS...]  start redis-server on a free 127.0.0.1 port with its data
#                                 in DIR and print its URL on stdout (nothing else);
#                                 ARGS are extra redis-server options, e.g.
#                                 `--requirepass secret` or `--proto-max-bulk-len 1mb`
#   redis.sh stop DIR             stop the server started in DIR (SIGTERM, then SIGKILL)
#   redis.sh restart DIR          stop it and start it again on the same port, with the
#                                 same data and the same ARGS
#
# Every acknowledged write is on disk before the reply (appendonly yes, appendfsync
# always), so a restart loses nothing a client was told was written. Logs go to
# DIR/redis.log. Works as root.
set -euo pipefail

die() {
    echo "redis.sh: $*" >&2
    exit 1
}

die_with_log() {
    local log="$1"
    shift
    if [ -f "$log" ]; then
        echo "redis.sh: last lines of $log:" >&2
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
    [ -f "$dir/redis.pid" ] || return 1
    pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# Starts the server on $2 with the ARGS saved in DIR/args; fails if it does not come up.
launch() {
    local dir="$1" port="$2" args=() line tries reply
    if [ -f "$dir/args" ]; then
        while IFS= read -r line; do args+=("$line"); done <"$dir/args"
    fi
    cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
dir $dir
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
appendonly yes
appendfsync always
save ""
EOF
    rm -f "$dir/redis.pid"
    redis-server "$dir/redis.conf" ${args[@]+"${args[@]}"} </dev/null >/dev/null 2>&1 || return 1
    # Up means answering: PONG, or NOAUTH when a password is set. LOADING means the
    # append-only file is still being replayed.
    for tries in $(seq 1 300); do
        reply="$(redis-cli -h 127.0.0.1 -p "$port" ping 2>&1 || true)"
        case "$reply" in
        PONG* | NOAUTH*) return 0 ;;
        esac
        if [ "$tries" -gt 5 ] && ! pid_of "$dir" >/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

start() {
    local dir="$1" port tries
    shift
    command -v redis-server >/dev/null 2>&1 ||
        die "redis-server not found; install Redis (Debian: apt-get install redis-server)"
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
            echo "redis://127.0.0.1:$port/0"
            return 0
        fi
        stop "$dir"
    done
    die_with_log "$dir/redis.log" "could not start redis-server after $tries tries"
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
    launch "$dir" "$port" || die_with_log "$dir/redis.log" "could not restart redis-server on port $port"
    echo "redis://127.0.0.1:$port/0"
}

case "${1:-}" in
start)
    [ $# -ge 2 ] || die "usage: $0 start DIR [redis-server options...]"
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
