# Shell shared by the throwaway test servers in scripts/services: errors, free ports,
# pid files, stopping by pid, the owner watchdog and the command line. Sourced (not
# run) by each NAME.sh after `set -euo pipefail`; messages name the sourcing script.
# shellcheck shell=bash

SERVICE_SCRIPT="$(basename "$0")"

die() {
    echo "$SERVICE_SCRIPT: $*" >&2
    exit 1
}

# Callers often delete DIR on failure, so show the log's end before giving up.
die_with_log() {
    local log="$1"
    shift
    if [ -f "$log" ]; then
        echo "$SERVICE_SCRIPT: last lines of $log:" >&2
        tail -n 30 "$log" >&2 || true
    fi
    die "$@"
}

# Whether something accepts connections on 127.0.0.1:PORT.
port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Whether something listens on PORT on any address; false when `ss` is missing.
port_listening() {
    command -v ss >/dev/null 2>&1 || return 1
    ss -Htln 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]$1\$"
}

# Starts a server on a random port from 20000-59999, away from the usual service
# ports: up to 10 tries of `LAUNCH DIR PORT` on ports `IN_USE PORT` says are free,
# running `CLEANUP DIR` (CLEANUP may carry arguments of its own) after a launch that
# failed, as another process can take the port between the check and the bind. Sets
# PORT (empty when every try failed) and TRIES.
launch_on_free_port() {
    local in_use="$1" launch="$2" cleanup="$3" dir="$4"
    for TRIES in 1 2 3 4 5 6 7 8 9 10; do
        PORT=$((20000 + RANDOM % 40000))
        "$in_use" "$PORT" && continue
        "$launch" "$dir" "$PORT" && return 0
        # shellcheck disable=SC2086 # CLEANUP may carry its own first arguments
        $cleanup "$dir"
    done
    PORT=""
    return 1
}

# The port the server in DIR was started on; dies when none was.
saved_port() {
    [ -f "$1/port" ] || die "no server was started in $1"
    cat "$1/port"
}

# Saves the extra server options ARGS in DIR/args, one a line, for `restart`.
save_args() {
    local dir="$1" arg
    shift
    : >"$dir/args"
    for arg in "$@"; do printf '%s\n' "$arg" >>"$dir/args"; done
}

# Reads the options saved in DIR/args into the array SERVER_ARGS.
load_args() {
    local line
    SERVER_ARGS=()
    if [ -f "$1/args" ]; then
        while IFS= read -r line; do SERVER_ARGS+=("$line"); done <"$1/args"
    fi
}

# The pid in FILE when that process is alive; fails otherwise.
live_pid() {
    local file="$1" pid
    [ -f "$file" ] || return 1
    pid="$(cat "$file" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# SIGTERM to PID, then SIGKILL if it has not exited within TENTHS tenths of a second.
stop_pid() {
    local pid="$1" tenths="$2"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$tenths"); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Runs COMMAND... in the background as the server of DIR (pid in DIR/pid, output
# appended to DIR/server.log) and waits up to TENTHS tenths of a second for PORT to
# answer; then saves PORT in DIR/port. Fails if the server exits or stays silent.
spawn_server() {
    local dir="$1" port="$2" tenths="$3" pid
    shift 3
    # Its own stdin/stdout, so whoever reads this script's output is not kept waiting.
    "$@" </dev/null >>"$dir/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    for _ in $(seq 1 "$tenths"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if port_answers "$port"; then
            echo "$port" >"$dir/port"
            return 0
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    return 1
}

# Stops the server started by `spawn_server` in DIR, waiting until it is gone.
halt_spawned() {
    local dir="$1"
    [ -f "$dir/pid" ] || return 0
    stop_pid "$(cat "$dir/pid")" 100
    rm -f "$dir/pid"
}

# `start DIR [OWNER_PID]` for an in-memory server (WHAT, in messages) that the
# sourcing script's `launch DIR PORT` runs with `spawn_server`: prints its
# http://127.0.0.1:PORT URL; with OWNER_PID, leaves a watchdog.
spawned_start() {
    local what="$1" dir="$2" owner="${3:-}"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if ! launch_on_free_port port_answers launch : "$dir"; then
        tail -n 30 "$dir/server.log" >&2 || true
        die "could not start $what after $TRIES tries"
    fi
    [ -n "$owner" ] && watchdog "$dir" "$owner"
    echo "http://127.0.0.1:$PORT"
}

# `stop DIR` for a server started with `spawned_start`.
spawned_stop() {
    stop_watchdog "$1"
    halt_spawned "$1"
}

# `restart DIR` for a server started with `spawned_start` (WHAT, in messages): stops
# it and launches it again on the same port; returns once it accepts connections.
spawned_restart() {
    local what="$1" dir="$2" port
    port="$(saved_port "$dir")"
    halt_spawned "$dir"
    # The old socket may linger for a moment; retry the same port.
    for _ in $(seq 1 50); do
        if launch "$dir" "$port"; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$dir/server.log" >&2 || true
    die "could not restart $what on port $port"
}

# Servers that write their own pid file and log, DIR/NAME.pid and DIR/NAME.log
# (nats-server, redis-server), taking extra options ARGS that `restart` reuses. The
# sourcing script defines `launch DIR PORT` (reading the options with `load_args`) and
# `url PORT`, and passes NAME and the server's name in messages, SERVER.

# `start DIR [ARGS...]`: launches the server on a free port and prints its URL.
own_pid_start() {
    local name="$1" server="$2" dir="$3"
    shift 3
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    live_pid "$dir/$name.pid" >/dev/null && die "a server already runs in $dir"
    save_args "$dir" "$@"
    launch_on_free_port port_listening launch "own_pid_stop $name" "$dir" ||
        die_with_log "$dir/$name.log" "could not start $server after $TRIES tries"
    echo "$PORT" >"$dir/port"
    url "$PORT"
}

# `stop DIR`: SIGTERM, then SIGKILL after 30 s.
own_pid_stop() {
    local name="$1" dir="$2" pid
    pid="$(live_pid "$dir/$name.pid")" || return 0
    stop_pid "$pid" 300
}

# `restart DIR`: stops the server and launches it again on the same port with the
# same options and data; prints the URL again.
own_pid_restart() {
    local name="$1" server="$2" dir port
    port="$(saved_port "$3")"
    dir="$(cd "$3" && pwd)"
    own_pid_stop "$name" "$dir"
    launch "$dir" "$port" || die_with_log "$dir/$name.log" "could not restart $server on port $port"
    url "$port"
}

# Stops the server and removes DIR once OWNER exits (a test binary that never got to
# clean up must not leave servers behind). The script's `stop DIR` ends the watchdog.
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

# Ends the watchdog of DIR, if there is one.
stop_watchdog() {
    local dir="$1"
    if [ -f "$dir/watchdog.pid" ]; then
        kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
        rm -f "$dir/watchdog.pid"
    fi
}

# The command line: `start DIR [ARGS...]` (ARGS as START_USAGE says; at most MAX_ARGS
# of them, any number when MAX_ARGS is empty), `stop DIR` and `restart DIR`, each
# handled by the sourcing script's function of that name.
service_main() {
    local start_usage="$1" max_args="$2"
    shift 2
    case "${1:-}" in
    start)
        [ $# -ge 2 ] || die "usage: $0 start DIR $start_usage"
        [ -z "$max_args" ] || [ $# -le $((max_args + 2)) ] || die "usage: $0 start DIR $start_usage"
        shift
        start "$@"
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
        die "usage: $0 start DIR $start_usage | stop DIR | restart DIR"
        ;;
    esac
}
