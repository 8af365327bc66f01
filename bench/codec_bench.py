"""Time the codec against erlang_py and erlpack on payloads built by a real Erlang node.

Run: python bench/codec_bench.py [--min-time SECONDS] [--markdown [PAGE]]
Prints markdown tables of median times and how many times slower the others are;
``--markdown`` also writes them into docs/benchmarks.md.
Each library decodes Erlang's bytes and encodes what it decoded itself. ``codec`` is
the implementation in use (``codec.core.DECODER``/``ENCODER``: the compiled core when
built); the pure-Python fallback is timed beside it. The second table is what the worker
uses, ``codec.plain`` (Python values: str, dict, None, ...), beside the raw codec and
msgpack's C extension packing and unpacking the same plain values.
"""
from __future__ import annotations

import argparse
import statistics
import time

import erlang
import erlpack
import msgpack

import codec
from codec import core, decoder, encoder, plain
from codec.erl_oracle import ErlOracle
from markdown_section import add_markdown_flag, write_section

# term_to_binary with OTP 25's defaults (minor_version 1), as a BEAM peer sends.
PAYLOADS = [
    ("call tuple", "{call, 7, cerebros_service, run_nas, [<<\"job-42\">>, #{seed => 1}]}."),
    ("NAS spec map", """#{name => <<"cifar-small">>, seed => 7, budget => #{trials => 40, epochs => 12},
        search_space => #{layers => [1, 2, 3, 4], units => [16, 32, 64, 128, 256],
                          activation => [relu, tanh, gelu], dropout => [0.0, 0.1, 0.3],
                          learning_rate => [1.0e-3, 3.0e-3, 1.0e-2]},
        data => #{features => 32, classes => 10, rows => 50000},
        tags => [<<"bench">>, <<"nas">>], strategy => successive_halving}."""),
    ("2 000 small maps", "[#{id => I, score => I * 0.5, name => <<\"trial\">>, done => true}"
                         " || I <- lists:seq(1, 2000)]."),
    ("100 000 floats", "[rand:uniform() * 1000 || _ <- lists:seq(1, 100000)]."),
    ("100 000 integers", "[rand:uniform(1000000) || _ <- lists:seq(1, 100000)]."),
    ("8 MB binary", "binary:copy(<<\"0123456789abcdef\">>, 524288)."),
    ("50 000 short binaries", "[integer_to_binary(I) || I <- lists:seq(1, 50000)]."),
]
LARGE = {"2 000 small maps", "100 000 floats", "100 000 integers", "8 MB binary",
         "50 000 short binaries"}


def median_time(action, min_time):
    """Median seconds per call over at least 5 calls and ``min_time`` seconds."""
    samples = []
    started = time.perf_counter()
    while len(samples) < 5 or time.perf_counter() - started < min_time:
        begin = time.perf_counter()
        action()
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


def measure(library, data, min_time):
    """(decode seconds, encode seconds) of one library on ``data``, or a reason it failed."""
    decode, encode = library
    try:
        term = decode(data)
        encode(term)
    except Exception as exc:  # noqa: BLE001 - report what a third-party library cannot do
        return f"fails: {type(exc).__name__}"
    return (median_time(lambda: decode(data), min_time),
            median_time(lambda: encode(term), min_time))


LIBRARIES = {
    "codec": (codec.decode, lambda t: codec.encode(t, minor_version=1)),
    "codec pure Python": (decoder.decode, lambda t: encoder.encode(t, minor_version=1)),
    "erlang_py": (erlang.binary_to_term, erlang.term_to_binary),
    "erlpack": (erlpack.unpack, erlpack.pack),
}


def cell(result, index, ours):
    """A table cell: time in ms and, for the others, how many times slower than codec."""
    if isinstance(result, str):
        return result
    seconds = result[index]
    text = f"{seconds * 1e3:.3f} ms"
    if ours is not None and not isinstance(ours, str):
        text += f" ({seconds / ours[index]:.1f}x)"
    return text


def plain_rows(name, data, min_time):
    """Table rows (decode, encode) of the raw codec, codec.plain and msgpack on one payload."""
    value = plain.decode(data)
    packed = msgpack.packb(value)
    raw_term = codec.decode(data)
    timings = [
        ("decode", lambda: codec.decode(data), lambda: plain.decode(data),
         lambda: msgpack.unpackb(packed)),
        ("encode", lambda: codec.encode(raw_term, minor_version=1),
         lambda: plain.encode(value, minor_version=1), lambda: msgpack.packb(value)),
    ]
    rows = []
    for op, raw_action, plain_action, msgpack_action in timings:
        raw_time, plain_time, msgpack_time = (median_time(action, min_time) for action in
                                              (raw_action, plain_action, msgpack_action))
        rows.append(f"| {name} | {op} | {raw_time * 1e3:.3f} ms | {plain_time * 1e3:.3f} ms "
                    f"| {msgpack_time * 1e3:.3f} ms | {plain_time / msgpack_time:.2f}x "
                    f"| {raw_time / msgpack_time:.2f}x |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-time", type=float, default=0.5,
                        help="seconds to spend timing each cell (default 0.5)")
    add_markdown_flag(parser)
    args = parser.parse_args()
    with ErlOracle() as oracle:
        payloads = [(name, oracle.evaluate(expr)) for name, expr in PAYLOADS]
    lines = [f"codec in use: decoder {core.DECODER}, encoder {core.ENCODER}", "",
             "| payload | bytes | op | codec | codec pure Python (x slower) "
             "| erlang_py (x slower) | erlpack (x slower) |",
             "|---|---|---|---|---|---|---|"]
    for name, data in payloads:
        results = {lib: measure(fns, data, args.min_time) for lib, fns in LIBRARIES.items()}
        ours = results["codec"]
        for index, op in enumerate(("decode", "encode")):
            row = [name, str(len(data)), op, cell(ours, index, None)]
            row += [cell(results[lib], index, ours) for lib in LIBRARIES if lib != "codec"]
            lines.append("| " + " | ".join(row) + " |")
        if name == "8 MB binary":
            view = median_time(lambda: codec.decode(data, zero_copy=True), args.min_time)
            lines.append(f"| {name} | {len(data)} | decode zero_copy | {view * 1e3:.3f} ms | | | |")
    lines += ["", "Large payloads (erlpack decode target): " + ", ".join(sorted(LARGE))]
    lines += ["", f"codec.plain in use: {plain.IMPLEMENTATION}", "",
              "| payload | op | codec raw | codec.plain | msgpack | plain / msgpack "
              "| raw / msgpack |", "|---|---|---|---|---|---|---|"]
    for name, data in payloads:
        lines += plain_rows(name, data, args.min_time)
    print("\n".join(lines))
    if args.markdown:
        write_section("codec_bench", "\n".join(lines), path=args.markdown)


if __name__ == "__main__":
    main()
