"""Schema-driven coercion: turn what a field MEANT into the Python type it needs.

Only the receiver's schema can say what a BEAM value is (``[32, 64]`` and ``" @"`` are one
term), so each helper takes every shape a value can arrive in, stock ErlPort's runtime
types included, and raises ``FieldError`` naming the field (docs/codec.md).
"""
from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping

import numpy as np

from .errors import FieldError
from .terms import ImproperList


def as_text(value, *, field: str) -> str:
    """The text a value meant: str, atom, UTF-8 bytes, charlist or chardata."""
    if isinstance(value, str):
        return str(value)
    if _is_erlport_atom(value):
        # Stock ErlPort keeps the atom's wire bytes, which are Latin-1.
        return value.decode("latin-1")
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return str(value, "utf-8")
        except UnicodeDecodeError:
            raise _expected(field, "UTF-8 text", value) from None
    text = _chardata(value) if isinstance(value, (list, ImproperList)) else None
    if text is None:
        raise _expected(field, "text", value)
    return text


def as_int(value, *, field: str) -> int:
    """An integer: an int, an integral float, or text of a decimal integer."""
    number = _number(value)
    if type(number) is float and number.is_integer():
        return int(number)
    if type(number) is int:
        return number
    if number is None:
        try:
            return int(as_text(value, field=field))
        except ValueError:  # FieldError included
            pass
    raise _expected(field, "an integer", value)


def as_float(value, *, field: str) -> float:
    """A finite float: a number, or text of one."""
    number = _number(value)
    if number is None:
        try:
            number = as_text(value, field=field)
        except FieldError:
            pass
    result = _finite_float(number)
    if result is None:
        raise _expected(field, "a finite number", value)
    return result


def as_bool(value, *, field: str) -> bool:
    """A bool: True/False, or the atom or text ``true``/``false``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    try:
        text = as_text(value, field=field)
    except FieldError:
        text = None
    if text in ("true", "false"):
        return text == "true"
    raise _expected(field, "true or false", value)


def as_int_list(value, *, field: str) -> list:
    """A list of ints: a list, tuple or 1-d array of them, or text/bytes as character codes.

    ``" @"`` (a charlist that arrived as text) and ``b" @"`` both give ``[32, 64]``.
    """
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        return value.tolist()
    if isinstance(value, (bytes, bytearray, memoryview)) and not _is_erlport_atom(value):
        return list(bytes(value))
    if isinstance(value, str):
        return [ord(char) for char in value]
    if isinstance(value, (list, tuple)) and not hasattr(value, "tail"):
        items = [_number(item) for item in value]
        if all(type(item) is int for item in items):
            return items
    raise _expected(field, "a list of integers", value)


def as_float_list(value, *, field: str) -> list:
    """A list of finite floats from a list, tuple or 1-d array of numbers."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
        numbers = value.tolist()
    elif isinstance(value, (list, tuple)) and not hasattr(value, "tail"):
        numbers = [_number(item) for item in value]
    else:
        raise _expected(field, "a list of numbers", value)
    floats = [_finite_float(number) for number in numbers]
    if any(item is None for item in floats):
        raise _expected(field, "a list of finite numbers", value)
    return floats


def as_str_keys(mapping, *, field: str) -> dict:
    """A dict of the same items with every key as text (values untouched).

    Takes any mapping (dict, ``codec.Map``, ErlPort's ``Map``) or a proplist
    (a list of 2-tuples). Keys that become the same text are refused.
    """
    if isinstance(mapping, Mapping):
        pairs = mapping.items()
    elif isinstance(mapping, list) and all(type(p) is tuple and len(p) == 2 for p in mapping):
        pairs = mapping
    else:
        raise _expected(field, "a map or a list of {key, value} pairs", mapping)
    result = {}
    originals = {}
    for key, value in pairs:
        text = as_text(key, field=f"{field} (a key)")
        if text in result:
            raise FieldError(field, f"keys {_show(originals[text])} and {_show(key)} "
                                       f"both read as {text!r}")
        result[text] = value
        originals[text] = key
    return result


def _is_erlport_atom(value) -> bool:
    """Whether ``value`` is stock ErlPort's atom type (a bytes subclass named Atom)."""
    return isinstance(value, bytes) and type(value).__name__ == "Atom"


def _chardata(value):
    """The text of nested code points, strs, UTF-8 binaries and improper tails, or None."""
    pieces = []
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            if not 0 <= item <= 0x10FFFF or 0xD800 <= item <= 0xDFFF:
                return None
            pieces.append(chr(item))
        elif isinstance(item, str):
            pieces.append(str(item))
        elif isinstance(item, (bytes, bytearray, memoryview)) and not _is_erlport_atom(item):
            try:
                pieces.append(str(item, "utf-8"))
            except UnicodeDecodeError:
                return None
        elif isinstance(item, ImproperList):
            todo.append(item.tail)
            todo.extend(reversed(item.items))
        elif isinstance(item, list):
            # ErlPort's ImproperList is a list subclass carrying its tail.
            if hasattr(item, "tail"):
                todo.append(item.tail)
            todo.extend(reversed(item))
        else:
            return None
    return "".join(pieces)


def _number(value):
    """``value`` as a Python int or float if it is a number (not a bool), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return None


def _finite_float(number):
    """``number`` (a number or numeric text) as a finite float, or None."""
    try:
        result = float(number)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def _expected(field: str, expected: str, value) -> FieldError:
    return FieldError(field, f"expected {expected}, got {_show(value)}")


def _show(value) -> str:
    """What arrived: its type and a clipped repr (abridged for deeply nested or huge values)."""
    try:
        text = repr(bytes(value) if isinstance(value, memoryview) else value)
    except RecursionError:  # e.g. 100 000 nested lists
        text = reprlib.repr(value)
    except ValueError:  # an int with more digits than Python prints
        text = "(too long to show)"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"
