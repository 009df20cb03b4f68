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
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_server() {
    command -v nats-server 2>/dev/null && return 0
    [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server && return 0
    return 1
}

# Starts the server on $2 with the ARGS saved in DIR/args; fails if it does not come up.
launch() {
    local dir="$1" port="$2" server tries marker
    server="$(find_server)" || return 1
    load_args "$dir"
    mkdir -p "$dir/js"
    rm -f "$dir/nats.pid"
    # The log is appended to, so readiness is judged by the lines after this marker.
    marker=0
    [ -f "$dir/nats.log" ] && marker="$(wc -l <"$dir/nats.log")"
    # setsid and closed stdio: the server must not hold the caller's pipes open or get
    # its terminal signals.
    setsid "$server" -a 127.0.0.1 -p "$port" -js -sd "$dir/js" -P "$dir/nats.pid" \
        -l "$dir/nats.log" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} </dev/null >>"$dir/nats.out" 2>&1 &
    for tries in $(seq 1 300); do
        if tail -n +"$((marker + 1))" "$dir/nats.log" 2>/dev/null | grep -q "Server is ready"; then
            live_pid "$dir/nats.pid" >/dev/null && return 0
        fi
        # The server writes its pid file early; a gone pid means it failed (port taken).
        if [ "$tries" -gt 10 ] && ! live_pid "$dir/nats.pid" >/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

url() {
    echo "nats://127.0.0.1:$1"
}

start() {
    find_server >/dev/null ||
        die "nats-server not found; install it (Debian: apt-get install nats-server)"
    own_pid_start nats nats-server "$@"
}

stop() {
    own_pid_stop nats "$1"
}

restart() {
    own_pid_restart nats nats-server "$1"
}

service_main "[nats-server options...]" "" "$@"
