"""The decode and encode functions in use: the compiled core when built, else pure Python.

``codec.decoder`` and ``codec.encoder`` are the pure-Python reference
implementations; ``codec._cdecode`` and ``codec._cencode`` are their C
counterparts with the same signatures, results and errors (the one test
suite runs against both). Setting ``BEAM_NAS_PURE_PYTHON=1`` in the
environment forces the pure-Python ones. ``PLAIN`` is the compiled core's
(decode, decode_from, encode) of ``codec.plain``, or None.
"""
from __future__ import annotations

import os

from . import decoder, encoder

PURE_PYTHON = os.environ.get("BEAM_NAS_PURE_PYTHON", "") not in ("", "0")

decode, decode_from, DECODER = decoder.decode, decoder.decode_from, "python"
encode, ENCODER = encoder.encode, "python"
PLAIN = None

if not PURE_PYTHON:
    try:
        from . import _cdecode
    except ImportError:
        pass
    else:
        decode, decode_from, DECODER = _cdecode.decode, _cdecode.decode_from, "c"
    try:
        from . import _cencode
    except ImportError:
        pass
    else:
        encode, ENCODER = _cencode.encode, "c"
    if DECODER == ENCODER == "c":
        PLAIN = (_cdecode.plain_decode, _cdecode.plain_decode_from, _cencode.plain_encode)
