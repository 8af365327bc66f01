"""Trials per minute of one search spread over BEAM nodes (opts.cluster), and what sending a
trial to a node costs beyond its training.

    python bench/cluster_bench.py [--trials 24] [--markdown [PAGE]]

Compiles src/ and bench/erl/cluster_bench.erl into a temporary directory and runs the same
search on digits (random strategy, 2 folds, 60 epochs, no refit) three times, each in a fresh
`erl -sname` node whose worker runs the search: on that node alone without a cluster (`n_jobs`
1: the trials in the search's own process), then over 1 node and over 2 nodes each lending a
one-worker pool (the coordinator's node lends one beside the search's worker).
Prints a table: trials per minute of the whole search, the speed-up over 1 node, and the
dispatch cost per trial (the journal's ``dispatch_seconds``: the coordinator's round trip less
the trial's own training time; median and p90). The 2-core machine runs 2 trial processes at
most, so 2 nodes is its ceiling. ``--markdown`` also writes the table into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from markdown_section import add_markdown_flag, write_section

ROOT = Path(__file__).resolve().parents[1]
ERL_SOURCE = ROOT / "bench" / "erl" / "cluster_bench.erl"
MODES = [("local", "1 node, no cluster (n_jobs 1)"), ("1", "1 node lending 1 worker"),
         ("2", "2 nodes lending 1 worker each")]


def run_search(mode, trials, ebin, workdir):
    """Run the search in a fresh node; returns (trials, seconds, dispatch seconds per trial)."""
    run_dir = workdir / f"run-{mode}"
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ, BEAM_NAS_BENCH_TAG=tag,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(["erl", "-sname", f"bench_{tag}", "-noshell", "-pa", str(ebin), "-eval",
                           f'cluster_bench:main(["{mode}", "{trials}", "{run_dir}"])'],
                          env=env, cwd=workdir, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"cluster_bench: the {mode} search failed:\n{done.stdout}{done.stderr}")
    shown = dict(re.findall(r"^(\w+)=(.*)$", done.stdout, re.M))
    with open(run_dir / "journal.jsonl") as f:
        dispatch = [record.get("dispatch_seconds") for record in map(json.loads, f)]
    return int(shown["trials"]), float(shown["seconds"]), [d for d in dispatch if d is not None]


def table(results):
    base = results["1"][0] / results["1"][1]
    lines = ["| where the trials run | trials | seconds | trials per minute | vs 1 node | "
             "dispatch per trial: median (ms) | p90 (ms) |",
             "|---|---|---|---|---|---|---|"]
    for mode, label in MODES:
        trials, seconds, dispatch = results[mode]
        speed = trials / seconds
        cost = (f"{1000 * np.median(dispatch):.1f} | {1000 * np.percentile(dispatch, 90):.1f}"
                if dispatch else "- | -")
        versus = "-" if mode == "local" else f"{speed / base:.2f}x"
        lines.append(f"| {label} | {trials} | {seconds:.1f} | {60 * speed:.1f} | {versus} | {cost} |")
    return "\n".join(lines) + "\n\nTargets: 2 nodes at least 1.8x one node; dispatch under 5 ms a trial."


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24, help="trials per search (default 24)")
    add_markdown_flag(parser)
    args = parser.parse_args()
    if shutil.which("erl") is None or shutil.which("erlc") is None:
        sys.exit("cluster_bench: needs erl and erlc on PATH")
    workdir = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    try:
        ebin = workdir / "ebin"
        ebin.mkdir()
        subprocess.run(["erlc", "-o", str(ebin), *map(str, sorted((ROOT / "src").glob("*.erl"))), str(ERL_SOURCE)],
                       check=True)
        results = {mode: run_search(mode, args.trials, ebin, workdir) for mode, _ in MODES}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = table(results)
    print(markdown)
    if args.markdown:
        write_section("cluster_bench", markdown, args.markdown)


if __name__ == "__main__":
    main()
