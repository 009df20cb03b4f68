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
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

# Starts the server on $2 in DIR $1; succeeds once the port answers.
launch() {
    local cmd
    cmd="$(moto_cmd)"
    # shellcheck disable=SC2086
    spawn_server "$1" "$2" 300 $cmd -H 127.0.0.1 -p "$2"
}

start() {
    spawned_start "moto" "$@"
}

stop() {
    spawned_stop "$1"
}

restart() {
    spawned_restart "moto" "$1"
}

service_main "[OWNER_PID]" 1 "$@"
