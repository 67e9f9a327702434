#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each (not part of the test suite).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target, default 60; default: every target
#
# Installs cargo-fuzz when missing. Only a stable toolchain is needed: cargo-fuzz's nightly
# flags are let through with RUSTC_BOOTSTRAP=1. Builds in fuzz/target (release, debug
# assertions and overflow checks on, no sanitizer: Wharf forbids unsafe code). RocksDB is not
# rebuilt when a build of Wharf already made its static library (found under
# $CARGO_TARGET_DIR, ~/.cache/wharf/target or ./target): it is linked from there. Crashes go
# to fuzz/artifacts/<target>/; the script runs every target, then fails if any crashed.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
[ $# -gt 0 ] && shift

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
  # scripts/test.sh builds with an explicit --target (<dir>/<triple>/debug/build/...).
  lib=$(ls -t "${CARGO_TARGET_DIR:-/nonexistent}"/{,*/}*/build/librocksdb-sys-*/out/librocksdb.a \
    "$HOME"/.cache/wharf/target/{,*/}*/build/librocksdb-sys-*/out/librocksdb.a \
    ../target/{,*/}*/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1 || true)
  if [ -n "$lib" ]; then
    export ROCKSDB_LIB_DIR
    ROCKSDB_LIB_DIR=$(dirname "$lib")
    export ROCKSDB_STATIC=1
    echo "== linking RocksDB from $ROCKSDB_LIB_DIR"
  fi
fi
# The fuzz crate builds in fuzz/target, never in the main build's directory.
unset CARGO_TARGET_DIR

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  dict=()
  [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
  echo "== $t: ${secs}s"
  if ! cargo fuzz run --sanitizer none --release --debug-assertions "$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -print_final_stats=1 "${dict[@]}"; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "== crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "== no crash in: ${targets[*]}"
