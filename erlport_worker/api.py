"""The small API for code that the worker calls: talk to Erlang, watch its own job.

Everything here works under stock ErlPort's Erlang side too, since it only
uses the protocol's own messages. Calling it outside a running worker raises
``RuntimeError``.

A pid (raw, or wrapped by stock ErlPort's Erlang side) that reaches called code has
``pid.send(message)``; ``cast`` is the same for any destination, including a
registered name.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from codec import Atom

from . import jobs
from .jobs import JobCancelled

__all__ = [
    "ErlangError", "JobCancelled", "call", "cancelled", "cast", "current_job", "make_ref",
    "progress", "raise_if_cancelled", "self", "set_message_handler", "sleep",
]

_worker = None


class ErlangError(Exception):
    """An Erlang function called from Python failed: ``{erlang, Class, Reason, Stacktrace}``."""

    def __init__(self, error_class: Any, reason: Any, stacktrace: Any) -> None:
        super().__init__(f"Erlang {error_class}: {reason!r}")
        self.error_class = error_class
        self.reason = reason
        self.stacktrace = stacktrace


def bind(worker) -> None:
    """Route this API through ``worker`` (done once by the worker at start-up)."""
    global _worker
    _worker = worker


def running_worker():
    """The worker serving this process (for the worker's own modules)."""
    if _worker is None:
        raise RuntimeError("erlport_worker.api is only usable inside a running erlport-worker")
    return _worker


def cast(dest: Any, message: Any) -> None:
    """Send ``message`` to ``dest`` (a pid, or a registered name as str/Atom); returns at once."""
    if type(dest) is str:
        dest = Atom(dest)
    running_worker().cast(dest, message)


def call(module: str, function: str, args=()) -> Any:
    """Call ``module:function(*args)`` in Erlang (in a new Erlang process) and return its result.

    Raises ErlangError if the Erlang function fails. Calls from Erlang that
    arrive meanwhile (nested calls) are served.
    """
    return _result(running_worker().call_erlang(Atom(module), Atom(function), list(args), "N"))


def self() -> Any:
    """The pid of the Erlang process that owns this worker's port."""
    return _result(running_worker().call_erlang(Atom("erlang"), Atom("self"), [], "L"))


def make_ref() -> Any:
    """A fresh Erlang reference, made by the owning Erlang process."""
    return _result(running_worker().call_erlang(Atom("erlang"), Atom("make_ref"), [], "L"))


def _result(outcome):
    """The value of a successful call to Erlang; ErlangError for a failed one."""
    ok, value = outcome
    if ok:
        return value
    if type(value) is tuple and len(value) == 4:
        raise ErlangError(value[1], value[2], value[3])
    raise ErlangError(None, value, [])


def set_message_handler(handler: Optional[Callable[[Any], None]]) -> None:
    """Run ``handler(message)`` for each ``python:cast`` to this worker (None: drop them).

    Messages are handled one at a time, in arrival order, on their own
    thread. If the handler raises, Erlang is sent ``{'e', Error}``, which makes
    stock ErlPort stop the instance.
    """
    running_worker().message_handler = handler


def current_job() -> Optional[int]:
    """The Erlang call id of the call running on this thread, or None."""
    job = jobs.current()
    return None if job is None else job.call_id


def cancelled() -> bool:
    """Whether the current call has been cancelled (False outside a call)."""
    job = jobs.current()
    return job is not None and job.cancelled


def raise_if_cancelled() -> None:
    """Raise JobCancelled if the current call has been cancelled."""
    if cancelled():
        raise JobCancelled(f"call {current_job()} was cancelled")


def sleep(seconds: float) -> None:
    """Sleep like time.sleep, but wake and raise JobCancelled as soon as the call is cancelled."""
    job = jobs.current()
    if job is None:
        raise RuntimeError("api.sleep is only usable inside a call from Erlang")
    if job.wait(seconds):
        raise_if_cancelled()


def progress(dest: Any, info: Any) -> None:
    """Cast ``{progress, CallId, Info}`` to ``dest``: the id tells Erlang which call it is about."""
    cast(dest, (Atom("progress"), current_job(), info))
