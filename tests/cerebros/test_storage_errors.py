"""A run directory that cannot be written (a full disk) stops the search; it is no trial result,
and a resume once space is freed ends exactly as an uninterrupted run."""
import errno
import json
import os
import shutil

import pytest

import cerebros_service as service
from cerebros.artifacts import StorageError
from cerebros.network import CerebrosNetwork
from cerebros.study import SearchConfig, Study

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]}
SETTINGS = dict(dataset_id="iris", search_space=TINY, max_trials=8, strategy_params={"population_size": 3},
                folds=2, ensemble_size=3)


def journal(run_dir):
    """The journal without its timings."""
    records = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    for record in records:
        del record["duration_seconds"]
    return records


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run: its journal and result."""
    path = tmp_path_factory.mktemp("straight") / "run"
    return journal_and_result(path, Study.prepare(SearchConfig(**SETTINGS)).run(path))


def journal_and_result(path, result):
    return journal(path), result.ensemble, result.test_metrics, result.validation_metrics


# 64 KiB fills up while the trials run (each keeps two networks and its outputs); 200 KiB
# while the saved model is copied at the end
@pytest.mark.parametrize("size", ["64k", "200k"])
def test_a_full_disk_stops_the_search_and_a_resume_ends_as_an_uninterrupted_run(small_disk, straight, size):
    disk = small_disk(size)
    run = disk.path / "run"
    with pytest.raises(StorageError) as info:
        Study.prepare(SearchConfig(**SETTINGS)).run(run)
    assert info.value.errno == errno.ENOSPC and "ENOSPC" in str(info.value) and str(disk.path) in str(info.value)
    written = journal(run)
    assert all(record["status"] == "completed" for record in written)  # no trial was journaled as failed
    assert written == straight[0][:len(written)]  # what was written stays
    disk.grow("4m")
    resumed = Study.prepare(SearchConfig(**SETTINGS)).run(run, resume=True)
    assert journal_and_result(run, resumed) == straight


def test_run_nas_reports_a_full_disk_as_storage_error_naming_run_dir_and_errno(small_disk):
    disk = small_disk("64k")
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                             {"run_dir": str(disk.path / "run"), "folds": 2, "ensemble_size": 3,
                              "budget": {"max_trials": 8, "population_size": 3}})
    assert result["status"] == "failed" and result["metadata"]["error_type"] == "storage_error", result
    assert result["metadata"]["field"] == "opts.run_dir" and result["metadata"]["errno"] == "ENOSPC"
    assert "ENOSPC" in result["error"] and 0 < result["completed_trials"] < 8


def test_a_network_that_cannot_be_saved_stops_the_search_without_a_failed_trial(tmp_path, monkeypatch, straight):
    """The same without mounting anything: the failure injected where a trial saves a network."""
    save = CerebrosNetwork.save
    calls = []

    def fills_up(network, path):
        calls.append(path)
        if len(calls) == 7:  # trial 3's first fold network
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
        return save(network, path)

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(CerebrosNetwork, "save", fills_up)
        with pytest.raises(StorageError, match="ENOSPC"):
            Study.prepare(SearchConfig(**SETTINGS)).run(run)
    assert [record["number"] for record in journal(run)] == [0, 1, 2]
    resumed = Study.prepare(SearchConfig(**SETTINGS)).run(run, resume=True)
    assert journal_and_result(run, resumed) == straight


def test_a_network_a_trial_process_cannot_save_stops_a_parallel_search(small_disk, straight):
    """A trial process's failure reaches the search as a StorageError, not as a failed trial: the
    disk is too small for the first network."""
    disk = small_disk("16k")
    run = disk.path / "run"
    with pytest.raises(StorageError, match="ENOSPC") as info:
        Study.prepare(SearchConfig(**SETTINGS, n_jobs=2)).run(run)
    assert os.path.dirname(info.value.filename) == str(run / "trials")  # a trial's network
    assert journal(run) == []
    disk.grow("4m")
    resumed = Study.prepare(SearchConfig(**SETTINGS, n_jobs=2)).run(run, resume=True)
    assert journal_and_result(run, resumed) == straight


def saved_model_files(run):
    return {path.name: path.read_bytes() for path in run.iterdir()
            if path.name.startswith("ensemble_member_") or path.name == "ensemble.json"}


def test_a_full_disk_while_the_saved_model_is_replaced_keeps_the_old_one(tmp_path, monkeypatch, straight):
    run = tmp_path / "run"
    Study.prepare(SearchConfig(**{**SETTINGS, "max_trials": 6})).run(run)
    before = saved_model_files(run)
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    predicted = service.predict(str(run), rows)["predictions"]
    copy = shutil.copyfile
    copies = []

    def fills_up(source, target):
        copies.append(target)
        if len(copies) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "copyfile", fills_up)
        with pytest.raises(StorageError, match="ENOSPC"):
            Study.prepare(SearchConfig(**SETTINGS)).run(run, resume=True)
    assert len(journal(run)) == 8 and saved_model_files(run) == before
    assert service.predict(str(run), rows)["predictions"] == predicted
    resumed = Study.prepare(SearchConfig(**SETTINGS)).run(run, resume=True)
    assert journal_and_result(run, resumed) == straight
