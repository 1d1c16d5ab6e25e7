#!/usr/bin/env python3
"""The numpy/h5py peer of `meltrig bench analyze`.

Reads a meltrig capture's current and voltage channels with h5py, forms power (float32 product,
as meltrig's reader does) and integrates it over the given windows by the trapezoid rule with
linear interpolation at both window edges; an interval touching a missing (NaN) sample counts
zero, never a made-up value. Usage:

    analysis_numpy_peer.py CAPTURE.h5 WINDOWS.f64 ENERGIES.f64

WINDOWS.f64 holds float64 pairs (t0_s, t1_s) on the monitor's time base (sample index / rate);
ENERGIES.f64 receives one float64 per window (J). Prints one JSON line of timings: wall_s and
cpu_s (read + integrate, after the imports), read_wall_s and read_cpu_s (the h5py reads).
"""
import json
import sys
import time

import h5py
import numpy as np


def monitor_group(f):
    for name, obj in f.items():
        if isinstance(obj, h5py.Group) and "sample_rate_hz" in obj.attrs:
            return obj
    raise SystemExit(f"{f.filename}: no monitor group (a group with sample_rate_hz)")


def integrals_at(t, p, cum, rate):
    """Integral of the linearly interpolated trace from sample 0 to each time in t."""
    x = t * rate
    k = np.clip(np.floor(x).astype(np.int64), 0, len(p) - 2)
    frac = np.clip(x - k, 0.0, 1.0)
    a = p[k]
    b = p[k + 1]
    part = (a * frac + 0.5 * (b - a) * frac * frac) / rate
    part[~np.isfinite(part)] = 0.0
    return cum[k] + part


def main(argv):
    if len(argv) != 4:
        raise SystemExit(__doc__)
    capture, windows_path, out_path = argv[1:]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with h5py.File(capture, "r") as f:
        mon = monitor_group(f)
        rate = float(mon.attrs["sample_rate_hz"])
        n = int(f["capture_state/samples_written"][()])
        current = mon["current"][:n]
        voltage = mon["voltage"][:n]
    wall1, cpu1 = time.perf_counter(), time.process_time()
    p = (current * voltage).astype(np.float64)
    del current, voltage
    area = 0.5 * (p[:-1] + p[1:]) / rate
    area[~np.isfinite(area)] = 0.0
    cum = np.empty(n)
    cum[0] = 0.0
    np.cumsum(area, out=cum[1:])
    del area
    w = np.fromfile(windows_path, dtype=np.float64).reshape(-1, 2)
    energy = integrals_at(w[:, 1], p, cum, rate) - integrals_at(w[:, 0], p, cum, rate)
    energy.astype(np.float64).tofile(out_path)
    wall2, cpu2 = time.perf_counter(), time.process_time()
    print(json.dumps({"wall_s": wall2 - wall0, "cpu_s": cpu2 - cpu0,
                      "read_wall_s": wall1 - wall0, "read_cpu_s": cpu1 - cpu0,
                      "samples": n, "windows": int(w.shape[0])}))


if __name__ == "__main__":
    main(sys.argv)
