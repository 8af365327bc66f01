"""Do the search's no-hidden-level networks train as well as a tuned linear model (issue 20)?

    python bench/simple_model_bench.py [--datasets wine] [--split-seeds 0 ... 9] [--max-trials 400]
                                       [--scratch DIR] [--markdown [PAGE]]

A network with no hidden level is a linear (logistic) model: it is in the space so that the
search can fall back on it where depth overfits. This script checks that it is a real fallback.
It reads the searches ``bench/selection_bench.py`` keeps in ``--scratch`` (running any that are
missing, with the same options) and, per dataset, averages over the split seeds:

- how many of a search's trials had no hidden level, and the share of them whose every fold
  network was still improving at its last epoch (its best epoch was the last one it trained),
  beside that share for the deeper trials;
- the out-of-fold and test score of the best of those trials (its fold networks averaged,
  as ``selection_bench`` scores a trial), and the test score of ``bench/nas_bench.py``'s tuned
  linear model on the same split.

Classification datasets only: the score is accuracy.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cerebros import objectives  # noqa: E402  (after the path fix, so the bench runs from a checkout)
from markdown_section import add_markdown_flag, write_section  # noqa: E402  (beside this script)
from nas_bench import DATASETS, run_baseline  # noqa: E402
from selection_bench import search, test_outputs  # noqa: E402

COLUMNS = ("dataset", "no-hidden-level trials", "still improving at the end", "deeper trials still improving",
           "best no-hidden-level trial: out-of-fold", "its test", "tuned linear model: test", "splits")


def still_improving(record):
    """Whether every fold network of the trial had its best epoch at the last epoch it trained."""
    return min(record["best_epoch"]) >= record["epochs"]


def one_split(name, split_seed, args):
    """The figures of one search, in ``COLUMNS`` order (without dataset and splits)."""
    study, records, run_dir = search(name, split_seed, args)
    finished = [r for r in records if r["value"] is not None]
    linear = [r for r in finished if not r["candidate"]["levels"]]
    deeper = [r for r in finished if r["candidate"]["levels"]]
    if not linear:
        return None
    best = max(linear, key=lambda r: (r["value"], -np.inf if r["val_loss"] is None else -r["val_loss"]))
    splits = study.splits
    test = objectives.score_outputs(splits.task, splits.y_test, test_outputs(study, run_dir, best),
                                    study.classes)["accuracy"]
    reference = run_baseline("linear", splits.task, splits.X, splits.y, splits.X_test, splits.y_test)["score"]
    return (len(linear), np.mean([still_improving(r) for r in linear]),
            np.mean([still_improving(r) for r in deeper]) if deeper else float("nan"), best["value"], test, reference)


def table(results):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for name, rows in results.items():
        count, linear_share, deeper_share, oof, test, reference = np.mean(rows, axis=0)
        lines.append(f"| {name} | {count:.1f} | {linear_share:.0%} | {deeper_share:.0%} | {oof:.4f} | {test:.4f} | "
                     f"{reference:.4f} | {len(rows)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["wine"], choices=sorted(DATASETS))
    parser.add_argument("--split-seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--max-trials", type=int, default=400)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "selection_bench"))
    add_markdown_flag(parser)
    args = parser.parse_args(argv)
    regression = [name for name in args.datasets if DATASETS[name]()[2] != "classification"]
    if regression:
        parser.error(f"--datasets: {', '.join(regression)} not classification (the score is accuracy)")
    results = {}
    for name in args.datasets:
        for split_seed in args.split_seeds:
            row = one_split(name, split_seed, args)
            if row is not None:
                results.setdefault(name, []).append(row)
    text = table(results)
    print(text)
    if args.markdown:
        write_section("simple_model_bench", text, args.markdown)


if __name__ == "__main__":
    main()
