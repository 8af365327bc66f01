"""The dispatcher: reads frames from Erlang, runs calls, sends replies, serves the API.

The reader loop owns the input fd and runs on one pool thread at a time.
A call from Erlang is run by the thread that read it, which first hands the
reading on (see ``pool``); replies go out as each call ends, matched by id.
Replies to Python -> Erlang calls are routed to the thread waiting for them,
and messages are queued for the message handler thread. Every writer shares
one locked FrameWriter. Anything Erlang sends that the protocol does not
allow ends serving with EXIT_PROTOCOL, so a supervisor restarts the worker.
"""
from __future__ import annotations

import io
import itertools
import logging
import threading
from queue import SimpleQueue

from codec import Atom

from . import api, jobs, stock_api
from .allow import AllowList, NotAllowed
from .framing import FrameError, FrameReader, FrameWriter
from .jobs import JobCancelled
from .pool import CallPool
from .wire import RefusedOpaque, Wire, describe, encoded_size_at_least

log = logging.getLogger(__name__)

EXIT_OK = 0
"""The port closed (end of input), or SIGTERM arrived."""
EXIT_INTERNAL = 1
"""An unexpected error inside the worker itself."""
EXIT_USAGE = 2
"""Bad command line (argparse's status)."""
EXIT_PROTOCOL = 3
"""Erlang sent something the protocol does not allow: a malformed or oversized frame,
an undecodable term, an unknown message."""

CONTROL_MODULE = "erlport_worker.jobs"
CONTROL_FUNCTIONS = ("cancel", "running")
_C, _R, _E, _M, _P = (Atom(tag) for tag in "CreMP")
_CONTEXTS = {"N": Atom("N"), "L": Atom("L")}
_POLL_SECONDS = 0.05


class ProtocolError(Exception):
    """A frame that decodes but is not a message of the protocol."""


class UnencodableResult(ValueError):
    """A call's result cannot travel as ETF (NaN, an unsupported type, ...)."""


class Terminated(BaseException):
    """Raised in the reader loop by the SIGTERM handler."""


class _Pending:
    """A Python -> Erlang call waiting for its reply."""

    __slots__ = ("event", "tag", "value")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.tag = None
        self.value = None


class Worker:
    """One port connection: serve() runs until the port closes."""

    def __init__(self, options, in_fd: int, out_fd: int) -> None:
        stock_types = stock_api.install()
        self._wire = Wire(strings=options.strings, none=options.none,
                          compressed=options.compressed, max_inflated_size=options.max_frame_size,
                          stock_types=stock_types if options.strict else None)
        self._reader = FrameReader(in_fd, options.packet, options.max_frame_size,
                                   options.buffer_size, options.spin_seconds)
        self._writer = FrameWriter(out_fd, options.packet, options.max_frame_size)
        self._pool = CallPool(options.concurrency, self._read_loop)
        self._done = threading.Event()
        self._status = EXIT_INTERNAL
        self._allow = AllowList(options.allow)
        self._pending = {}
        self._ids = itertools.count(1)
        self._messages: SimpleQueue = SimpleQueue()
        self.message_handler = None
        # Stock ErlPort's hooks (erlport.erlang.set_encoder/set_decoder).
        self.encoder = None
        self.decoder = None
        threading.Thread(target=self._handle_messages, name="messages", daemon=True).start()
        api.bind(self)

    # -- the reader loop -------------------------------------------------

    def serve(self) -> int:
        """Serve until the port closes; return the exit status.

        The main thread only waits here, so that it is free to run the
        SIGTERM handler (Python runs signal handlers in the main thread).
        """
        try:
            self._pool.start()
            while not self._done.wait(1.0):
                pass
        except Terminated:
            log.info("SIGTERM: exiting")
            return EXIT_OK
        return self._status

    def _finish(self, status: int) -> None:
        self._status = status
        self._done.set()

    def _read_loop(self):
        """Read and dispatch frames; return a call this thread is to run, or None at the end."""
        try:
            while True:
                frame = self._reader.read()
                if frame is None:
                    log.info("port closed")
                    self._finish(EXIT_OK)
                    return None
                job = self._dispatch(frame)
                if job is not None:
                    return job
        except (FrameError, ProtocolError) as exc:
            log.error("malformed data from Erlang, exiting with status %d: %s",
                      EXIT_PROTOCOL, exc)
            self._finish(EXIT_PROTOCOL)
        except BaseException:
            log.exception("reader failed")
            self._finish(EXIT_INTERNAL)
        return None

    def _dispatch(self, frame):
        """Handle one frame; return a call for this thread to run, if it is to run one."""
        try:
            message = self._wire.decode(frame)
        except RefusedOpaque as exc:
            self._refuse(exc)
            return None
        except Exception as exc:
            raise ProtocolError(f"undecodable frame of {len(frame)} bytes "
                                f"(starts {bytes(frame[:24]).hex()}): {exc}") from None
        size = len(message) if type(message) is tuple else 0
        tag = message[0] if size else None
        if tag == "C" and size == 5:
            return self._incoming_call(*message[1:])
        if (tag == "r" or tag == "e") and size == 3:
            self._reply_from_erlang(tag, message[1], message[2])
        elif tag == "M" and size == 2:
            self._messages.put(message[1])
        else:
            raise ProtocolError(f"not a protocol message: {describe(message)}")
        return None

    def _refuse(self, exc: RefusedOpaque) -> None:
        """Answer a call whose arguments hold a refused value with an error; else give up."""
        message = exc.message
        if type(message) is tuple and len(message) == 5 and message[0] == "C" \
                and type(message[1]) is int:
            self._writer.write(self._wire.encode(self._wire.error_reply(message[1], exc)))
        else:
            raise ProtocolError(str(exc))

    def _incoming_call(self, call_id, module, function, args):
        if type(call_id) is not int:
            raise ProtocolError(f"call id must be an integer, not {describe(call_id)}")
        if module == CONTROL_MODULE:
            self._run_call(call_id, module, function, args)
            return None
        job = (self._run_call, (call_id, module, function, args))
        return job if self._pool.take(*job) else None

    def _reply_from_erlang(self, tag, call_id, value) -> None:
        pending = self._pending.get(call_id) if type(call_id) is int else None
        if pending is None:
            # The waiting call was cancelled meanwhile; nobody wants this reply.
            log.warning("reply for unknown Python->Erlang call id %s dropped", describe(call_id))
            return
        pending.tag, pending.value = tag, value
        pending.event.set()

    # -- running calls from Erlang ---------------------------------------

    def _run_call(self, call_id, module, function, args) -> None:
        job = jobs.Job(call_id, module, function)
        try:
            jobs.start(job)
            outcome = self._outcome(module, function, args)
        except JobCancelled as exc:
            # Delivered after the call itself had ended.
            outcome = (False, exc)
        finally:
            jobs.finish(job)
        self._send_reply(call_id, module, function, outcome)

    def _outcome(self, module, function, args):
        """(True, result) or (False, exception) of calling ``module.function(*args)``."""
        try:
            target = self._resolve(module, function)
            if type(args) is not list:
                raise TypeError(f"arguments must be a list, not {describe(args)}")
            decoder, encoder = self.decoder, self.encoder
            if decoder is not None:
                args = [decoder(arg) for arg in args]
            result = target(*args)
            return True, (result if encoder is None else encoder(result))
        except BaseException as exc:
            # Drop this frame, so the traceback starts in the called code;
            # keep it when the call failed in a builtin, which has no frame.
            traceback = exc.__traceback__
            return False, exc.with_traceback(traceback.tb_next or traceback)

    def _resolve(self, module, function):
        if not isinstance(module, str) or not isinstance(function, str):
            raise TypeError(f"module and function must be atoms, got {describe(module)} "
                            f"and {describe(function)}")
        if module == CONTROL_MODULE:
            if function not in CONTROL_FUNCTIONS:
                raise NotAllowed(f"only {' and '.join(CONTROL_FUNCTIONS)} of {CONTROL_MODULE} "
                                 f"can be called, not {function!r}")
            return getattr(jobs, function)
        return self._allow.resolve(module, function)

    def _send_reply(self, call_id, module, function, outcome) -> None:
        """Send the reply for ``outcome``: an unencodable or oversized result gets an error
        reply instead; a port that is gone is left to the reader to notice."""
        ok, value = outcome
        wire, writer = self._wire, self._writer
        try:
            try:
                if ok:
                    writer.write(self._encode_result(call_id, module, function, value))
                else:
                    writer.write(wire.encode(wire.error_reply(call_id, value)))
            except (ValueError, FrameError) as exc:
                writer.write(wire.encode(wire.error_reply(call_id, exc.with_traceback(None))))
        except OSError as exc:
            # The port is gone; the reader sees the end of input and exits.
            log.info("reply to call %d not sent: %s", call_id, exc)

    def _encode_result(self, call_id, module, function, value) -> bytes:
        """The reply frame for ``value``; FrameTooLarge (before encoding it whole, when its
        size shows) if it is over the frame limit."""
        writer = self._writer
        least = encoded_size_at_least(value)
        if least > writer.limit:
            raise writer.too_large(least, f"the result of {module}.{function}", at_least=True)
        try:
            data = self._wire.encode((_R, call_id, value))
        except ValueError as exc:
            raise UnencodableResult(f"result of {module}.{function} cannot be sent to Erlang: "
                                    f"{_in_result(exc)}") from None
        if len(data) > writer.limit:
            raise writer.too_large(len(data), f"the result of {module}.{function}")
        return data

    # -- the API for called code -----------------------------------------

    def send(self, term) -> None:
        """Encode ``term`` and send it as one frame."""
        self._writer.write(self._wire.encode(term))

    def cast(self, dest, message) -> None:
        self.send((_M, dest, message))

    def call_erlang(self, module, function, args, context):
        """Call Erlang and wait for the reply: ``(True, result)`` or ``(False, error)``.

        Nested calls from Erlang are served meanwhile.
        """
        call_id = next(self._ids)
        pending = _Pending()
        self._pending[call_id] = pending
        try:
            self.send((_C, call_id, module, function, args, _CONTEXTS[context]))
            with self._pool.waiting_on_erlang():
                # Wake now and then so a cancellation (JobCancelled) is delivered.
                while not pending.event.wait(_POLL_SECONDS):
                    api.raise_if_cancelled()
        finally:
            del self._pending[call_id]
        return pending.tag == "r", pending.value

    def _handle_messages(self) -> None:
        while True:
            message = self._messages.get()
            handler = self.message_handler
            if handler is None:
                log.debug("no message handler: dropped %s", describe(message))
                continue
            try:
                handler(message)
            except BaseException as exc:
                log.error("message handler failed: %r", exc)
                try:
                    self.send((_E, self._wire.error_term(exc)))
                except OSError as write_error:
                    log.info("handler error not sent: %s", write_error)


def _in_result(exc: ValueError) -> str:
    """The encoder's message with its path made relative to the result (``$[2]`` of the reply)."""
    path = getattr(exc, "path", None)
    if isinstance(path, str) and path.startswith("$[2]"):
        return f"{exc.reason} at result{path[4:]}"
    return str(exc)


class NoStdin(io.TextIOBase):
    """``sys.stdin`` in strict mode: reading raises ``io.UnsupportedOperation``, as
    under stock ErlPort (in default mode stdin is ``/dev/null``: reading gives EOF)."""

    encoding = "utf-8"
    name = "<stdin>"


class PrintStream(io.TextIOBase):
    """``sys.stdout`` inside the worker: each write goes to Erlang as a ``'P'`` frame."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self._worker = worker

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._worker.send((_P, text))
        return len(text)
