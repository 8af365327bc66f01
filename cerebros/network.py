"""A numpy network for one Candidate: forward and backward passes, AdamW, early stopping, save/load.

Every unit computes ``activation(dense(normalise(concatenate(inputs))))``: its inputs are
concatenated in the candidate's order (vertical inputs sorted by (level, unit), then lateral
inputs), then batch-normalised, or passed through inverted dropout (training only), or left
as they are, then multiplied by the weights. Batch norm standardises with the batch's
statistics while training and running statistics (momentum 0.9) at inference; it has no
learned scale and shift, which the dense layer right after would absorb anyway. Its
statistics are per feature, so each node's output is standardised once per batch and shared
by all the units it feeds: the same arithmetic as normalising every unit's concatenation,
without repeating it for every consumer. The output unit is the same without activation:
logits for classification (softmax cross-entropy on integer-coded classes), raw values for
regression (mean squared error). The network standardises its inputs, and regression
targets, with the mean and standard deviation of the rows it is fitted on (a constant column
keeps scale 1), so a saved network takes raw features and no other rows' statistics reach
it; the losses reported (``history_``, ``best_val_loss_``) are in standardised units, and
``predict`` returns the targets' original units.

BLAS runs single-threaded inside ``fit`` and predictions: these matrices are small, and
threads fighting for the cores (other trials, other processes) made training 10-40 times
slower when measured on a busy 2-core machine. Parallelism belongs to trials, not matmuls.

Arithmetic is float32 by default (about twice as fast as float64 for these sizes); pass
``dtype=numpy.float64`` for gradient checks. Weights start He-, Glorot- or LeCun-normal
as the activation suits (``cerebros.activations``), the output unit's scaled down by
``OUTPUT_INIT_SCALE``; biases at zero. The learning rate halves whenever the validation
loss has not improved for ``patience // PLATEAU_STEPS`` epochs (reduce-on-plateau), and
training stops after ``patience`` such epochs. An epoch is one pass over the training rows in
mini-batches of the candidate's ``batch_size``, but in no more than ``MAX_BATCHES_PER_EPOCH``
and no fewer than ``MIN_BATCHES_PER_EPOCH`` (of at least ``MIN_BATCH_ROWS`` rows) batches.
"""
import functools
import json
import math
import os
import time
from typing import Any, Callable, Iterator, Literal, Optional, TypeVar, Union, cast, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from threadpoolctl import ThreadpoolController

from codec.errors import FieldError

from . import batchnorm
from .activations import ACTIVATIONS
from .optim import AdamW
from .space import Candidate

TASKS = ("classification", "regression")
BN_EPS = 1e-5
BN_MOMENTUM = 0.9
EVAL_CHUNK = 8192  # rows per forward pass at inference, to bound memory
# An epoch has at most this many mini-batches: on thousands of rows a candidate's small batch
# size grows to rows / MAX_BATCHES_PER_EPOCH, since each batch costs a fixed Python and numpy
# overhead and an optimiser step (docs/benchmarks.md, trial cost). Bounding the rows of an
# epoch instead left networks short of training: 0.7 points of accuracy lost on that benchmark.
# 16 trained the benchmark's trials faster at an equal score, but cost searches on the larger
# datasets of the NAS table (randhie_profiles, friedman1) a little.
MAX_BATCHES_PER_EPOCH = 32
# And at least this many, of at least MIN_BATCH_ROWS rows: on a hundred rows a large batch size
# made an epoch one or two optimiser steps, and most networks with no hidden level were still
# improving when their epochs ran out (docs/benchmarks.md, the simple models).
MIN_BATCHES_PER_EPOCH = 8
MIN_BATCH_ROWS = 8
_FORMAT = "cerebros-network/3"
OUTPUT_INIT_SCALE = 0.1  # the output starts near 0 (the mean target / uniform classes)
PLATEAU_STEPS = 3  # the learning rate halves this many times over a patience without progress


_THREADPOOLS = ThreadpoolController()  # found once: a fresh scan per call costs about 1 ms
Array = NDArray[Any]
# What training a layer keeps for its backward pass: its input, its activation's slope at the
# pre-activation (None for the output unit) and its dropout mask (or None).
_Cache = tuple[Array, Optional[Array], Optional[Array]]
# ``_forward``'s state for ``_backward``: the layers' caches, each standardised node output and
# each node's 1 / batch standard deviation.
_State = tuple[list[_Cache], dict[int, Array], dict[int, Array]]
_Method = TypeVar("_Method", bound=Callable[..., Any])


def _single_threaded_blas(method: _Method) -> _Method:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _THREADPOOLS.limit(limits=1, user_api="blas"):
            return method(*args, **kwargs)
    return cast(_Method, wrapper)  # functools.wraps keeps the signature


class _Layer:
    """One unit: how its inputs are routed, its shapes, and (once ``_build`` lays them out) its arrays.

    ``W`` and ``b`` are views into the network's one flat
    parameter vector; ``grad[name]`` the matching views into the flat gradient vector.
    """

    W: Array
    b: Array

    def __init__(self, sources: list[int], widths: list[int], fan_out: int, activation: Optional[str]) -> None:
        self.sources = sources
        self.offsets = np.cumsum([0] + widths)
        self.fan_in = int(self.offsets[-1])
        self.fan_out = fan_out
        self.activation = activation
        # gradients for inputs that are only the raw features are never needed
        self.needs_input_grad = any(s != 0 for s in sources)
        # where each non-input source's gradient sits in the input gradient's columns
        self.slices = [(s, int(lo), int(hi)) for s, lo, hi in zip(sources, self.offsets[:-1], self.offsets[1:])
                       if s != 0]
        self.grad: dict[str, Array] = {}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.fan_in, self.fan_out), "b": (self.fan_out,)}

    def initialize(self, rng: np.random.Generator) -> None:
        gain = ACTIVATIONS[self.activation][2] if self.activation else "glorot"
        std = {"he": math.sqrt(2.0 / self.fan_in), "lecun": math.sqrt(1.0 / self.fan_in),
               "glorot": math.sqrt(2.0 / (self.fan_in + self.fan_out))}[gain]
        if self.activation is None:
            std *= OUTPUT_INIT_SCALE
        self.W[...] = rng.standard_normal(self.W.shape) * std
        self.b[...] = 0

    def param_names(self) -> tuple[str, ...]:
        return tuple(self.shapes())


class CerebrosNetwork:
    """A trainable network built from a ``Candidate`` (scikit-learn style: ``fit`` then ``predict``).

    ``task`` is "classification" (labels of any ints or strings, ``classes_`` sorted) or
    "regression" (``y`` 1-d or 2-d). ``random_state`` seeds weight initialisation, shuffling and
    dropout: the same seed and data give the same weights, bit for bit.
    """

    def __init__(self, candidate: Candidate, *, task: str = "classification", random_state: Optional[int] = None,
                 dtype: DTypeLike = np.float32) -> None:
        if not isinstance(candidate, Candidate):
            raise TypeError(f"candidate: expected a cerebros.space.Candidate, got {type(candidate).__name__}")
        if task not in TASKS:
            raise ValueError(f"task: must be one of {', '.join(TASKS)}, got {task!r}")
        checked = np.dtype(dtype)
        if checked not in (np.float32, np.float64):
            raise ValueError(f"dtype: must be float32 or float64, got {checked}")
        self.candidate = candidate
        self.task = task
        self.random_state = random_state
        self.dtype: np.dtype[Any] = checked
        self._rng = np.random.default_rng(random_state)
        self._layers: list[_Layer] = []  # empty until built: a built network has its output layer
        self.history_: list[dict[str, float]] = []
        self.n_epochs_trained_ = 0
        self.best_epoch_ = 0
        self.best_val_loss_ = math.inf
        self.stopped_reason_: Optional[str] = None

    # ---- training ---------------------------------------------------------------------

    @_single_threaded_blas
    def fit(self, X: ArrayLike, y: ArrayLike, X_val: Optional[ArrayLike] = None, y_val: Optional[ArrayLike] = None,
            *, epochs: Optional[int] = None, warm_start: bool = False, deadline: Optional[float] = None,
            should_stop: Optional[Callable[[], bool]] = None,
            on_epoch: Optional[Callable[[int, float, float], None]] = None) -> "CerebrosNetwork":
        """Train with mini-batch AdamW, keeping the weights of the epoch with the lowest validation loss.

        - ``X_val``/``y_val``: the early-stopping split; without them the training loss is watched.
        - ``epochs``: epochs to train in this call (default ``candidate.epochs``); training stops
          earlier after ``candidate.patience`` epochs without improvement.
        - ``warm_start``: continue from the current weights, optimiser state (learning-rate
          reductions included) and best-so-far, with the patience count restarted; without
          it, or on the first call, training starts afresh from ``random_state``, so refitting
          gives the same network as a new object would.
        - ``deadline`` (a ``time.monotonic()`` value) and ``should_stop()`` (the caller's stop
          signal: a cancellation, or the end of a search; reason "stopped") are checked after
          every batch; the epoch then ends early, is evaluated, and training stops.
        - ``on_epoch(epoch, train_loss, val_loss)`` is called after each epoch (numbered from 1
          across warm starts).

        Afterwards: ``history_`` (one dict per epoch: epoch, train_loss, val_loss),
        ``best_epoch_``, ``best_val_loss_`` (inf and ``best_epoch_`` 0 if no epoch gave a finite
        loss: the initial weights are kept), ``n_epochs_trained_`` (all calls),
        ``stopped_reason_`` ("completed", "early_stopping", "deadline", "stopped", "diverged").
        """
        rows = self._check_X(X, "X", min_rows=1)
        if not (warm_start and self._layers):
            self._setup(rows, y)
        X = self._standardised(rows)
        targets = self._encode(y, len(X), "y")
        if X_val is None:
            if y_val is not None:
                raise ValueError("y_val: given without X_val")
            X_val, val_targets = X, targets
        elif y_val is None:
            raise ValueError("X_val: given without y_val")
        else:
            X_val = self._standardised(self._check_X(X_val, "X_val", min_rows=1))
            val_targets = self._encode(y_val, len(X_val), "y_val")
        epochs = self.candidate.epochs if epochs is None else int(epochs)
        if epochs < 1:
            raise ValueError(f"epochs: must be >= 1, got {epochs}")

        n = len(X)
        bounds = batch_bounds(n, self.candidate.batch_size)
        since_best = 0
        self.stopped_reason_ = "completed"
        for _ in range(epochs):
            order = self._rng.permutation(n)
            X_epoch, t_epoch = X[order], targets[order]
            total, seen = 0.0, 0
            reason: Optional[str] = None
            for start, stop in zip(bounds[:-1], bounds[1:]):
                loss = self._loss_and_grads(X_epoch[start:stop], t_epoch[start:stop])
                if not math.isfinite(loss):
                    reason = "diverged"
                    break
                self._optimizer.step(self._grads)
                total += loss * (stop - start)
                seen += stop - start
                if deadline is not None and time.monotonic() >= deadline:
                    reason = "deadline"
                elif should_stop is not None and should_stop():
                    reason = "stopped"
                if reason:
                    break
            self.n_epochs_trained_ += 1
            train_loss = total / seen if seen else math.nan
            val_loss = math.nan if reason == "diverged" else self._eval_loss(X_val, val_targets)
            epoch = self.n_epochs_trained_
            self.history_.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if on_epoch is not None:
                on_epoch(epoch, train_loss, val_loss)
            if val_loss < self.best_val_loss_:
                self.best_val_loss_, self.best_epoch_ = val_loss, epoch
                self._best_state = self._copy_state()
                since_best = 0
            else:
                since_best += 1
                if since_best % max(1, self.candidate.patience // PLATEAU_STEPS) == 0:
                    self._optimizer.learning_rate *= 0.5
            if reason is None and since_best >= self.candidate.patience:
                reason = "early_stopping"
            if reason:
                self.stopped_reason_ = reason
                break
        self._restore_state(self._best_state)
        return self

    def _setup(self, X: Array, y: ArrayLike) -> None:
        """Fresh weights and optimiser for data shaped like ``X``, ``y``; fixes the input scaling,
        and the classes or the target scaling."""
        self._rng = np.random.default_rng(self.random_state)
        self._x_mean, self._x_scale = _mean_and_scale(X)
        if self.task == "classification":
            labels = self._check_y(y, len(X), "y", allow_2d=False)
            self.classes_ = np.unique(labels)
            if len(self.classes_) < 2:
                raise ValueError(f"y: classification needs at least 2 classes, got {self.classes_.tolist()!r}")
            n_outputs = len(self.classes_)
        else:
            values = self._check_y(y, len(X), "y", allow_2d=True).astype(np.float64)
            self._y_ndim = values.ndim
            y2 = values.reshape(len(values), -1)
            self._y_mean, self._y_scale = _mean_and_scale(y2)
            n_outputs = y2.shape[1]
        self._build(n_outputs)
        self.history_ = []
        self.n_epochs_trained_ = 0
        self.best_epoch_ = 0
        self.best_val_loss_ = math.inf
        self._best_state = self._copy_state()

    def _build(self, n_outputs: int) -> None:
        """Create the layers in topological order (level by level), their flat storage, and the optimiser."""
        c = self.candidate
        node_of = {(0, 0): 0}
        widths = [c.n_inputs]
        self._layers = []
        units: list[tuple[int, int, tuple[tuple[int, int], ...], tuple[int, ...], int, Optional[str]]] = [
            (k, i, unit.inputs, unit.lateral_inputs, unit.neurons, c.activation)
            for k, level in enumerate(c.levels, start=1) for i, unit in enumerate(level)]
        units.append((len(c.levels) + 1, 0, c.output_inputs, (), n_outputs, None))
        for k, i, inputs, lateral, fan_out, activation in units:
            sources = [node_of[ref] for ref in inputs] + [node_of[(k, m)] for m in lateral]
            self._layers.append(_Layer(sources, [widths[s] for s in sources], fan_out, activation))
            node_of[(k, i)] = len(widths)
            widths.append(fan_out)
        self.n_outputs_ = n_outputs
        self._dropout_inputs = sum(layer.fan_in for layer in self._layers)
        self._batchnorm = c.normalization == "batchnorm"
        # running statistics of every node that feeds units (all but the output), for inference
        self._running: list[tuple[Array, Array]] = [(np.zeros(w, self.dtype), np.ones(w, self.dtype))
                                                    for w in widths[:-1]] if self._batchnorm else []
        layout = self._layout()
        n_weights = layout[len(self._layers) - 1][3]  # where the last weight matrix stops
        self._params = np.empty(layout[-1][3], self.dtype)
        self._grads = np.empty_like(self._params)
        self._bind()
        for layer in self._layers:
            layer.initialize(self._rng)
        self._optimizer = AdamW(self._params, n_weights, learning_rate=c.learning_rate, weight_decay=c.weight_decay)

    def _layout(self) -> list[tuple[_Layer, str, int, int]]:
        """``(layer, name, start, stop)`` of every parameter in the flat vectors. All weight
        matrices come first, so weight decay touches one leading slice."""
        layout: list[tuple[_Layer, str, int, int]] = []
        start = 0
        for name in ("W", "b"):
            for layer in self._layers:
                stop = start + math.prod(layer.shapes()[name])
                layout.append((layer, name, start, stop))
                start = stop
        return layout

    def _bind(self) -> None:
        """Point every layer's parameter and gradient arrays at their slices of the flat vectors."""
        for layer, name, start, stop in self._layout():
            shape = layer.shapes()[name]
            setattr(layer, name, self._params[start:stop].reshape(shape))
            layer.grad[name] = self._grads[start:stop].reshape(shape)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickle copies views as separate arrays: re-point them, or training would update orphans
        self.__dict__.update(state)
        if self._layers:
            self._bind()

    # ---- forward and backward -----------------------------------------------------------

    def _forward(self, X: Array, train: bool) -> tuple[Array, _State]:
        """Run every layer; returns the output and, when training, what backward needs:
        ``(per-layer (x, activation slope or None, dropout mask or None), {node: standardised output},
        {node: 1 / batch std})``."""
        outs = [X]
        caches: list[_Cache] = []
        normalised: dict[int, Array] = {}
        inv_std: dict[int, Array] = {}
        dropout = train and self.candidate.normalization == "dropout" and self.candidate.dropout > 0.0
        masks = self._dropout_masks(len(X)) if dropout else None
        used = 0
        for layer in self._layers:
            if self._batchnorm:
                for s in layer.sources:
                    if s not in normalised:
                        normalised[s] = self._standardise(s, outs[s], train, inv_std)
                parts = [normalised[s] for s in layer.sources]
            else:
                parts = [outs[s] for s in layer.sources]
            x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            mask: Optional[Array] = None
            if masks is not None:
                mask = masks[used:used + x.size].reshape(x.shape)
                used += x.size
                x = x * mask
            z = x @ layer.W
            z += layer.b
            slope: Optional[Array] = None
            if layer.activation is None:
                a = z
            elif train:
                a, slope = ACTIVATIONS[layer.activation][1](z)
            else:
                a = ACTIVATIONS[layer.activation][0](z)
            if train:
                caches.append((x, slope, mask))
            outs.append(a)
        return outs[-1], (caches, normalised, inv_std)

    def _dropout_masks(self, rows: int) -> Array:
        """Every layer's inverted-dropout mask for a batch of ``rows``, drawn at once, flat: each
        entry is 0, or 1 / keep with probability keep = 1 - ``candidate.dropout``.

        Drawn from the generator's raw bits, 8 per entry, so keep is the multiple of 1/256
        nearest the asked one (within 1/512 of it; 1/256 where it is smaller) and the scale is
        exactly 1 / that keep. Drawing the bits is most of the cost: 8 per entry took 0.6 times
        as long as 16, and drawing a float per entry and choosing with ``np.where``, a layer at
        a time, took 4 times as long as the layer's matrix product.
        """
        count = rows * self._dropout_inputs
        kept = max(1, round((1.0 - self.candidate.dropout) * 256))
        draws = self._rng.bit_generator.random_raw((count + 7) // 8).view(np.uint8)[:count]
        return np.multiply(draws < kept, self.dtype.type(256 / kept), dtype=self.dtype)

    def _standardise(self, node: int, values: Array, train: bool, inv_std: dict[int, Array]) -> Array:
        """Node ``node``'s output standardised: by batch statistics (updating the running ones)
        when training, by the running statistics otherwise."""
        running_mean, running_var = self._running[node]
        if not train:
            return (values - running_mean) * (1.0 / np.sqrt(running_var + BN_EPS))
        out = np.empty(values.shape, self.dtype)
        inv_std[node] = np.empty(values.shape[1], self.dtype)
        # running = momentum * running + (1 - momentum) * batch
        batchnorm.FORWARD(values, out, inv_std[node], running_mean, running_var, 1 - BN_MOMENTUM, BN_EPS)
        return out

    def _backward(self, d_out: Array, state: _State) -> None:
        """Write every parameter's gradient into ``layer.grad`` given d loss / d output."""
        caches, normalised, inv_std = state
        # the bias gradient, a column sum, as a product with ones: 2-3x faster than np.add.reduce
        ones = np.ones(len(d_out), self.dtype)
        d_nodes: list[Optional[Array]] = [None] * (len(self._layers) + 1)
        d_nodes[-1] = d_out
        for index in range(len(self._layers) - 1, -1, -1):
            layer, node = self._layers[index], index + 1
            x, slope, mask = caches[index]
            dz = cast(Array, d_nodes[node])  # set: every node feeds a later one, told before it
            if node in normalised:
                # all consumers are done: d_nodes[node] is d loss / d standardised output
                d_values = np.empty(dz.shape, self.dtype)
                batchnorm.BACKWARD(dz, normalised[node], inv_std[node], d_values)
                dz = d_values
            if slope is not None:
                dz = np.multiply(dz, slope, out=slope)  # the slope is used once: its memory is free
            np.matmul(x.T, dz, out=layer.grad["W"])
            np.matmul(ones, dz, out=layer.grad["b"])
            if layer.needs_input_grad:
                dx = dz @ layer.W.T
                if mask is not None:
                    dx *= mask
                for s, lo, hi in layer.slices:
                    gradient = d_nodes[s]
                    if gradient is None:
                        d_nodes[s] = dx[:, lo:hi] if len(layer.slices) == 1 else dx[:, lo:hi].copy()
                    else:
                        gradient += dx[:, lo:hi]

    def _loss_and_grads(self, X: Array, targets: Array) -> float:
        """Training-mode loss; the gradients land in ``self._grads`` (through the layers' views)."""
        out, caches = self._forward(X, train=True)
        loss, d_out = self._loss(out, targets, with_grad=True)
        self._backward(d_out, caches)
        return loss

    @overload
    def _loss(self, out: Array, targets: Array, with_grad: Literal[False] = False) -> float: ...

    @overload
    def _loss(self, out: Array, targets: Array, with_grad: Literal[True]) -> tuple[float, Array]: ...

    def _loss(self, out: Array, targets: Array, with_grad: bool = False) -> Union[float, tuple[float, Array]]:
        """Mean loss over rows (and outputs, for regression), and optionally its gradient."""
        n = len(out)
        if self.task == "classification":
            # few and in-place passes: on a batch of a hundred rows, calls cost more than arithmetic
            log_p = out - np.maximum.reduce(out, axis=1, keepdims=True)
            log_p -= np.log(np.add.reduce(np.exp(log_p), axis=1, keepdims=True))
            picked = (np.arange(n), targets)
            loss = -float(np.add.reduce(log_p[picked], dtype=np.float64)) / n
            if not with_grad:
                return loss
            d_out = np.exp(log_p, out=log_p)
            d_out[picked] -= 1.0
            return loss, np.divide(d_out, n, out=d_out)
        diff = out - targets
        loss = float((diff.astype(np.float64) ** 2).mean())
        return (loss, diff * (2.0 / diff.size)) if with_grad else loss

    def _eval_loss(self, X: Array, targets: Array) -> float:
        total: float = sum(self._loss(self._forward(X[i:i + EVAL_CHUNK], train=False)[0], targets[i:i + EVAL_CHUNK])
                    * len(targets[i:i + EVAL_CHUNK]) for i in range(0, len(X), EVAL_CHUNK))
        return total / len(X)

    @_single_threaded_blas
    def loss_and_gradients(self, X: ArrayLike, y: ArrayLike) -> tuple[float, dict[str, Array]]:
        """Training-mode loss on ``(X, y)`` and its gradient for every parameter, keyed like
        ``parameters()`` (for gradient checks; batch-norm running statistics are updated)."""
        self._require_fitted()
        rows = self._check_X(X, "X")
        loss = self._loss_and_grads(self._standardised(rows), self._encode(y, len(rows), "y"))
        return loss, {f"{i}.{name}": layer.grad[name].copy()
                      for i, layer in enumerate(self._layers) for name in layer.param_names()}

    def parameters(self) -> dict[str, Array]:
        """The live trainable arrays (views: writing to them changes the network), ``{"<layer>.<name>": array}``."""
        self._require_fitted()
        return {f"{i}.{name}": getattr(layer, name)
                for i, layer in enumerate(self._layers) for name in layer.param_names()}

    def matrix_products(self) -> list[tuple[Array, bool]]:
        """Per layer, in order: its weight matrix (a live view) and whether a training step also
        multiplies by it for the layer's input gradient (not when only raw features feed it):
        the matrix products a mini-batch costs, for accounting where training time goes."""
        self._require_fitted()
        return [(layer.W, layer.needs_input_grad) for layer in self._layers]

    # ---- prediction -------------------------------------------------------------------

    @_single_threaded_blas
    def _output(self, X: ArrayLike) -> Array:
        self._require_fitted()
        rows = self._standardised(self._check_X(X, "X"))
        chunks = [self._forward(rows[i:i + EVAL_CHUNK], train=False)[0] for i in range(0, len(rows), EVAL_CHUNK)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.n_outputs_), self.dtype)

    def predict_proba(self, X: ArrayLike) -> Array:
        """Class probabilities, shape (n, len(classes_)), columns in ``classes_`` order."""
        if self.task != "classification":
            raise ValueError("predict_proba: only for task='classification'")
        out = self._output(X).astype(np.float64)
        out -= out.max(axis=1, keepdims=True)
        np.exp(out, out=out)
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, X: ArrayLike) -> Array:
        """Class labels (classification) or values in the target's units and shape (regression)."""
        out = self._output(X)
        if self.task == "classification":
            return self.classes_[np.argmax(out, axis=1)]
        values = out.astype(np.float64) * self._y_scale + self._y_mean
        return values[:, 0] if self._y_ndim == 1 else values

    # ---- persistence ------------------------------------------------------------------

    def save(self, path: Union[str, "os.PathLike[str]"]) -> tuple[str, str]:
        """Write ``path`` (.npz added if missing: weights and metadata, loadable without pickle) and
        a readable ``.json`` beside it (architecture, hyper-parameters, training summary).
        Returns both paths."""
        self._require_fitted()
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "candidate": self.candidate.to_dict(),
            "task": self.task,
            "dtype": self.dtype.name,
            "random_state": self.random_state if isinstance(self.random_state, int) else None,
            "n_outputs": self.n_outputs_,
            "x_mean": self._x_mean.tolist(),
            "x_scale": self._x_scale.tolist(),
            "best_epoch": self.best_epoch_,
            "best_val_loss": _finite_or_none(self.best_val_loss_),
            "n_epochs_trained": self.n_epochs_trained_,
            "stopped_reason": getattr(self, "stopped_reason_", None),
            "history": [{k: _finite_or_none(v) for k, v in h.items()} for h in self.history_],
        }
        if self.task == "classification":
            meta["classes"] = self.classes_.tolist()
        else:
            meta.update(y_mean=self._y_mean.tolist(), y_scale=self._y_scale.tolist(), y_ndim=self._y_ndim)
        text = json.dumps(meta, indent=1)
        arrays: dict[str, Any] = dict(self._named_state())
        with open(path, "wb") as f:
            np.savez(f, __meta__=np.array(text), **arrays)
        json_path = path[:-4] + ".json"
        with open(json_path, "w") as f:
            f.write(text)
        return path, json_path

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "CerebrosNetwork":
        """Rebuild a network written by ``save``; it predicts exactly as the saved one did."""
        path = os.fspath(path)
        with np.load(path, allow_pickle=False) as data:
            try:
                meta = json.loads(str(data["__meta__"]))
            except KeyError:
                raise ValueError(f"{path}: not a saved CerebrosNetwork (no __meta__ entry)") from None
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path}: unknown format {meta.get('format')!r}, expected {_FORMAT!r}")
            net = cls(Candidate.from_dict(meta["candidate"]), task=meta["task"],
                      random_state=meta["random_state"], dtype=meta["dtype"])
            net._build(meta["n_outputs"])
            for key, array in net._named_state():
                if key not in data or data[key].shape != array.shape:
                    raise ValueError(f"{path}: array {key!r} is missing or has the wrong shape")
                array[...] = data[key]
        net._x_mean, net._x_scale = np.array(meta["x_mean"]), np.array(meta["x_scale"])
        if net.task == "classification":
            net.classes_ = np.array(meta["classes"])
        else:
            net._y_mean = np.array(meta["y_mean"])
            net._y_scale = np.array(meta["y_scale"])
            net._y_ndim = meta["y_ndim"]
        net.history_ = [{k: math.nan if v is None else v for k, v in h.items()} for h in meta["history"]]
        net.best_epoch_ = meta["best_epoch"]
        net.best_val_loss_ = math.inf if meta["best_val_loss"] is None else meta["best_val_loss"]
        net.n_epochs_trained_ = meta["n_epochs_trained"]
        net.stopped_reason_ = meta["stopped_reason"]
        return net

    # ---- state and input checks ---------------------------------------------------------

    def _named_state(self) -> Iterator[tuple[str, Array]]:
        """Every array a saved model needs, by name: parameters, then batch-norm running statistics."""
        for i, layer in enumerate(self._layers):
            for name in layer.param_names():
                yield f"{i}.{name}", getattr(layer, name)
        for node, (mean, var) in enumerate(self._running):
            yield f"node{node}.running_mean", mean
            yield f"node{node}.running_var", var

    def _running_stats(self) -> list[Array]:
        return [array for pair in self._running for array in pair]

    def _copy_state(self) -> list[Array]:
        return [self._params.copy()] + [a.copy() for a in self._running_stats()]

    def _restore_state(self, state: list[Array]) -> None:
        for target, saved in zip([self._params] + self._running_stats(), state):
            target[...] = saved

    def _require_fitted(self) -> None:
        if not self._layers:
            raise ValueError("this CerebrosNetwork is not fitted yet: call fit first")

    def _check_X(self, X: ArrayLike, name: str, min_rows: int = 0) -> Array:
        try:
            X = np.asarray(X)
        except ValueError:  # ragged rows
            raise FieldError(name, "expected a 2-d array (rows, features): its rows differ in length") from None
        if X.shape == (0,):  # no rows at all: ``[]`` has no row to show the width
            X = X.reshape(0, self.candidate.n_inputs)
        if X.ndim != 2 or len(X) < min_rows:
            raise FieldError(name, f"expected a 2-d array (rows, features) with at least {min_rows} row(s), "
                                   f"got shape {X.shape}")
        if X.shape[1] != self.candidate.n_inputs:
            raise FieldError(name, f"the model takes {self.candidate.n_inputs} features, got {X.shape[1]}")
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
            raise FieldError(name, f"expected real numbers, got dtype {X.dtype}")
        rows = X.astype(self.dtype, copy=False)
        if not np.isfinite(rows).all():
            raise FieldError(name, "contains NaN or infinite values")
        return rows

    def _standardised(self, X: Array) -> Array:
        return ((X - self._x_mean) / self._x_scale).astype(self.dtype)

    def _check_y(self, y: ArrayLike, n_rows: int, name: str, allow_2d: bool) -> Array:
        values = np.asarray(y)
        if values.ndim not in ((1, 2) if allow_2d else (1,)) or len(values) != n_rows:
            raise FieldError(name, f"expected {'1-d or 2-d' if allow_2d else '1-d'} with {n_rows} rows, "
                                   f"got shape {values.shape}")
        return values

    def _encode(self, y: ArrayLike, n_rows: int, name: str) -> Array:
        """Targets as the loss wants them: class indices, or standardised 2-d values."""
        if self.task == "classification":
            labels = self._check_y(y, n_rows, name, allow_2d=False)
            index = np.searchsorted(self.classes_, labels)
            index = np.minimum(index, len(self.classes_) - 1)
            unknown = self.classes_[index] != labels
            if np.any(unknown):
                raise FieldError(name, f"label {labels[unknown][0].tolist()!r} was not among the training classes "
                                       f"{self.classes_.tolist()!r}")
            return index
        values = self._check_y(y, n_rows, name, allow_2d=True).astype(np.float64).reshape(n_rows, -1)
        if values.shape[1] != self.n_outputs_:
            raise FieldError(name, f"expected {self.n_outputs_} target column(s), got {values.shape[1]}")
        if not np.isfinite(values).all():
            raise FieldError(name, "contains NaN or infinite values")
        return ((values - self._y_mean) / self._y_scale).astype(self.dtype)


def batch_bounds(rows: int, batch_size: int) -> Array:
    """Where an epoch over ``rows`` rows cuts its mini-batches: batches of ``batch_size`` rows,
    larger ones when that size would make more than ``MAX_BATCHES_PER_EPOCH``, smaller ones when it
    would make fewer than ``MIN_BATCHES_PER_EPOCH`` (but none under ``MIN_BATCH_ROWS`` rows, unless
    ``rows`` is); near-equal."""
    n_batches = min(math.ceil(rows / min(batch_size, rows)), MAX_BATCHES_PER_EPOCH)
    n_batches = max(n_batches, min(MIN_BATCHES_PER_EPOCH, rows // MIN_BATCH_ROWS))
    return np.linspace(0, rows, n_batches + 1).round().astype(int)


def _mean_and_scale(values: ArrayLike) -> tuple[Array, Array]:
    """Per-column mean and standard deviation of a 2-d array (1 where a column is constant)."""
    table = np.asarray(values, dtype=np.float64)
    std = table.std(axis=0)
    return table.mean(axis=0), np.where(std > 0, std, 1.0)


def _finite_or_none(value: object) -> Optional[float]:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None
