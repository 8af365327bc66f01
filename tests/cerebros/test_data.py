"""Loading, splitting and scaling data for the search."""
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from cerebros import data
from codec import FieldError


@pytest.mark.parametrize("name,task,shape", [("iris", "classification", (150, 4)), ("wine", "classification", (178, 13)),
                                             ("breast_cancer", "classification", (569, 30)),
                                             ("digits", "classification", (1797, 64)),
                                             ("diabetes", "regression", (442, 10))])
def test_bundled_datasets_load_with_their_task(name, task, shape):
    X, y, known_task = data.load(name)
    assert X.shape == shape and len(y) == shape[0] and known_task == task


@pytest.mark.parametrize("dataset_id", ["mnist", "", "/no/such/file.csv", "/no/such/file.npz"])
def test_an_unknown_dataset_is_a_clear_error(dataset_id):
    with pytest.raises(FieldError, match="dataset_id") as info:
        data.load(dataset_id)
    assert info.value.field == "dataset_id"
    assert info.value.kind == ("invalid" if dataset_id == "" else "not_found")


def test_csv_with_header_named_target_and_text_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("label,a,b\ncat,1,2\ndog,3,4.5\ncat,5,6\n")
    X, y, task = data.load(str(path), target="label")
    assert X.tolist() == [[1, 2], [3, 4.5], [5, 6]]
    assert y.tolist() == ["cat", "dog", "cat"] and task is None
    assert data.infer_task(y) == "classification"


def test_csv_without_header_takes_the_last_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2,0.5\n3,4,1.5\n")
    X, y, _ = data.load(str(path))
    assert X.tolist() == [[1, 2], [3, 4]] and y.tolist() == [0.5, 1.5]


@pytest.mark.parametrize("text,target,message", [
    ("a,b\n1,2\n3\n", None, "line 3 has 1 cells"),
    ("a,b\nx,2\n", None, "line 2, 'a': expected a number, got 'x'"),
    ("a,b\n1,2\n", "c", "column 'c' not found"),
    ("a,b\n1,0\n2,\n3,1\n", None, "line 3, 'b': missing value"),  # an empty label is no class
    ("a,b\n1,cat\n , dog\n", None, "line 3, 'a': missing value"),
    ("1,0\n2,1\n,0\n", None, "line 3, 'column 1': missing value"),
    ("a,b\n1,0\nnan,1\n", None, "the features: contains NaN or infinite values \\(first at row 1, column 0\\)"),
])
def test_bad_csv_names_the_problem(tmp_path, text, target, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(FieldError, match=message) as info:
        data.load(str(path), target=target)
    assert info.value.field == ("target" if target else "dataset_id") and str(path) in str(info.value)


@pytest.mark.parametrize("content,message", [(b"\x93NUMPY not really", "is not a readable .npz archive"),
                                             (b"plain text, no archive", "is not a readable .npz archive")])
def test_a_file_that_is_not_an_npz_archive_is_named(tmp_path, content, message):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(FieldError, match=message) as info:
        data.load(str(path))
    assert info.value.field == "dataset_id"
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.ones(3))
    with pytest.raises(FieldError, match="holds a single array"):
        data.load(str(single))


def test_a_csv_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b\n1,\xff\n")
    with pytest.raises(FieldError, match="is not UTF-8 text \\(byte 6\\)"):
        data.load(str(path))


def test_npz_needs_X_and_y(tmp_path):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(good, X=np.ones((4, 2)), y=np.array([0, 1, 0, 1]))
    np.savez(bad, X=np.ones((4, 2)))
    X, y, _ = data.load(str(good))
    assert X.shape == (4, 2) and y.tolist() == [0, 1, 0, 1]
    with pytest.raises(FieldError, match="lacks array\\(s\\) y"):
        data.load(str(bad))


def test_rows_to_predict_on_come_from_a_csv_or_an_npz_and_bad_cells_are_named(tmp_path):
    with_header, bare, archive = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.npz"
    with_header.write_text("a,b\n1.5,2\n3,4\n")
    bare.write_text("1.5,2\n3,4\n")
    np.savez(archive, X=np.array([[1.5, 2.0], [3.0, 4.0]]))
    for path in (with_header, bare, archive):
        assert data.load_features(str(path)).tolist() == [[1.5, 2.0], [3.0, 4.0]]
    with_header.write_text("a,b\n1.5,2\n3,x\n")
    with pytest.raises(FieldError, match="input: .*a.csv line 3, 'b': expected a number, got 'x'") as info:
        data.load_features(str(with_header))
    assert info.value.field == "input"
    bare.write_text("1.5,2\n3\n")
    with pytest.raises(FieldError, match="line 2 has 1 cells, expected 2"):
        data.load_features(str(bare))
    np.savez(archive, rows=np.ones((2, 2)))
    with pytest.raises(FieldError, match="lacks array\\(s\\) X"):
        data.load_features(str(archive))


def test_inline_arrays_are_checked():
    X, y = data.from_arrays([[1, 2], [3, 4]], [b"a", b"b"])
    assert X.dtype == np.float64 and y.tolist() == ["a", "b"]
    with pytest.raises(FieldError, match="data.X: contains NaN"):
        data.from_arrays([[1, float("nan")]], [0])
    with pytest.raises(FieldError, match="data.y: expected one target per row"):
        data.from_arrays([[1, 2], [3, 4]], [0])
    with pytest.raises(FieldError, match="data.X: expected a 2-d table of numbers"):
        data.from_arrays([["x", 2]], [0])


def test_task_inference():
    assert data.infer_task(np.array([0, 1, 2, 1])) == "classification"
    assert data.infer_task(np.array([0.5, 1.25, 3.0])) == "regression"
    assert data.infer_task(np.arange(500.0)) == "regression"


def test_split_is_sklearns_stratified_split_and_disjoint():
    X, y = load_iris(return_X_y=True)
    train, val, test = data.split_indices(y, "classification", test_size=0.25, seed=0)
    _, expected_test = train_test_split(np.arange(150), test_size=0.25, stratify=y, random_state=0)
    assert test.tolist() == expected_test.tolist()
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(150))
    for part in (train, val, test):
        assert sorted(np.bincount(y[part]).tolist())[0] >= len(part) // 3 - 1  # every class, evenly


def test_hold_out_split_keeps_the_rows_as_they_are():
    X, y = load_iris(return_X_y=True)
    splits = data.prepare(X, y, name="iris", seed=3)
    train, val, test = data.split_indices(y, "classification", seed=3)
    fold_train, fold_val = splits.folds[0]
    assert np.array_equal(splits.X[fold_train], X[train]) and np.array_equal(splits.X[fold_val], X[val])
    assert np.array_equal(splits.y[fold_train], y[train]) and np.array_equal(splits.y[fold_val], y[val])
    assert np.array_equal(splits.X_test, X[test]) and np.array_equal(splits.y_test, y[test])
    assert splits.sizes() == {"train": 89, "validation": 23, "test": 38, "folds": 1}


def test_cross_validation_folds_cover_the_search_rows_and_never_the_test_rows():
    X, y = load_iris(return_X_y=True)
    splits = data.prepare(X, y, name="iris", folds=4)
    train, val, test = data.split_indices(y, "classification")
    search = np.concatenate([train, val])
    assert np.array_equal(splits.X, X[search])  # the search rows, no test row
    assert sorted(np.concatenate([v for _, v in splits.folds]).tolist()) == list(range(len(search)))
    for fold_train, fold_val in splits.folds:
        assert not set(fold_train) & set(fold_val) and len(np.unique(splits.y[fold_val])) == 3
    with pytest.raises(FieldError, match="folds: must be an integer >= 1"):
        data.prepare(X, y, name="iris", folds=0)
    with pytest.raises(FieldError, match="folds: 200-fold cross-validation needs"):
        data.prepare(X, y, name="iris", folds=200)


def test_early_stopping_rows_are_a_seeded_stratified_share_of_the_training_rows():
    y = np.array([0] * 50 + [1] * 30 + [2] * 2 + [3])
    rows = np.arange(0, len(y), 2)  # 25, 15, 1 and 1 rows of the four classes
    fit, stop = data.early_stopping_split(rows, y, "classification", seed=[7, 0])
    assert sorted(np.concatenate([fit, stop]).tolist()) == rows.tolist() and not set(fit) & set(stop)
    assert set(y[fit]) == set(y[rows])  # every class keeps a fit row
    assert [np.sum(y[stop] == c) for c in (0, 1)] == [5, 3]  # 20% of each class (25 and 15 rows)
    again, _ = data.early_stopping_split(rows, y, "classification", seed=[7, 0])
    other, _ = data.early_stopping_split(rows, y, "classification", seed=[7, 1])
    assert np.array_equal(fit, again) and not np.array_equal(fit, other)
    fit, stop = data.early_stopping_split(np.arange(10), np.linspace(0, 1, 10), "regression", seed=0)
    assert len(stop) == 2 and len(fit) == 8
    assert len(data.early_stopping_split(np.arange(1), np.zeros(1), "regression", seed=0)[1]) == 0


def test_prepare_checks_task_and_classes():
    X = np.arange(20.0).reshape(10, 2)
    assert data.prepare(X, np.linspace(0, 1, 10) ** 2, name="r", task="regression").y.dtype == np.float64
    with pytest.raises(FieldError, match="task: must be one of"):
        data.prepare(X, np.zeros(10), name="x", task="ranking")
    with pytest.raises(FieldError, match="at least two classes"):
        data.prepare(X, np.zeros(10), name="x")
    for bad in (1.5, 1.0, -0.1):
        with pytest.raises(FieldError, match="test_size: must be 0 .no test split. or between 0 and 1"):
            data.prepare(X, np.arange(10) % 2, name="x", test_size=bad)


def test_test_size_0_keeps_every_row_for_the_search():
    X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    splits = data.prepare(X, y, name="x", test_size=0, folds=4)
    assert sorted(splits.X[:, 0].tolist()) == sorted(X[:, 0].tolist())  # every row, once
    assert splits.X_test.shape == (0, 2) and splits.y_test.shape == (0,)
    assert sorted(np.concatenate([v for _, v in splits.folds]).tolist()) == list(range(20))
    assert splits.sizes()["test"] == 0
