"""Trial cost benchmark: trials per minute of two versions of the engine, side by side in one run.

    python bench/trial_bench.py [--before main] [--trials 6] [--rounds 3] [--rows 6000] [--features 8]
                                [--searches 0] [--search-seconds 60] [--markdown [PAGE]]

The task is a generated binary classification (``make_classification``: ``--rows`` rows,
``--features`` features, 5 informative, 5% of labels flipped, ``random_state`` 0), split as a
search splits it (25% test, 5 validation folds, split seed 0). The same ``--trials``
candidates, drawn from the default search space with at least one hidden level (seed 0; the
architectures both versions can build), are trained as trials by each version: ``--before``
(a git revision, exported with ``git archive``, its C parts built as installing it would) and
the working tree. Each version runs in its own single process (one trial at a time, so the
two do not compete for cores), set up as that version sets up its trial processes
(``cerebros.runners.tune_allocator`` where it has it), and the versions alternate for
``--rounds`` rounds, so a swing in the machine's load hits both. Per version: the median over
rounds of the CPU seconds and the wall seconds all the trials took, trials per (CPU) minute
from those medians, and the trials' mean out-of-fold accuracy and mean test accuracy (each
trial's fold networks averaged), which must match for the speed-up to count.

Then, for the working tree only, where one mini-batch's time goes in each trial: the forward
and backward pass over a batch of the size its first fold trains on (``loss_and_gradients``),
against the matrix products of the same shapes alone (per layer ``x @ W`` and ``x.T @ dz``,
and ``dz @ W.T`` where a layer takes more than the raw features), medians of timed
repeats with one BLAS thread; and the rate this core reaches on one large product, for
scale.

With ``--searches N``, then what a user sees: each version runs N whole searches on the same
task as a user runs them (split seeds 0..N-1, ``--search-seconds`` each, ``n_jobs`` 2, the
search seed equal to the split seed, evolution, the version's default space), alternating
versions split by split; per
version the trials a search completes, trials per minute of budget, and the saved model's
test accuracy, with the per-split difference of the working tree's over the other's. Here
the versions draw their own candidates, so the figures also hold what the search space and
strategy changed, not only the cost of one trial. One search seed for every split would give
every split the same random first generation, so the splits would not average over the
search's own draws (docs/benchmarks.md, trial cost).

Prints markdown tables (``--markdown``: also into the section of docs/benchmarks.md).
"""
import argparse
import json
import os
import subprocess
import sys
import io
import tarfile
import tempfile
import timeit

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from markdown_section import add_markdown_flag, write_section  # noqa: E402  (beside this script)
from nas_bench import paired_lead  # noqa: E402

# Runs in a child process with one version's ``cerebros`` first on the path: trains the
# candidates given on stdin as trials and prints each one's seconds and accuracies as JSON.
_WORKER = r"""
import json, os, sys, tempfile, time
import numpy as np
from sklearn.datasets import make_classification
from cerebros import data, runners
from cerebros.network import CerebrosNetwork
from cerebros.trials import train_trial

getattr(runners, "tune_allocator", lambda: None)()  # as this version's trial processes do, if they do
job = json.load(sys.stdin)
X, y = make_classification(**job["task"])
splits = data.prepare(X, y, **job["split"])
results = []
with tempfile.TemporaryDirectory() as scratch:
    for number, candidate in enumerate(job["candidates"]):
        paths = [os.path.join(scratch, f"{number}-{fold}.npz") for fold in range(len(splits.folds))]
        payload = {"candidate": candidate, "epochs": candidate["epochs"], "seed": number, "model_paths": paths,
                   "run_deadline": None, "trial_seconds": None}
        started, cpu_started = time.perf_counter(), time.process_time()
        fields, _ = train_trial((splits.X, splits.y, splits.folds, splits.task, "accuracy"), payload,
                                lambda: False)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        fields = fields if isinstance(fields, dict) else vars(fields)  # a TrialOutcome since issue 19
        proba = np.mean([CerebrosNetwork.load(path).predict_proba(splits.X_test) for path in paths], axis=0)
        test = float(np.mean(np.unique(splits.y)[proba.argmax(axis=1)] == splits.y_test))
        results.append({"seconds": seconds, "cpu": cpu, "validation": fields["value"], "test": test,
                        "epochs": fields["epochs_trained"]})
print(json.dumps(results))
"""

# Runs one whole search (``job``: the task, split seed, budget) with the version found first on
# the path; prints its completed trials, wall seconds, the saved model's test accuracy and the
# search seed it ran with.
_SEARCH_WORKER = r"""
import json, os, sys, tempfile, time
from sklearn.datasets import make_classification
from cerebros.study import SearchConfig, SearchStopped, Study

job = json.load(sys.stdin)
X, y = make_classification(**job["task"])
config = SearchConfig(dataset_id="generated", task="classification", seed=job["split_seed"],
                      split_seed=job["split_seed"], test_size=job["split"]["test_size"], folds=job["split"]["folds"],
                      max_trials=100000, max_time_seconds=job["seconds"], n_jobs=job["n_jobs"])
with tempfile.TemporaryDirectory() as scratch:
    started = time.perf_counter()
    try:
        result = Study.prepare(config, data=(X, y)).run(os.path.join(scratch, "run"))
        trials, test = result.completed_trials, result.test_metrics["accuracy"]
    except SearchStopped as exc:
        if exc.kind != "budget_exhausted":
            raise
        trials, test = 0, None  # a budget too short for this machine's load: no model, not a failed run
    seconds = time.perf_counter() - started
print(json.dumps({"trials": trials, "seconds": seconds, "test": test, "seed": config.seed}))
"""


def candidates(count):
    """``count`` candidate dicts from the default space (seed 0), each with a hidden level."""
    from cerebros.space import SearchSpace
    space = SearchSpace(minimum_levels=1)
    rng = np.random.default_rng(0)
    return [space.sample(rng, 8).to_dict() for _ in range(count)]


def batch_breakdown(job, cpu_seconds, repeats=7, number=100):
    """Markdown lines: per candidate of ``job``, its trial's ``cpu_seconds``, and the working tree's
    forward and backward pass over one mini-batch against the matrix products of the same
    shapes alone."""
    from sklearn.datasets import make_classification
    from cerebros import data, runners
    from cerebros.network import CerebrosNetwork, batch_bounds
    from cerebros.space import Candidate

    def median_seconds(call):
        return float(np.median(timeit.repeat(call, number=number, repeat=repeats))) / number

    runners.tune_allocator()  # as the trial processes run
    X, y = make_classification(**job["task"])
    splits = data.prepare(X, y, **job["split"])
    fit, _ = data.early_stopping_split(splits.folds[0][0], splits.y, splits.task, seed=[0, 0])
    rng = np.random.default_rng(0)
    lines = ["| trial | CPU seconds | layers | parameters | rows a batch | forward and backward, ms "
             "| matrix products alone, ms | products' share | products' GFLOP/s |", "|---" * 9 + "|"]
    with threadpool_limits(limits=1, user_api="blas"):
        for index, spec in enumerate(job["candidates"]):
            candidate = Candidate.from_dict(spec)
            rows = int(np.diff(batch_bounds(len(fit), candidate.batch_size))[0])  # its first batch's
            network = CerebrosNetwork(candidate, task="classification", random_state=0)
            network.fit(splits.X[fit], splits.y[fit], epochs=1)
            batch_X, batch_y = splits.X[fit][:rows], splits.y[fit][:rows]
            step = median_seconds(lambda: network.loss_and_gradients(batch_X, batch_y))
            products_of_a_step = network.matrix_products()
            shapes = [(rng.standard_normal((rows, w.shape[0])).astype(w.dtype), w,
                       rng.standard_normal((rows, w.shape[1])).astype(w.dtype), input_gradient)
                      for w, input_gradient in products_of_a_step]

            def products():
                for x, w, dz, input_gradient in shapes:
                    x @ w
                    x.T @ dz
                    if input_gradient:
                        dz @ w.T

            alone = median_seconds(products)
            flops = sum(2 * rows * w.size * (3 if input_gradient else 2) for _, w, _, input_gradient in shapes)
            parameters = sum(p.size for p in network.parameters().values())
            lines.append(f"| {index + 1} | {cpu_seconds[index]:.1f} | {len(shapes)} | {parameters} | {rows} | "
                         f"{1e3 * step:.3f} | {1e3 * alone:.3f} | {alone / step:.0%} | {flops / alone / 1e9:.0f} |")
        square = rng.standard_normal((1024, 1024)).astype(np.float32)
        large = median_seconds(lambda: square @ square)
    lines += ["", f"For scale: one 1024 x 1024 float32 product runs at {2 * 1024 ** 3 / large / 1e9:.0f} GFLOP/s "
              "on one BLAS thread of this machine."]
    return lines


def search_table(searches, seconds):
    """Markdown lines: per version, its whole searches' trials and test accuracy, and the working
    tree's per-split lead over the first version."""
    count = len(next(iter(searches.values())))
    seeds = sorted({s["seed"] for runs in searches.values() for s in runs})
    lines = [f"Whole searches: {count} per version (split seeds 0-{count - 1}), {seconds:g} s each, n_jobs 2, "
             f"search seeds {', '.join(map(str, seeds))}, each version's own default space", "",
             "| version | trials a search | trials per minute of budget | wall seconds a search "
             "| mean test accuracy | test lead over before, points |", "|---" * 6 + "|"]
    before = [s["test"] for s in next(iter(searches.values()))]
    without_a_model = []
    for name, runs in searches.items():
        trials = [s["trials"] for s in runs]
        tests = [s["test"] for s in runs if s["test"] is not None]
        pairs = [(s["test"], first) for s, first in zip(runs, before) if None not in (s["test"], first)]
        lines.append(f"| {name} | {np.mean(trials):.1f} (min {min(trials)}, max {max(trials)}) | "
                     f"{60 * np.mean(trials) / seconds:.1f} | {np.mean([s['seconds'] for s in runs]):.1f} | "
                     f"{_mean_and_spread(tests)} | {paired_lead(*np.array(pairs).T) if pairs else '-'} |")
        if len(tests) < count:
            without_a_model.append(f"{count - len(tests)} of {name}'s")
    if without_a_model:
        lines += ["", f"{' and '.join(without_a_model)} searches finished no trial in the budget: they have no "
                  "model, and their splits are left out of the test accuracy and the lead."]
    return lines


def _mean_and_spread(values):
    """"mean ± standard deviation" of ``values``; the mean alone of one value, "-" of none."""
    if len(values) < 2:
        return f"{values[0]:.4f}" if values else "-"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def export(revision, into):
    """The ``cerebros`` package as it is at git ``revision``, written under ``into``, with its C
    parts built (as installing that revision builds them) where it has any."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", revision, "cerebros", "setup.py",
                              "setup.cfg"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.10.12 and later
        tar.extractall(into, **safe)
    if any(name.endswith(".c") for name in os.listdir(os.path.join(into, "cerebros"))):
        # the codec's extensions, optional, are skipped: their sources are not exported
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=into, capture_output=True,
                       check=True)
    return into


def run_version(path, job, worker=_WORKER):
    """``worker``'s results for the ``cerebros`` package found under ``path``."""
    # ``python -c`` puts its working directory first on the path: run it where the version is
    done = subprocess.run([sys.executable, "-c", worker], input=json.dumps(job), capture_output=True, text=True,
                          cwd=path, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the worker for {path} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="the git revision to compare the working tree with")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--searches", type=int, default=0, help="whole searches per version (split seeds 0..N-1)")
    parser.add_argument("--search-seconds", type=float, default=60.0)
    add_markdown_flag(parser)
    args = parser.parse_args(argv)
    if args.searches == 1:
        parser.error("--searches: give 0, or 2 or more (a spread needs two searches)")
    # the task and its split, as the worker and the breakdown both make them
    job = {"task": {"n_samples": args.rows, "n_features": args.features, "n_informative": 5, "n_redundant": 1,
                    "flip_y": 0.05, "random_state": 0},
           "split": {"name": "generated", "test_size": 0.25, "folds": 5, "seed": 0},
           "candidates": candidates(args.trials)}
    with tempfile.TemporaryDirectory(prefix="trial-bench-") as scratch:
        versions = {f"before ({args.before})": export(args.before, scratch), "working tree": ROOT}
        runs = {name: [] for name in versions}
        for round_number in range(args.rounds):
            for name, path in versions.items():
                results = run_version(path, job)
                runs[name].append(results)
                print(f"round {round_number + 1}, {name}: {sum(r['seconds'] for r in results):.1f} s",
                      file=sys.stderr, flush=True)
        searches = {name: [] for name in versions}
        for split_seed in range(args.searches):
            for name, path in versions.items():
                search = {"task": job["task"], "split": job["split"], "split_seed": split_seed,
                          "seconds": args.search_seconds, "n_jobs": 2}
                searches[name].append(run_version(path, search, _SEARCH_WORKER))
                print(f"search on split {split_seed}, {name}: {searches[name][-1]['trials']} trials, "
                      f"test accuracy {searches[name][-1]['test']}", file=sys.stderr, flush=True)
    lines = [f"{args.trials} trials of 5 folds on {args.rows} rows x {args.features} features, one process per "
             f"version, {args.rounds} round(s), medians; {os.cpu_count()} CPU(s) shared with other work, so the "
             "CPU seconds are the fairer measure", "",
             "| version | CPU seconds | trials per CPU minute | wall seconds | trials per minute | epochs trained "
             "| mean validation accuracy | mean test accuracy |", "|---" * 8 + "|"]
    medians = {}
    for name, rounds in runs.items():
        cpu, wall = (float(np.median([sum(r[key] for r in results) for results in rounds]))
                     for key in ("cpu", "seconds"))
        medians[name] = cpu, wall
        last = rounds[-1]  # every round trains the same networks: the scores do not change
        lines.append(f"| {name} | {cpu:.1f} | {60 * args.trials / cpu:.2f} | {wall:.1f} | "
                     f"{60 * args.trials / wall:.2f} | {sum(r['epochs'] for r in last)} | "
                     f"{np.mean([r['validation'] for r in last]):.4f} | {np.mean([r['test'] for r in last]):.4f} |")
    (cpu_before, wall_before), (cpu_after, wall_after) = medians.values()
    trial_cpu = np.median([[r["cpu"] for r in results] for results in runs["working tree"]], axis=0)
    lines += ["", f"speed-up: {cpu_before / cpu_after:.2f}x trials per CPU minute, {wall_before / wall_after:.2f}x "
              "trials per minute"]
    lines += ["", "Where one mini-batch's time goes in each trial (working tree, one BLAS thread, medians):", "",
              *batch_breakdown(job, trial_cpu)]
    if args.searches:
        lines += ["", *search_table(searches, args.search_seconds)]
    print("\n" + "\n".join(lines))
    if args.markdown:
        write_section("trial_bench", "\n".join(lines), path=args.markdown)


if __name__ == "__main__":
    main()
