"""numpy arrays as the ``{tensor, Type, Shape, Data}`` terms that Elixir's Nx reads.

``Type`` is Nx's ``{Kind, Bits}``, ``Shape`` a tuple of dimensions and ``Data`` the
elements' raw little-endian bytes in row-major order. Decoding wraps the received bytes
without a copy; encoding copies the array's buffer once, into the frame. The supported
types: docs/codec.md.
"""
from __future__ import annotations

import numpy as np

from .errors import DecodeError, EncodeError
from .terms import Atom

TENSOR = Atom("tensor")

# Nx type -> the numpy dtype of its little-endian elements.
_DTYPES = {
    ("f", 16): np.dtype("<f2"), ("f", 32): np.dtype("<f4"), ("f", 64): np.dtype("<f8"),
    ("s", 8): np.dtype("i1"), ("s", 16): np.dtype("<i2"), ("s", 32): np.dtype("<i4"),
    ("s", 64): np.dtype("<i8"),
    ("u", 8): np.dtype("u1"), ("u", 16): np.dtype("<u2"), ("u", 32): np.dtype("<u4"),
    ("u", 64): np.dtype("<u8"),
    ("c", 64): np.dtype("<c8"), ("c", 128): np.dtype("<c16"),
}
# numpy dtype kind -> Nx kind (the bit width is the item size).
_KINDS = {"f": "f", "i": "s", "u": "u", "c": "c"}
SUPPORTED = "f16, f32, f64, s8..s64, u8..u64, c64, c128 (and bool, sent as u8)"


class TensorError(DecodeError):
    """A ``{tensor, Type, Shape, Data}`` term whose parts do not make an array.

    Raised from inside a decoding hook, which does not know the byte offset,
    so ``offset`` is None.
    """

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.offset = None
        self.reason = message


def is_tensor(term) -> bool:
    """Whether ``term`` has the outline of a tensor: ``{tensor, {_, _}, {...}, _}``."""
    return (type(term) is tuple and len(term) == 4 and type(term[0]) is Atom
            and term[0] == TENSOR and type(term[1]) is tuple and len(term[1]) == 2
            and type(term[2]) is tuple)


def from_term(term) -> np.ndarray:
    """The array in a raw-decoded ``{tensor, Type, Shape, Data}`` term."""
    if not is_tensor(term):
        raise TensorError(f"not a {{tensor, {{Kind, Bits}}, Shape, Data}} term: {term!r:.80}")
    return from_parts(term[1], term[2], term[3])


def from_parts(nx_type, shape, data) -> np.ndarray:
    """A read-only array over ``data`` (bytes or a memoryview), without copying it."""
    known = isinstance(nx_type[0], str) and type(nx_type[1]) is int
    dtype = _DTYPES.get(nx_type) if known else None
    if dtype is None:
        kind, bits = nx_type
        why = " (numpy has no bfloat16)" if (kind, bits) == ("bf", 16) else ""
        raise TensorError(f"tensor type {{{kind}, {bits}}} is not supported{why}; "
                          f"supported: {SUPPORTED}")
    if not all(type(size) is int and size >= 0 for size in shape):
        raise TensorError(f"tensor shape {shape!r} is not a tuple of sizes")
    if not isinstance(data, (bytes, memoryview)):
        raise TensorError(f"tensor data must be a binary, not {type(data).__name__}")
    count = 1
    for size in shape:
        count *= size
    if count * dtype.itemsize != len(data):
        raise TensorError(f"tensor data has {len(data)} bytes but shape {shape} of "
                          f"{{{nx_type[0]}, {nx_type[1]}}} needs {count * dtype.itemsize}")
    array = np.frombuffer(data, dtype).reshape(shape)
    array.flags.writeable = False
    return array


def to_term(array: np.ndarray) -> tuple:
    """``(TENSOR, (Kind, Bits), shape, data)`` with ``data`` a byte view of the array.

    C-contiguous little-endian arrays are not copied here; others are copied
    once into that layout. Raises ``EncodeError`` (path ``$``) for other dtypes.
    """
    dtype = array.dtype
    if dtype.kind == "b":
        array = array.view(np.uint8)
        dtype = array.dtype
    kind = _KINDS.get(dtype.kind)
    nx_type = (kind, dtype.itemsize * 8)
    if kind is None or nx_type not in _DTYPES:
        raise EncodeError(f"cannot encode a numpy array of dtype {dtype}: Nx types are "
                          f"{SUPPORTED}", "$")
    wire = _DTYPES[nx_type]
    if dtype != wire or not array.flags.c_contiguous:
        # astype, not ascontiguousarray, which turns 0-d arrays into 1-d ones.
        array = array.astype(wire, order="C")
    data = memoryview(array.reshape(-1).view(np.uint8))
    return TENSOR, (Atom(kind), nx_type[1]), tuple(int(size) for size in array.shape), data
