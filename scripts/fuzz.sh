#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) and runs each for SECONDS
# (default 20) from its seed corpus in fuzz/corpus/<target>/. Fails if any target finds
# a crash; the crashing input is kept under fuzz/artifacts/<target>/ (git-ignored).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo-fuzz drives the stable toolchain with RUSTC_BOOTSTRAP=1 (see docs/decisions.md,
# "Fuzzing"). Builds go to FUZZ_TARGET_DIR (default: "$CARGO_TARGET_DIR-fuzz", else
# fuzz/target), kept apart from the main target dir because every crate is compiled
# with coverage instrumentation. New inputs a run finds go to a scratch directory that
# is removed at the end, so the checked-in corpus stays small.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
[ $# -gt 0 ] && shift
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

install_root=/var/cache/troupe/cargo-install
if ! cargo fuzz --version >/dev/null 2>&1; then
    if ! mkdir -p "$install_root" 2>/dev/null || [ ! -w "$install_root" ]; then
        install_root="$PWD/fuzz/.cargo-install"
    fi
    export PATH="$install_root/bin:$PATH"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "== installing cargo-fuzz into $install_root"
        cargo install cargo-fuzz --locked --version '^0.13' --root "$install_root"
    fi
fi

export RUSTC_BOOTSTRAP=1
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    target_dir="$FUZZ_TARGET_DIR"
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
    target_dir="${CARGO_TARGET_DIR%/}-fuzz"
else
    target_dir="$PWD/fuzz/target"
fi
# Coverage-guided, no sanitizer: every crate forbids `unsafe`, so what a fuzzer can find
# here is panics, arithmetic overflow (debug assertions are on), hangs and runaway memory,
# all of which libFuzzer reports without ASan, at several times the speed.
build_flags=(--sanitizer none --debug-assertions --target-dir "$target_dir")

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== building fuzz targets (${targets[*]}) in $target_dir"
cargo fuzz build "${build_flags[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    echo "== fuzzing $t for ${secs}s"
    if cargo fuzz run "${build_flags[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$scratch/$t.log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)' "$scratch/$t.log" || true
    else
        failed+=("$t")
        tail -n 60 "$scratch/$t.log"
        echo "!! $t found a crash; input kept in fuzz/artifacts/$t/" >&2
    fi
done
rmdir fuzz/artifacts/* fuzz/artifacts 2>/dev/null || true

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing passed: ${targets[*]}"
