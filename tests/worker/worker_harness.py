"""Drive erlport-worker as a subprocess through pipes, playing the Erlang side of the protocol."""
from __future__ import annotations

import itertools
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import codec
from codec import Atom

from erlport_worker.framing import FrameReader

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TIMEOUT = 30.0
C, R, E, M, P = (Atom(t) for t in "CreMP")


def worker_script() -> str:
    """The erlport-worker console script of the running Python's environment.

    Looked up beside sys.executable first: CI runs .venv/bin/python without
    putting .venv/bin on PATH.
    """
    beside = Path(sys.executable).parent / "erlport-worker"
    found = str(beside) if beside.exists() else shutil.which("erlport-worker")
    assert found, "the erlport-worker console script is not installed (pip install -e .)"
    return found


def worker_env() -> dict:
    """The environment for a worker: the project and the called test modules importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _is_reply(term, call_id) -> bool:
    return len(term) == 3 and term[0] in (R, E) and term[1] == call_id


class PortClosed(Exception):
    """The worker closed its output."""


class Port:
    """One worker process, spoken to as an Erlang port would.

    ``use_stdio=False`` starts it with the protocol on fds 3/4 (via ``sh``
    redirections), as ``open_port`` with ``nouse_stdio`` does.
    """

    def __init__(self, *flags, packet=4, use_stdio=True, minor_version=1):
        self.packet = packet
        self.minor_version = minor_version
        cmd = [sys.executable, "-m", "erlport_worker", f"--packet={packet}",
               "--use_stdio" if use_stdio else "--nouse_stdio", *flags]
        if not use_stdio:
            cmd = ["sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2', "sh", *cmd]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=worker_env())
        self._frames: queue.Queue = queue.Queue()
        self._stderr = []
        self._ids = itertools.count(1)
        self.compressed_frames = 0
        self.side = []  # frames that were not the awaited reply ('P', 'M', ...)
        threading.Thread(target=self._read_frames, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_frames(self):
        reader = FrameReader(self.proc.stdout.fileno(), self.packet)
        try:
            while True:
                frame = reader.read()
                if frame is None:
                    break
                if frame[1] == 80:
                    self.compressed_frames += 1
                self._frames.put(codec.decode(bytes(frame)))
        finally:
            self._frames.put(PortClosed)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace"))

    @property
    def stderr(self) -> str:
        """What the worker wrote to stderr so far (all of it once it has exited)."""
        if self.proc.poll() is not None:
            self._stderr_reader.join(TIMEOUT)
        return "".join(self._stderr)

    def send_raw(self, payload: bytes, size=None) -> None:
        size = len(payload) if size is None else size
        self.proc.stdin.write(size.to_bytes(self.packet, "big") + payload)
        self.proc.stdin.flush()

    def send(self, term) -> None:
        self.send_raw(codec.encode(term, minor_version=self.minor_version))

    def new_id(self) -> int:
        return next(self._ids)

    def send_call(self, module, function, args) -> int:
        call_id = self.new_id()
        self.send((C, call_id, Atom(module), Atom(function), list(args)))
        return call_id

    def recv(self, timeout=TIMEOUT):
        """The next frame from the worker, decoded raw; PortClosed if it closed."""
        try:
            term = self._frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame within {timeout} s; worker stderr:\n{self.stderr}")
        if term is PortClosed:
            self._frames.put(PortClosed)
            raise PortClosed(self.stderr)
        return term

    def reply_to(self, call_id, timeout=TIMEOUT):
        """Wait for the reply to ``call_id``; other frames are kept in ``side``."""
        for term in self.side:
            if _is_reply(term, call_id):
                self.side.remove(term)
                return term
        while True:
            term = self.recv(timeout)
            if _is_reply(term, call_id):
                return term
            self.side.append(term)

    def call(self, module, function, *args):
        """Call and return the result; AssertionError with the error term if it failed."""
        reply = self.reply_to(self.send_call(module, function, args))
        if reply[0] != R:
            raise AssertionError(f"call {module}.{function} failed: {reply[2]!r}")
        return reply[2]

    def error(self, module, function, *args):
        """Call and return the error term ``{python, Class, Message, Traceback}``."""
        reply = self.reply_to(self.send_call(module, function, args))
        assert reply[0] == E, f"expected an error reply, got {reply!r}"
        return reply[2]

    def close(self, timeout=TIMEOUT) -> int:
        """Close the worker's input (the port closes) and return its exit status."""
        self.proc.stdin.close()
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
