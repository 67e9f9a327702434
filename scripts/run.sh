#!/usr/bin/env bash
# Builds (release) and runs Wharf. With no arguments: `wharf serve` on the embedded default
# (0.0.0.0:5000, cache in ./wharf-data, the public registries). Arguments go to `wharf`,
# e.g. `scripts/run.sh serve --config wharf.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if (($# == 0)); then
    set -- serve
fi
exec cargo run --release --locked --bin wharf -- "$@"
