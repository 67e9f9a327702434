#!/usr/bin/env bash
# Installs what building and testing Wharf needs on Debian 12, only where it is missing.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail

need_pkgs=(build-essential libclang-dev pkg-config ca-certificates openssl curl)
setup_test=0
[[ "${1:-}" == "--test" || "${WHARF_SETUP_TEST:-}" == 1 ]] && setup_test=1
if ((setup_test)); then
    # Real third-party software for the end-to-end tests.
    need_pkgs+=(docker-registry skopeo prometheus python3-yaml containerd podman)
fi
if [[ "${WHARF_SETUP_BENCH:-}" == 1 ]]; then
    # The peers and load tools of bench/run.
    need_pkgs+=(docker-registry skopeo nginx-light wrk python3)
fi

missing=()
for p in "${need_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq </dev/null
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found. Install a Rust toolchain (1.82 or newer), e.g. with rustup." >&2
    exit 1
fi

if ((setup_test)); then
    # Garage (an S3 server) for the shared-store and cluster tests: not packaged in Debian 12,
    # so built once from crates.io into $WHARF_TOOLS (its build dir removed afterwards).
    export WHARF_TOOLS="${WHARF_TOOLS:-$HOME/.cache/wharf/tools}"
    if ! command -v garage >/dev/null 2>&1 && [[ ! -x "$WHARF_TOOLS/bin/garage" ]]; then
        echo "setup: installing garage 2.5.0 (cargo install, about 10 min on 2 cores)" >&2
        cargo install garage --version 2.5.0 --locked --no-default-features \
            --features bundled-libs,lmdb --root "$WHARF_TOOLS" \
            --target-dir "$WHARF_TOOLS/garage-build" </dev/null
        rm -rf "$WHARF_TOOLS/garage-build"
    fi
    export PATH="$WHARF_TOOLS/bin:$PATH"
fi
