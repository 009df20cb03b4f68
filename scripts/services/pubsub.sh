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
# shellcheck source=scripts/services/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

# Starts the emulator on $2 in DIR $1; succeeds once the port answers.
launch() {
    local bin
    bin="$(emulator_bin)" || exit 3
    command -v java >/dev/null 2>&1 || {
        echo "pubsub.sh: the Pub/Sub emulator needs Java (apt-get install openjdk-17-jre-headless)" >&2
        exit 3
    }
    # A small heap is plenty for tests. The launcher execs java (as env execs the
    # launcher): the pid saved is the JVM's.
    spawn_server "$1" "$2" 600 env JAVA_OPTS="${JAVA_OPTS:--Xmx512m}" "$bin" \
        --host=127.0.0.1 --port="$2"
}

start() {
    spawned_start "the Pub/Sub emulator" "$@"
}

stop() {
    spawned_stop "$1"
}

restart() {
    spawned_restart "the Pub/Sub emulator" "$1"
}

service_main "[OWNER_PID]" 1 "$@"
