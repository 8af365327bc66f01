"""Tensor and float-list round trips: this codec against msgpack's C extension.

Payloads: an 8 MB float64 array (1 048 576 elements, as ``{tensor, Type,
Shape, Data}`` through ``codec.plain``; for msgpack as dtype, shape and raw
bytes) and a list of 100 000 Python floats (an Erlang list of floats; a
msgpack array). Prints the median milliseconds of each step as a markdown table;
``--markdown`` also writes it into docs/benchmarks.md.

    python3 bench/tensor_bench.py [--runs N] [--markdown [PAGE]]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import msgpack
import numpy as np

from codec import plain
from markdown_section import add_markdown_flag, write_section


def median_ms(action, runs):
    """Median wall time of ``action()`` in milliseconds, after one warm-up call."""
    action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def msgpack_pack_array(array):
    return msgpack.packb((array.dtype.str, array.shape, array.tobytes()), use_bin_type=True)


def msgpack_unpack_array(data):
    dtype, shape, raw = msgpack.unpackb(data)
    return np.frombuffer(raw, dtype).reshape(shape)


def measure(name, value, ours_encode, ours_decode, theirs_encode, theirs_decode, runs):
    """Rows (payload, step, codec ms, msgpack ms) for encode, decode and the round trip."""
    ours_frame, theirs_frame = ours_encode(value), theirs_encode(value)
    steps = [
        ("encode", lambda: ours_encode(value), lambda: theirs_encode(value)),
        ("decode", lambda: ours_decode(ours_frame), lambda: theirs_decode(theirs_frame)),
        ("round trip", lambda: ours_decode(ours_encode(value)),
         lambda: theirs_decode(theirs_encode(value))),
    ]
    return [(name, step, median_ms(ours, runs), median_ms(theirs, runs))
            for step, ours, theirs in steps]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31, help="timed runs per step (default 31)")
    add_markdown_flag(parser)
    args = parser.parse_args()
    runs = args.runs

    rng = np.random.default_rng(1)
    array = rng.standard_normal(1 << 20)
    floats = [random.Random(2).uniform(-1e6, 1e6) for _ in range(100_000)]
    assert np.array_equal(plain.decode(plain.encode(array), zero_copy=True), array)
    assert plain.decode(plain.encode(floats)) == floats

    rows = measure("8 MB float64 array", array, plain.encode,
                   lambda frame: plain.decode(frame, zero_copy=True),
                   msgpack_pack_array, msgpack_unpack_array, runs)
    rows += measure("100 000-float list", floats, plain.encode, plain.decode,
                    msgpack.packb, msgpack.unpackb, runs)

    lines = [f"median of {runs} runs, milliseconds", "",
             "| payload | step | this codec | msgpack (C) | ratio |", "|---|---|---:|---:|---:|"]
    lines += [f"| {name} | {step} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x |"
              for name, step, ours, theirs in rows]
    list_trip = rows[-1]
    lines += ["", f"100 000-float list round trip: {list_trip[2] / list_trip[3]:.2f}x msgpack "
              "(target: within 2x)"]
    print("\n".join(lines))
    if args.markdown:
        write_section("tensor_bench", "\n".join(lines), path=args.markdown)


if __name__ == "__main__":
    main()
