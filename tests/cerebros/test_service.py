"""cerebros_service: the run_nas contract (both caller variants, every key shape), failures, companions."""
import numpy as np
import pytest

import cerebros_service as service
from cerebros.artifacts import RunDirectory
from cerebros.study import SearchConfig, Study
from codec import Atom
from codec.tensor import to_term

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]}
CONTRACT_KEYS = {"status", "best_model", "best_architecture", "best_metric", "completed_trials",
                 "population_history", "artifacts", "metadata", "trials", "metrics", "best_trial_id",
                 "duration_ms", "artifact_refs", "warnings"}
FAILURE_KEYS = {"status", "error", "run_id", "completed_trials", "metadata"}


def charlist(text):
    return [ord(c) for c in text]


class Mailbox:
    """A stand-in for a pid: the worker gives pids a ``send`` method."""

    def __init__(self):
        self.messages = []

    def send(self, message):
        self.messages.append(message)


def opts(tmp_path, **extra):
    base = {"run_dir": str(tmp_path / "run"), "budget": {"max_trials": 3, "population_size": 3}, "folds": 2}
    base.update(extra)
    return base


def assert_plain(value, where="result"):
    """Strings are str (never bytes or charlists), containers are dicts with str keys and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, f"{where}: key {key!r}"
            assert_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{where}: {type(value)} {value!r}"


def test_success_has_every_contract_key(tmp_path):
    mailbox = Mailbox()
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                             opts(tmp_path, pulse_id="pulse-1", progress_to=mailbox, run_id="contract-1"))
    assert CONTRACT_KEYS <= set(result) and result["status"] == "success"
    assert_plain(result)
    assert result["run_id"] == "contract-1" and result["pulse_id"] == "pulse-1"
    assert result["completed_trials"] == 3 == len(result["trials"])
    assert isinstance(result["best_metric"], float)
    assert result["best_architecture"] == {**result["best_model"], "fitness": result["best_metric"]}
    assert {"levels", "activation", "learning_rate", "batch_size"} <= set(result["best_model"])
    assert result["population_history"] == [{"generation": 0, "population_size": 3,
                                             "best_fitness": result["best_metric"],
                                             "mean_fitness": pytest.approx(np.mean([t["metric"] for t in result["trials"]])),
                                             "std_fitness": pytest.approx(np.std([t["metric"] for t in result["trials"]]))}]
    metadata = result["metadata"]
    assert metadata["dataset_id"] == "iris" and metadata["objective"] == "accuracy"
    assert metadata["ga_params"] == {"population_size": 3, "mutation_rate": 0.1, "crossover_rate": 0.7,
                                     "elite_size": 2, "tau": 1.0}
    assert any("evolution only samples its first, random generation" in w for w in result["warnings"])
    assert isinstance(metadata["timestamp"], str)
    # best_metric is the best trial's; the saved model, an ensemble that starts from it, does no worse
    assert result["metrics"]["validation"]["accuracy"] >= result["best_metric"]
    assert {m["trial"] for m in metadata["ensemble"]} <= {t["trial_id"] for t in result["trials"]}
    assert result["test_metric"] == result["metrics"]["test"]["accuracy"]
    assert all(path.startswith(str(tmp_path)) for path in result["artifacts"])
    assert [m[1]["completed"] for m in mailbox.messages] == [1, 2, 3]
    tag, event = mailbox.messages[-1]
    assert type(tag) is Atom and tag == "nas_progress"
    assert event["run_id"] == "contract-1" and event["best_metric"] == result["best_metric"]
    assert service.run_status("contract-1")["status"] == "success"


def as_map(pairs, key):
    """A map with keys made by ``key``; charlist keys cannot be dict keys, so they come as a proplist."""
    items = [(key(k), v) for k, v in pairs.items()]
    return items if key is charlist else dict(items)


@pytest.mark.parametrize("key", [str, str.encode, Atom, charlist])
def test_keys_and_values_in_every_beam_shape_and_both_caller_variants(tmp_path, key):
    space = as_map({"levels": [1, 2], "activation": Atom("relu"), "neurons_per_unit": [4, 8], "epochs": [3, 5]}, key)
    spec = as_map({"dataset": b"wine", "objective": charlist("f1_macro"), "search_space": space}, key)
    options = as_map({"run_dir": str(tmp_path / "run").encode(), "seed": 3,
                      "budget": as_map({"trials": 2, "population_size": 2, "max_trials_without_improvement": b"5",
                                        "min_improvement": charlist("0.01")}, key),
                      "parameters": as_map({"mutation_rate": 0.3, "elite_size": 1}, key), "tau": b"0.5",
                      "ensemble_size": b"1", "refit": Atom("false")}, key)
    result = service.run_nas(spec, options)
    assert result["status"] == "success", result
    assert result["completed_trials"] == 2 and result["metadata"]["dataset_id"] == "wine"
    assert result["metadata"]["objective"] == "f1_macro" and result["best_model"]["activation"] == "relu"
    assert 1 <= len(result["best_model"]["levels"]) <= 2  # [1, 2] stayed a list of ints
    assert result["metadata"]["ensemble"] == [{"trial": result["best_trial_id"], "weight": 1}]
    assert result["metadata"]["refit"] == []  # refit: false
    assert result["metadata"]["budget"] == {"max_trials": 2, "max_time_seconds": None, "max_trial_seconds": None,
                                            "max_trials_without_improvement": 5, "min_improvement": 0.01}
    assert result["metadata"]["ga_params"] == {"population_size": 2, "mutation_rate": 0.3, "crossover_rate": 0.7,
                                               "elite_size": 1, "tau": 0.5}
    assert_plain(result)


@pytest.mark.parametrize("neurons,epochs,learning_rate,activations", [
    ([32, 64], 2, 0.01, ["relu"]),  # what this project's decoder gives
    (" @", "2", "0.01", "relu"),  # a bridge that turns charlists and binaries into text
    (b" @", b"2", b"0.01", [b"relu"]),  # one that leaves them bytes
    ((32.0, 64), np.int64(2), np.float32(0.01), (Atom("relu"),)),
])
def test_search_space_values_in_every_shape_a_bridge_delivers(tmp_path, neurons, epochs, learning_rate, activations):
    space = {"levels": 1, "units_per_level": 1, "neurons_per_unit": neurons, "epochs": epochs,
             "learning_rate": learning_rate, "activations": activations}
    result = service.run_nas({"dataset_id": "iris", "search_space": space},
                             opts(tmp_path, budget={"max_trials": 2}))
    assert result["status"] == "success", result
    model = result["best_model"]
    assert 32 <= model["levels"][0][0]["neurons"] <= 64
    assert model["epochs"] == 2 and model["activation"] == "relu"
    assert model["learning_rate"] == pytest.approx(0.01)


@pytest.mark.parametrize("space,field,message", [
    ({"epochs": "many"}, "spec.search_space.epochs", "expected an integer or a [minimum, maximum] pair"),
    ({"learning_rate": [b"fast", 0.1]}, "spec.search_space.learning_rate[0]", "expected a finite number"),
    ({"activations": []}, "spec.search_space.activations", "must name at least one choice"),
    ({"activation": "sigmoidal"}, "spec.search_space.activation", "unknown name 'sigmoidal'"),
    ({"neurons_per_unit": [8, 16, 32]}, "spec.search_space.neurons_per_unit", "a range is [minimum, maximum]"),
    ({"levels": [1, 40]}, "spec.search_space.levels", "and 32, got 40"),
])
def test_a_bad_search_space_value_is_named_as_written(tmp_path, space, field, message):
    result = failure(service.run_nas({"dataset_id": "iris", "search_space": space}, opts(tmp_path)),
                     "invalid_field", field)
    assert result["error"].startswith(f"{field}: ") and message in result["error"]


@pytest.mark.parametrize("X,y", [([[0.0, 1.0], [1.0, 0.0]] * 20, [0, 1] * 20),
                                 (np.array([[0.0, 1.0], [1.0, 0.0]] * 20), np.array([b"a", b"b"] * 20)),
                                 (to_term(np.array([[0.0, 1.0], [1.0, 0.0]] * 20)), to_term(np.array([0, 1] * 20)))])
def test_inline_data_lists_arrays_and_tensors(tmp_path, X, y):
    result = service.run_nas({"data": {"X": X, "y": y}, "search_space": TINY}, opts(tmp_path))
    assert result["status"] == "success", result
    assert result["metadata"]["dataset_id"] == "inline" and result["metadata"]["split_sizes"]["test"] == 10


@pytest.mark.parametrize("y,task,classes", [
    ([[0], [1]] * 20, "classification", [0, 1]),  # a column vector, not charlists
    ([[0.5], [2.5]] * 20, "regression", None),
    ([True, False] * 20, "classification", [False, True]),
    ([charlist("cat"), charlist("ox")] * 20, "classification", ["cat", "ox"]),
    ([Atom("cat"), b"ox"] * 20, "classification", ["cat", "ox"]),
])
def test_inline_targets_in_every_shape(tmp_path, y, task, classes):
    X = [[0.0, 1.0], [1.0, 0.0]] * 20
    result = service.run_nas({"data": {"X": X, "y": y}, "search_space": TINY},
                             opts(tmp_path, run_id=f"targets-{task}", budget={"max_trials": 1}))
    assert result["status"] == "success", result
    assert result["metadata"]["task"] == task
    assert service.predict(f"targets-{task}", X[:2])["classes"] == classes


def test_inline_targets_with_several_columns_are_refused(tmp_path):
    X = [[0.0, 1.0], [1.0, 0.0]] * 20
    result = failure(service.run_nas({"data": {"X": X, "y": [[0.5, 1.0], [1.5, 2.0]] * 20}}, opts(tmp_path)),
                     "invalid_field", "spec.data.y")
    assert "expected one target per row (40), got shape (40, 2)" in result["error"]


def test_strategy_parameters_reach_their_strategy(tmp_path):
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                             opts(tmp_path, strategy=b"tpe", budget={"max_trials": 3},
                                  parameters={"n_startup_trials": b"2", "in_flight": 1, "gamma": 0.25}))
    assert result["status"] == "success", result
    assert result["metadata"]["strategy_params"] == {"strategy": "tpe", "n_startup_trials": 2, "gamma": 0.25,
                                                     "n_ei_candidates": 24, "in_flight": 1}
    hyperband = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                                opts(tmp_path, run_dir=str(tmp_path / "hb"), strategy=Atom("hyperband"),
                                     budget={"max_trials": 2}, parameters={"min_epochs": 2, "max_epochs": 6}))
    assert [trial["epochs"] for trial in hyperband["trials"]] == [2, 2]  # a first bracket of 3 at 2 epochs


def failure(result, error_type, field=None):
    assert FAILURE_KEYS <= set(result) and result["status"] == "failed", result
    assert result["metadata"]["error_type"] == error_type, result
    assert isinstance(result["error"], str) and result["error"]
    assert isinstance(result["metadata"]["timestamp"], str)
    assert result["metadata"]["field"] == field
    assert_plain(result)
    return result


def test_a_population_of_two_runs_with_the_default_elites(tmp_path):
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                             opts(tmp_path, budget={"max_trials": 4, "population_size": 2}))
    assert result["status"] == "success" and result["completed_trials"] == 4
    assert result["metadata"]["ga_params"]["elite_size"] == 1


@pytest.mark.parametrize("spec,options,error_type,field", [
    ({"dataset_id": "no_such_dataset"}, {}, "unknown_dataset", "spec.dataset_id"),
    ({}, {}, "invalid_field", "spec.dataset_id"),
    ({"dataset_id": "iris", "dataset": "wine"}, {}, "invalid_field", "spec.dataset_id"),
    ({"dataset_id": "iris"}, {"budget": {"max_trials": "many"}}, "invalid_field", "opts.budget.max_trials"),
    ({"dataset_id": "iris"}, {"budget": {"max_trials": 2, "trials": 3}}, "invalid_field", "opts.budget.max_trials"),
    ({"dataset_id": "iris"}, {"budget": {"trials": -1}}, "invalid_field", "opts.budget.trials"),
    ({"dataset": "iris", "target": "species"}, {}, "invalid_field", "spec.target"),
    ({"dataset": "nope"}, {}, "unknown_dataset", "spec.dataset"),
    ({"dataset_id": "iris"}, {"tau": 0}, "invalid_field", "opts.tau"),
    ({"dataset_id": "iris"}, {"parameters": {"tau": 0}}, "invalid_field", "opts.parameters.tau"),
    ({"dataset_id": "iris"}, {"budget": {"population_size": 1}}, "invalid_field", "opts.budget.population_size"),
    ({"dataset_id": "iris"}, {"test_size": 1.5}, "invalid_field", "opts.test_size"),
    ({"dataset_id": "iris"}, {"folds": 500}, "invalid_field", "opts.folds"),
    ({"data": {"X": [[1.0]] * 8, "y": [1] * 8}}, {}, "invalid_field", "spec.data.y"),
    ({"data": {"X": [[1.0], [2.0, 3.0]] * 4, "y": [0, 1] * 4}}, {}, "invalid_field", "spec.data.X"),
    ({"dataset_id": "iris"}, {"budget": {"max_time_seconds": -1}}, "invalid_field", "opts.budget.max_time_seconds"),
    ({"dataset_id": "iris"}, {"budget": {"max_trials_without_improvement": 0}}, "invalid_field",
     "opts.budget.max_trials_without_improvement"),
    ({"dataset_id": "iris"}, {"budget": {"min_improvement": "-1"}}, "invalid_field", "opts.budget.min_improvement"),
    ({"dataset_id": "iris", "objective": "rmse"}, {}, "invalid_field", "spec.objective"),
    ({"dataset_id": "iris", "search_space": {"levels": [4, 2]}}, {}, "invalid_field", "spec.search_space.levels"),
    ({"dataset_id": "iris"}, {"parameters": {"elite_size": 50}}, "invalid_field", "opts.parameters.elite_size"),
    ({"dataset_id": "iris"}, {"strategy": "grid"}, "invalid_field", "opts.strategy"),
    ({"dataset_id": "iris"}, {"strategy": "tpe", "parameters": {"gamma": 2}}, "invalid_field",
     "opts.parameters.gamma"),
    ({"dataset_id": "iris"}, {"ensemble_size": -2}, "invalid_field", "opts.ensemble_size"),
    ({"dataset_id": "iris"}, {"refit": "sometimes"}, "invalid_field", "opts.refit"),
    ({"dataset_id": "iris"}, {"run_id": "../escape"}, "invalid_field", "opts.run_id"),
    ({"dataset_id": "iris"}, {"budget": {"max_trials": 0}}, "budget_exhausted", None),
    ({"dataset_id": "iris", "data": {"X": [[1.0]] * 8, "y": [0, 1] * 4}}, {}, "invalid_field", "spec.dataset_id"),
    ({"dataset_id": "iris", "target": "species"}, {}, "invalid_field", "spec.target"),
    (42, {}, "invalid_field", "spec"),
    ({"dataset_id": "iris"}, "opts", "invalid_field", "opts"),
])
def test_failures_are_returned_never_raised(tmp_path, spec, options, error_type, field):
    if isinstance(options, dict):
        options = {"run_dir": str(tmp_path / "run"), **options}
    result = failure(service.run_nas(spec, options), error_type, field)
    assert result["completed_trials"] == 0


def test_a_damaged_journal_fails_the_run_and_frees_its_id(tmp_path):
    assert service.run_nas({"dataset_id": "iris", "search_space": TINY}, opts(tmp_path))["status"] == "success"
    journal = tmp_path / "run" / "journal.jsonl"
    journal.write_text(journal.read_text().replace('"epochs_trained"', '"epochs_done"'))
    result = failure(service.run_nas({"dataset_id": "iris", "search_space": TINY},
                                     opts(tmp_path, run_id="damaged", resume=True, budget={"max_trials": 4})),
                     "invalid_field", "opts.run_dir")
    assert "lacks 'epochs_trained'" in result["error"]
    assert service.run_status("damaged")["status"] == "failed"


def test_an_unexpected_error_is_internal_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service.Study, "run", broken)
    result = failure(service.run_nas({"dataset_id": "iris"}, opts(tmp_path)), "internal_error")
    assert "disk on fire" in result["error"]


def test_a_call_cancelled_from_outside_ends_its_run(tmp_path, monkeypatch):
    class CallCancelled(BaseException):  # as the port worker's JobCancelled, raised in the call's thread
        pass

    def cancelled(*args, **kwargs):
        raise CallCancelled()

    with monkeypatch.context() as patch:
        patch.setattr(service.Study, "run", cancelled)
        with pytest.raises(CallCancelled):
            service.run_nas({"dataset_id": "iris", "search_space": TINY}, opts(tmp_path, run_id="cut-off"))
    assert service.run_status("cut-off")["status"] == "cancelled"
    assert service.cancel_run("cut-off")["status"] == "not_running"
    again = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                            opts(tmp_path, run_id="cut-off", run_dir=str(tmp_path / "again")))
    assert again["status"] == "success"  # the id is free again


def test_cancel_run_returns_the_best_so_far(tmp_path):
    class CancelAfterFirst(Mailbox):
        def send(self, message):
            super().send(message)
            assert service.cancel_run(message[1]["run_id"])["status"] == "cancelling"

    mailbox = CancelAfterFirst()
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                             opts(tmp_path, run_id="to-cancel", progress_to=mailbox, budget={"max_trials": 40}))
    assert result["status"] == "success" and result["completed_trials"] == 1
    assert result["metadata"]["stopped_reason"] == "cancelled" and any("cancelled" in w for w in result["warnings"])
    assert service.run_status("to-cancel")["status"] == "cancelled"
    assert service.cancel_run("to-cancel")["status"] == "not_running"
    assert service.cancel_run(b"never-ran") == {"run_id": "never-ran", "status": "unknown"}
    assert service.run_status(Atom("never-ran"))["status"] == "unknown"


def test_run_status_of_a_run_this_process_does_not_know_is_read_from_its_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(service.RUNS_DIR_ENV, str(tmp_path))
    # a run of another worker, or of this one before a restart: its directory only
    finished = Study.prepare(SearchConfig(dataset_id="iris", search_space=TINY, max_trials=3, folds=2,
                                          strategy_params={"population_size": 3})).run(tmp_path / "elsewhere")
    status = service.run_status("elsewhere")
    assert status == {"run_id": "elsewhere", "status": "success", "completed_trials": 3,
                      "best_metric": finished.best.value, "run_dir": str(tmp_path / "elsewhere"),
                      "elapsed_seconds": round(finished.duration_seconds, 3)}
    holder = RunDirectory(tmp_path / "elsewhere")
    holder.lock()  # a search resumed it, in some process
    assert service.run_status("elsewhere")["status"] == "running"
    holder.unlock()
    (tmp_path / "elsewhere" / "summary.json").unlink()  # stopped before its end, as by a SIGKILL
    status = service.run_status("elsewhere")
    assert status["status"] == "incomplete" and status["best_metric"] == finished.best.value
    (tmp_path / "elsewhere" / "config.json").write_text("{")
    assert service.run_status("elsewhere")["status"] == "unreadable"
    assert service.run_status("../elsewhere")["status"] == "unknown"


def test_a_failing_progress_destination_does_not_stop_the_search(tmp_path):
    class Broken:
        def send(self, message):
            raise ConnectionError("port closed")

    result = service.run_nas({"dataset_id": "iris", "search_space": TINY}, opts(tmp_path, progress_to=Broken()))
    assert result["status"] == "success" and result["completed_trials"] == 3
    assert any("port closed" in w for w in result["warnings"])
    no_send = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                              opts(tmp_path, run_dir=str(tmp_path / "b"), progress_to=object()))
    assert any("no send method" in w for w in no_send["warnings"])


def test_predict_by_run_id_and_by_path(tmp_path):
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY}, opts(tmp_path, run_id="to-predict"))
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    by_id = service.predict(b"to-predict", rows)
    by_path = service.predict(str(tmp_path / "run"), np.array(rows))
    assert by_id["status"] == "success" and by_id["predictions"] == by_path["predictions"]
    assert len(by_id["probabilities"]) == 2 and by_id["classes"] == [0, 1, 2]
    one_fold = service.predict(str(tmp_path / "run" / "ensemble_member_1.npz"), rows)
    assert one_fold["status"] == "success" and len(one_fold["predictions"]) == 2
    assert result["best_metric"] > 0
    failure(service.predict("no-such-run", rows), "unknown_run", "run_id_or_artifact")
    failure(service.predict("to-predict", [[1.0, 2.0]]), "invalid_field", "X")
    failure(service.predict("to-predict", [[1.0, 2.0, 3.0, 4.0], [1.0]]), "invalid_field", "X")  # ragged
    nothing = service.predict("to-predict", [])
    assert nothing["status"] == "success" and nothing["predictions"] == [] and nothing["probabilities"] == []


def test_test_size_0_gives_a_model_trained_on_every_row_and_no_test_metric(tmp_path):
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY}, opts(tmp_path, test_size=0))
    assert result["status"] == "success", result
    assert result["test_metric"] is None and result["metrics"]["test"] is None
    assert result["metadata"]["split_sizes"]["test"] == 0
    assert isinstance(result["metrics"]["validation"]["accuracy"], float)
    assert all(report["status"] == "completed" for report in result["metadata"]["refit"])
    bad = service.run_nas({"dataset_id": "iris"}, opts(tmp_path, test_size=-0.25, run_dir=str(tmp_path / "bad")))
    assert "test_size: must be 0 (no test split) or between 0 and 1" in failure(bad, "invalid_field",
                                                                                 "opts.test_size")["error"]


@pytest.mark.parametrize("spec,options,field,closest", [
    ({"dataset_id": "iris", "objectve": "accuracy"}, {}, "spec.objectve", "objective"),
    ({"dataset_id": "iris"}, {"stratgy": "random"}, "opts.stratgy", "strategy"),
    ({"dataset_id": "iris"}, {"colour": "red"}, "opts.colour", None),
    ({"dataset_id": "iris"}, {"budget": {"max_time_secs": 5}}, "opts.budget.max_time_secs", "max_time_seconds"),
    ({"dataset_id": "iris"}, {"parameters": {"mutaton_rate": 0.2}}, "opts.parameters.mutaton_rate", "mutation_rate"),
    ({"dataset_id": "iris", "search_space": {"activatoin": "relu"}}, {}, "spec.search_space.activatoin",
     "activation"),
    ({Atom("dataset_id"): "iris"}, {b"budget": [(Atom("max_trails"), 2)]}, "opts.budget.max_trails", "max_trials"),
    ({"data": {"X": [[1.0]] * 8, "y": [0, 1] * 4, "weights": [1] * 8}}, {}, "spec.data.weights", None),
])
def test_an_unknown_key_anywhere_is_refused_naming_it_and_the_closest_known(tmp_path, spec, options, field, closest):
    result = failure(service.run_nas(spec, {"run_dir": str(tmp_path / "run"), **options}), "invalid_field", field)
    assert result["error"].startswith(f"{field}: unknown field; ")
    assert (f"did you mean `{closest}`?" in result["error"]) == (closest is not None)
    assert "known: " in result["error"] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy,options,field", [
    ("evolution", {"parameters": {"n_configs": 4}}, "opts.parameters.n_configs"),
    ("tpe", {"parameters": {"mutation_rate": 0.2}}, "opts.parameters.mutation_rate"),
    ("random", {"budget": {"max_trials": 3, "population_size": 4}}, "opts.budget.population_size"),
    ("hyperband", {"tau": 0.5}, "opts.tau"),
])
def test_a_parameter_the_strategy_does_not_take_is_refused(tmp_path, strategy, options, field):
    result = failure(service.run_nas({"dataset_id": "iris"}, {"run_dir": str(tmp_path / "run"),
                                                              "strategy": strategy, **options}),
                     "invalid_field", field)
    assert f"{field}: not a parameter of the {strategy} strategy; " in result["error"]
    assert "known: " in result["error"] and not (tmp_path / "run").exists()


def test_a_time_budget_alone_searches_until_its_deadline(tmp_path):
    # one-epoch trials on a few rows take milliseconds; a 10-trial cap would end this search
    # long before its deadline, so the trial count and the stopped_reason tell which stopped it
    space = {**TINY, "epochs": 1, "neurons_per_unit": 4, "levels": 1, "units_per_level": 1}
    X = [[float(i % 7), float(i % 3)] for i in range(60)]
    y = [i % 2 for i in range(60)]
    result = service.run_nas({"data": {"X": X, "y": y}, "search_space": space},
                             {"run_dir": str(tmp_path / "run"), "folds": 1, "refit": False, "strategy": "random",
                              "budget": {"max_time_seconds": 4}})
    assert result["status"] == "success", result
    assert result["metadata"]["stopped_reason"] == "max_time"
    assert result["metadata"]["budget"]["max_trials"] is None
    assert result["completed_trials"] > 10
    assert not any("max_time_seconds" in w for w in result["warnings"])  # a normal stop, not a warning


def test_without_any_budget_the_search_runs_ten_trials(tmp_path):
    result = service.run_nas({"dataset_id": "iris", "search_space": {**TINY, "epochs": 1}},
                             {"run_dir": str(tmp_path / "run"), "folds": 1, "refit": False, "strategy": "random"})
    assert result["status"] == "success", result
    assert result["completed_trials"] == 10 and result["metadata"]["stopped_reason"] == "max_trials"


def test_with_both_budgets_the_trial_cap_can_come_first(tmp_path):
    result = service.run_nas({"dataset_id": "iris", "search_space": {**TINY, "epochs": 1}},
                             {"run_dir": str(tmp_path / "run"), "folds": 1, "refit": False, "strategy": "random",
                              "budget": {"max_trials": 2, "max_time_seconds": 600}})
    assert result["status"] == "success" and result["completed_trials"] == 2
    assert result["metadata"]["stopped_reason"] == "max_trials"
