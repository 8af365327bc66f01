"""Every size a caller can name is bounded, and named when exceeded; memory follows the work done."""
import io
import tracemalloc
import zipfile

import numpy as np
import pytest

import cerebros_service as service
from cerebros import data, strategies
from cerebros.space import SearchSpace
from cerebros.study import SearchConfig, Study
from codec import FieldError

TINY = {"levels": [1, 2], "units_per_level": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]}


def nested(value, depth):
    for _ in range(depth):
        value = [value]
    return value


BEYOND = [  # (opts, the field as the caller wrote it)
    ({"budget": {"population_size": 10 ** 9, "max_trials": 1}}, "opts.budget.population_size"),
    ({"budget": {"population_size": 10 ** 7, "max_trials": 1}}, "opts.budget.population_size"),
    ({"strategy": "successive_halving", "parameters": {"n_configs": 10 ** 9}}, "opts.parameters.n_configs"),
    ({"strategy": "successive_halving", "parameters": {"max_epochs": 10 ** 9}}, "opts.parameters.max_epochs"),
    ({"strategy": "hyperband", "parameters": {"eta": 10 ** 9}}, "opts.parameters.eta"),
    ({"strategy": "tpe", "parameters": {"n_ei_candidates": 10 ** 9}}, "opts.parameters.n_ei_candidates"),
    ({"strategy": "tpe", "parameters": {"n_startup_trials": 10 ** 9}}, "opts.parameters.n_startup_trials"),
    ({"strategy": "tpe", "parameters": {"in_flight": 10 ** 9}}, "opts.parameters.in_flight"),
    ({"budget": {"max_trials": 10 ** 9}}, "opts.budget.max_trials"),
    ({"budget": {"trials": 10 ** 9}}, "opts.budget.trials"),
    ({"budget": {"max_trials_without_improvement": 10 ** 9}}, "opts.budget.max_trials_without_improvement"),
    ({"budget": {"max_trials": nested(5, 100_000)}}, "opts.budget.max_trials"),
    ({"ensemble_size": 10 ** 9}, "opts.ensemble_size"),
    ({"folds": 10 ** 9}, "opts.folds"),
    ({"seed": 10 ** 5000}, "opts.seed"),
    ({"test_size": 10 ** 5000}, "opts.test_size"),
    ({"max_dataset_bytes": 2 ** 41}, "opts.max_dataset_bytes"),
    ({"max_dataset_bytes": 0}, "opts.max_dataset_bytes"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("options, field", BEYOND, ids=[field for _, field in BEYOND])
def test_a_size_beyond_its_maximum_is_refused_naming_the_field(tmp_path, options, field):
    result = service.run_nas({"dataset_id": "iris", "search_space": TINY}, {"run_dir": str(tmp_path / "run"),
                                                                            **options})
    assert result["status"] == "failed" and result["metadata"]["error_type"] == "invalid_field", result
    assert result["metadata"]["field"] == field and result["error"].startswith(field), result["error"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, params", [
    ("evolution", {"population_size": strategies.MAXIMA["population_size"]}),
    ("successive_halving", {"n_configs": strategies.MAXIMA["n_configs"]}),
    ("hyperband", {"min_epochs": 1, "max_epochs": 100_000, "eta": 2}),  # first bracket: 65 536 candidates
])
def test_a_strategys_memory_follows_the_trials_asked_for_not_its_parameters(name, params):
    space = SearchSpace.from_dict({})
    tracemalloc.start()
    try:
        strategy = strategies.create(name, space, 64, 0, **params)
        trials = [strategy.ask() for _ in range(3)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(trial is not None for trial in trials)
    assert peak < 2_000_000, f"{peak} bytes to propose 3 trials"


def big_sparse_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)  # a hole: no disk used
    return str(path)


@pytest.mark.timeout(60)
def test_a_dataset_file_over_the_limit_is_refused_before_it_is_read(tmp_path):
    path = big_sparse_file(tmp_path / "big.csv", data.DEFAULT_MAX_BYTES + 1)
    result = service.run_nas({"dataset_id": path}, {"run_dir": str(tmp_path / "run")})
    assert result["metadata"]["error_type"] == "invalid_field" and result["metadata"]["field"] == "spec.dataset_id"
    assert "max_dataset_bytes" in result["error"] and str(data.DEFAULT_MAX_BYTES) in result["error"]
    small = tmp_path / "small.csv"
    small.write_text("a,b,y\n" + "1,2,0\n3,4,1\n" * 20)
    refused = service.run_nas({"dataset_id": str(small)}, {"run_dir": str(tmp_path / "run"), "max_dataset_bytes": 100})
    assert refused["metadata"]["field"] == "spec.dataset_id" and "over the limit of 100" in refused["error"]
    with pytest.raises(FieldError, match="max_dataset_bytes"):
        data.load_features(path)


def npz_claiming(path, shape):
    """An .npz whose X header announces ``shape`` (float64) but holds a few bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", header.getvalue() + bytes(64))
        archive.writestr("y.npy", header.getvalue() + bytes(64))
    return str(path)


@pytest.mark.timeout(60)
def test_an_npz_announcing_more_than_the_limit_is_refused_from_its_headers(tmp_path):
    path = npz_claiming(tmp_path / "bomb.npz", (10 ** 6, 10 ** 4))
    with pytest.raises(FieldError, match="take 160000000000 bytes once read, over the limit"):
        data.load(path)
    with pytest.raises(FieldError, match="over the limit"):
        data.load_features(path)


def test_a_csv_is_read_into_arrays_not_python_rows(tmp_path):
    rows, width = 20_000, 10
    values = np.random.default_rng(0).normal(size=(rows, width))
    path = tmp_path / "d.csv"
    np.savetxt(path, np.column_stack([values, np.arange(rows) % 3]), delimiter=",", fmt="%.6f")
    tracemalloc.start()
    try:
        X, y, _ = data.load(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert X.shape == (rows, width) and np.allclose(X, values, atol=1e-6) and set(y.tolist()) == {0.0, 1.0, 2.0}
    assert peak < 3 * X.nbytes, f"peak {peak} bytes for a {X.nbytes}-byte table"


def test_a_csv_cell_larger_than_the_csv_reader_allows_is_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,y\n" + "1" * 200_000 + ",0\n")
    with pytest.raises(FieldError, match="dataset_id: .* is not a readable .csv"):
        data.load(str(path))


def test_predict_rows_are_bounded(tmp_path):
    Study.prepare(SearchConfig(dataset_id="iris", search_space=TINY, max_trials=1, folds=1)).run(tmp_path / "run")
    result = service.predict(str(tmp_path / "run"), np.zeros((service.MAX_PREDICT_ROWS + 1, 4)))
    assert result["metadata"]["error_type"] == "invalid_field" and result["metadata"]["field"] == "X"
    assert "at most" in result["error"]

