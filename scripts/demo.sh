#!/usr/bin/env bash
# The main job: install what is needed, build, and run the simulated bench on the phone scenario:
# a simulated phone running a llama.cpp-like LLM, an emulated Monsoon LVPM and LCUS relay board on
# pseudo-terminals, the simulated runner's marker file, captured through libserialport into
# sim-phone.h5 with the ground truth beside the samples; then read back with h5py.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
out=${1:-$here/sim-phone.h5}
rm -f "$out" "$out.markers"
"$here/build/cli/meltrig" sim "$here/examples/scenarios/phone_llamacpp.toml" -o "$out"
/usr/bin/python3 "$here/docs/examples/read_capture.py" "$out"
