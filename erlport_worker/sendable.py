"""Pids that called code can send to, and that still encode back to exactly the same term.

The decoder's ``pid_hook`` and ``tuple_hook`` turn every pid, and every
ErlPort-wrapped pid ``{'$erlport.opaque', erlang, Bytes}``, into these
subclasses; ``send`` casts through the running worker. Code that is handed a
pid can therefore report progress with duck typing (``dest.send(msg)``)
without importing the worker.
"""
from __future__ import annotations

from typing import Any

from codec import Opaque, Pid

from . import api

# ETF tags that open a pid inside an opaque's bytes (NEW_PID_EXT, PID_EXT).
_PID_TAGS = (88, 103)


class SendablePid(Pid):
    """A codec Pid with ``send``."""

    __slots__ = ()

    @classmethod
    def of(cls, pid: Pid) -> "SendablePid":
        return cls(pid.node, pid.id, pid.serial, pid.creation)

    def send(self, message: Any) -> None:
        """Cast ``message`` to this pid through the worker."""
        api.cast(self, message)


class SendableOpaque(Opaque):
    """An ErlPort opaque that wraps an Erlang pid, with ``send``."""

    __slots__ = ()

    @classmethod
    def of(cls, opaque: Opaque) -> "SendableOpaque":
        return cls(opaque.language, opaque.data)

    def send(self, message: Any) -> None:
        """Cast ``message`` to the wrapped pid; Erlang unwraps it on arrival."""
        api.cast(self, message)


def wraps_pid(opaque: Opaque) -> bool:
    """Whether ``opaque`` is an Erlang-side wrapper around a pid."""
    return opaque.language == "erlang" and len(opaque.data) > 0 and opaque.data[0] in _PID_TAGS
