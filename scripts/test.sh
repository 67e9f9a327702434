#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, unit, integration and end-to-end tests
# (the latter with Debian's docker-registry and skopeo, installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
WHARF_SETUP_TEST=1 source scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
# One profile: the end-to-end tests run the `wharf` binary this same build produces.
cargo test --locked -- --test-threads "${WHARF_TEST_THREADS:-4}"
