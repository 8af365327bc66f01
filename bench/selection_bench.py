"""Does more search budget give a better model on held-out rows? Test score against the number
of trials, over split seeds, for several ways of choosing the final model (issue 20).

    python bench/selection_bench.py [--datasets anes96 wine] [--split-seeds 0 ... 9] [--max-trials 200]
                                    [--prefixes 10 50 200] [--scratch DIR] [--markdown [PAGE]]

For every dataset and split seed (the split of ``bench/nas_bench.py``: 25% test, stratified),
one search of ``--max-trials`` trials runs with every trial's networks kept (``ensemble_size``
= ``--max-trials``, no refit) into ``--scratch``, where it stays: a later run reuses it, so the
expensive part runs once and in parts. Then, for each prefix N of ``--prefixes``, the search
is replayed as if it had stopped after N trials: the candidates are the best
``--ensemble-size`` of the first N trials (ranked as the engine ranks them), each rule below
chooses weights from their out-of-fold outputs, and the weighted average of the chosen trials'
fold networks is scored once on the test rows. A budget in trials (not seconds) makes the
figures independent of the machine's load.

Rules (``RULES``): ``engine`` is ``cerebros.selection.select_checked``, what the engine does;
``best`` the best trial alone; ``greedy`` greedy ensemble selection without the check;
``top5`` the uniform average of the best five; ``bagged`` Caruana et al.'s bagged selection
(greedy selection on 20 random halves of the candidates, weights summed). For classification,
each rule runs a second time on candidates ranked by their out-of-fold log-loss instead of
the objective (``/ll``): a smoother score, perhaps less prone to picking lucky trials.
The table: mean test score (accuracy, or R^2) per dataset, rule and prefix, over the splits,
and the change from the smallest prefix to the largest (the cost of more budget if negative).
"""
import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cerebros import objectives, selection  # noqa: E402  (after the path fix, so the bench runs from a checkout)
from cerebros.artifacts import Ensemble, RunDirectory  # noqa: E402
from cerebros.study import SearchConfig, Study  # noqa: E402
from markdown_section import add_markdown_flag, write_section  # noqa: E402  (beside this script)
from nas_bench import DATASETS, TEST_SIZE  # noqa: E402


def _top(count):
    def weights(outputs, y, objective, classes, seed):
        chosen = np.zeros(len(outputs), dtype=int)
        chosen[:count] = 1
        return chosen
    return weights


def _bagged(outputs, y, objective, classes, seed, bags=20):
    """Caruana et al.'s bagged selection: greedy selection on ``bags`` random halves of the
    candidates (each kept in rank order), the weights summed."""
    rng = np.random.default_rng(seed)
    weights = np.zeros(len(outputs), dtype=int)
    for _ in range(bags):
        chosen = np.sort(rng.choice(len(outputs), max(1, len(outputs) // 2), replace=False))
        weights[chosen] += selection.select([outputs[i] for i in chosen], y, objective, classes)
    return weights


RULES = {
    "engine": lambda outputs, y, objective, classes, seed: selection.select_checked(
        outputs, y, objective, classes, seed=seed)[0],
    "best": lambda outputs, y, objective, classes, seed: np.eye(len(outputs), dtype=int)[0],
    "greedy": lambda outputs, y, objective, classes, seed: selection.select(outputs, y, objective, classes),
    "top5": _top(5),
    "bagged": _bagged,
}


def search(name, split_seed, args):
    """The finished search of ``name`` on ``split_seed`` in the scratch folder, run first if needed:
    its ``Study`` (data, splits, objective), journal and run directory."""
    X, y, task = DATASETS[name]()
    config = SearchConfig(dataset_id=name, task=task, seed=0, split_seed=split_seed, test_size=TEST_SIZE,
                          max_trials=args.max_trials, n_jobs=args.n_jobs, ensemble_size=args.max_trials,
                          refit=False)
    path = os.path.join(args.scratch, f"{name}-{split_seed}-{args.max_trials}")
    run_dir = RunDirectory(path)
    if not os.path.exists(os.path.join(path, "summary.json")):
        print(f"{name}, split {split_seed}: searching {args.max_trials} trials", file=sys.stderr, flush=True)
        Study.prepare(config, data=(X, y)).run(path, resume=os.path.exists(path))
    study = Study.prepare(config, data=(X, y))
    return study, run_dir.read_journal(), run_dir


def test_outputs(study, run_dir, record):
    """The trial's model (its fold networks averaged) on the test rows: probabilities or values."""
    paths = [run_dir.trial_model(record["number"], fold) for fold in range(len(study.splits.folds))]
    model = Ensemble.load(paths)
    X_test = study.splits.X_test
    return model.predict_proba(X_test) if model.task == "classification" else model.predict(X_test)


def replay(study, records, run_dir, prefixes, ensemble_size, cache):
    """``{(rule, prefix): test score}`` for one search."""
    objective = study.objective
    metric = "accuracy" if study.splits.task == "classification" else "r2"
    scores = {}
    rankings = {"": lambda r: (objective.fitness(r["value"]), -np.inf if r["val_loss"] is None else -r["val_loss"],
                               -r["number"])}
    if study.splits.task == "classification":
        rankings["/ll"] = lambda r: (-r["metrics"]["log_loss"], -r["number"])
    for prefix in prefixes:
        finished = [r for r in records[:prefix] if r["value"] is not None]
        for suffix, key in rankings.items():
            ranked = sorted(finished, key=key, reverse=True)[:ensemble_size]
            outputs = [run_dir.load_outputs(r["number"]) for r in ranked]
            for record in ranked:
                if record["number"] not in cache:
                    cache[record["number"]] = test_outputs(study, run_dir, record)
            for rule, choose in RULES.items():
                weights = choose(outputs, study.oof_targets, objective, study.classes, study.config.seed)
                predicted = selection.average([cache[r["number"]] for r in ranked], weights)
                scores[rule + suffix, prefix] = objectives.score_outputs(
                    study.splits.task, study.splits.y_test, predicted, study.classes)[metric]
    return scores


def table(results, prefixes):
    header = "| dataset | rule | " + " | ".join(f"{p} trials" for p in prefixes) + \
             f" | {prefixes[-1]} - {prefixes[0]} (points) | splits |"
    lines = [header, "|---|---|" + "---:|" * (len(prefixes) + 2)]
    for name, per_split in results.items():
        for rule in dict.fromkeys(rule for rule, _ in per_split[0]):
            means = [np.mean([scores[rule, p] for scores in per_split]) for p in prefixes]
            lines.append(f"| {name} | {rule} | " + " | ".join(f"{m:.4f}" for m in means) +
                         f" | {100 * (means[-1] - means[0]):+.2f} | {len(per_split)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["anes96"], choices=sorted(DATASETS))
    parser.add_argument("--split-seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--max-trials", type=int, default=200)
    parser.add_argument("--prefixes", nargs="+", type=int, default=[10, 50, 200])
    parser.add_argument("--ensemble-size", type=int, default=20)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "selection_bench"))
    add_markdown_flag(parser)
    args = parser.parse_args(argv)
    prefixes = sorted(p for p in args.prefixes if p <= args.max_trials)
    results = {}
    for name in args.datasets:
        for split_seed in args.split_seeds:
            study, records, run_dir = search(name, split_seed, args)
            scores = replay(study, records, run_dir, prefixes, args.ensemble_size, {})
            print(f"{name}, split {split_seed}: " + ", ".join(
                f"{rule}@{p} {score:.4f}" for (rule, p), score in sorted(scores.items())), file=sys.stderr, flush=True)
            results.setdefault(name, []).append(scores)
    text = table(results, prefixes)
    print(text)
    if args.markdown:
        write_section("selection_bench", text, args.markdown)


if __name__ == "__main__":
    main()
