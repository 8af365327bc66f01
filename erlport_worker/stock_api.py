"""Stock ErlPort's Python API (``erlport.erlang``), served by this worker.

Code written for stock ErlPort talks to Erlang through ``from erlport.erlang
import call, cast, self, ...``; stock's runtime fills those names in when it
starts. This worker does the same, at start-up, in whichever ``erlport``
package is importable: stock's own when it is on the path (stock's Erlang
side puts it on ``PYTHONPATH``), otherwise the stand-in in ``stock_shim``,
which the worker appends to ``sys.path`` so that a real one always wins.
Signatures, checks and exceptions are stock's: atoms for module and function,
``erlport.erlang.CallError`` when Erlang fails, hooks that take one argument.
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from codec import Atom
from codec.stock import stock_kind

from . import api

SHIM_PATH = str(Path(__file__).resolve().parent / "stock_shim")
"""The folder holding the stand-in ``erlport`` package."""

API = ("call", "cast", "self", "make_ref", "set_encoder", "set_decoder",
       "set_message_handler", "set_default_encoder", "set_default_decoder",
       "set_default_message_handler")

_erlang = None
_self_pid = None


def install():
    """Put this API into ``erlport.erlang``; return the ``erlport.erlterms`` module in use."""
    global _erlang
    _erlang = importlib.import_module("erlport.erlang")
    for name in API:
        setattr(_erlang, name, globals()[name])
    return importlib.import_module("erlport.erlterms")


def call(module, function, args):
    """``module:function(*args)`` in a new Erlang process; raise CallError if it fails.

    ``module`` and ``function`` are atoms; each argument goes through the
    encoder hook and the result through the decoder hook.
    """
    module_name, function_name = _atom_name(module), _atom_name(function)
    if not isinstance(args, list):
        raise ValueError(args)
    worker = api.running_worker()
    if worker.encoder is not None:
        args = [worker.encoder(arg) for arg in args]
    result = _outcome(worker.call_erlang(module_name, function_name, list(args), "N"))
    return result if worker.decoder is None else worker.decoder(result)


def cast(pid, message):
    """Send ``message`` to ``pid`` (or a registered name, as an atom); returns at once."""
    api.running_worker().cast(pid, message)


def self():
    """The pid of the Erlang process that owns this worker's port (asked once, then kept)."""
    global _self_pid
    if _self_pid is None:
        _self_pid = _outcome(api.running_worker().call_erlang(
            Atom("erlang"), Atom("self"), [], "L"))
    return _self_pid


def make_ref():
    """A new Erlang reference."""
    return _outcome(api.running_worker().call_erlang(
        Atom("erlang"), Atom("make_ref"), [], "L"))


def set_encoder(encoder):
    """Pass every call's result, and every argument of ``call``, through ``encoder``."""
    _check_one_argument(encoder)
    api.running_worker().encoder = encoder


def set_decoder(decoder):
    """Pass every call's arguments, and the result of ``call``, through ``decoder``."""
    _check_one_argument(decoder)
    api.running_worker().decoder = decoder


def set_message_handler(handler):
    """Run ``handler(message)`` for each message that Erlang casts to this worker."""
    _check_one_argument(handler)
    api.set_message_handler(handler)


def set_default_encoder():
    """Send values as they are."""
    api.running_worker().encoder = None


def set_default_decoder():
    """Hand values over as they arrive."""
    api.running_worker().decoder = None


def set_default_message_handler():
    """Drop messages cast to this worker."""
    api.set_message_handler(None)


def _atom_name(value) -> Atom:
    """``value``, an atom of either runtime's type, as a codec Atom; ValueError otherwise."""
    if type(value) is Atom:
        return value
    if stock_kind(value) == "Atom":
        return Atom(bytes(value).decode("latin-1"))
    raise ValueError(value)


def _outcome(outcome):
    ok, value = outcome
    if not ok:
        raise _erlang.CallError(value)
    return value


def _check_one_argument(function) -> None:
    """Stock's check of a hook: a function that takes one positional argument."""
    if not callable(function):
        raise TypeError(f"{function!r} is not a callable object")
    try:
        inspect.signature(function).bind(None)
    except TypeError:
        raise ValueError(f"expected single argument function: {function!r}") from None
    except ValueError:
        # No signature to check (some builtins): take it as stock would not refuse it.
        pass
