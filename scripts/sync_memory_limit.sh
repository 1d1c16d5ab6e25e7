#!/usr/bin/env bash
# File-level clock sync under a memory limit: an hour of a pulsed simulated phone at 100 kHz
# (361 M samples: 1.44 GB as float32 in memory, 0.7 GB compressed on disk) is synchronised by
# `meltrig bench sync --file` under ulimit -v 1 GiB, which the same sync with the whole trace read
# into memory (--in-memory, what sync_file did before paging) cannot do.
#
#   scripts/sync_memory_limit.sh [MELTRIG] [DIR]
#
# MELTRIG: the CLI (default build/cli/meltrig); DIR: where the file goes (default: the system's
# temporary directory; needs about 0.8 GB free). Wall time on a 2-core machine: about 1 minute to
# write the file, 20 s per sync.
set -euo pipefail

meltrig=${1:-build/cli/meltrig}
base=${2:-${TMPDIR:-/tmp}}
limit_kib=1048576

dir=$(mktemp -d "$base/meltrig-sync-memory-XXXXXX")
trap 'rm -rf "$dir"' EXIT
file="$dir/hour-100k.h5"

echo "== writing the capture (no limit)"
"$meltrig" bench sync --make "$file" --minutes 60 --rate 100000

echo "== under ulimit -v $limit_kib KiB, the trace read whole must fail"
if (ulimit -v "$limit_kib" && "$meltrig" bench sync --file "$file" --in-memory) >"$dir/whole.out" 2>&1; then
  cat "$dir/whole.out"
  echo "the whole-trace sync succeeded: the limit does not bite" >&2
  exit 1
fi
echo "failed as it must: $(tail -n 1 "$dir/whole.out")"

echo "== under the same limit, the paged sync"
(ulimit -v "$limit_kib" && "$meltrig" bench sync --file "$file")
echo "== done"
