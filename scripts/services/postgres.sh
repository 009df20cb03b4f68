#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, on loopback only.
#
#   postgres.sh start DIR   initdb into DIR, start on a free 127.0.0.1 port, create the
#                           database `troupe`, print its URL on stdout (nothing else)
#   postgres.sh stop DIR    stop the server started in DIR (fast shutdown)
#
# PostgreSQL refuses to run as root, so when we are root the server runs as the
# `postgres` system user and DIR is handed to it. Logs go to DIR/postgres.log.
set -euo pipefail
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The Debian packages keep the server binaries out of PATH; prefer PATH, then the
# newest /usr/lib/postgresql/*/bin.
find_bindir() {
    local initdb
    initdb="$(command -v initdb 2>/dev/null || true)"
    if [ -z "$initdb" ]; then
        initdb="$(ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
    fi
    [ -n "$initdb" ] || die "initdb not found; install PostgreSQL (Debian: apt-get install postgresql)"
    dirname "$(readlink -f "$initdb")"
}

# Runs a command as the server's owner.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir="$1" bindir port tries
    bindir="$(find_bindir)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user"
        chown postgres "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        # Trust auth is fine: the server listens on loopback only and holds test data.
        as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 \
            --no-sync >"$dir/initdb.log" 2>&1 ||
            die_with_log "$dir/initdb.log" "initdb failed"
    fi
    mkdir -p "$dir/sock"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/sock"

    # Another process can take the port between the check and the bind, so a failed
    # start is retried on a new port.
    for tries in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        port_listening "$port" && continue
        # fsync off: a test server's data may be lost in an OS crash, never mind.
        if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir/sock -c fsync=off -c max_connections=200" \
            start >/dev/null 2>&1; then
            echo "$port" >"$dir/port"
            break
        fi
        port=""
    done
    [ -n "${port:-}" ] || die_with_log "$dir/postgres.log" "could not start PostgreSQL after $tries tries"

    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 30 ||
        die_with_log "$dir/postgres.log" "PostgreSQL on port $port is not accepting connections"
    if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atq \
        -c "SELECT 1 FROM pg_database WHERE datname = 'troupe'" | grep -q 1; then
        "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres troupe ||
            die "createdb troupe failed"
    fi
    echo "postgres://postgres@127.0.0.1:$port/troupe"
}

stop() {
    local dir="$1" bindir
    [ -f "$dir/data/postmaster.pid" ] || return 0
    bindir="$(find_bindir)"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

case "${1:-}" in
start)
    [ $# -eq 2 ] || die "usage: $0 start DIR"
    start "$2"
    ;;
stop)
    [ $# -eq 2 ] || die "usage: $0 stop DIR"
    stop "$2"
    ;;
*)
    die "usage: $0 start DIR | stop DIR"
    ;;
esac
