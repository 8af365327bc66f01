"""Running searches: determinism, budgets, cancellation, resume, artifacts, no test-split leakage."""
import fcntl
import json
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris

import cerebros.artifacts
import cerebros.study
import cerebros.trials
from cerebros import data, objectives
from cerebros.artifacts import StorageError, load_model, saved_model
from cerebros.network import CerebrosNetwork
from cerebros.records import TrialState
from cerebros.study import SearchConfig, SearchStopped, Study
from codec import FieldError

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8],
        "batch_size": [16, 64]}
# Trials that would run far longer than any test: the budgets must cut them short.
ENDLESS = {"levels": 2, "units_per_level": 2, "neurons_per_unit": 64, "epochs": 100000, "batch_size": 16,
           "patience": 100000}


def config(**overrides):
    settings = dict(dataset_id="iris", search_space=TINY, max_trials=4, strategy_params={"population_size": 3},
                    folds=1)
    settings.update(overrides)
    return SearchConfig(**settings)


def journal(run_dir):
    """The journal without its timings."""
    with open(run_dir / "journal.jsonl") as f:
        records = [json.loads(line) for line in f]
    for record in records:
        del record["duration_seconds"]
    return records


def test_same_seed_same_journal_whatever_n_jobs(tmp_path):
    one = Study.prepare(config(max_trials=5)).run(tmp_path / "one")
    two = Study.prepare(config(max_trials=5, n_jobs=2)).run(tmp_path / "two")
    assert len(journal(tmp_path / "one")) == 5
    assert journal(tmp_path / "one") == journal(tmp_path / "two")
    assert one.ensemble == two.ensemble and one.validation_metrics == two.validation_metrics
    assert one.test_metrics == two.test_metrics
    other = Study.prepare(config(max_trials=5, seed=1)).run(tmp_path / "other")
    assert journal(tmp_path / "other") != journal(tmp_path / "one")
    assert other.completed_trials == 5


def test_result_journal_and_run_directory(tmp_path):
    events = []
    study = Study.prepare(config(ensemble_size=1))
    result = study.run(tmp_path, on_trial=events.append)
    records = journal(tmp_path)
    assert [r["number"] for r in records] == [0, 1, 2, 3] and result.stopped_reason == "max_trials"
    assert {"candidate", "epochs", "metrics", "status", "value", "seed", "best_epoch", "val_loss"} <= set(records[0])
    assert [e.completed for e in events] == [1, 2, 3, 4] and [e.record.number for e in events] == [0, 1, 2, 3]
    best = max(records, key=lambda r: (r["value"], -r["val_loss"]))  # ties go to the lower validation loss
    assert result.best.number == best["number"] == events[-1].best_trial
    assert set(result.validation_metrics) == set(result.test_metrics) == {"accuracy", "f1_macro", "log_loss"}
    # without ensembling, the saved model is the best trial's: its fold network at its best epoch,
    # then its refit network
    assert result.ensemble == [{"trial": best["number"], "weight": 1}]
    train, validation = study.splits.folds[0]
    saved = CerebrosNetwork.load(tmp_path / "ensemble_member_0.npz")
    assert objectives.evaluate(saved, study.splits.X[validation], study.splits.y[validation]) == best["metrics"]
    assert result.validation_metrics == best["metrics"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_trial"]["number"] == best["number"] and summary["test_metrics"] == result.test_metrics
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        ".lock", "config.json", "ensemble.json", "ensemble_member_0.json", "ensemble_member_0.npz",
        "ensemble_member_1.json", "ensemble_member_1.npz", "journal.jsonl", "run.json", "summary.json"]
    kept = f"trial_{best['number']:05d}"  # the one ensemble candidate, for a resumed run
    assert sorted(p.name for p in (tmp_path / "trials").iterdir()) == [
        f"{kept}_0.json", f"{kept}_0.npz", f"{kept}_oof.npy", f"{kept}_refit0.json", f"{kept}_refit0.npz"]


def test_cross_validation_scores_out_of_fold_and_saves_an_ensemble(tmp_path):
    X, y = load_iris(return_X_y=True)
    study = Study.prepare(config(folds=3, max_trials=2, ensemble_size=1, refit=False))
    result = study.run(tmp_path)
    folds = study.splits.folds
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(study.splits.y)))
    networks = [CerebrosNetwork.load(tmp_path / f"ensemble_member_{fold}.npz") for fold in range(3)]
    correct = sum(int(np.sum(n.predict(study.splits.X[v]) == study.splits.y[v])) for n, (_, v) in zip(networks, folds))
    assert result.validation_metrics["accuracy"] == correct / len(study.splits.y)
    _, _, test = data.split_indices(y, "classification", seed=0)
    proba = np.average([n.predict_proba(study.splits.X_test) for n in networks], axis=0, weights=[1 / 3] * 3)
    assert np.array_equal(load_model(tmp_path).predict_proba(X[test]), proba)
    assert result.test_metrics["accuracy"] == np.mean(proba.argmax(axis=1) == y[test])
    assert len(result.best.best_epoch) == 3 and result.split_sizes["folds"] == 3


def test_networks_never_early_stop_on_their_validation_rows(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((90, 4)), np.repeat([0, 1, 2], 30)  # no two rows alike
    study = Study.prepare(config(dataset_id="inline", folds=3, max_trials=2, refit=False), data=(X, y))
    calls = []
    fit = CerebrosNetwork.fit

    def recording_fit(self, X, y, X_val=None, y_val=None, **kwargs):
        calls.append((X, X_val))
        return fit(self, X, y, X_val, y_val, **kwargs)

    monkeypatch.setattr(CerebrosNetwork, "fit", recording_fit)
    study.run(tmp_path)
    assert len(calls) == 2 * 3

    def rows(A):
        return {row.tobytes() for row in A}

    for (X_fit, X_stop), (train, validation) in zip(calls, study.splits.folds * 2):
        assert len(X_stop) > 0 and not rows(X_stop) & rows(study.splits.X[validation])
        assert rows(X_fit) | rows(X_stop) == rows(study.splits.X[train]) and not rows(X_fit) & rows(X_stop)


def test_the_saved_ensemble_is_what_selection_scored_and_reloads_identically(tmp_path):
    X, y = load_digits(return_X_y=True)
    study = Study.prepare(config(dataset_id="inline", folds=2, max_trials=8, ensemble_size=5, refit=False,
                                 strategy_params={"population_size": 4}), data=(X[:400], y[:400]))
    result = study.run(tmp_path)
    members = {m["trial"]: m["weight"] for m in result.ensemble}
    recorded = json.loads((tmp_path / "summary.json").read_text())["ensemble"]
    assert result.best.number in recorded["candidates"]
    check = recorded["selection_check"]
    assert check["kept"] in ("ensemble", "best") and 0 <= check["best_cv"] <= 1 and 0 <= check["ensemble_cv"] <= 1
    assert check["kept"] == "ensemble" or members == {result.best.number: 1}
    paths, weights = saved_model(tmp_path)
    manifest = json.loads((tmp_path / "ensemble.json").read_text())["members"]
    assert [(m["trial"], m["fold"]) for m in manifest] == [(t, fold) for t in members for fold in range(2)]
    assert weights == [members[m["trial"]] / 2 for m in manifest]  # a trial's weight, shared by its networks
    # the validation metrics are the saved networks' weighted out-of-fold outputs, scored
    folds = study.splits.folds
    networks = [CerebrosNetwork.load(path) for path in paths]
    outputs = {t: np.concatenate([networks[i].predict_proba(study.splits.X[folds[m["fold"]][1]])
                                  for i, m in enumerate(manifest) if m["trial"] == t]) for t in members}
    rows = np.concatenate([v for _, v in folds])
    proba = np.average([outputs[t] for t in members], axis=0, weights=list(members.values()))
    scored = objectives.score_outputs("classification", study.splits.y[rows], proba, np.unique(y[:400]))
    assert scored == pytest.approx(result.validation_metrics, rel=1e-12)
    assert result.validation_metrics["accuracy"] >= result.best.value  # greedy starts from the best
    # the reloaded ensemble predicts the test rows exactly as scored
    _, _, test = data.split_indices(y[:400], "classification", seed=0)
    predictor = load_model(tmp_path)
    expected = np.average([n.predict_proba(study.splits.X_test) for n in networks], axis=0, weights=weights)
    assert np.array_equal(predictor.predict_proba(X[:400][test]), expected)
    assert np.mean(predictor.predict(X[:400][test]) == y[:400][test]) == result.test_metrics["accuracy"]
    # at most ensemble_size trials keep files, the members among them
    kept = {int(p.name.split("_")[1]) for p in (tmp_path / "trials").iterdir()}
    assert len(kept) <= 5 and set(members) <= kept


def with_statuses(monkeypatch, statuses):
    """Make trial ``n`` end with ``statuses[n]``; an "interrupted" one also claims a perfect score."""
    train = cerebros.study.train_trial

    def train_with_status(trial_data, payload, should_stop):
        outcome, outputs = train(trial_data, payload, should_stop)
        outcome.status = TrialState(statuses[payload["number"]])
        if outcome.status == "interrupted":
            outcome.value, outcome.val_loss = 1.0, 0.0
        return outcome, outputs

    monkeypatch.setattr(cerebros.study, "train_trial", train_with_status)


def test_interrupted_trials_are_neither_best_nor_members_unless_alone(tmp_path, monkeypatch):
    with_statuses(monkeypatch, ["completed", "interrupted", "completed", "interrupted"])
    result = Study.prepare(config()).run(tmp_path / "mixed")
    assert result.best.number in (0, 2)
    assert {m["trial"] for m in result.ensemble} <= {0, 2}
    with_statuses(monkeypatch, ["interrupted"] * 4)
    alone = Study.prepare(config()).run(tmp_path / "alone")
    assert alone.best.number == 0 and alone.ensemble == [{"trial": 0, "weight": 1}]


def test_artifact_reload_predicts_like_the_search_reported(tmp_path):
    X, y = load_iris(return_X_y=True)
    result = Study.prepare(config(max_trials=3, refit=False)).run(tmp_path)
    _, _, test = data.split_indices(y, "classification", seed=0)
    predictor = load_model(tmp_path)
    assert np.mean(predictor.predict(X[test]) == y[test]) == result.test_metrics["accuracy"]
    members = [load_model(tmp_path / f"ensemble_member_{i}.npz").predict_proba(X[test])
               for i in range(len(result.ensemble))]
    weights = [member["weight"] for member in result.ensemble]
    assert np.allclose(np.average(members, axis=0, weights=weights), predictor.predict_proba(X[test]), rtol=0,
                       atol=1e-12)


def test_refit_networks_train_on_all_search_rows_and_join_their_trials_fold_networks(tmp_path, monkeypatch):
    X, y = load_iris(return_X_y=True)
    settings = dict(folds=3, max_trials=5, ensemble_size=3)
    plain = Study.prepare(config(refit=False, **settings)).run(tmp_path / "plain")
    study = Study.prepare(config(**settings))
    fits = []
    fit = CerebrosNetwork.fit

    def recording_fit(self, X, y, X_val=None, y_val=None, **kwargs):
        fits.append((len(X), X_val, kwargs["epochs"], self.random_state))
        return fit(self, X, y, X_val, y_val, **kwargs)

    monkeypatch.setattr(CerebrosNetwork, "fit", recording_fit)
    result = study.run(tmp_path / "refit")
    # the search itself is untouched: same trials, same selection, same out-of-fold metrics
    assert journal(tmp_path / "refit") == journal(tmp_path / "plain")
    assert result.ensemble == plain.ensemble and result.validation_metrics == plain.validation_metrics
    records = {r.number: r for r in result.records}
    refits = fits[5 * 3:]  # after the five trials' three fold networks each
    assert len(refits) == 3 * len(result.ensemble)
    for member, report in zip(result.ensemble, result.refit):
        record = records[member["trial"]]
        epochs = max(1, int(round(float(np.median(record.best_epoch)))))
        assert {k: report[k] for k in ("trial", "epochs", "networks", "status")} == {
            "trial": member["trial"], "epochs": epochs, "networks": 3, "status": "completed"}
        assert report["duration_seconds"] > 0
        estimate = report["estimated_seconds"]
        assert type(estimate) is float
        assert estimate == round(cerebros.study._refit_seconds(record, study.epoch_cost_ratio), 3)
        mine = [f for f in refits if record.seed + 3 <= f[3] < record.seed + 6]
        assert mine == [(len(study.splits.y), None, epochs, record.seed + 3 + i) for i in range(3)]
    # the saved model: each member's 3 fold and 3 refit networks, sharing its weight
    manifest = json.loads((tmp_path / "refit" / "ensemble.json").read_text())["members"]
    weights = {m["trial"]: m["weight"] for m in result.ensemble}
    assert [(m["trial"], m.get("fold"), m.get("refit")) for m in manifest] == [
        (t, *which) for t in weights for which in [(0, None), (1, None), (2, None), (None, 0), (None, 1), (None, 2)]]
    assert [m["weight"] for m in manifest] == [weights[m["trial"]] / 6 for m in manifest]
    _, _, test = data.split_indices(y, "classification", seed=0)
    predictor = load_model(tmp_path / "refit")
    assert np.mean(predictor.predict(X[test]) == y[test]) == result.test_metrics["accuracy"]
    folds_only = load_model(tmp_path / "plain").predict_proba(X[test])
    assert not np.array_equal(predictor.predict_proba(X[test]), folds_only)
    assert json.loads((tmp_path / "refit" / "summary.json").read_text())["ensemble"]["refit"] == result.refit


def test_a_refit_the_deadline_cuts_short_is_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(cerebros.study, "_refit_epochs", lambda record: 100000)
    started = time.monotonic()
    result = Study.prepare(config(max_trials=3, ensemble_size=1, max_time_seconds=5,
                                  search_space={**TINY, "patience": 100000})).run(tmp_path)
    assert time.monotonic() - started < 30  # the endless refit stopped at the 5 s deadline
    assert result.completed_trials == 3 and result.stopped_reason == "max_trials"
    assert [report["status"] for report in result.refit] == ["interrupted"]
    assert any(w.startswith("refit: 1 of 1 selected trial(s)") for w in result.warnings)
    manifest = json.loads((tmp_path / "ensemble.json").read_text())["members"]
    assert [m["fold"] for m in manifest] == [0] and manifest[0]["weight"] == 1


def record_deadlines(monkeypatch):
    """The run deadlines (wall clock) that train_trial and refit_trial are given, by function."""
    deadlines = {}
    for name in ("train_trial", "refit_trial"):
        def recording(trial_data, payload, should_stop, name=name, real=getattr(cerebros.study, name)):
            deadlines.setdefault(name, []).append(payload["run_deadline"])
            return real(trial_data, payload, should_stop)
        monkeypatch.setattr(cerebros.study, name, recording)
    return deadlines


def test_the_search_leaves_the_refits_their_estimated_time(tmp_path, monkeypatch):
    deadlines = record_deadlines(monkeypatch)
    study = Study.prepare(config(max_trials=2, ensemble_size=1, max_time_seconds=1000))
    before = time.time()
    study.run(tmp_path)
    after = time.time()
    assert len(deadlines["train_trial"]) == 2 and len(deadlines["refit_trial"]) == 1
    assert before + 1000 <= deadlines["refit_trial"][0] <= after + 1000
    # trial 0 starts with nothing to refit yet; trial 1 with trial 0 selected: 1.5 times its estimate
    first = study.records[0]
    assert before + 1000 <= deadlines["train_trial"][0] <= after + 1000
    reserve = cerebros.study.REFIT_MARGIN * cerebros.study._refit_seconds(first, study.epoch_cost_ratio)
    assert 0 < reserve < 10
    assert deadlines["refit_trial"][0] - deadlines["train_trial"][1] == pytest.approx(reserve, abs=0.05)


def test_reaching_the_refit_reserve_stops_the_running_trials(tmp_path, monkeypatch):
    monkeypatch.setattr(cerebros.study, "_refit_seconds", lambda record, epoch_cost_ratio: 1.0)
    deadlines = record_deadlines(monkeypatch)
    calls = []

    class RecordingRunner(cerebros.study.InlineRunner):
        def stop(self):
            calls.append("stop")

        def resume(self):
            calls.append("resume")

    monkeypatch.setattr(cerebros.study, "InlineRunner", RecordingRunner)
    result = Study.prepare(config(max_trials=100000, ensemble_size=1, max_time_seconds=4)).run(tmp_path)
    assert result.stopped_reason == "max_time" and calls == ["stop", "resume"]
    refit_deadline = deadlines["refit_trial"][0]
    assert all(d == pytest.approx(refit_deadline - 1.5, abs=0.05) for d in deadlines["train_trial"][1:])


def test_the_refit_reserve_covers_the_first_members_that_fit_in_half_the_budget():
    reserve = cerebros.study._reserve
    assert reserve([], 2, limit=30) == 0
    assert reserve([4, 2], 2, limit=30) == 1.5 * 4
    assert reserve([4, 2, 3], 2, limit=30) == 1.5 * 5
    assert reserve([4, 2, 30], 2, limit=30) == 1.5 * 4  # the third member's refit would not fit
    assert reserve([54], 2, limit=30) == 0  # nothing fits: the search keeps the whole budget


def test_a_refit_longer_than_half_the_budget_takes_no_time_from_the_search(tmp_path, monkeypatch):
    monkeypatch.setattr(cerebros.study, "_refit_seconds", lambda record, epoch_cost_ratio: 1e6)
    deadlines = record_deadlines(monkeypatch)
    result = Study.prepare(config(max_trials=3, ensemble_size=1, max_time_seconds=1000)).run(tmp_path)
    assert result.completed_trials == 3 and result.refit[0]["status"] == "completed"
    assert all(d == pytest.approx(deadlines["refit_trial"][0], abs=0.05) for d in deadlines["train_trial"])


def test_refit_makespan_follows_the_trial_processes_order():
    makespan = cerebros.study._makespan
    assert makespan([], 2) == 0
    assert makespan([3, 1, 1, 1], 2) == 3  # 3 on one process, the three 1s on the other
    assert makespan([1, 1, 3], 2) == 4  # the 3 waits for the first free process
    assert makespan([2, 2, 2], 1) == 6


def test_search_never_sees_the_test_rows(tmp_path):
    X, y = load_iris(return_X_y=True)
    _, _, test = data.split_indices(y, "classification", seed=0)
    poisoned = X.copy()
    poisoned[test] = np.random.default_rng(0).normal(1e6, 1e6, size=poisoned[test].shape)
    clean = Study.prepare(config(dataset_id="inline"), data=(X, y)).run(tmp_path / "clean")
    dirty = Study.prepare(config(dataset_id="inline"), data=(poisoned, y)).run(tmp_path / "dirty")
    assert journal(tmp_path / "clean") == journal(tmp_path / "dirty")  # neither scaler nor trials saw them
    assert clean.ensemble == dirty.ensemble  # nor the ensemble selection
    assert clean.validation_metrics == dirty.validation_metrics
    assert clean.test_metrics != dirty.test_metrics  # the poison did reach the final test scoring


def test_a_fold_network_never_sees_its_validation_rows_not_even_in_its_scaling(tmp_path):
    X, y = load_iris(return_X_y=True)
    study = Study.prepare(config(dataset_id="inline", folds=3, max_trials=1, ensemble_size=1), data=(X, y))
    _, first_validation = study.splits.folds[0]
    train, val, _ = data.split_indices(y, "classification", seed=0)
    positions = np.concatenate([train, val])[first_validation]
    poisoned = X.copy()
    poisoned[positions] *= 1000
    study.run(tmp_path / "clean")
    Study.prepare(config(dataset_id="inline", folds=3, max_trials=1, ensemble_size=1),
                  data=(poisoned, y)).run(tmp_path / "dirty")
    clean, dirty = (CerebrosNetwork.load(tmp_path / run / "ensemble_member_0.npz") for run in ("clean", "dirty"))
    assert np.array_equal(clean.predict_proba(X[positions]), dirty.predict_proba(X[positions]))
    later = [CerebrosNetwork.load(tmp_path / run / "ensemble_member_1.npz") for run in ("clean", "dirty")]
    assert not np.array_equal(*(net.predict_proba(X[positions]) for net in later))  # they trained on them


def test_regression_targets_of_test_rows_do_not_reach_the_search(tmp_path):
    X = np.random.default_rng(1).normal(size=(120, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1
    _, _, test = data.split_indices(y, "regression", seed=0)
    poisoned = y.copy()
    poisoned[test] = 1e9
    runs = {}
    for name, target in (("clean", y), ("dirty", poisoned)):
        runs[name] = Study.prepare(config(dataset_id="inline", max_trials=2), data=(X, target)).run(tmp_path / name)
    assert journal(tmp_path / "clean") == journal(tmp_path / "dirty")
    assert runs["clean"].objective.name == "r2" and runs["dirty"].test_metrics["rmse"] > 1e8


def test_max_time_is_a_hard_deadline(tmp_path):
    started = time.monotonic()
    result = Study.prepare(config(dataset_id="digits", search_space=ENDLESS, max_trials=1000,
                                  max_time_seconds=1.5)).run(tmp_path)
    assert time.monotonic() - started < 30  # the endless trials were cut at 1.5 s (slack for a busy machine)
    assert result.stopped_reason == "max_time" and result.completed_trials >= 1
    assert result.best.status == "interrupted"
    assert any("every trial was cut short (stopped_reason max_time)" in w for w in result.warnings)


def test_no_fold_starts_after_the_deadline(tmp_path):
    started = time.monotonic()
    with pytest.raises(SearchStopped, match="ran out before any trial finished") as info:
        Study.prepare(config(dataset_id="digits", search_space=ENDLESS, folds=5, max_trials=1000,
                             max_time_seconds=1.5)).run(tmp_path / "run")
    assert time.monotonic() - started < 10  # one fold cut at 1.5 s, not five folds of one batch each
    assert info.value.kind == "budget_exhausted"
    [record] = journal(tmp_path / "run")
    assert record["status"] == "interrupted" and record["value"] is None and len(record["best_epoch"]) == 1
    assert "stopped before fold 2 of 5 started" in record["error"]
    timed_out = Study.prepare(config(dataset_id="digits", search_space=ENDLESS, folds=3, max_trials=1,
                                     max_trial_seconds=0.5)).run
    with pytest.raises(SearchStopped):
        timed_out(tmp_path / "trial")
    assert [r["status"] for r in journal(tmp_path / "trial")] == ["timeout"]


def test_per_trial_time_limit(tmp_path):
    result = Study.prepare(config(dataset_id="digits", search_space=ENDLESS, max_trials=2,
                                  max_trial_seconds=0.5)).run(tmp_path)
    assert [r.status for r in result.records] == ["timeout", "timeout"]
    assert all(r.duration_seconds < 10 for r in result.records)
    assert any("max_trial_seconds" in w for w in result.warnings)


def test_cancellation_returns_the_best_so_far(tmp_path):
    cancel = threading.Event()

    def on_trial(event):
        if event.completed == 2:
            cancel.set()

    result = Study.prepare(config(max_trials=50)).run(tmp_path, on_trial=on_trial, cancel=cancel)
    assert result.stopped_reason == "cancelled" and result.completed_trials == 2
    assert any("cancelled" in w for w in result.warnings)
    assert result.refit == []  # a cancelled search trains nothing more
    cancel_first = threading.Event()
    cancel_first.set()
    with pytest.raises(SearchStopped) as info:
        Study.prepare(config()).run(tmp_path / "early", cancel=cancel_first)
    assert info.value.kind == "cancelled"


def test_a_worker_process_that_dies_fails_its_trials_not_the_search(tmp_path):
    killed, seen_after = [], set()

    def kill_the_workers_once(event):
        workers = multiprocessing.active_children()
        if not killed:
            killed.extend(worker.pid for worker in workers)
            for worker in workers:
                os.kill(worker.pid, signal.SIGKILL)
        else:
            seen_after.update(worker.pid for worker in workers)

    result = Study.prepare(config(max_trials=8, n_jobs=2)).run(tmp_path, on_trial=kill_the_workers_once)
    assert killed and seen_after - set(killed)  # a fresh pool ran the later trials
    assert result.completed_trials == 8 and result.records[-1].status == "completed"
    for record in result.records:
        assert record.status == "completed" or "BrokenProcessPool" in record.error


def test_n_jobs_beyond_the_available_cores_runs_one_process_per_core(tmp_path, monkeypatch):
    monkeypatch.setattr(cerebros.study, "available_cores", lambda: 2)
    processes = []
    result = Study.prepare(config(max_trials=4, n_jobs=64)).run(
        tmp_path, on_trial=lambda event: processes.append(len(multiprocessing.active_children())))
    assert result.completed_trials == 4 and 1 <= max(processes) <= 2
    assert "n_jobs: 64 asked, but 2 core(s) are available; 2 trial processes ran" in result.warnings
    processes.clear()
    every_core = Study.prepare(config(max_trials=4, n_jobs=-1)).run(
        tmp_path / "every-core", on_trial=lambda event: processes.append(len(multiprocessing.active_children())))
    assert every_core.completed_trials == 4 and 1 <= max(processes) <= 2
    assert not any("n_jobs" in warning for warning in every_core.warnings)


def test_fewer_trials_in_flight_than_processes_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(cerebros.study, "available_cores", lambda: 2)
    result = Study.prepare(config(strategy="tpe", strategy_params={"n_startup_trials": 1, "in_flight": 1},
                                  max_trials=3, n_jobs=2)).run(tmp_path)
    assert result.completed_trials == 3
    assert ("in_flight: the tpe strategy proposes at most 1 trial(s) ahead of their predecessors' results, so at "
            "most 1 of the 2 trial processes were busy at once") in result.warnings


def test_a_study_runs_once(tmp_path):
    study = Study.prepare(config(max_trials=1))
    study.run(tmp_path / "first")
    with pytest.raises(RuntimeError, match="this Study has run already"):
        study.run(tmp_path / "second")
    assert not (tmp_path / "second").exists()


def test_no_trial_at_all_is_budget_exhausted(tmp_path):
    for number, budget in enumerate(({"max_trials": 0}, {"max_time_seconds": 0})):
        with pytest.raises(SearchStopped) as info:
            Study.prepare(config(**budget)).run(tmp_path / str(number))
        assert info.value.kind == "budget_exhausted"


def test_resume_continues_the_journal_exactly(tmp_path):
    Study.prepare(config(max_trials=3, ensemble_size=3)).run(tmp_path / "resumed")
    trained = []
    resumed = Study.prepare(config(max_trials=7, ensemble_size=3)).run(tmp_path / "resumed", resume=True,
                                                      on_trial=lambda e: trained.append(e.record.number))
    straight = Study.prepare(config(max_trials=7, ensemble_size=3)).run(tmp_path / "straight")
    assert trained == [3, 4, 5, 6]  # the journaled trials were replayed, not retrained
    assert journal(tmp_path / "resumed") == journal(tmp_path / "straight")
    assert resumed.ensemble == straight.ensemble and resumed.test_metrics == straight.test_metrics
    assert resumed.completed_trials == 7 and len(resumed.population_history) >= 2
    with pytest.raises(FieldError, match="seed"):
        Study.prepare(config(max_trials=8, seed=5)).run(tmp_path / "resumed", resume=True)
    with pytest.raises(FieldError, match="already holds a journal"):
        Study.prepare(config(max_trials=8)).run(tmp_path / "resumed")


def test_resume_trains_again_what_a_stop_cut_short_and_a_crash_left_half_written(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        with_statuses(patch, ["completed", "completed", "interrupted", "completed"])
        Study.prepare(config(max_trials=4)).run(tmp_path / "stopped")
    assert [r["status"] for r in journal(tmp_path / "stopped")][2] == "interrupted"
    Study.prepare(config(max_trials=3)).run(tmp_path / "crashed")
    path = tmp_path / "crashed" / "journal.jsonl"
    path.write_text(path.read_text()[:-60])  # the last record cut off mid-line
    straight = Study.prepare(config(max_trials=6)).run(tmp_path / "straight")
    for name in ("stopped", "crashed"):
        resumed = Study.prepare(config(max_trials=6)).run(tmp_path / name, resume=True)
        assert journal(tmp_path / name) == journal(tmp_path / "straight"), name
        assert resumed.test_metrics == straight.test_metrics
    assert Study.prepare(config(max_trials=7)).run(tmp_path / "crashed", resume=True).completed_trials == 7


def trials_until_stalled(values, patience, min_improvement):
    """How many trials a search stopped after ``patience`` trials without improvement runs,
    worked out from the trials' values (accuracy: higher is better; None: failed)."""
    reference, last_improvement = -np.inf, -1
    for number, value in enumerate(values):
        if value is not None and value > reference + min_improvement:
            reference, last_improvement = value, number
        if number - last_improvement >= patience:
            return number + 1
    return None


def test_the_search_stops_after_trials_without_improvement_where_one_process_would(tmp_path):
    def stalling(n_jobs):
        return Study.prepare(config(strategy="random", strategy_params={}, max_trials=60,
                                    max_trials_without_improvement=3, n_jobs=n_jobs, ensemble_size=3))

    one = stalling(1).run(tmp_path / "one")
    values = [r.value for r in one.records]
    assert one.stopped_reason == "no_improvement" and len(values) < 60
    assert trials_until_stalled(values, 3, 0.0) == len(values)
    two = stalling(2).run(tmp_path / "two")
    assert journal(tmp_path / "two") == journal(tmp_path / "one") and two.test_metrics == one.test_metrics
    # the trial the stop cut short in the second process left no files behind
    files_of = {int(path.name.split("_")[1]) for path in (tmp_path / "two" / "trials").iterdir()}
    assert files_of <= {r.number for r in two.records}


def test_only_gains_above_min_improvement_count_and_a_stalled_search_resumes(tmp_path):
    def stalling(patience):  # no accuracy can gain more than 1.0 on the first successful trial's
        return Study.prepare(config(max_trials=20, max_trials_without_improvement=patience, min_improvement=1.0))

    first = stalling(2).run(tmp_path / "resumed")
    assert first.completed_trials == 3 and first.stopped_reason == "no_improvement"
    again = stalling(2).run(tmp_path / "resumed", resume=True)
    assert again.completed_trials == 3 and again.stopped_reason == "no_improvement"
    longer = stalling(5).run(tmp_path / "resumed", resume=True)
    straight = stalling(5).run(tmp_path / "straight")
    assert longer.completed_trials == straight.completed_trials == 6
    assert journal(tmp_path / "resumed") == journal(tmp_path / "straight")


def test_resume_accepts_the_same_settings_written_differently(tmp_path):
    Study.prepare(config(search_space={"levels": (1, 2), "epochs": [3, 8], "neurons_per_unit": 8},
                         max_trials=2)).run(tmp_path)
    same = {"minimum_levels": 1, "maximum_levels": 2, "epochs": [3, 8], "neurons_per_unit": [8, 8]}
    resumed = Study.prepare(config(search_space=same, objective="accuracy", max_trials=3)).run(tmp_path, resume=True)
    assert resumed.completed_trials == 3
    with pytest.raises(FieldError, match="search_space differ"):
        Study.prepare(config(search_space={**same, "epochs": [3, 9]}, max_trials=4)).run(tmp_path, resume=True)


@pytest.mark.parametrize("edit,message", [
    (lambda lines: lines[:1] + ["{not json"] + lines[1:], "line 2 is not JSON"),
    (lambda lines: [lines[0].replace('"epochs_trained"', '"epochs_done"')] + lines[1:],
     "journal line 1: the record lacks 'epochs_trained'"),
    (lambda lines: [lines[0].replace('"status": "completed"', '"status": 3')] + lines[1:], "status is 3, not a str"),
    (lambda lines: lines[:1] + ["[1, 2]"], "journal line 2: expected a JSON object"),
    (lambda lines: [lines[0].replace('"neurons": ', '"neurons": -')] + lines[1:],
     "journal line 1: the trial's network: levels"),
])
def test_a_damaged_journal_is_named_not_raised_through(tmp_path, edit, message):
    Study.prepare(config(max_trials=2)).run(tmp_path)
    path = tmp_path / "journal.jsonl"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(FieldError, match=message):
        Study.prepare(config(max_trials=3)).run(tmp_path, resume=True)


def test_a_run_directory_in_use_or_unwritable_is_refused(tmp_path):
    held = cerebros.study.RunDirectory(tmp_path / "busy")
    held.claim()
    held.lock()
    with pytest.raises(FieldError, match="another search is running in"):
        Study.prepare(config(max_trials=1)).run(tmp_path / "busy")
    held.unlock()
    assert Study.prepare(config(max_trials=1)).run(tmp_path / "busy").completed_trials == 1
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StorageError, match="ENOTDIR"):
        Study.prepare(config(max_trials=1)).run(tmp_path / "a-file" / "run")


def test_a_search_waits_out_a_status_probe_of_its_directory(tmp_path, monkeypatch):
    probed = cerebros.study.RunDirectory(tmp_path / "probed")
    probed.claim()
    probe = open(tmp_path / "probed" / ".lock", "a")  # in_use's shared lock, held for as long as we like
    fcntl.flock(probe, fcntl.LOCK_SH)
    assert probed.in_use() is False  # another shared probe is no search
    refused = threading.Event()

    class RecordingFcntl:
        def __getattr__(self, name):
            return getattr(fcntl, name)

        def flock(self, handle, operation):
            try:
                fcntl.flock(handle, operation)
            except BlockingIOError:
                refused.set()
                raise

    monkeypatch.setattr(cerebros.artifacts, "fcntl", RecordingFcntl())
    taken = []
    taker = threading.Thread(target=lambda: taken.append(probed.lock(patience=60)))
    taker.start()
    assert refused.wait(60)  # the search found the directory held, and waits
    probe.close()
    taker.join(60)
    assert taken == [None] and probed.in_use() is True
    probed.unlock()
    assert probed.in_use() is False


def test_every_trial_failing_is_trials_failed(tmp_path, monkeypatch):
    def diverge(self, *args, **kwargs):
        raise FloatingPointError("the loss diverged")

    monkeypatch.setattr(CerebrosNetwork, "fit", diverge)
    with pytest.raises(SearchStopped, match="every one of the 2 trials failed") as info:
        Study.prepare(config(max_trials=2)).run(tmp_path)
    assert info.value.kind == "trials_failed"


@pytest.mark.parametrize("overrides,message", [({"max_trials": -1}, "max_trials"), ({"n_jobs": 0}, "n_jobs"),
                                               ({"n_jobs": -2}, "n_jobs"),
                                               ({"ensemble_size": -1}, "ensemble_size"),
                                               ({"max_time_seconds": float("inf")}, "max_time_seconds"),
                                               ({"max_trials_without_improvement": 0},
                                                "max_trials_without_improvement"),
                                               ({"min_improvement": -0.1}, "min_improvement"),
                                               ({"objective": "rmse"}, "objective"),
                                               ({"strategy": "grid"}, "strategy"),
                                               ({"search_space": {"levels": [3, 1]}}, "levels")])
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        Study.prepare(config(**overrides))


def test_tpe_gives_the_same_journal_whatever_n_jobs_and_resumes_exactly(tmp_path):
    def tpe(max_trials, n_jobs=1):
        return Study.prepare(config(strategy="tpe", max_trials=max_trials, n_jobs=n_jobs, ensemble_size=3,
                                    strategy_params={"n_startup_trials": 3, "in_flight": 2}))

    one = tpe(7).run(tmp_path / "one")
    tpe(7, n_jobs=2).run(tmp_path / "two")
    assert journal(tmp_path / "one") == journal(tmp_path / "two")
    tpe(4).run(tmp_path / "resumed")
    resumed = tpe(7).run(tmp_path / "resumed", resume=True)
    assert journal(tmp_path / "resumed") == journal(tmp_path / "one")
    assert resumed.test_metrics == one.test_metrics
    assert one.strategy_params == {"strategy": "tpe", "n_startup_trials": 3, "gamma": 0.1, "n_ei_candidates": 24,
                                   "in_flight": 2}
    assert not any("in_flight" in warning for warning in one.warnings)


def test_successive_halving_and_random_run_end_to_end(tmp_path):
    halving = Study.prepare(config(strategy="successive_halving", max_trials=5,
                                   strategy_params={"n_configs": 3, "min_epochs": 2, "max_epochs": 6})).run(tmp_path / "sh")
    assert [r.epochs for r in halving.records] == [2, 2, 2, 6, 2]
    assert halving.population_history == []
    hyperband = Study.prepare(config(strategy="hyperband", max_trials=6,
                                     strategy_params={"min_epochs": 2, "max_epochs": 6})).run(tmp_path / "hb")
    assert [(r.bracket, r.epochs) for r in hyperband.records] == [(0, 2), (0, 2), (0, 2), (0, 6), (1, 6), (1, 6)]
    digits = load_digits()
    assert Study.prepare(config(strategy="random", strategy_params={}, max_trials=2, dataset_id="inline"),
                         data=(digits.data[:300], digits.target[:300])).run(tmp_path / "r").completed_trials == 2


def test_successive_halving_warns_when_its_rungs_pass_the_epoch_bound(tmp_path, monkeypatch):
    settings = config(strategy="successive_halving", max_trials=5, search_space={**TINY, "patience": 1},
                      strategy_params={"n_configs": 3, "min_epochs": 2, "max_epochs": 6})
    within = Study.prepare(settings).run(tmp_path / "within")
    assert not any("max_epochs" in warning for warning in within.warnings)
    monkeypatch.setattr(cerebros.trials, "MAX_ROWS_TRAINED", 300)  # 4 epochs of iris's 72 fit rows
    beyond = Study.prepare(settings).run(tmp_path / "beyond")
    assert "max_epochs: 6 asked, but on these rows a fold network trains at most 4 epochs (trials.epoch_bound), " \
           "so the rungs above 4 train alike" in beyond.warnings
    assert [r.epochs for r in beyond.records] == [2, 2, 2, 6, 2]
    assert beyond.records[3].epochs_trained <= 4


def test_test_size_0_searches_and_refits_on_every_row_and_reports_cross_validated_metrics_only(tmp_path):
    result = Study.prepare(config(test_size=0, folds=3, max_trials=2)).run(tmp_path)
    assert result.split_sizes["test"] == 0
    assert result.split_sizes["train"] + result.split_sizes["validation"] == 150  # all of iris
    assert result.test_metrics is None and 0 <= result.validation_metrics["accuracy"] <= 1
    assert result.refit and all(report["status"] == "completed" for report in result.refit)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_metrics"] is None and summary["validation_metrics"] == result.validation_metrics
    X, y = load_iris(return_X_y=True)
    model = load_model(tmp_path)
    assert model.predict(X).shape == (150,) and (model.predict(X) == y).mean() > 0.5

