"""The Erlang External Term Format: an exact, hostile-input-safe codec.

``decode``/``decode_from`` read ETF into Python terms, ``encode`` writes them;
``codec.terms`` holds the types for Erlang terms that Python lacks.
"""
from .core import decode, decode_from, encode
from .decoder import DEFAULT_MAX_INFLATED_SIZE
from .errors import DecodeError, EncodeError, FieldError
from .terms import (
    Atom,
    BitBinary,
    Export,
    Fun,
    ImproperList,
    Map,
    Opaque,
    Pid,
    Port,
    Reference,
    exact_key,
)

__all__ = [
    "DEFAULT_MAX_INFLATED_SIZE", "decode", "decode_from", "encode", "DecodeError",
    "EncodeError", "FieldError", "Atom", "BitBinary", "Export", "Fun", "ImproperList", "Map", "Opaque",
    "Pid", "Port", "Reference", "exact_key",
]

from .coerce import (as_bool, as_float, as_float_list, as_int, as_int_list,
                     as_str_keys, as_text)
from . import plain, tensor

__all__ += ["as_bool", "as_float", "as_float_list", "as_int", "as_int_list",
            "as_str_keys", "as_text", "plain", "tensor"]
