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
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Starts the server on $2 with the ARGS saved in DIR/args; fails if it does not come up.
launch() {
    local dir="$1" port="$2" tries reply
    load_args "$dir"
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
    redis-server "$dir/redis.conf" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} </dev/null >/dev/null 2>&1 || return 1
    # Up means answering: PONG, or NOAUTH when a password is set. LOADING means the
    # append-only file is still being replayed.
    for tries in $(seq 1 300); do
        reply="$(redis-cli -h 127.0.0.1 -p "$port" ping 2>&1 || true)"
        case "$reply" in
        PONG* | NOAUTH*) return 0 ;;
        esac
        if [ "$tries" -gt 5 ] && ! live_pid "$dir/redis.pid" >/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

url() {
    echo "redis://127.0.0.1:$1/0"
}

start() {
    command -v redis-server >/dev/null 2>&1 ||
        die "redis-server not found; install Redis (Debian: apt-get install redis-server)"
    own_pid_start redis redis-server "$@"
}

stop() {
    own_pid_stop redis "$1"
}

restart() {
    own_pid_restart redis redis-server "$1"
}

service_main "[redis-server options...]" "" "$@"
