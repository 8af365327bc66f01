"""Which implementation the suite is testing: the compiled core unless the fallback is asked for.

``scripts/test`` runs the codec tests twice, once as installed (the C core)
and once with ``BEAM_NAS_PURE_PYTHON=1`` (the pure-Python fallback), so a
core that failed to build must not pass unnoticed.
"""
import codec
from codec import core, decoder, encoder


def test_the_compiled_core_is_built_and_in_use_unless_the_fallback_is_asked_for():
    if core.PURE_PYTHON:
        assert (core.DECODER, core.ENCODER) == ("python", "python")
        assert codec.decode is decoder.decode and codec.encode is encoder.encode
    else:
        assert (core.DECODER, core.ENCODER) == ("c", "c"), (
            "the compiled codec core is not built: install a C compiler and the Python "
            "headers, then `pip install -e .` again (or set BEAM_NAS_PURE_PYTHON=1)")
        assert codec.decode is core._cdecode.decode and codec.encode is core._cencode.encode
