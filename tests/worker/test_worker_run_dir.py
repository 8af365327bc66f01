"""Through the wire, as the BEAM calls it: a run_dir that is someone else's directory is refused
untouched, a full disk is a storage_error, and an oversized parameter is refused at once."""

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]}


def failed(reply, error_type, field):
    assert reply["status"] == b"failed", reply
    metadata = reply["metadata"]
    assert (metadata["error_type"], metadata["field"]) == (error_type.encode(), field.encode()), reply
    return reply


def test_someone_elses_directory_is_refused_untouched(worker, tmp_path):
    theirs = tmp_path / "theirs"
    (theirs / "trials").mkdir(parents=True)
    for name in ("config.json", "summary.json", "best_model_0.npz", "trials/trial_notes.txt"):
        (theirs / name).write_text(name)
    reply = worker.call("cerebros_service", "run_nas", {"dataset_id": "iris", "search_space": TINY},
                        {"run_dir": str(theirs), "budget": {"max_trials": 1}})
    assert b"not a run directory" in failed(reply, "invalid_field", "opts.run_dir")["error"]
    assert sorted(str(p.relative_to(theirs)) for p in theirs.rglob("*")) == [
        "best_model_0.npz", "config.json", "summary.json", "trials", "trials/trial_notes.txt"]
    assert all((theirs / name).read_text() == name for name in ("config.json", "trials/trial_notes.txt"))
    escaping = worker.call("cerebros_service", "run_nas", {"dataset_id": "iris"}, {"run_dir": "../../escape"})
    failed(escaping, "invalid_field", "opts.run_dir")
    nul = worker.call("cerebros_service", "run_nas", {"dataset_id": "iris"}, {"run_dir": b"/tmp/a\0b"})
    failed(nul, "invalid_field", "opts.run_dir")
    not_a_model = worker.call("cerebros_service", "predict", str(theirs / "config.json"), [[1.0]])
    assert not_a_model["metadata"]["error_type"] == b"no_model" and b"pickle" not in not_a_model["error"]


def test_a_full_disk_is_a_storage_error_naming_run_dir_and_errno(worker, small_disk):
    disk = small_disk("64k")
    reply = worker.call("cerebros_service", "run_nas", {"dataset_id": "iris", "search_space": TINY},
                        {"run_dir": str(disk.path / "run"), "folds": 2, "ensemble_size": 3,
                         "budget": {"max_trials": 8, "population_size": 3}})
    failed(reply, "storage_error", "opts.run_dir")
    assert reply["metadata"]["errno"] == b"ENOSPC" and b"ENOSPC" in reply["error"]
    assert worker.call("math", "sqrt", 4.0) == 2.0  # the worker lives on


def test_a_huge_population_is_refused_at_once(worker, tmp_path):
    reply = worker.call("cerebros_service", "run_nas", {"dataset_id": "iris"},
                        {"run_dir": str(tmp_path / "run"), "budget": {"population_size": 10 ** 9, "max_trials": 1}})
    failed(reply, "invalid_field", "opts.budget.population_size")
