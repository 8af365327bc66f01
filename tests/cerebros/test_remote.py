"""Trials through a transport (cerebros.remote): what crosses it is plain ETF, and the search is the
one this machine's processes give. The real transport, Erlang distribution, is tested in
tests/beam/test_cluster.py."""
import json
import re
import threading

import numpy as np
import pytest

import cerebros_service
from cerebros.artifacts import load_model
from cerebros.remote import RemoteRunner, data_hash, decode_trial_data, encode_trial_data, run_job
from cerebros.study import SearchConfig, Study
from codec import plain

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8],
        "batch_size": [16, 64]}
ENDLESS = {"levels": 2, "units_per_level": 2, "neurons_per_unit": 64, "epochs": 100000, "batch_size": 16,
           "patience": 100000}


class WireTransport:
    """Runs each job in a thread of this process, every term through ETF both ways, as a node would."""

    def __init__(self, slots=2):
        self.slots = slots
        self.stopped = threading.Event()
        self.jobs = []

    def open(self, digest, data):
        assert data_hash(data) == digest
        self.trial_data = decode_trial_data(plain.decode(plain.encode(data)))

    def run(self, job):
        job = plain.decode(plain.encode({**job, "stopped": self.stopped.is_set()}))
        self.jobs.append(job)
        result = run_job(self.trial_data, job, self.stopped.is_set)
        return plain.decode(plain.encode({"node": "elsewhere@host", "result": result}))

    def processes(self):
        return self.slots

    def stop(self):
        self.stopped.set()

    def resume(self):
        self.stopped.clear()

    def close(self):
        pass


def journal(run_dir, *drop):
    with open(run_dir / "journal.jsonl") as f:
        records = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k not in ("duration_seconds",) + drop} for r in records]


def config(**overrides):
    settings = dict(dataset_id="iris", search_space=TINY, max_trials=5, strategy_params={"population_size": 3},
                    folds=2, ensemble_size=3)
    settings.update(overrides)
    return SearchConfig(**settings)


def test_a_search_through_a_transport_is_the_local_one(tmp_path):
    local = Study.prepare(config()).run(tmp_path / "local")
    transport = WireTransport()
    remote = Study.prepare(config()).run(tmp_path / "remote",
                                         runner=lambda data, cancel: RemoteRunner(transport, data, cancel))
    assert journal(tmp_path / "local") == journal(tmp_path / "remote", "node", "dispatch_seconds")
    assert {r["node"] for r in journal(tmp_path / "remote")} == {"elsewhere@host"}
    assert all(r["dispatch_seconds"] >= 0 for r in journal(tmp_path / "remote"))
    assert (local.ensemble, local.validation_metrics, local.test_metrics) == \
        (remote.ensemble, remote.validation_metrics, remote.test_metrics)
    assert [r["status"] for r in remote.refit] == ["completed"] * len(remote.refit) and remote.refit
    X = Study.prepare(config()).splits.X_test
    assert np.array_equal(load_model(str(tmp_path / "local")).predict_proba(X),
                          load_model(str(tmp_path / "remote")).predict_proba(X))
    # the jobs carried no file paths: a remote machine does not see the run directory
    assert transport.jobs and all("model_paths" not in job["payload"] for job in transport.jobs)


def test_remote_slots_are_not_cores_so_n_jobs_draws_no_warning(tmp_path):
    result = Study.prepare(config(n_jobs=64)).run(
        tmp_path, runner=lambda data, cancel: RemoteRunner(WireTransport(slots=3), data, cancel))
    assert not any("n_jobs" in warning for warning in result.warnings)


def test_the_data_crosses_as_one_binary_and_comes_back_equal():
    study = Study.prepare(config(dataset_id="wine"))
    X, y, folds, task, objective = decode_trial_data(encode_trial_data(study._trial_data()))
    assert np.array_equal(X, study.splits.X) and X.dtype == study.splits.X.dtype
    assert np.array_equal(y, study.splits.y) and y.dtype == study.splits.y.dtype
    assert all(np.array_equal(a, b) and np.array_equal(c, d) for (a, c), (b, d) in zip(folds, study.splits.folds))
    assert (task, objective) == (study.splits.task, study.objective.name)
    labels = np.array(["cat", "dog", "cat"])
    data = (np.zeros((3, 1)), labels, [(np.array([0]), np.array([1, 2]))], "classification", "accuracy")
    assert decode_trial_data(encode_trial_data(data))[1].tolist() == ["cat", "dog", "cat"]


def test_a_stop_reaches_remote_trials_within_a_mini_batch(tmp_path):
    cancel = threading.Event()
    transport = WireTransport()
    threading.Timer(1.0, cancel.set).start()
    with pytest.raises(Exception, match="cancelled"):
        Study.prepare(config(search_space=ENDLESS, max_trials=4)).run(
            tmp_path, cancel=cancel, runner=lambda data, c: RemoteRunner(transport, data, c))
    assert transport.stopped.is_set()


def test_a_clustered_search_outside_a_port_worker_is_refused_naming_the_option(tmp_path):
    result = cerebros_service.run_nas({"dataset_id": "iris"}, {"cluster": "nas", "run_dir": str(tmp_path / "run"),
                                                               "budget": {"max_trials": 2}})
    assert result["status"] == "failed" and result["metadata"]["error_type"] == "invalid_field"
    assert result["metadata"]["field"] == "opts.cluster" and "port worker" in result["error"]


class GarblingTransport(WireTransport):
    """A lender whose first answers are not what the job asked for (a version skew, a bug)."""

    GARBLED = [
        (lambda result: {**result, "outcome": {"no_such_field": 1}}, "unexpected keyword argument 'no_such_field'"),
        # a size where a file's bytes belong: bytes(10 ** 12) would try to allocate a terabyte
        (lambda result: {**result, "files": [[10 ** 12, b"{}"]] * len(result["files"])},
         r"files\[0\] must be nil or the network's two files as binaries, got a list of 2"),
        (lambda result: {**result, "files": [[b"npz", b"json"]] * 9},
         r"one entry per network \(2\), got files as a list of 9"),
        (lambda result: "not a map", "got str"),
    ]

    def run(self, job):
        answer = super().run(job)
        if len(self.jobs) <= len(self.GARBLED) and job["kind"] == "train":
            answer["result"] = self.GARBLED[len(self.jobs) - 1][0](answer["result"])
        return answer


def test_answers_not_shaped_like_the_job_fail_their_trials_and_the_search_goes_on(tmp_path):
    result = Study.prepare(config(max_trials=7)).run(
        tmp_path / "run", runner=lambda data, cancel: RemoteRunner(GarblingTransport(slots=1), data, cancel))
    records = journal(tmp_path / "run")
    assert [r["status"] for r in records[:4]] == ["failed"] * 4
    for record, (_, error) in zip(records, GarblingTransport.GARBLED):
        assert re.search(error, record["error"]), record["error"]
    assert [r["status"] for r in records[4:]] == ["completed"] * 3 and result.ensemble
    # nothing was written outside the run directory's own paths
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
