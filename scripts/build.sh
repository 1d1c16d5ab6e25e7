#!/usr/bin/env bash
# Configures and builds meltrig into build/ (or $MELTRIG_BUILD_DIR) with warnings as errors.
# Extra arguments go to cmake's configure step.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${MELTRIG_BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMELTRIG_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
