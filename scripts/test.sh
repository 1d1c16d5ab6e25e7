#!/usr/bin/env bash
# Installs what is needed, builds with warnings as errors, and runs the whole test suite.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
"$here/scripts/build.sh" "$@"
cd "${MELTRIG_BUILD_DIR:-$here/build}"
ctest --output-on-failure --timeout 600
