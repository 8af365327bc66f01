"""Pids that called code can send to, and that still encode back to exactly the same term.

The decoder's ``pid_hook`` turns every pid, including one that arrived
wrapped by stock ErlPort's Erlang side, into a ``SendablePid``; ``send``
casts through the running worker. Code that is handed a pid can therefore
report progress with duck typing (``dest.send(msg)``) without importing the
worker.
"""
from __future__ import annotations

from typing import Any

from codec import Pid

from . import api


class SendablePid(Pid):
    """A codec Pid with ``send``."""

    __slots__ = ()

    @classmethod
    def of(cls, pid: Pid) -> "SendablePid":
        return cls(pid.node, pid.id, pid.serial, pid.creation)

    def send(self, message: Any) -> None:
        """Cast ``message`` to this pid through the worker."""
        api.cast(self, message)
