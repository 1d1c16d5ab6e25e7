#!/usr/bin/env bash
# The whole test suite (minus the doctest suite "slow") under AddressSanitizer and
# UndefinedBehaviorSanitizer, in build-asan/ (-O1 -g1). Not part of CI: CI's 45 minutes on 2 cores
# hold the release suite and bounded fuzzing; this pass (about as long again) is run before every
# merge to main, and its result goes in the closing note.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
MELTRIG_BUILD_DIR="${MELTRIG_BUILD_DIR:-$here/build-asan}" \
  "$here/scripts/test.sh" -DMELTRIG_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug "$@"
