"""Benchmark erlport-worker from a real Erlang node, quiet and under a CPU hog, beside the pipe floor.

    python bench/worker_bench.py [--rounds 5000] [--hogs N] [--conditions quiet loaded]
                                 [--stock-erlport DIR] [--markdown [PAGE]]

Compiles bench/erl/worker_bench.erl into a temporary directory and runs it with
`erl`: round trip of a trivial call made one at a time (median, p99), calls per
second with 8 concurrent Erlang callers, echo of a list of 100 000 floats, echo of a
10 MB binary. One table per condition: "quiet" (the machine as it is) and "loaded"
(``--hogs`` busy processes started here, default two per core, running through
the whole measurement). Columns, measured one after another in the same run:

- erlport-worker as shipped (polling adapts, docs/worker.md#polling);
- erlport-worker with ``--spin-us 0`` (never polls);
- the pipe floor: a Python process echoing raw frames, no decoding (what the pipes
  and process wake-ups cost on this machine);
- stock ErlPort's Python side, given ``--stock-erlport DIR`` (a checkout, or its git
  repository, of https://github.com/erlport/erlport): its ``priv/python3`` is copied
  to a temporary directory and started as stock's Erlang side starts it, driven by
  the same Erlang code. Nothing of stock's is built or kept; without DIR the column
  says "not run";
- (quiet only) the process-per-call baseline, which starts ``python3 -c`` per call.

``--markdown`` also writes the tables into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from markdown_section import add_markdown_flag, write_section

ROOT = Path(__file__).resolve().parents[1]
ERL_SOURCE = ROOT / "bench" / "erl" / "worker_bench.erl"
HOG = "while True: pass"
HOG_WARM_UP = 2.0
"""Seconds the hogs run before measuring, so the loaded case starts loaded."""

# (label, result name without its subject prefix, baseline result)
ROWS = [
    ("trivial call, one at a time: median (us)", "trivial_median", "baseline_trivial_median"),
    ("trivial call, one at a time: p99 (us)", "trivial_p99", "baseline_trivial_p99"),
    ("calls per second, 8 concurrent callers", "calls_per_second_8_callers",
     "baseline_calls_per_second_1_caller"),
    ("echo 100 000 floats: median (ms)", "floats_100k_median", "baseline_floats_100k_median"),
    ("echo 10 MB binary: median (ms)", "binary_10mb_median", "baseline_binary_10mb_median"),
]
# (column heading, subject name)
COLUMNS = [
    ("erlport-worker", "worker"),
    ("erlport-worker --spin-us 0", "nospin"),
    ("pipe floor (raw echo)", "floor"),
    ("stock ErlPort (Python side)", "stock"),
]
TARGETS = {
    ("quiet", "trivial_median"): "<= pipe floor + 5",
    ("loaded", "trivial_median"): "<= stock ErlPort",
    ("quiet", "floats_100k_median"): "<= 60",
    ("quiet", "binary_10mb_median"): "<= 30",
}


def worker_script() -> str:
    # Beside this Python first: a virtualenv's bin/ need not be on PATH.
    beside = Path(sys.executable).parent / "erlport-worker"
    worker = str(beside) if beside.exists() else shutil.which("erlport-worker")
    if worker is None:
        sys.exit("the erlport-worker script is not installed: pip install -e . first")
    return worker


def stock_python_side(source: Path, into: Path) -> Path:
    """Copy stock ErlPort's ``priv/python3`` from a checkout or a git repository of it
    into ``into``; return the directory to put on PYTHONPATH."""
    if (source / "priv" / "python3" / "erlport").is_dir():
        shutil.copytree(source / "priv" / "python3", into / "python3")
        return into / "python3"
    archive = subprocess.run(["git", "-C", str(source), "archive", "HEAD", "priv/python3"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        sys.exit(f"--stock-erlport {source}: neither a checkout with priv/python3/erlport "
                 f"nor a git repository of one ({archive.stderr.decode().strip()})")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "priv" / "python3"


@contextmanager
def hogs(count: int):
    """``count`` busy Python processes for the duration of the block."""
    started = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    try:
        time.sleep(HOG_WARM_UP if count else 0)
        yield
    finally:
        for hog in started:
            hog.kill()
        for hog in started:
            hog.wait()


def run(rounds: int, subjects, baseline: bool) -> dict:
    """Run the Erlang side on ``subjects`` [(name, executable, PYTHONPATH, extra args)];
    return {result name: value}."""
    python_path = os.pathsep.join([str(ROOT)] + (
        [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    arguments = [sys.executable, python_path, str(rounds), "yes" if baseline else "no"]
    for name, executable, path, extra in subjects:
        arguments += [name, executable, path or python_path, extra or "none"]
    with tempfile.TemporaryDirectory() as beam_dir:
        subprocess.run(["erlc", "-o", beam_dir, str(ERL_SOURCE)], check=True)
        done = subprocess.run(["erl", "-noshell", "-pa", beam_dir, "-s", "worker_bench", "main",
                               "-extra", *arguments], capture_output=True, text=True)
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT\t"):
            _, name, _unit, value = line.split("\t")
            results[name] = float(value)
    wanted = [f"{subject[0]}_{measured}" for subject in subjects for _, measured, _ in ROWS]
    wanted += [name for _, _, name in ROWS] if baseline else []
    missing = [name for name in wanted if name not in results]
    if done.returncode != 0 or missing:
        sys.exit(f"benchmark failed (status {done.returncode}, missing {missing}):\n"
                 f"{done.stdout}\n{done.stderr}")
    return results


def table(condition: str, results: dict, baseline: bool) -> str:
    headings = [heading for heading, _ in COLUMNS] + (["process per call"] if baseline else [])
    lines = ["| measurement | " + " | ".join(headings) + " | target |",
             "|---|" + "---:|" * len(headings) + "---|"]
    for label, measured, base in ROWS:
        cells = [results.get(f"{name}_{measured}") for _, name in COLUMNS]
        cells += [results[base]] if baseline else []
        text = ["not run" if value is None else f"{value:,.1f}" for value in cells]
        lines.append(f"| {label} | " + " | ".join(text)
                     + f" | {TARGETS.get((condition, measured), '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5000,
                        help="trivial calls timed one at a time, and in total for the "
                             "8 concurrent callers (default 5000)")
    parser.add_argument("--hogs", type=int, default=2 * (os.cpu_count() or 1),
                        help="busy processes in the loaded case (default two per core)")
    parser.add_argument("--conditions", nargs="+", choices=("quiet", "loaded"),
                        default=["quiet", "loaded"], help="which tables (default both)")
    parser.add_argument("--stock-erlport", type=Path, metavar="DIR",
                        help="a checkout or git repository of stock ErlPort, for its column")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the process-per-call column (20 process starts)")
    add_markdown_flag(parser)
    args = parser.parse_args()
    worker = worker_script()
    sections = []
    with tempfile.TemporaryDirectory() as stock_dir:
        subjects = [("worker", worker, None, None), ("nospin", worker, None, "--spin-us 0"),
                    ("floor", sys.executable, None, None)]
        if args.stock_erlport is not None:
            stock_path = stock_python_side(args.stock_erlport.resolve(), Path(stock_dir))
            subjects.append(("stock", sys.executable, str(stock_path), None))
        for condition in args.conditions:
            hog_count = args.hogs if condition == "loaded" else 0
            baseline = condition == "quiet" and not args.no_baseline
            before = " ".join(f"{x:.2f}" for x in os.getloadavg())
            with hogs(hog_count):
                results = run(args.rounds, subjects, baseline)
            after = " ".join(f"{x:.2f}" for x in os.getloadavg())
            heading = (f"**{condition}**" + (f" ({hog_count} busy processes started by the "
                       f"benchmark, {os.cpu_count()} cores)" if hog_count else "")
                       + f", load average {before} before, {after} after:")
            sections.append(heading + "\n\n" + table(condition, results, baseline))
    output = "\n\n".join(sections)
    if not args.no_baseline and "quiet" in args.conditions:
        output += ("\n\n(process per call, calls per second: one caller; a process per call "
                   "does not pipeline)")
    print(output)
    if args.markdown:
        write_section("worker_bench", output, path=args.markdown)


if __name__ == "__main__":
    main()
