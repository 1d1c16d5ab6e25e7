#!/usr/bin/env bash
# The main job: install what is needed, build, and run the simulated bench. For now that is an
# emulated Monsoon LVPM on a pseudo-terminal, captured for 10 s through libserialport into
# demo.h5, then read back with h5py.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
out=${1:-$here/demo.h5}
rm -f "$out"
"$here/build/rig/cli/meltrig" demo --duration 10 -o "$out"
/usr/bin/python3 "$here/docs/examples/read_capture.py" "$out"
