#!/usr/bin/env python3
"""Writes fixtures/data/melt_run/: a small MELT-like run directory for the importer tests.

Deterministic (fixed seed, no clock): run it again and the files come out byte for byte the same.
The layout and file formats follow /work/shared/FIELD.md ("MELT's files, for importers"):

  measurements_monsoon.csv   PyMonsoon CSV, no header, rows `t_rel_s,mA,V,` (trailing comma),
                             3 samples per USB packet sharing one host time stamp
  .t_monsoon                 host time.time() at sampling start
  melt_measurements/
    measurements_iter0_conv0.tsv   llama.cpp events, lines shuffled; prompt in one batch
    measurements_iter0_conv0.log   llama.cpp console output with llama_print_timings
    measurements_iter0_conv1.csv   MLC CSV with a header, lines shuffled
    measurements_iter1_conv0.tsv   llama.cpp events; prompt in two batches, no console log
    notes.txt                      not a MELT file (the scanner lists it as unrecognised)

The truth the tests check (all times ns since the epoch on the phone's wall clock):
  iter0_conv0: base B0 = 1700000000_200_000_000
    load_model.start/end       B0, B0+100 ms
    generate.0.decode.end      B0+115.5 ms (no .start: nothing to evaluate)
    prefill (generate.1)       B0+116 ms .. B0+316 ms, 23 prompt tokens (from the console log)
    tokens i = 0..15           generate.{i+2}.decode: start B0+320 ms+25 ms*i, end start+20 ms
    console log                prompt eval 23 tokens, eval 16 runs
  iter1_conv0: base B1 = 1700000001_000_000_000
    prefill batches            generate.1 (B1+10 ms .. +310 ms), generate.2 (+312 ms .. +462 ms)
    tokens i = 0..7            generate.{i+3}.decode: start B1+470 ms+30 ms*i, end start+22 ms
  iter0_conv1 (MLC, ms):       prefill.0 1700000000900.5 .. 1700000001000.25,
                               generate.decode.N start 1700000001010+15*N, end start+12.125, N=0..9
  Monsoon: 8000 samples; t of sample k = 0.0006 * (k // 3) + 0.00002 * ((k // 3) % 7) s;
    current = 800 + 200*(k % 50 < 25) + (k % 7) * 0.125 mA; voltage = 4.0 + (k % 5) * 0.0005 V.
"""

import os
import random
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "data", "melt_run")
MS = 1_000_000
B0 = 1700000000_200_000_000
B1 = 1700000001_000_000_000
SAMPLES = 8000


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="\n") as f:
        f.write(text)


def llamacpp_conv0():
    ev = {
        "load_model.start": B0,
        "load_model.mmap.start": B0 + 1 * MS,
        "load_model.mmap.end": B0 + 30 * MS,
        "load_model.tensors.start": B0 + 31 * MS,
        "load_model.tensors.end": B0 + 90 * MS,
        "load_model.end": B0 + 100 * MS,
        "prompt.start": B0 + 110 * MS,
        "prompt.tokenize.start": B0 + 111 * MS,
        "prompt.0.tokenize.start": B0 + 111 * MS + 100_000,
        "prompt.0.tokenize.end": B0 + 111 * MS + 900_000,
        "prompt.tokenize.end": B0 + 112 * MS,
        "generate.start": B0 + 115 * MS,
        "generate.0.decode.end": B0 + 115 * MS + 500_000,
        "generate.1.decode.start": B0 + 116 * MS,
        "generate.1.decode.end": B0 + 316 * MS,
    }
    for i in range(16):
        start = B0 + 320 * MS + 25 * MS * i
        ev[f"generate.{i + 2}.decode.start"] = start
        ev[f"generate.{i + 2}.decode.end"] = start + 20 * MS
    ev["generate.10.kv_cache.start"] = ev["generate.10.decode.end"] + 1 * MS
    ev["generate.10.kv_cache.end"] = ev["generate.10.decode.end"] + 2 * MS
    ev["generate.end"] = B0 + 720 * MS
    ev["prompt.end"] = B0 + 721 * MS
    ev["model_free.start"] = B0 + 730 * MS
    ev["model_free.end"] = B0 + 735 * MS
    return ev


def llamacpp_iter1():
    ev = {
        "load_model.start": B1 - 200 * MS,
        "load_model.end": B1 - 100 * MS,
        "generate.start": B1,
        "generate.0.decode.end": B1 + 5 * MS,
        "generate.1.decode.start": B1 + 10 * MS,
        "generate.1.decode.end": B1 + 310 * MS,
        "generate.2.decode.start": B1 + 312 * MS,
        "generate.2.decode.end": B1 + 462 * MS,
    }
    for i in range(8):
        start = B1 + 470 * MS + 30 * MS * i
        ev[f"generate.{i + 3}.decode.start"] = start
        ev[f"generate.{i + 3}.decode.end"] = start + 22 * MS
    ev["generate.end"] = B1 + 800 * MS
    return ev


def events_text(ev, rng):
    lines = [f"{k} {v}\n" for k, v in ev.items()]
    rng.shuffle(lines)
    return "".join(lines)


def console_log():
    return (
        "main: build = 1 (abcdef0)\n"
        "main: seed  = 42\n"
        "llama_model_loader: loaded meta data with 19 key-value pairs\n"
        " The capital of France is Paris.\n"
        "\n"
        "llama_print_timings:        load time =     100.00 ms\n"
        "llama_print_timings:      sample time =       4.25 ms /    17 runs   "
        "(    0.25 ms per token,  4000.00 tokens per second)\n"
        "llama_print_timings: prompt eval time =     200.00 ms /    23 tokens "
        "(    8.70 ms per token,   115.00 tokens per second)\n"
        "llama_print_timings:        eval time =     320.00 ms /    16 runs   "
        "(   20.00 ms per token,    50.00 tokens per second)\n"
        "llama_print_timings:       total time =     620.00 ms\n"
    )


def mlc_csv(rng):
    rows = ["prefill.0,1700000000900.5,1700000001000.25\n"]
    for n in range(10):
        start = 1700000001010 + 15 * n
        rows.append(f"generate.decode.{n},{start},{start}.125\n")
    rng.shuffle(rows)
    return "event,start_ms,end_ms\n" + "".join(rows)


def monsoon_csv():
    out = []
    for k in range(SAMPLES):
        packet = k // 3
        t = round(0.0006 * packet + 0.00002 * (packet % 7), 6)
        ma = 800.0 + (200.0 if k % 50 < 25 else 0.0) + (k % 7) * 0.125
        v = round(4.0 + (k % 5) * 0.0005, 4)
        out.append(f"{t!r},{ma!r},{v!r},\n")
    return "".join(out)


def main():
    rng = random.Random(20240611)
    write(os.path.join(ROOT, "measurements_monsoon.csv"), monsoon_csv())
    write(os.path.join(ROOT, ".t_monsoon"), "1700000000.125\n")
    mm = os.path.join(ROOT, "melt_measurements")
    write(os.path.join(mm, "measurements_iter0_conv0.tsv"), events_text(llamacpp_conv0(), rng))
    write(os.path.join(mm, "measurements_iter0_conv0.log"), console_log())
    write(os.path.join(mm, "measurements_iter0_conv1.csv"), mlc_csv(rng))
    write(os.path.join(mm, "measurements_iter1_conv0.tsv"), events_text(llamacpp_iter1(), rng))
    write(os.path.join(mm, "notes.txt"), "bench notes: phone 2, battery bypass 4.0 V\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
