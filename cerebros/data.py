"""The data a search runs on: load it, split it train / validation / test, scale it.

``prepare`` loads a bundled dataset, a .csv/.npz file or inline arrays and splits off the
test rows, then divides the search rows into validation folds; ``early_stopping_split`` sets
aside a fold's rows for its network's early stopping; ``load_features`` reads rows to
predict on with the same readers and messages. Nothing is scaled here (each network
standardises with its own training rows). A dataset file larger than ``max_bytes``
(``DEFAULT_MAX_BYTES``, or the caller's ``max_dataset_bytes``) is refused before it is read,
and a .csv is read row by row into arrays sized first. The rules: docs/engine.md.
"""
import csv
import os
import zipfile
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn import datasets as sk_datasets
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from codec.errors import FieldError

TASKS = ("classification", "regression")
BUNDLED = {
    "iris": (sk_datasets.load_iris, "classification"),
    "wine": (sk_datasets.load_wine, "classification"),
    "breast_cancer": (sk_datasets.load_breast_cancer, "classification"),
    "digits": (sk_datasets.load_digits, "classification"),
    "diabetes": (sk_datasets.load_diabetes, "regression"),
}
FILE_TYPES = (".csv", ".npz")
# Integer targets with at most this many distinct values are taken as class labels.
MAX_INFERRED_CLASSES = 50
# The share of a fold's training rows that a network early-stops on instead of fitting.
EARLY_STOPPING_SIZE = 0.2
# The largest dataset file read unless a caller allows more (max_dataset_bytes).
DEFAULT_MAX_BYTES = 256 * 2 ** 20
Array = NDArray[Any]
Rows = NDArray[np.intp]  # row indices
Seed = Union[int, Sequence[int]]
_LIMIT = "raise it with max_dataset_bytes, or --max-dataset-bytes on the command line"


@dataclass(frozen=True)
class Splits:
    """A prepared dataset: the search rows ``X``, ``y`` with their ``folds`` (a list of
    ``(train_rows, validation_rows)`` index pairs into them), and the test rows."""

    name: str
    task: str
    X: Array
    y: Array
    folds: list[tuple[Rows, Rows]]
    X_test: Array
    y_test: Array

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def sizes(self) -> dict[str, int]:
        train, validation = self.folds[0]
        return {"train": len(train), "validation": len(validation), "test": len(self.y_test),
                "folds": len(self.folds)}


def load(dataset_id: str, *, target: Optional[str] = None,
         max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Array, Array, Optional[str]]:
    """``(X, y, task_or_None)`` for a bundled dataset name or a .csv/.npz path of at most ``max_bytes``."""
    if not isinstance(dataset_id, str) or not dataset_id:
        raise FieldError("dataset_id", f"expected a dataset name or file path, got {dataset_id!r}")
    if target is not None and not dataset_id.lower().endswith(".csv"):
        raise FieldError("target", f"names a column of a .csv file; {dataset_id!r} brings its own target")
    if dataset_id in BUNDLED:
        loader, task = BUNDLED[dataset_id]
        X, y = loader(return_X_y=True)
        return X.astype(np.float64), y, task
    extension = os.path.splitext(dataset_id)[1].lower()
    if extension in FILE_TYPES:
        if not os.path.isfile(dataset_id):
            raise FieldError("dataset_id", f"no such file {dataset_id!r}", kind="not_found")
        _check_size(dataset_id, "dataset_id", max_bytes)
        X, y = _load_csv(dataset_id, target) if extension == ".csv" else _load_npz(dataset_id, max_bytes)
        return X, y, None
    raise FieldError("dataset_id", f"unknown dataset {dataset_id!r} (bundled: {', '.join(BUNDLED)}; "
                                   "or a path ending in .csv or .npz)", kind="not_found")


def names_a_dataset(dataset_id: str) -> bool:
    """Whether ``load`` reads ``dataset_id``: a bundled dataset's name or a .csv/.npz path."""
    return dataset_id in BUNDLED or os.path.splitext(dataset_id)[1].lower() in FILE_TYPES


def from_arrays(X: ArrayLike, y: ArrayLike) -> tuple[Array, Array]:
    """Inline data as arrays: ``X`` numeric 2-d, ``y`` 1-d with one value per row."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FieldError("data.X", f"expected a 2-d table of numbers ({exc})") from None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind in "SO":  # labels that arrived as bytes or mixed objects: make them text
        y = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()])
    return _checked(X, y, "data.X", "data.y")


def infer_task(y: Array) -> str:
    """Classification for text, boolean or few distinct integer labels; regression otherwise."""
    if y.dtype.kind in "UOSb":
        return "classification"
    if np.all(np.mod(y, 1) == 0) and len(np.unique(y)) <= MAX_INFERRED_CLASSES:
        return "classification"
    return "regression"


def split_indices(y: Array, task: str, *, test_size: float = 0.25, validation_size: float = 0.2,
                  seed: int = 0) -> tuple[Rows, Rows, Rows]:
    """Row indices ``(train, validation, test)``; ``validation_size`` is a fraction of the non-test rows.

    The test split is exactly ``train_test_split(..., test_size, stratify, random_state=seed)``,
    so baselines that call scikit-learn directly see the same test rows. ``test_size`` 0 holds
    no test rows out: the model is then searched and trained on every row.
    """
    if not (test_size == 0 or 0.0 < test_size < 1.0):
        raise FieldError("test_size", "must be 0 (no test split) or between 0 and 1 (exclusive), "
                                      f"got {test_size!r}")
    if not 0.0 < validation_size < 1.0:
        raise FieldError("validation_size", f"must be between 0 and 1 (exclusive), got {validation_size!r}")
    rows = np.arange(len(y))
    if test_size == 0:
        rest, test = rows, rows[:0]
    else:
        rest, test = _split(rows, y, task, test_size, seed, "test_size")
    train, val = _split(rest, y[rest], task, validation_size, seed, "validation_size")
    return train, val, test


def prepare(X: Array, y: Array, *, name: str, task: Optional[str] = None, test_size: float = 0.25,
            validation_size: float = 0.2, folds: int = 1, seed: int = 0) -> Splits:
    """Split ``X, y`` into ``Splits``; ``task`` is inferred from ``y`` when None."""
    if task is None:
        task = infer_task(y)
    elif task not in TASKS:
        raise FieldError("task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "regression":
        if y.dtype.kind not in "iuf":
            raise FieldError("task", f"regression needs numeric targets, got {y.dtype} values")
        y = y.astype(np.float64)
    elif len(np.unique(y)) < 2:
        raise FieldError("y", "classification needs at least two classes")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise FieldError("folds", f"must be an integer >= 1, got {folds!r}")
    train, val, test = split_indices(y, task, test_size=test_size, validation_size=validation_size, seed=seed)
    search = np.concatenate([train, val])
    if folds == 1:
        fold_rows = [(np.arange(len(train)), np.arange(len(train), len(search)))]
    else:
        fold_rows = _cross_validation(y[search], task, folds, seed)
    return Splits(name=name, task=task, X=X[search], y=y[search], folds=fold_rows, X_test=X[test], y_test=y[test])


def early_stopping_split(rows: Rows, y: Array, task: str, seed: Seed,
                         size: float = EARLY_STOPPING_SIZE) -> tuple[Rows, Rows]:
    """Split a fold's training ``rows`` into ``(fit, stop)``, both sorted: ``stop`` is about a
    ``size`` share of them, drawn with ``seed``, for early stopping only. For classification
    every class gives that share but keeps at least one fit row, so a network still learns
    every class its rows have; ``stop`` is empty when the rows are too few to spare any."""
    rng = np.random.default_rng(seed)
    labels = y[rows] if task == "classification" else np.zeros(len(rows))
    shares = []
    for label in np.unique(labels):
        members = rng.permutation(rows[labels == label])
        shares.append(members[:min(int(round(size * len(members))), len(members) - 1)])
    stop = np.sort(np.concatenate(shares))
    return np.setdiff1d(rows, stop), stop


def _cross_validation(y: Array, task: str, folds: int, seed: int) -> list[tuple[Rows, Rows]]:
    splitter = (StratifiedKFold if task == "classification" else KFold)(folds, shuffle=True, random_state=seed)
    if task == "classification" and np.unique(y, return_counts=True)[1].min() < folds:
        raise FieldError("folds", f"{folds}-fold cross-validation needs at least {folds} search rows of "
                                  "every class")
    if len(y) < 2 * folds:
        raise FieldError("folds", f"{len(y)} search rows are too few for {folds} folds")
    return list(splitter.split(np.zeros(len(y)), y))


def _split(rows: Rows, y: Array, task: str, size: float, seed: int, field: str) -> tuple[Rows, Rows]:
    stratify = y if task == "classification" else None
    try:
        return train_test_split(rows, test_size=size, stratify=stratify, random_state=seed)
    except ValueError as exc:
        raise FieldError(field, f"cannot split {len(rows)} rows this way ({exc})") from None


def _checked(X: Array, y: Array, x_field: str, y_field: str, x_name: Optional[str] = None,
             y_name: Optional[str] = None) -> tuple[Array, Array]:
    """``(X, y)`` if usable, else ``FieldError`` naming the field; ``x_name``/``y_name`` say what
    the messages call them (a file's features, ...), if not the field itself."""
    x_name, y_name = (x_name + ": " if x_name else ""), (y_name + ": " if y_name else "")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise FieldError(x_field, f"{x_name}expected a non-empty 2-d table (rows, features), got shape {X.shape}")
    if not np.isfinite(X).all():
        row, column = np.argwhere(~np.isfinite(X))[0]
        raise FieldError(x_field, f"{x_name}contains NaN or infinite values (first at row {row}, column {column})")
    if y.ndim != 1 or len(y) != len(X):
        raise FieldError(y_field, f"{y_name}expected one target per row ({len(X)}), got shape {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise FieldError(y_field, f"{y_name}contains NaN or infinite values (first at row "
                                  f"{np.argwhere(~np.isfinite(y))[0][0]})")
    return X, y


def load_features(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Array:
    """Feature rows to predict on, from a .csv whose every column is a feature (a header row is
    optional) or an .npz holding ``X``, of at most ``max_bytes``. ``FieldError`` (field "input")
    names what is wrong and where: the line and column of a bad .csv cell."""
    _check_size(path, "input", max_bytes)
    if os.path.splitext(path)[1].lower() == ".npz":
        [X] = _npz_arrays(path, ("X",), "input", max_bytes)
    else:
        X, _ = _read_csv(path, "input", label=None)
    if X.ndim != 2 or X.dtype.kind not in "iufb":
        raise FieldError("input", f"{path}: expected a 2-d table of numbers, got {X.dtype} of shape {X.shape}")
    return X


def _check_size(path: str, field: str, max_bytes: int) -> None:
    size = os.path.getsize(path)
    if size > max_bytes:
        raise FieldError(field, f"{path} is {size} bytes, over the limit of {max_bytes} ({_LIMIT})")


def _load_npz(path: str, max_bytes: int) -> tuple[Array, Array]:
    X, y = _npz_arrays(path, ("X", "y"), "dataset_id", max_bytes)
    if X.dtype.kind not in "iufb":
        raise FieldError("dataset_id", f"{path}: X must be numeric, got dtype {X.dtype}")
    return _checked(X.astype(np.float64), y, "dataset_id", "dataset_id", f"{path}: X", f"{path}: y")


def _npz_arrays(path: str, keys: Sequence[str], field: str, max_bytes: int) -> list[Array]:
    """The arrays ``keys`` of the .npz archive at ``path`` (never unpickled), if together they
    take at most ``max_bytes`` once read."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FieldError(field, f"{path} is not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FieldError(field, f"{path} holds a single array, not an .npz archive of {' and '.join(keys)}")
    with archive:
        members = cast(zipfile.ZipFile, archive.zip)  # an open NpzFile has its zip file
        missing = [key for key in keys if key not in archive]
        if missing:
            raise FieldError(field, f"{path} lacks array(s) {', '.join(missing)} (needs {' and '.join(keys)})")
        try:
            size: int = sum(_npy_bytes(members, key) for key in keys)
            if size > max_bytes:
                raise FieldError(field, f"{path}: {' and '.join(keys)} take {size} bytes once read, over the "
                                        f"limit of {max_bytes} ({_LIMIT})")
            return [archive[key] for key in keys]
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            if isinstance(exc, FieldError):
                raise
            raise FieldError(field, f"{path}: {' or '.join(keys)} cannot be read ({exc})") from None


def _npy_bytes(archive: zipfile.ZipFile, key: str) -> int:
    """The bytes array ``key`` of an open .npz ``archive`` (a ``zipfile.ZipFile``) takes once
    read, from its header alone."""
    with archive.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)(f)
    return int(np.prod(shape, dtype=object)) * dtype.itemsize


def _load_csv(path: str, target: Optional[str]) -> tuple[Array, Array]:
    X, labels = _read_csv(path, "dataset_id", label=_LAST if target is None else target)
    y = labels.astype(np.float64) if all(_is_number(v) for v in labels) else labels
    return _checked(X, y, "dataset_id", "dataset_id", f"{path}: the features", f"{path}: the target")


_LAST = object()  # _read_csv's label: the last column


def _read_csv(path: str, field: str, label: object) -> tuple[Array, Array]:
    """``(features, labels)`` of a .csv: the column ``label`` (a header name, ``_LAST``, or None
    for no labels) as text, every other column as a float64 table. The header is the first row
    unless it is all numbers; every row must be as wide as the first; an empty or non-numeric
    cell is named by line and column. Two passes: the first sizes the arrays, the second fills
    them row by row."""
    header: Optional[list[str]] = None
    width: Optional[int] = None
    column: Optional[int] = None
    lines, label_length = 0, 1
    for line, row in _csv_reader(path, field):
        if width is None:
            width = len(row)
            header = None if all(_is_number(cell) for cell in row) else row
            column = _label_column(path, header, width, label)
            if header is not None:
                continue
        if len(row) != width:
            raise FieldError(field, f"{path} line {line} has {len(row)} cells, expected {width}")
        lines += 1
        if column is not None:
            label_length = max(label_length, len(row[column].strip()))
    if width is None:
        raise FieldError(field, f"{path} is empty")
    names = header or [f"column {i + 1}" for i in range(width)]
    features = np.empty((lines, width - (column is not None)), dtype=np.float64)
    labels = np.empty(lines if column is not None else 0, dtype=f"<U{label_length}")
    rows = _csv_reader(path, field)
    if header is not None:
        next(rows)
    for index, (line, row) in enumerate(rows):
        values: list[float] = []
        for i, cell in enumerate(cell.strip() for cell in row):
            if not cell:
                raise FieldError(field, f"{path} line {line}, {names[i]!r}: missing value")
            if i == column:
                labels[index] = cell
                continue
            try:
                values.append(float(cell))
            except ValueError:
                raise FieldError(field, f"{path} line {line}, {names[i]!r}: expected a number, "
                                        f"got {cell!r}") from None
        features[index] = values
    return features, labels


def _label_column(path: str, header: Optional[list[str]], width: int, label: object) -> Optional[int]:
    if label is None:
        return None
    if label is _LAST:
        return width - 1
    if header is None or not isinstance(label, str) or label not in header:
        raise FieldError("target", f"column {label!r} not found in the header of {path}")
    return header.index(label)


def _csv_reader(path: str, field: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of each non-empty row of a .csv, read as it goes."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if row:
                    yield line, row
    except UnicodeDecodeError as exc:
        raise FieldError(field, f"{path} is not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise FieldError(field, f"{path} is not a readable .csv ({exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
