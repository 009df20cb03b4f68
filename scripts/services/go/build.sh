# Builds the Go test servers of scripts/services once and reuses them: each
# scripts/services/go/NAME is a tiny module (go.mod, go.sum, main.go) whose binary is
# cached outside the clone under $TROUPE_GO_CACHE (default /var/cache/troupe/go, or
# ~/.cache/troupe/go where that is not writable), keyed by the module's files and the
# Go version, so a changed pin builds anew and an unchanged one never builds twice.
# Builds run one at a time (a lock file) and at low priority. Sourced after lib.sh.
# shellcheck shell=bash

GO_MODULES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The cache root, created if needed.
go_cache_root() {
    local root="${TROUPE_GO_CACHE:-}"
    if [ -z "$root" ]; then
        root=/var/cache/troupe/go
        if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then
            root="${XDG_CACHE_HOME:-$HOME/.cache}/troupe/go"
        fi
    fi
    mkdir -p "$root" || die "cannot create the Go build cache $root"
    echo "$root"
}

require_go() {
    command -v go >/dev/null 2>&1 ||
        die "the Go toolchain is needed to build the test servers (Debian: apt-get install golang, or go.dev/dl)"
}

# Runs BUILD_FN OUT (which must leave an executable at OUT) under the build lock, unless
# OUT already exists; the result is moved into place whole, so a killed build leaves
# nothing half-written behind. WHAT names the binary in messages; the build's output
# goes to OUT.log.
go_cached_build() {
    local what="$1" out="$2" build_fn="$3" root
    [ -x "$out" ] && return 0
    root="$(go_cache_root)"
    mkdir -p "$(dirname "$out")"
    (
        exec 9>"$root/build.lock"
        flock 9
        # Another start may have built it while this one waited for the lock.
        [ -x "$out" ] && exit 0
        echo "$SERVICE_SCRIPT: building $what into $(dirname "$out") (once; the first build takes minutes)" >&2
        local started=$SECONDS
        rm -f "$out.tmp"
        if ! "$build_fn" "$out.tmp" >"$out.log" 2>&1; then
            tail -n 30 "$out.log" >&2
            exit 1
        fi
        mv -f "$out.tmp" "$out"
        echo "$SERVICE_SCRIPT: built $what in $((SECONDS - started)) s" >&2
    ) || die "building $what failed (log: $out.log)"
}

# The path of the binary of module scripts/services/go/NAME, built on first use.
go_module_binary() {
    local name="$1" src key out
    src="$GO_MODULES/$name"
    [ -f "$src/go.mod" ] || die "no Go module at $src"
    require_go
    key="$( (cat "$src/go.mod" "$src/go.sum" "$src/main.go" && go env GOVERSION GOOS GOARCH) |
        sha256sum | cut -c1-16)"
    out="$(go_cache_root)/bin/$name-$key/$name"
    GO_BUILD_SRC="$src" go_cached_build "$name" "$out" go_build_module
    echo "$out"
}

# Builds the module in GO_BUILD_SRC into OUT; go.sum is checked in, so nothing is resolved
# anew (-mod=readonly fails rather than edit it); no VCS stamping, which would need git
# to trust the clone.
go_build_module() {
    (cd "$GO_BUILD_SRC" && nice -n 10 go build -mod=readonly -buildvcs=false -trimpath -ldflags='-s -w' -o "$1" .)
}
