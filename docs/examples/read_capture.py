#!/usr/bin/env python3
"""Read a meltrig capture with h5py and print what it holds.

Usage: python3 read_capture.py CAPTURE.h5   (Debian: apt-get install python3-h5py)
Works on a finished capture and on one still being written (SWMR).
"""
import sys

import h5py
import numpy as np


def main(path):
    with h5py.File(path, "r", swmr=True) as f:
        m = f["monitor"]
        rate = float(m.attrs["sample_rate_hz"])
        n = int(f["capture_state/samples_written"][()])
        current = m["current"][:n]  # amps, NaN where a sample is missing
        voltage = m["voltage"][:n]  # volts
        t = np.arange(n) / rate  # the time base: sample index / rate, never host arrival time
        power = current * voltage
        valid = ~np.isnan(power)
        names = [x.decode() if isinstance(x, bytes) else x for x in m["counters"].attrs["names"]]
        counters = dict(zip(names, (int(v) for v in m["counters"][:])))
        states = {0: "running (or ended uncleanly)", 1: "complete", 2: "failed", 3: "interrupted"}
        state = states[int(f["capture_state/state"][()])]
        reason = f["capture_state/end_reason"][()].rstrip(b"\0").decode()

        print(f"{path}: {m.attrs['driver']} on {m.attrs['port']}, serial {m.attrs['serial_number']}")
        print(f"  started (host UTC): {f.attrs['host_wall_clock_start_utc']}")
        print(f"  state: {state}; {reason}")
        print(f"  {n} samples at {rate:.0f} Hz = {t[-1] + 1 / rate if n else 0:.3f} s, "
              f"{valid.sum()} valid")
        print(f"  mean current {np.nanmean(current):.6f} A, mean power {np.nanmean(power):.6f} W")
        print(f"  energy {np.nansum(power) / rate:.6f} J (valid samples x 1/rate)")
        # Two counters describe the loss inference, not losses: late bursts it absorbed as host or
        # device stalls, and the longest time data waited for that decision.
        notes = {k: counters.pop(k) for k in ("stalls_absorbed", "longest_hold_ms") if k in counters}
        lost = {k: v for k, v in counters.items() if v}
        print(f"  losses: {lost if lost else 'none'}; gap rows: {len(m['gaps'])}")
        print(f"  stalls absorbed: {notes.get('stalls_absorbed', 0)}, "
              f"longest hold {notes.get('longest_hold_ms', 0)} ms")
        print(f"  calibration rows: {len(m['calibration'])}")

        # Runner markers, device telemetry and (simulated bench only) the ground truth, added
        # after the capture ended; absent from a plain capture.
        for name, g in f.get("markers", {}).items():
            ev = g["events"][:]
            kinds = [k.decode() if isinstance(k, bytes) else k for k in ev["kind"]]
            tokens = ev[np.array(kinds) == "token"]
            print(f"  markers/{name}: {len(ev)} events on the device {g.attrs['clock']} clock, "
                  f"{len(tokens)} tokens, {int(g.attrs['issue_count'])} issues")
        if "telemetry" in f:
            series = []
            f["telemetry"].visititems(
                lambda k, o: series.append(f"{k} [{o.attrs['unit']}]")
                if isinstance(o, h5py.Dataset) else None)
            print(f"  telemetry: {', '.join(series)}")
        if "truth" in f:
            tr = f["truth"].attrs
            tok = f["truth/tokens/energy_j"][:]
            measured = np.nansum(power) / float(tr["monitor_actual_rate_hz"])
            want = float(tr["captured_supply_energy_j"])
            print(f"  truth: scenario {tr['scenario']} seed {tr['seed']}; "
                  f"{len(tok)} tokens, mean {tok.mean():.4f} J/token (device)")
            print(f"  supply energy on the monitor's true clock: measured {measured:.4f} J, "
                  f"true {want:.4f} J ({100 * (measured - want) / want:+.4f}%)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
