#!/usr/bin/env bash
# Configures and builds meltrig into build/ (or $MELTRIG_BUILD_DIR) with warnings as errors.
# Extra arguments go to cmake's configure step. MELTRIG_BUILD_TARGETS (space-separated) builds only
# those targets (e.g. "meltrig" for the bench without the test suite); default: everything.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MELTRIG_BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMELTRIG_WERROR=ON "$@" >/dev/null
targets=()
for t in ${MELTRIG_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
