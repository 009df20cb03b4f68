#!/usr/bin/env bash
# A throwaway RabbitMQ node for tests, on loopback only.
#
#   rabbitmq.sh start DIR    start a node whose data, logs and config live in DIR, on a
#                            free 127.0.0.1 port; print its AMQP URL on stdout (nothing
#                            else) once it accepts connections
#   rabbitmq.sh stop DIR     stop the node started in DIR (graceful: durable messages are
#                            kept) and wait until it has exited
#   rabbitmq.sh restart DIR  stop, then start again on the same port and data; prints
#                            the URL again
#
# Each DIR gets its own node name, so several nodes can run side by side. Works as root
# (the node then runs as root with HOME=DIR, so its Erlang cookie stays in DIR).
# RABBITMQ_TEST_MAX_MESSAGE_SIZE sets the broker's max_message_size in bytes (RabbitMQ's
# default is 128 MiB). RABBITMQ_TEST_OWNER_PID makes `start` leave a watchdog that stops
# the node once that process is gone (a test binary killed before its cleanup ran).
# Logs go to DIR/log.
set -euo pipefail
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
[ -x "$SERVER" ] || SERVER="$(command -v rabbitmq-server 2>/dev/null || true)"

die_with_node_logs() {
    local dir="$1"
    shift
    for f in "$dir"/log/*.log "$dir/stdout.log"; do
        if [ -f "$f" ]; then
            echo "rabbitmq.sh: last lines of $f:" >&2
            tail -n 30 "$f" >&2 || true
        fi
    done
    die "$@"
}

# A port nothing listens on, from a range away from the usual service ports.
free_port() {
    local p tries=0
    while [ $tries -lt 200 ]; do
        p=$((20000 + RANDOM % 30000))
        if ! port_answers "$p"; then
            echo "$p"
            return 0
        fi
        tries=$((tries + 1))
    done
    die "no free port found"
}

node_pid() {
    local dir="$1"
    [ -s "$dir/rabbit.pid" ] && cat "$dir/rabbit.pid"
}

is_running() {
    local pid
    pid="$(node_pid "$1" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

launch() {
    local dir="$1" port dist
    port="$(cat "$dir/port")"
    dist="$(cat "$dir/dist_port")"
    is_running "$dir" && die "a node is already running in $dir"
    rm -f "$dir/rabbit.pid"
    (
        cd "$dir"
        export HOME="$dir"
        export RABBITMQ_NODENAME="$(cat "$dir/nodename")"
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        export RABBITMQ_NODE_PORT="$port"
        export RABBITMQ_DIST_PORT="$dist"
        export RABBITMQ_MNESIA_BASE="$dir/mnesia"
        export RABBITMQ_LOG_BASE="$dir/log"
        export RABBITMQ_PID_FILE="$dir/rabbit.pid"
        export RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand"
        # Few schedulers and no busy-waiting: test machines share their cores.
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none"
        setsid "$SERVER" >"$dir/stdout.log" 2>&1 </dev/null &
    )
    local i
    for i in $(seq 1 240); do
        if port_answers "$port"; then
            echo "amqp://guest:guest@127.0.0.1:$port/%2f"
            return 0
        fi
        if [ "$i" -gt 10 ] && ! is_running "$dir" && [ -s "$dir/rabbit.pid" ]; then
            die_with_node_logs "$dir" "the node in $dir exited during startup"
        fi
        sleep 0.25
    done
    die_with_node_logs "$dir" "the node in $dir did not open port $port within 60 s"
}

start() {
    local dir="$1"
    [ -n "$SERVER" ] || die "rabbitmq-server not found; install RabbitMQ (Debian: apt-get install rabbitmq-server)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    mkdir -p "$dir/mnesia" "$dir/log"
    free_port >"$dir/port"
    local dist
    dist="$(free_port)"
    while [ "$dist" = "$(cat "$dir/port")" ]; do dist="$(free_port)"; done
    echo "$dist" >"$dir/dist_port"
    echo "troupe-test-$$-$RANDOM@localhost" >"$dir/nodename"
    {
        echo "listeners.tcp.1 = 127.0.0.1:$(cat "$dir/port")"
        # guest may log in over 127.0.0.1 by default; keep it working for any address.
        echo "loopback_users = none"
        echo "log.file.level = info"
        echo "log.console = false"
        if [ -n "${RABBITMQ_TEST_MAX_MESSAGE_SIZE:-}" ]; then
            echo "max_message_size = $RABBITMQ_TEST_MAX_MESSAGE_SIZE"
        fi
    } >"$dir/rabbitmq.conf"
    echo "[]." >"$dir/advanced.config"
    echo "[]." >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf"
    launch "$dir"
    local owner="${RABBITMQ_TEST_OWNER_PID:-}"
    if [ -n "$owner" ]; then
        local self
        self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
        setsid bash -c '
            while kill -0 "$1" 2>/dev/null && [ -f "$2/port" ]; do sleep 2; done
            rm -f "$2/watchdog.pid"
            "$3" stop "$2"
        ' watchdog "$owner" "$dir" "$self" >/dev/null 2>&1 </dev/null &
        echo $! >"$dir/watchdog.pid"
    fi
}

stop() {
    local dir="$1"
    [ -d "$dir" ] || return 0
    dir="$(cd "$dir" && pwd)"
    if [ -s "$dir/watchdog.pid" ]; then
        kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
        rm -f "$dir/watchdog.pid"
    fi
    stop_node "$dir"
}

stop_node() {
    local dir="$1" pid i
    pid="$(node_pid "$dir" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    # A graceful stop writes the queues' state; give it time before forcing.
    stop_pid "$pid" 300
    for i in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.25
    done
    die "the node in $dir (pid $pid) did not exit"
}

restart() {
    local dir="$1"
    [ -f "$dir/port" ] || die "no node was started in $dir"
    dir="$(cd "$dir" && pwd)"
    stop_node "$dir"
    launch "$dir"
}

case "${1:-}" in
start) start "${2:?usage: rabbitmq.sh start DIR}" ;;
stop) stop "${2:?usage: rabbitmq.sh stop DIR}" ;;
restart) restart "${2:?usage: rabbitmq.sh restart DIR}" ;;
*) die "usage: rabbitmq.sh start|stop|restart DIR" ;;
esac
