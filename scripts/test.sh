#!/usr/bin/env bash
# Runs every test of the project: Rust (fmt, clippy, unit + integration), the Python
# runtime's tests, and the end-to-end tests that drive the real `troupe` binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# Keep the cargo target dir outside the clone so repeat runs are incremental.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if mkdir -p /var/cache/troupe/target 2>/dev/null && [ -w /var/cache/troupe/target ]; then
        export CARGO_TARGET_DIR=/var/cache/troupe/target
    else
        export CARGO_TARGET_DIR="$PWD/target"
    fi
fi
export TROUPE_BIN="$CARGO_TARGET_DIR/debug/troupe"

echo "== python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== build troupe"
cargo build -p troupe-cli --locked

# Two runs: each suite has its own conftest module.
echo "== python runtime tests"
python3 -m pytest tests/python -q -p no:cacheprovider

echo "== end-to-end tests (real binary, real Python)"
python3 -m pytest tests/e2e -q -p no:cacheprovider
