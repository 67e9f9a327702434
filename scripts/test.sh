#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit, integration and end-to-end tests
# (the latter with Debian's docker-registry and skopeo, installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
WHARF_SETUP_TEST=1 source scripts/setup.sh

# An explicit --target keeps build scripts and their dependencies apart from the crates they
# build, so clippy's check build and the test build share one run of each build script: one
# compile of RocksDB's C++ (~15 min on 2 cores) instead of two. Outputs go to
# $CARGO_TARGET_DIR/<triple>/debug.
target=$(rustc -vV | sed -n 's/^host: //p')

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked --target "$target" -- -D warnings
echo "== cargo test"
# One profile: the end-to-end tests run the `wharf` binary this same build produces.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --target "$target" -- --test-threads "${WHARF_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
