#!/usr/bin/env bash
# Streaming under a memory limit: a capture file larger than the address space a process may use
# (ulimit -v) is analysed end to end by `meltrig bench analyze --file` under that limit, and its
# per-token energies are checked against the generator's truth stored in the file (/truth).
#
#   scripts/analysis_memory_limit.sh [MELTRIG] [DIR]
#
# MELTRIG: the CLI (default build/cli/meltrig); DIR: where the file goes (default: the system's
# temporary directory; needs about 2.5 GB free). Sizes: 3000 s at 100 kHz, uncompressed, two
# float32 channels = 300 M samples, a 2.4 GB file; 72,000 tokens in 4 repetitions; the limit is
# 1 GiB of virtual memory (ulimit -v 1048576). The same limit first shows that the file's current
# channel alone (1.2 GB) cannot be loaded whole (numpy/h5py, if Debian's python3-h5py is there).
# Wall time on an idle 2-core machine: a few minutes, most of it writing the file.
set -euo pipefail

meltrig=${1:-build/cli/meltrig}
base=${2:-${TMPDIR:-/tmp}}
limit_kib=1048576
opts=(--rate 100000 --seconds 3000 --tokens 72000 --repetitions 4 --token-samples 4000
      --uncompressed)

dir=$(mktemp -d "$base/meltrig-memory-limit-XXXXXX")
trap 'rm -rf "$dir"' EXIT
file="$dir/large.h5"

echo "== writing the capture (no limit)"
"$meltrig" bench analyze "${opts[@]}" --make "$file"
bytes=$(stat -c %s "$file")
echo "file: $file, $((bytes / 1000000)) MB; limit: ulimit -v $limit_kib KiB ($((limit_kib / 1024)) MiB)"
if ((bytes <= limit_kib * 1024)); then
  echo "the file is not larger than the limit" >&2
  exit 1
fi

if /usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null; then
  echo "== under the limit, loading the current channel whole (numpy/h5py) must fail"
  if (ulimit -v "$limit_kib" && /usr/bin/python3 - "$file" <<'EOF'
import sys
import h5py
with h5py.File(sys.argv[1], "r") as f:
    mon = next(g for g in f.values() if isinstance(g, h5py.Group) and "sample_rate_hz" in g.attrs)
    x = mon["current"][:]
print(f"loaded {x.nbytes} bytes")
EOF
  ) >"$dir/python.out" 2>&1; then
    cat "$dir/python.out"
    echo "loading the channel whole succeeded: the limit does not bite" >&2
    exit 1
  fi
  echo "failed as it must: $(tail -n 1 "$dir/python.out")"
fi

echo "== under the limit, meltrig analyses the file by streaming"
(ulimit -v "$limit_kib" && "$meltrig" bench analyze "${opts[@]}" --file "$file" --repeats 1)
echo "== done: analysed within ulimit -v $limit_kib KiB, every token equal to the truth"
