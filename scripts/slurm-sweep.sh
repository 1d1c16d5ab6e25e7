#!/usr/bin/env bash
# Runs a sweep plan as a Slurm job array of shards, one shard per array task (docs/lab.md), waits
# for the array, and merges the shards' catalogs:
#
#   scripts/slurm-sweep.sh PLAN OUT SHARDS [DEVICES_PER_SHARD]
#
# Task I runs `meltrig sweep PLAN --shard I/SHARDS -o OUT` on whichever rig host Slurm gives it,
# asking for DEVICES_PER_SHARD (default 1) "meltrig_dev" generic resources, the devices under test
# on that host. All tasks share OUT (a shared file system in a lab): each writes OUT/shard-I-of-N/.
# The merged catalog is OUT/catalog.csv. Environment: SLURM_CONF as usual; MELTRIG (default: this
# checkout's build/cli/meltrig); SBATCH_EXTRA (more sbatch options, e.g. "--partition=bench").
# Resubmitting after a failure resumes every shard (the sweep's journal).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -ge 3 ]] || { echo "usage: $0 PLAN OUT SHARDS [DEVICES_PER_SHARD]" >&2; exit 2; }
plan=$(realpath "$1")
mkdir -p "$2"
out=$(realpath "$2")
shards=$3
per_shard=${4:-1}
meltrig=$(realpath "${MELTRIG:-$here/build/cli/meltrig}")
[[ -x $meltrig ]] || { echo "slurm-sweep: $meltrig is not an executable (build it first)" >&2; exit 2; }

# --wait: sbatch returns when every task has ended, with a non-zero status if any failed.
# shellcheck disable=SC2086
sbatch --wait --array="1-$shards" --gres="meltrig_dev:$per_shard" --job-name=meltrig-sweep \
  --output="$out/slurm-%A_%a.log" ${SBATCH_EXTRA:-} \
  --wrap="'$meltrig' sweep '$plan' --shard \"\$SLURM_ARRAY_TASK_ID/$shards\" -o '$out'"

catalogs=()
for ((i = 1; i <= shards; ++i)); do catalogs+=("$out/shard-$i-of-$shards/catalog.csv"); done
"$meltrig" catalog merge "${catalogs[@]}" -o "$out/catalog.csv"
echo "slurm-sweep: $shards shards merged into $out/catalog.csv"
