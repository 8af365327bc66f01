"""Benchmark erlport-worker from a real Erlang node, beside a process-per-call baseline.

    python bench/worker_bench.py [--rounds 5000] [--markdown [PAGE]]

Compiles bench/erl/worker_bench.erl into a temporary directory, runs it with
`erl`, and prints a table: round trip of a trivial call made one at a time
(median, p99), calls per second with 8 concurrent Erlang callers, echo of a
list of 100 000 floats, echo of a 10 MB binary. Beside it, in the same run:
the pipe floor (a Python process echoing raw frames, no decoding: what the
pipes and process wake-ups cost on this machine) and the baseline, which
starts `python3 -c` for every call (the old approach). ``--markdown`` also writes
the table into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from markdown_section import add_markdown_flag, write_section

ROOT = Path(__file__).resolve().parents[1]
ERL_SOURCE = ROOT / "bench" / "erl" / "worker_bench.erl"

# (label, result name without its "worker_"/"floor_" prefix, baseline result, target)
ROWS = [
    ("trivial call, one at a time: median (us)", "trivial_median",
     "baseline_trivial_median", "<= 30"),
    ("trivial call, one at a time: p99 (us)", "trivial_p99", "baseline_trivial_p99", ""),
    ("calls per second, 8 concurrent callers", "calls_per_second_8_callers",
     "baseline_calls_per_second_1_caller", ""),
    ("echo 100 000 floats: median (ms)", "floats_100k_median",
     "baseline_floats_100k_median", "<= 60"),
    ("echo 10 MB binary: median (ms)", "binary_10mb_median",
     "baseline_binary_10mb_median", "<= 30"),
]


def run(rounds: int) -> dict:
    """Run the Erlang side; return {result name: value}."""
    # Beside this Python first: a virtualenv's bin/ need not be on PATH.
    beside = Path(sys.executable).parent / "erlport-worker"
    worker = str(beside) if beside.exists() else shutil.which("erlport-worker")
    if worker is None:
        sys.exit("the erlport-worker script is not installed: pip install -e . first")
    python_path = os.pathsep.join([str(ROOT)] + (
        [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory() as beam_dir:
        subprocess.run(["erlc", "-o", beam_dir, str(ERL_SOURCE)], check=True)
        done = subprocess.run(
            ["erl", "-noshell", "-pa", beam_dir, "-run", "worker_bench", "main", worker,
             sys.executable, python_path, str(rounds)],
            capture_output=True, text=True)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT\t"):
            _, name, _unit, value = line.split("\t")
            results[name] = float(value)
    missing = [name for _, measured, baseline, _ in ROWS
               for name in (f"worker_{measured}", f"floor_{measured}", baseline)
               if name not in results]
    if done.returncode != 0 or missing:
        sys.exit(f"benchmark failed (status {done.returncode}, missing {missing}):\n"
                 f"{done.stdout}\n{done.stderr}")
    return results


def table(results: dict) -> str:
    lines = ["| measurement | erlport-worker | pipe floor (raw echo) | process per call "
             "| target |", "|---|---|---|---|---|"]
    for label, measured, baseline, target in ROWS:
        lines.append(f"| {label} | {results['worker_' + measured]:,.1f} "
                     f"| {results['floor_' + measured]:,.1f} | {results[baseline]:,.1f} "
                     f"| {target} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5000,
                        help="trivial calls timed one at a time, and in total for the "
                             "8 concurrent callers (default 5000)")
    add_markdown_flag(parser)
    args = parser.parse_args()
    output = (table(run(args.rounds)) + "\n\n(baseline calls per second: one caller; a process "
              "per call does not pipeline)")
    print(output)
    if args.markdown:
        write_section("worker_bench", output, path=args.markdown)


if __name__ == "__main__":
    main()
