#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each for SECONDS (default 60),
# starting from its seed corpus in fuzz/corpus/<name>/. Exits non-zero on any finding; crashing
# inputs are left in build-fuzz/findings/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
"$here/scripts/setup.sh"
build="$here/build-fuzz"
CC=clang CXX=clang++ cmake -S "$here" -B "$build" -G Ninja -DMELTRIG_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
mkdir -p "$build/findings"
status=0
for fuzzer in "$build"/fuzz/fuzz_*; do
  name=$(basename "$fuzzer")
  seeds="$here/fuzz/corpus/${name#fuzz_}"
  work="$build/corpus/$name"
  mkdir -p "$work" "$seeds"
  echo "--- $name for ${seconds}s"
  if ! "$fuzzer" -max_total_time="$seconds" -artifact_prefix="$build/findings/$name-" \
      -print_final_stats=1 "$work" "$seeds" >"$build/$name.log" 2>&1; then
    echo "FINDING in $name:"; tail -40 "$build/$name.log"; status=1
  else
    grep -E "^Done|stat::number_of_executed_units" "$build/$name.log" || true
  fi
done
exit $status
