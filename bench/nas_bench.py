"""NAS benchmark: the engine's test score over many splits against baselines, resumable.

    python bench/nas_bench.py [--datasets iris fair ...] [--split-seeds 0 1 ... 9] [--budget 60] [--n-jobs 2]
                              [--methods engine mlp linear flaml] [--seeds 0] [--cache FILE]
                              [--markdown [PAGE]] [--strategy evolution] [--folds 5]
                              [--ensemble-size 20] [--max-trials N] [--max-trials-without-improvement N]

The protocol (issue 20): for every dataset of ``DATASETS`` and split seed, 25% of the rows are
the test split (stratified for classification, ``random_state`` = the split seed), exactly as
``cerebros.data.split_indices`` makes it; every method trains on the other rows and is scored
once on the test rows (accuracy, or R^2 for regression). The methods:

- ``engine``: a search of ``--budget`` seconds with ``--n-jobs`` trial processes and search
  seed ``--seeds`` (0), its saved model scored;
- ``mlp``: scikit-learn's default MLPClassifier / MLPRegressor behind a StandardScaler;
- ``linear``: a tuned linear model behind a StandardScaler, LogisticRegressionCV or RidgeCV
  (alphas 1e-3..1e3), regression targets standardised too;
- ``flaml``: FLAML's AutoML with the same time budget, cores and seed (bench-only: ``pip install
  "flaml[automl]"``; left out with a notice when it is not installed).

Resumable: every (dataset, split seed, method) result goes into the ``--cache`` JSON file as
soon as it is known, with the commit, machine and date it ran at; a later run with the same
settings skips what the file holds, so the full protocol (10 splits x 10 datasets x about
2 x 60 s) can run in parts. A file made with other settings is refused. Prints each result as
it comes, then the table: per dataset and method the mean and the spread (standard deviation)
over the splits done, the engine's trials per search, and the engine's lead in points
(hundredths of accuracy or of R^2) over the baseline with the better mean (the target issue 20
states) and over FLAML, each with the standard error of its paired per-split differences;
``--markdown [PAGE]`` also writes it, with the protocol, into its section of docs/benchmarks.md.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cerebros import data  # noqa: E402  (after the path fix, so the bench runs from a checkout)
from cerebros.study import SearchConfig, SearchStopped, Study  # noqa: E402
from markdown_section import add_markdown_flag, write_section  # noqa: E402  (beside this script)

METHODS = ("engine", "mlp", "linear", "flaml")
TEST_SIZE = 0.25


def _statsmodels(name):
    try:
        from statsmodels import datasets
    except ImportError:
        raise SystemExit(f"{name}: this dataset ships with statsmodels (bench-only: pip install statsmodels)") from None
    return getattr(datasets, name).load_pandas()


def _fair():
    """6 366 women's survey answers (statsmodels): did she have an affair; 8 features."""
    dataset = _statsmodels("fair")
    return dataset.exog.to_numpy(float), (dataset.endog.to_numpy() > 0).astype(int), "classification"


def _anes96():
    """944 voters of the 1996 US election study (statsmodels): party identification, 7 classes."""
    frame = _statsmodels("anes96").data
    return frame.drop(columns=["PID", "vote"]).to_numpy(float), frame["PID"].to_numpy().astype(int), "classification"


def _star98():
    """303 California school districts (statsmodels): share of pupils above the national maths median."""
    dataset = _statsmodels("star98")
    above, below = dataset.endog["NABOVE"].to_numpy(float), dataset.endog["NBELOW"].to_numpy(float)
    return dataset.exog.to_numpy(float), above / (above + below), "regression"


def _randhie_profiles():
    """The RAND health insurance experiment (statsmodels), one row per distinct profile: the 20 190
    person-years have only 2 760 distinct feature rows (plan and health), so a row-wise split
    would test on people the training rows already hold. Each profile's target is its
    person-years' mean number of doctor visits."""
    dataset = _statsmodels("randhie")
    profiles, rows = np.unique(dataset.exog.to_numpy(float), axis=0, return_inverse=True)
    rows = rows.ravel()  # its shape changed between numpy versions
    visits = np.bincount(rows, weights=dataset.endog.to_numpy(float)) / np.bincount(rows)
    return profiles, visits, "regression"


def _friedman1():
    """Friedman #1 (generated): 2 000 rows, 10 features of which 5 act through sin, a square and
    products, noise 1.0, ``random_state`` 0."""
    X, y = make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0)
    return X, y, "regression"


def _bundled(name):
    return lambda: data.load(name)


# Why these: the five datasets the engine bundles; three real tables that ship inside a
# pip-installable package (statsmodels) and are not generated, each a case the issue saw the
# engine lose or struggle on: thousands of rows (fair, randhie_profiles), a small noisy multi-class
# set (anes96), a small regression with many features (star98); and a nonlinear regression a
# linear model cannot fit (friedman1), where depth must pay.
DATASETS = {**{name: _bundled(name) for name in data.BUNDLED}, "fair": _fair, "anes96": _anes96,
            "star98": _star98, "randhie_profiles": _randhie_profiles, "friedman1": _friedman1}


def score(task, y_true, y_pred):
    return float(accuracy_score(y_true, y_pred) if task == "classification" else r2_score(y_true, y_pred))


def run_baseline(method, task, X_rest, y_rest, X_test, y_test):
    """The test score of the default MLP or the tuned linear model; no trials."""
    if method == "mlp":
        model = make_pipeline(StandardScaler(), (MLPClassifier if task == "classification" else MLPRegressor)(
            random_state=0))
    elif task == "classification":
        # Accuracy is the default scoring until scikit-learn 1.11; named, so the baseline stays.
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(scoring="accuracy", max_iter=5000))
    else:
        model = TransformedTargetRegressor(make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 25))),
                                           transformer=StandardScaler())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the default MLP's 200 iterations, as shipped
        model.fit(X_rest, y_rest)
    return {"score": score(task, y_test, model.predict(X_test)), "trials": None}


def run_flaml(task, X_rest, y_rest, X_test, y_test, args):
    """FLAML AutoML with the engine's time budget, cores and seed; None when FLAML is not installed."""
    try:
        from flaml import AutoML
    except ImportError:
        return None
    automl = AutoML()
    automl.fit(X_rest, y_rest, task=task, metric="accuracy" if task == "classification" else "r2",
               time_budget=args.budget, n_jobs=args.n_jobs, seed=0, verbose=0)
    return {"score": score(task, y_test, automl.predict(X_test)), "trials": len(automl.config_history)}


def run_engine(name, X, y, task, split_seed, seed, args, scratch):
    """One search on the non-test rows (the engine makes the same split), its saved model scored."""
    config = SearchConfig(dataset_id=name, task=task, strategy=args.strategy, seed=seed, split_seed=split_seed,
                          test_size=TEST_SIZE, folds=args.folds, max_trials=args.max_trials,
                          max_time_seconds=args.budget, n_jobs=args.n_jobs, ensemble_size=args.ensemble_size,
                          max_trials_without_improvement=args.max_trials_without_improvement)
    metric = "accuracy" if task == "classification" else "r2"
    try:
        result = Study.prepare(config, data=(X, y)).run(os.path.join(scratch, f"{name}-{split_seed}-{seed}"))
    except SearchStopped as exc:  # no trial finished in the budget: no model, recorded as such
        return {"score": None, "trials": 0, "error": str(exc)}
    return {"score": result.test_metrics[metric], "trials": result.completed_trials,
            "validation": result.validation_metrics[metric], "members": len(result.ensemble),
            "stopped_reason": result.stopped_reason}


def commit():
    """The checkout's commit, marked "+changes" when the working tree differs from it."""
    def git(*arguments):
        return subprocess.run(["git", "-C", ROOT, *arguments], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPU(s), Python {platform.python_version()}"


def settings(args):
    """What makes two results comparable: a cache file holds results of one setting only."""
    return {"test_size": TEST_SIZE, "budget": args.budget, "n_jobs": args.n_jobs, "strategy": args.strategy,
            "folds": args.folds, "ensemble_size": args.ensemble_size, "max_trials": args.max_trials,
            "max_trials_without_improvement": args.max_trials_without_improvement}


def open_cache(path, args):
    if not os.path.exists(path):
        return {"settings": settings(args), "results": {}}
    with open(path) as f:
        cache = json.load(f)
    if cache.get("settings") != settings(args):
        raise SystemExit(f"--cache {path}: made with other settings ({cache.get('settings')}); "
                         "give another file for these")
    return cache


def save_cache(path, cache):
    """Write the cache whole, then move it into place: an interrupted write loses nothing."""
    with open(path + ".tmp", "w") as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def method_keys(args):
    """The method names results are kept under: the engine once per search seed."""
    keys = []
    for method in args.methods:
        keys += [f"engine/seed{seed}" for seed in args.seeds] if method == "engine" else [method]
    return keys


def run_all(args, cache):
    stamp = {"commit": commit(), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as scratch:
        for split_seed in args.split_seeds:
            for name in args.datasets:
                X, y, task = DATASETS[name]()
                train, validation, test = data.split_indices(y, task, test_size=TEST_SIZE, seed=split_seed)
                rest = np.concatenate([train, validation])
                for key in method_keys(args):
                    cell = f"{name}|{split_seed}|{key}"
                    if cell in cache["results"]:
                        continue
                    started = time.monotonic()
                    if key.startswith("engine/"):
                        result = run_engine(name, X, y, task, split_seed, int(key[len("engine/seed"):]), args,
                                            scratch)
                    elif key == "flaml":
                        result = run_flaml(task, X[rest], y[rest], X[test], y[test], args)
                        if result is None:
                            print("flaml: not installed (pip install \"flaml[automl]\"); left out", file=sys.stderr)
                            args.methods = [m for m in args.methods if m != "flaml"]
                            continue
                    else:
                        result = run_baseline(key, task, X[rest], y[rest], X[test], y[test])
                    result.update(stamp, metric="accuracy" if task == "classification" else "R^2", seconds=round(time.monotonic() - started, 1),
                                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
                    cache["results"][cell] = result
                    save_cache(args.cache, cache)
                    trials = "" if result["trials"] is None else f", {result['trials']} trials"
                    outcome = result.get("error") or f"{result['score']:.4f}"
                    print(f"{name}, split {split_seed}, {key}: {outcome} ({result['seconds']:.0f} s{trials})",
                          file=sys.stderr, flush=True)


def paired_lead(engine, other):
    """The engine's mean lead over ``other`` in points, ± the standard error of the per-split
    differences (a lead within about two of them is within the splits' noise)."""
    differences = 100 * (engine - other)
    lead = f"{round(np.mean(differences), 2) + 0.0:+.2f}"  # + 0.0: a lead that rounds to 0 is +0.00
    if len(differences) < 2:
        return lead
    return f"{lead} ± {np.std(differences, ddof=1) / np.sqrt(len(differences)):.2f}"


def table(args, cache):
    """The markdown summary table over the splits asked for, from the cache, and the commits
    its results ran at (the engine's and the other methods' apart: a new engine reruns only its
    own cells). A split counts for a dataset once every method has run on it, so the
    comparisons stay paired."""
    keys = method_keys(args)
    engines = [key for key in keys if key.startswith("engine/")]
    lines = ["| dataset | metric | " + " | ".join(keys) + " | trials per search | engine - better baseline "
             "| engine - FLAML | splits |", "|---" * (len(keys) + 6) + "|"]
    commits = {"engine": set(), "others": set()}
    for name in args.datasets:
        ran = [cells for cells in ({key: cache["results"].get(f"{name}|{split}|{key}") for key in keys}
                                   for split in args.split_seeds) if all(cells.values())]
        done = [cells for cells in ran if all(cell["score"] is not None for cell in cells.values())]
        failed = f" ({len(ran) - len(done)} without a model)" if len(ran) > len(done) else ""
        if not done:
            lines.append(f"| {name} | | " + " | ".join("—" for _ in keys) + f" | | | | 0{failed} |")
            continue
        scores = {key: np.array([cells[key]["score"] for cells in done]) for key in keys}
        for cells in done:
            for key, cell in cells.items():
                commits["engine" if key.startswith("engine/") else "others"].add(cell["commit"])
        engine = np.mean([scores[key] for key in engines], axis=0) if engines else None  # per split, over seeds
        trials = f"{np.mean([cells[key]['trials'] for cells in done for key in engines]):.0f}" if engines else ""
        baselines = [key for key in ("mlp", "linear") if key in scores]
        better = max(baselines, key=lambda key: np.mean(scores[key])) if baselines else None
        lead = f"{paired_lead(engine, scores[better])} ({better})" if engines and better else ""
        versus_flaml = paired_lead(engine, scores["flaml"]) if engines and "flaml" in scores else ""
        lines.append(f"| {name} | {done[0][keys[0]]['metric']} | "
                     + " | ".join(f"{np.mean(scores[key]):.4f} ± {np.std(scores[key]):.4f}" for key in keys)
                     + f" | {trials} | {lead} | {versus_flaml} | {len(done)}{failed} |")
    return "\n".join(lines), {kind: sorted(kept) for kind, kept in commits.items()}


def section(args, text, commits):
    """The table with the protocol it ran under, for the benchmarks page."""
    s = settings(args)
    return f"""Protocol: split seeds {', '.join(map(str, args.split_seeds))}, {int(100 * TEST_SIZE)}% test (stratified for
classification), {s['budget']:g} s per search, `n_jobs` {s['n_jobs']}, search seed(s) {', '.join(map(str, args.seeds))},
strategy {s['strategy']}, {s['folds']} folds, ensemble size {s['ensemble_size']}; FLAML with the same budget, cores and
seed. The engine's searches ran at commit(s) {', '.join(commits['engine']) or '-'}, the other methods at
commit(s) {', '.join(commits['others']) or '-'}, on {machine()}. Each cell: mean ± standard
deviation of the test metric over the splits every method has run on ("splits"); "engine - better
baseline" and "engine - FLAML": the engine's mean lead, in points (hundredths of the metric), over
the one of the default MLP and the tuned linear model with the better mean (named), and over
FLAML, ± the standard error of the per-split differences. A search in which no trial finished
has no model: its split is counted apart and left out of the means.

{text}
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--split-seeds", type=int, nargs="+", default=list(range(10)), help="one test split each")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per search (engine and FLAML)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="the engine's search seeds (one search each)")
    parser.add_argument("--cache", default="nas_bench_results.json",
                        help="the JSON file results are kept in and resumed from")
    add_markdown_flag(parser)
    parser.add_argument("--strategy", default=SearchConfig.strategy)
    parser.add_argument("--folds", type=int, default=SearchConfig.folds)
    parser.add_argument("--ensemble-size", type=int, default=SearchConfig.ensemble_size)
    parser.add_argument("--max-trials", type=int, default=100000, help="also stop a search after this many trials")
    parser.add_argument("--max-trials-without-improvement", type=int,
                        help="also stop a search once this many trials in a row did not improve its best")
    args = parser.parse_args(argv)

    cache = open_cache(args.cache, args)
    run_all(args, cache)
    text, commits = table(args, cache)
    print(text)
    if args.markdown:
        write_section("nas_bench", section(args, text, commits), path=args.markdown)


if __name__ == "__main__":
    main()
