"""The command line: ``python -m cerebros run ...`` searches, ``python -m cerebros predict ...`` uses the result.

    python -m cerebros run --dataset digits --strategy evolution --max-trials 30 --max-time 60 \\
        --seed 0 --n-jobs 2 --run-dir runs/x
    python -m cerebros predict --model runs/x --input rows.csv

``run`` draws a progress bar on stderr and prints a summary on stdout; ``predict`` prints one
prediction per input row (``--input`` is a .csv of feature columns, header optional, or a
.npz holding ``X``). Exit status: 0 done, 1 the search or prediction failed, 2 bad arguments.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Optional, Sequence

from .artifacts import load_model
from .data import DEFAULT_MAX_BYTES, load_features
from .records import TrialEvent
from .strategies import STRATEGIES
from .study import SearchConfig, SearchResult, SearchStopped, Study

_BAR_WIDTH = 30
_DEFAULT_MAX_TRIALS = 30  # when neither --max-trials nor --max-time is given


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status: int = args.command(args)
        return status
    except (SearchStopped, ValueError, OSError) as exc:
        print(f"cerebros: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: a misspelt or shortened flag (--max-t) is refused, never taken for another
    parser = argparse.ArgumentParser(prog="python -m cerebros", description="Cerebros-style neural architecture search",
                                     allow_abbrev=False)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="search for networks and save an ensemble of the best", allow_abbrev=False)
    run.set_defaults(command=_run)
    run.add_argument("--dataset", required=True, help="iris, wine, breast_cancer, digits, diabetes, or a .csv/.npz path")
    run.add_argument("--target", help="the target column of a .csv with a header (default: the last column)")
    run.add_argument("--task", choices=("classification", "regression"), help="default: inferred from the target")
    run.add_argument("--objective", help="accuracy, f1_macro, log_loss, rmse, mae or r2 (default: accuracy or r2)")
    run.add_argument("--strategy", choices=sorted(STRATEGIES), default="evolution")
    run.add_argument("--max-trials", type=int,
                     help=f"trials to run (default {_DEFAULT_MAX_TRIALS}; with --max-time alone, as many as it allows)")
    run.add_argument("--max-time", type=float, help="hard deadline for the whole search, in seconds")
    run.add_argument("--max-trial-time", type=float, help="limit for each trial, in seconds")
    run.add_argument("--max-trials-without-improvement", type=int, metavar="N",
                     help="stop the search once N trials in a row have not improved the best validation score")
    run.add_argument("--min-improvement", type=float, default=0.0,
                     help="the least gain, in the objective's units, that counts as an improvement (default 0)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation/test split")
    run.add_argument("--test-size", type=float, default=SearchConfig.test_size,
                     help="share of the rows held out to test the saved model (0: none; the search cross-validates "
                          "on every row and the model is refit on all of them)")
    run.add_argument("--folds", type=int, default=SearchConfig.folds,
                     help="cross-validation folds per trial (1: one hold-out validation split)")
    run.add_argument("--n-jobs", type=int, default=1,
                     help="trials trained at once, each in its own process (-1: one per available core)")
    run.add_argument("--ensemble-size", type=int, default=SearchConfig.ensemble_size,
                     help="how many of the best trials the saved ensemble is selected from (0 or 1: the best "
                          "trial alone)")
    run.add_argument("--no-refit", dest="refit", action="store_false",
                     help="save the selected trials' fold networks only, without networks refit on all search rows")
    run.add_argument("--run-dir", help="where the journal, the saved model and the summary go (default: a new "
                                        "runs/<dataset>-<date>-<time> in the current directory)")
    run.add_argument("--resume", action="store_true", help="continue the search journaled in --run-dir")
    run.add_argument("--max-dataset-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="BYTES",
                     help=f"refuse a dataset file larger than this (default {DEFAULT_MAX_BYTES})")
    run.add_argument("--search-space", type=json.loads, default={}, metavar="JSON",
                     help='search-space overrides, e.g. \'{"levels": [1, 2], "activation": "relu"}\'')
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a strategy parameter (repeatable), e.g. population_size=10, tau=0.5, eta=3")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    predict = commands.add_parser("predict", help="predict with a run's saved model", allow_abbrev=False)
    predict.set_defaults(command=_predict)
    predict.add_argument("--model", required=True,
                         help="a run directory, or one of its ensemble_member_<i>.npz networks")
    predict.add_argument("--input", required=True, help="a .csv of feature columns or a .npz holding X")
    predict.add_argument("--proba", action="store_true", help="print class probabilities too")
    predict.add_argument("--max-dataset-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="BYTES",
                         help=f"refuse an --input file larger than this (default {DEFAULT_MAX_BYTES})")
    return parser


def _run(args: argparse.Namespace) -> int:
    max_trials = args.max_trials
    if max_trials is None and args.max_time is None:
        max_trials = _DEFAULT_MAX_TRIALS
    config = SearchConfig(
        dataset_id=args.dataset, objective=args.objective, strategy=args.strategy,
        strategy_params=dict(_strategy_param(text) for text in args.param), search_space=args.search_space,
        seed=args.seed, split_seed=args.split_seed, test_size=args.test_size, folds=args.folds, target=args.target,
        task=args.task, max_trials=max_trials, max_time_seconds=args.max_time, max_trial_seconds=args.max_trial_time,
        max_trials_without_improvement=args.max_trials_without_improvement, min_improvement=args.min_improvement,
        n_jobs=args.n_jobs, ensemble_size=args.ensemble_size, refit=args.refit,
        max_dataset_bytes=args.max_dataset_bytes)
    if args.resume and not args.run_dir:
        raise ValueError("--resume: give --run-dir, the directory of the search to continue")
    run_dir = args.run_dir or _new_run_dir(args.dataset)
    study = Study.prepare(config)
    bar = None if args.quiet else _ProgressBar(study.objective.name, max_trials, args.max_time)
    cancel = threading.Event()
    # Ctrl-C stops the search and still reports the best so far
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        result = study.run(run_dir, resume=args.resume, on_trial=bar, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
        if bar:
            bar.close()
    _print_summary(result)
    return 0


def _new_run_dir(dataset: str) -> str:
    """A directory under ./runs that no earlier run used, named after the dataset and the time."""
    stem = os.path.splitext(os.path.basename(dataset))[0] or "run"
    base = os.path.join("runs", f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, copy = base, 1
    while os.path.exists(path):
        copy += 1
        path = f"{base}-{copy}"
    return path


def _strategy_param(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--param: expected NAME=VALUE, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--param {name}: expected a number, got {value!r}") from None
    return name, int(number) if number.is_integer() and "." not in value else number


class _ProgressBar:
    """One line on stderr, redrawn after every trial."""

    def __init__(self, metric: str, max_trials: Optional[int], max_time: Optional[float]) -> None:
        self.metric = metric
        self.max_trials = max_trials
        self.max_time = max_time
        self.started = time.monotonic()

    def __call__(self, event: TrialEvent) -> None:
        if self.max_trials is None:  # a time budget alone: the bar shows the time
            done = 0.0
        else:
            done = event.completed / self.max_trials if self.max_trials else 1.0
        if self.max_time:
            done = max(done, (time.monotonic() - self.started) / self.max_time)
        filled = int(round(min(done, 1.0) * _BAR_WIDTH))
        best = "-" if event.best_value is None else f"{event.best_value:.4f}"
        of = "" if self.max_trials is None else f"/{self.max_trials}"
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {event.completed}{of} "
                         f"trials  best {self.metric} {best}  {event.elapsed_seconds:.0f} s ")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _print_summary(result: SearchResult) -> None:
    best = result.best
    objective = result.objective
    sizes = result.split_sizes
    per_fold = " per fold" if sizes["folds"] > 1 else ""
    lines = [
        f"dataset            {result.config.dataset_id} ({result.task}; {sizes['test']} test rows; "
        f"{sizes['train']} training and {sizes['validation']} validation rows{per_fold})",
        f"strategy           {result.config.strategy}, seed {result.config.seed}, "
        f"{result.config.folds} validation fold(s)",
        f"trials             {result.completed_trials} (stopped by {result.stopped_reason}) "
        f"in {result.duration_seconds:.1f} s",
        f"best trial         #{best.number}: {objective.name} {best.value:.4f} on validation",
        "saved model        ensemble of " + ", ".join(f"#{m['trial']} x{m['weight']}" for m in result.ensemble)
        + f" ({_networks(result)})",
        "validation         " + _metrics(result.validation_metrics) + " (the ensemble's, out of fold)",
        "test (held out)    " + (_metrics(result.test_metrics) if result.test_metrics is not None else
                                 "none: --test-size 0 trains the model on every row"),
        "architecture       " + _architecture(best.candidate),
        f"run directory      {result.run_dir}",
    ]
    lines += [f"warning            {text}" for text in result.warnings]
    print("\n".join(lines))


def _networks(result: SearchResult) -> str:
    folds = result.split_sizes["folds"]
    refit = sum(report["status"] == "completed" for report in result.refit)
    text = f"{folds} fold network(s) per trial"
    return text + (f"; {folds} more refit on all search rows for {refit} of {len(result.ensemble)}" if refit else "")


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def _architecture(candidate: dict[str, Any]) -> str:
    widths = " | ".join("+".join(str(unit["neurons"]) for unit in level) for level in candidate["levels"])
    return (f"levels [{widths or 'none: linear'}], {candidate['activation']}, {candidate['normalization']}, "
            f"lr {candidate['learning_rate']:.2g}, batch {candidate['batch_size']}, "
            f"epochs {candidate['epochs']}")


def _predict(args: argparse.Namespace) -> int:
    predictor = load_model(args.model)
    X = load_features(args.input, args.max_dataset_bytes)
    predictions = predictor.predict(X)
    if args.proba and predictor.task == "classification":
        proba = predictor.predict_proba(X)
        classes = predictor.classes_.tolist()
        for label, row in zip(predictions.tolist(), proba):
            print(label, " ".join(f"{c}:{p:.4f}" for c, p in zip(classes, row)))
    else:
        for label in predictions.tolist():
            print(label)
    return 0
