"""{packet,N} framing on raw file descriptors: an N-byte big-endian length, then the frame.

Reads go through one reused buffer, so a burst of small frames costs one
``read`` system call; a frame larger than that buffer is read straight into
its own ``bytearray``: up to 16 MiB is allocated at once, and a larger frame's
buffer doubles as its bytes arrive, so memory follows what was sent, not what a
length header announces, and big frames cost linear time. With
``spin_seconds`` the reader may poll for that long before it blocks, as
``polling.SpinPolicy`` decides from recent waits and the machine's load. Writes send the header and the payload with ``writev`` and
loop on partial writes, so a 10 MB frame is never concatenated in memory.
Frames over the maximum frame size, or over what the length header can say,
are refused both ways.
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import threading
import time
from typing import Optional

from .polling import PREEMPTED, SpinPolicy, usable_cores

PACKET_SIZES = (1, 2, 4)
DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024
DEFAULT_BUFFER_SIZE = 64 * 1024
DEFAULT_SPIN_SECONDS = 100e-6
EAGER_FRAME_SIZE = 16 * 1024 * 1024
_PIPE_SIZE = 1024 * 1024
_HEADERS = {1: struct.Struct(">B"), 2: struct.Struct(">H"), 4: struct.Struct(">I")}
_JOIN_LIMIT = 64 * 1024
"""A frame up to this size is written as one buffer, header and payload joined: the copy
costs less than ``writev``'s list of pieces (0.7 us per trivial reply)."""


class FrameError(Exception):
    """The byte stream broke the framing rules (truncated frame, size over the limit)."""


class FrameTooLarge(FrameError):
    """A frame of ``size`` bytes (or at least that) is over the ``limit``."""

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


def enlarge_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer on ``fd`` (Linux), so big frames cross the pipe in
    fewer context switches; anything that is not a pipe, or a refusal, is left alone."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    try:
        fcntl.fcntl(fd, set_size, _PIPE_SIZE)
    except OSError:
        pass


def _check_packet(packet: int) -> None:
    if packet not in PACKET_SIZES:
        raise ValueError(f"packet size must be 1, 2 or 4, not {packet!r}")


def frame_limit(packet: int, max_frame_size: int) -> int:
    """The largest frame: ``max_frame_size``, or less if the length header cannot say more."""
    _check_packet(packet)
    return min(max_frame_size, (1 << (8 * packet)) - 1)


class FrameReader:
    """Reads whole frames from ``fd``; ``read()`` returns None at a clean end of stream.

    ``spin_seconds`` is the polling window (0: never poll); ``policy``, a
    ``SpinPolicy`` or anything with its two methods, replaces the default one.
    """

    def __init__(self, fd: int, packet: int = 4, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 buffer_size: int = DEFAULT_BUFFER_SIZE, spin_seconds: float = 0.0,
                 policy: Optional[SpinPolicy] = None):
        _check_packet(packet)
        self._fd = fd
        if policy is None and spin_seconds > 0:
            policy = SpinPolicy(spin_seconds, usable_cores())
        self._policy = policy
        if policy is not None:
            self._poll = select.poll()
            self._poll.register(fd, select.POLLIN)
        self._packet = packet
        self._size_at = _HEADERS[packet].unpack_from
        self._max = max_frame_size
        self._buf = bytearray(max(buffer_size, packet))
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def read(self):
        """Return the next frame (bytes-like, valid until the next call) or None at EOF.

        Raises FrameTooLarge for a size over the maximum and FrameError when
        the stream ends inside a frame.
        """
        # The common cases in few steps: the next frame is whole in the
        # buffer, or the buffer is empty and one read brings a whole frame.
        start, end, packet = self._start, self._end, self._packet
        if start == end:
            self._start = self._end = start = 0
            end = self._end = self._read_into(self._view)
            if end == 0:
                return None
        if end - start >= packet:
            size = self._size_at(self._buf, start)[0]
            stop = start + packet + size
            if stop <= end and size <= self._max:
                self._start = stop
                return self._view[start + packet:stop]
        return self._read_rest()

    def _read_rest(self):
        """``read()`` for a frame that is not whole in the buffer yet."""
        packet = self._packet
        if not self._fill(packet):
            if self._start == self._end:
                return None
            raise FrameError(f"stream ended inside a {packet}-byte length header "
                             f"({self._end - self._start} bytes of it arrived)")
        size = self._size_at(self._buf, self._start)[0]
        if size > self._max:
            raise FrameTooLarge(f"frame announces {size} bytes, over the maximum frame size "
                                f"of {self._max} bytes", size, self._max)
        self._start += packet
        if packet + size <= len(self._buf):
            if not self._fill(size):
                raise FrameError(f"stream ended inside a frame of {size} bytes "
                                 f"({self._end - self._start} bytes of it arrived)")
            frame = self._view[self._start:self._start + size]
            self._start += size
            return frame
        return self._read_big(size)

    def _fill(self, count: int) -> bool:
        """Make ``count`` bytes available from ``_start``; False if the stream ends first."""
        have = self._end - self._start
        if have >= count:
            return True
        buf = self._buf
        if self._start + count > len(buf):
            # Shift the partial frame to the front so it fits.
            buf[:have] = buf[self._start:self._end]
            self._start, self._end = 0, have
        while self._end - self._start < count:
            got = self._read_into(self._view[self._end:])
            if got == 0:
                return False
            self._end += got
        return True

    def _read_big(self, size: int):
        """Read a frame larger than the buffer; past EAGER_FRAME_SIZE, grow it as it arrives."""
        have = self._end - self._start
        frame = bytearray(min(size, EAGER_FRAME_SIZE))
        frame[:have] = self._view[self._start:self._end]
        self._start = self._end = 0
        while have < size:
            if have == len(frame):
                frame.extend(bytes(min(have, size - have)))
            view = memoryview(frame)
            got = self._read_into(view[have:])
            view.release()
            if got == 0:
                raise FrameError(f"stream ended inside a frame of {size} bytes "
                                 f"({have} bytes of it arrived)")
            have += got
        return frame

    def _read_into(self, view) -> int:
        """Read what has arrived into ``view``, waiting for at least one byte; 0 at EOF.

        With a polling policy, poll first for as long as it says, then read (a
        blocking read: the sleep); the policy hears how long the wait took and
        whether polling lost the CPU.
        """
        policy = self._policy
        if policy is None:
            return os.readv(self._fd, [view])
        clock = time.perf_counter
        start = clock()
        budget = policy.budget(start)
        preempted = budget > 0 and self._poll_until(start + budget)
        got = os.readv(self._fd, [view])
        end = clock()
        policy.waited(end - start, preempted, end)
        return got

    def _poll_until(self, deadline: float) -> bool:
        """Poll until input (or its end) is there or ``deadline`` passes; True if the
        polling lost the CPU (a gap of PREEMPTED seconds between two polls)."""
        poll, clock = self._poll.poll, time.perf_counter
        last = clock()
        while not poll(0):
            now = clock()
            if now - last > PREEMPTED:
                return True
            if now >= deadline:
                return False
            last = now
        return False


class FrameWriter:
    """Writes whole frames to ``fd``; safe to call from many threads at once."""

    def __init__(self, fd: int, packet: int = 4, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE):
        self._fd = fd
        self._packet = packet
        self.limit = frame_limit(packet, max_frame_size)
        self._header = _HEADERS[packet].pack
        self._lock = threading.Lock()

    def write(self, payload) -> None:
        """Send one frame; raises FrameTooLarge if ``payload`` is over ``limit``."""
        size = len(payload)
        if size > self.limit:
            raise self.too_large(size)
        header = self._header(size)
        if size > _JOIN_LIMIT:
            with self._lock:
                _write_all(self._fd, [header, memoryview(payload)])
            return
        frame = header + payload
        with self._lock:
            done = os.write(self._fd, frame)
            if done < len(frame):
                _write_all(self._fd, [memoryview(frame)[done:]])

    def too_large(self, size: int, what: str = "a frame", at_least: bool = False):
        """The FrameTooLarge for ``what`` of ``size`` bytes (``at_least``: or more)."""
        return FrameTooLarge(f"{what} of {'at least ' if at_least else ''}{size} bytes is over "
                             f"the limit of {self.limit} bytes (maximum frame size, "
                             f"{self._packet}-byte length header)", size, self.limit)


def _write_all(fd: int, pieces) -> None:
    """writev ``pieces`` completely, resuming after partial writes."""
    while pieces:
        done = os.writev(fd, pieces)
        while pieces and done >= len(pieces[0]):
            done -= len(pieces[0])
            pieces.pop(0)
        if pieces and done:
            pieces[0] = memoryview(pieces[0])[done:]
