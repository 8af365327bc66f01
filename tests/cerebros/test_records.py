"""One shape per trial: the journal, the progress events and the results hold the same record
under the same names; the contract's older names stay beside them; saved files are named for
what they are."""
import json

import numpy as np
import pytest

import cerebros_service as service
from cerebros.artifacts import load_model
from cerebros.records import TrialRecord, TrialState
from cerebros.study import SearchConfig, Study
from codec import FieldError

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]}
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def config(**overrides):
    settings = dict(dataset_id="iris", search_space=TINY, max_trials=3, strategy_params={"population_size": 3},
                    folds=1)
    return SearchConfig(**{**settings, **overrides})


def journal_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]


class Mailbox:
    def __init__(self):
        self.messages = []

    def send(self, message):
        self.messages.append(message)


def test_a_record_round_trips_through_the_journal_and_resume(tmp_path):
    events = []
    first = Study.prepare(config()).run(tmp_path, on_trial=events.append)
    lines = journal_lines(tmp_path)
    assert [record.to_json() for record in first.records] == lines
    assert [TrialRecord.from_json(line, "test") for line in lines] == first.records
    assert [event.record for event in events] == first.records
    assert all(type(record.status) is TrialState for record in first.records)
    assert all(type(line["status"]) is str for line in lines)
    assert [str(record.status) for record in first.records] == [line["status"] for line in lines]
    resumed = Study.prepare(config(max_trials=5)).run(tmp_path, resume=True)
    assert resumed.records[:3] == first.records and len(resumed.records) == 5
    assert all(type(record.status) is TrialState for record in resumed.records)
    assert journal_lines(tmp_path)[:3] == lines


def test_a_journal_line_in_an_unknown_state_is_refused_naming_its_line(tmp_path):
    Study.prepare(config()).run(tmp_path)
    lines = journal_lines(tmp_path)
    lines[1]["status"] = "finished"
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(FieldError, match="journal line 2: status is 'finished', not one of completed, timeout"):
        Study.prepare(config(max_trials=4)).run(tmp_path, resume=True)


def test_a_journal_written_before_bracket_and_stopped_reason_still_resumes(tmp_path):
    first = Study.prepare(config()).run(tmp_path)
    lines = journal_lines(tmp_path)
    for line in lines:
        del line["bracket"], line["stopped_reason"]
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    resumed = Study.prepare(config(max_trials=4)).run(tmp_path, resume=True)
    assert [record.number for record in resumed.records] == [0, 1, 2, 3]
    assert [record.value for record in resumed.records[:3]] == [record.value for record in first.records]
    assert all(record.bracket == 0 and record.stopped_reason == [] for record in resumed.records[:3])


def test_progress_messages_and_result_trials_hold_the_journal_fields_and_the_older_names(tmp_path):
    mailbox = Mailbox()
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                             {"run_dir": str(tmp_path / "run"), "folds": 2, "run_id": "one-shape",
                              "budget": {"max_trials": 3, "population_size": 3}, "progress_to": mailbox})
    assert result["status"] == "success", result
    lines = journal_lines(tmp_path / "run")
    messages = [message for _, message in mailbox.messages]
    assert len(messages) == len(result["trials"]) == len(lines) == 3
    for line, message, trial in zip(lines, messages, result["trials"]):
        # every journal field, the candidate and seed included, under the journal's name
        assert {name: message[name] for name in line} == line
        assert {name: trial[name] for name in line} == line
        # the names callers read before, beside them (docs/engine.md#one-shape-per-trial)
        assert (message["trial"], message["metric"], message["best_metric"]) == (
            line["number"], line["value"], message["best_value"])
        assert (trial["trial_id"], trial["metric"], trial["duration_ms"]) == (
            line["number"], line["value"], int(line["duration_seconds"] * 1000))
        assert {"run_id", "pulse_id", "objective", "completed", "max_trials", "best_trial",
                "elapsed_seconds"} <= set(message)
    assert messages[-1]["run_id"] == "one-shape" and messages[-1]["best_metric"] == result["best_metric"]


def test_predict_answers_the_run_id_and_the_model_path(tmp_path):
    service.run_nas({"dataset_id": "iris", "search_space": TINY},
                    {"run_dir": str(tmp_path / "run"), "folds": 1, "run_id": "named-run",
                     "budget": {"max_trials": 2, "population_size": 2}})
    by_id = service.predict("named-run", ROWS)
    assert by_id["run_id"] == "named-run" and by_id["model_path"] == str(tmp_path / "run")
    by_path = service.predict(str(tmp_path / "run"), ROWS)
    assert by_path["run_id"] is None and by_path["model_path"] == str(tmp_path / "run")
    assert by_path["predictions"] == by_id["predictions"]
    failure = service.predict(str(tmp_path / "nothing-here"), ROWS)
    assert failure["status"] == "failed" and failure["run_id"] is None
    assert service.predict("no-such-run", ROWS)["run_id"] == "no-such-run"


def test_a_run_saved_with_the_old_network_names_loads_and_resumes_into_the_new_ones(tmp_path):
    run = tmp_path / "run"
    Study.prepare(config()).run(run)
    before = load_model(run).predict_proba(np.array(ROWS))
    ensemble = json.loads((run / "ensemble.json").read_text())
    for member in ensemble["members"]:  # as a run saved by an earlier version
        old = member["file"].replace("ensemble_member_", "best_model_")
        for suffix in (".npz", ".json"):
            (run / (member["file"][:-4] + suffix)).rename(run / (old[:-4] + suffix))
        member["file"] = old
    (run / "ensemble.json").write_text(json.dumps(ensemble))
    (run / "best_model_99.npz").write_text("not listed: someone else's")
    assert np.array_equal(load_model(run).predict_proba(np.array(ROWS)), before)
    one_network = service.predict(str(run / "best_model_0.npz"), ROWS)
    assert one_network["status"] == "success" and len(one_network["probabilities"]) == 2
    Study.prepare(config(max_trials=4)).run(run, resume=True)
    names = sorted(path.name for path in run.iterdir())
    assert [name for name in names if name.startswith("best_model_")] == ["best_model_99.npz"]
    listed = [member["file"] for member in json.loads((run / "ensemble.json").read_text())["members"]]
    assert listed and all(name.startswith("ensemble_member_") and name in names for name in listed)
