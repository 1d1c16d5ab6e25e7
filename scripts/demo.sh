#!/usr/bin/env bash
# The main job (the README's first command), a sweep: install what is needed, build the meltrig binary only, and run the
# example sweep on the simulated bench (examples/sim-bench.toml): two simulated phones powered
# through one emulated Monsoon LVPM by a 4-channel LCUS relay board, USB cut by an emulated
# switchable hub while measuring, two models x three repetitions = 12 runs, one dataset each,
# ending with the summary table, the catalog and the report's path. Run it again after an
# interruption and it resumes; remove the output directory to start over.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
MELTRIG_BUILD_TARGETS=meltrig "$here/scripts/build.sh"
out=${1:-$here/sweep-sim-bench}
start=$(date +%s%N)
"$here/build/cli/meltrig" sweep "$here/examples/sim-bench.toml" -o "$out"
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
printf 'sweep run time: %d.%d s (after the build)\n' $((ms / 1000)) $((ms % 1000 / 100))
