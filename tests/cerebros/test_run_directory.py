"""A run directory is the engine's own: it never writes into, or deletes from, anyone else's."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import cerebros_service as service
from cerebros.artifacts import load_model
from cerebros.study import SearchConfig, Study
from codec import FieldError

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]}


BASE = dict(dataset_id="iris", search_space=TINY, max_trials=3, strategy_params={"population_size": 3}, folds=1)


def config(**overrides):
    return SearchConfig(**{**BASE, **overrides})


def someone_elses(folder):
    """A directory holding files named as a run directory's are, and other files: not a run directory."""
    (folder / "trials").mkdir(parents=True)
    for name in ("config.json", "summary.json", "best_model_0.npz", "trials/trial_notes.txt",
                 "trials/trial_00000_0.npz"):
        (folder / name).write_text(f"the owner's {name}")
    return snapshot(folder)


def snapshot(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_an_existing_directory_without_the_manifest_is_refused_untouched(tmp_path):
    before = someone_elses(tmp_path / "theirs")
    for resume in (False, True):
        with pytest.raises(FieldError, match="not a run directory"):
            Study.prepare(config()).run(tmp_path / "theirs", resume=resume)
    assert snapshot(tmp_path / "theirs") == before
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(FieldError, match="not a directory"):
        Study.prepare(config()).run(tmp_path / "a-file")
    assert (tmp_path / "a-file").read_text() == "mine"


def test_run_nas_refuses_someone_elses_directory_before_writing(tmp_path):
    before = someone_elses(tmp_path / "theirs")
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                             {"run_dir": str(tmp_path / "theirs"), "budget": {"max_trials": 1}})
    assert result["status"] == "failed" and result["metadata"]["error_type"] == "invalid_field"
    assert result["metadata"]["field"] == "opts.run_dir" and "not a run directory" in result["error"]
    assert snapshot(tmp_path / "theirs") == before


def test_a_new_or_empty_directory_becomes_a_run_directory_that_resumes(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("new/deeper", "empty"):
        Study.prepare(config()).run(tmp_path / name)
        assert json.loads((tmp_path / name / "run.json").read_text())["format"] == "cerebros-run"
        assert Study.prepare(config(max_trials=4)).run(tmp_path / name, resume=True).completed_trials == 4


def test_the_clean_up_deletes_only_files_named_as_the_engine_names_its_own(tmp_path):
    run = tmp_path / "run"
    Study.prepare(config(ensemble_size=1)).run(run)
    foreign = {"trials/trial_notes.txt": "notes", "trials/trial_00001_extra.npz": "x", "best_model_notes.json": "y",
               "notes.txt": "z"}
    for name, text in foreign.items():
        (run / name).write_text(text)
    (run / "trials" / "trial_00042_0.npz").write_text("a crashed trial's network")  # engine-named: cleaned up
    Study.prepare(config(max_trials=5, ensemble_size=1)).run(run, resume=True)
    assert {name: (run / name).read_text() for name in foreign} == foreign
    assert not (run / "trials" / "trial_00042_0.npz").exists()


def test_a_saved_model_list_naming_other_files_deletes_nothing(tmp_path):
    run = tmp_path / "run"
    Study.prepare(config()).run(run)
    (tmp_path / "victim.npz").write_text("keep me")
    ensemble = json.loads((run / "ensemble.json").read_text())
    ensemble["members"][0]["file"] = "../victim.npz"
    (run / "ensemble.json").write_text(json.dumps(ensemble))
    with pytest.raises(FieldError, match="not one of the run's networks"):
        Study.prepare(config(max_trials=4)).run(run, resume=True)
    assert (tmp_path / "victim.npz").read_text() == "keep me"
    failure = service.predict(str(run), [[1.0, 2.0, 3.0, 4.0]])
    assert failure["metadata"]["field"] == "run_id_or_artifact" and "victim" in failure["error"]


def test_a_relative_run_dir_stays_under_the_runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv(service.RUNS_DIR_ENV, str(root))
    (tmp_path / "outside").mkdir()
    os.makedirs(root)
    os.symlink(tmp_path / "outside", root / "link-out")
    for run_dir in ("../escape", "a/../../escape", ".", "link-out/run"):
        result = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                                 {"run_dir": run_dir, "budget": {"max_trials": 1}})
        assert result["metadata"]["error_type"] == "invalid_field", run_dir
        assert result["metadata"]["field"] == "opts.run_dir" and "leaves it" in result["error"], run_dir
    assert sorted(os.listdir(tmp_path)) == ["outside", "runs"] and os.listdir(tmp_path / "outside") == []
    done = service.run_nas({"dataset_id": "iris", "search_space": TINY},
                           {"run_dir": "team/run-1", "folds": 1, "budget": {"max_trials": 1}})
    assert done["status"] == "success" and done["metadata"]["run_dir"] == str(root / "team" / "run-1")


@pytest.mark.parametrize("run_dir", ["/tmp/a\0b", "x" * 5000])
def test_an_unusable_run_dir_text_is_named(tmp_path, run_dir):
    result = service.run_nas({"dataset_id": "iris"}, {"run_dir": run_dir})
    assert result["metadata"]["error_type"] == "invalid_field" and result["metadata"]["field"] == "opts.run_dir"


class _Planted:
    """Unpickling this creates the file ``path``: proof that something was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_predict_on_what_is_not_a_model_says_so_and_unpickles_nothing(tmp_path):
    proof = tmp_path / "unpickled"
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "model.npz").write_bytes(pickle.dumps(_Planted(str(proof))))
    np.savez(tmp_path / "objects.npz", __meta__=np.array([_Planted(str(proof))], dtype=object))
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("")
    for name in ("passwd", "model.npz", "folder"):
        result = service.predict(str(tmp_path / name), [[1.0]])
        assert result["metadata"]["error_type"] == "no_model", name
        assert result["metadata"]["field"] == "run_id_or_artifact", name
        assert "not a run directory" in result["error"] and "pickle" not in result["error"], name
    with zipfile.ZipFile(tmp_path / "document.npz", "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    for name in ("objects.npz", "document.npz"):
        result = service.predict(str(tmp_path / name), [[1.0]])
        assert result["metadata"]["error_type"] == "invalid_field", name
        assert result["metadata"]["field"] == "run_id_or_artifact" and "no readable saved model" in result["error"]
    assert not proof.exists()
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        load_model(tmp_path / "passwd")
    assert not proof.exists()
