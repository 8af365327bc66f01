"""In-process tests of the worker's pieces: framing, command line, pool, job registry."""
import os
import threading
import time
from queue import SimpleQueue

import pytest

from erlport_worker import cli, framing, jobs
from erlport_worker.framing import FrameError, FrameReader, FrameTooLarge, FrameWriter
from erlport_worker.pool import CallPool

WAIT = 30


class Pipe:
    """An os.pipe whose ends are closed at most once.

    A writer thread may close the write end after its test has ended; closing
    an fd twice could close a number that a later test's pipe now uses.
    """

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        self._open = {self.read_fd, self.write_fd}
        self._lock = threading.Lock()

    def __iter__(self):
        return iter((self.read_fd, self.write_fd))

    def close(self, fd):
        with self._lock:
            if fd in self._open:
                self._open.discard(fd)
                os.close(fd)

    def close_write(self):
        self.close(self.write_fd)


@pytest.fixture
def pipe():
    ends = Pipe()
    yield ends
    ends.close(ends.read_fd)
    ends.close_write()


# Readers that block at once, and readers that poll 100 us first (the worker's default).
SPINS = pytest.mark.parametrize("spin", [0.0, 100e-6])


def write_in_thread(pipe, data, pieces=1, pause=0.0):
    """Write ``data`` in ``pieces`` with ``pause`` seconds between them, then close."""
    def run():
        step = -(-len(data) // pieces)
        for start in range(0, len(data), step):
            view = memoryview(data)[start:start + step]
            while view:
                view = view[os.write(pipe.write_fd, view):]
            time.sleep(pause)
        pipe.close_write()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("packet", [1, 2, 4])
def test_frames_round_trip(pipe, packet):
    read_fd, write_fd = pipe
    frames = [b"", b"a", b"\x83" * 200]
    writer = FrameWriter(write_fd, packet)
    for frame in frames:
        writer.write(frame)
    pipe.close_write()
    reader = FrameReader(read_fd, packet)
    assert [bytes(reader.read()) for _ in frames] == frames
    assert reader.read() is None


@SPINS
def test_partial_reads_are_resumed(pipe, monkeypatch, spin):
    read_fd, write_fd = pipe
    real_readv = os.readv
    # The kernel may hand back any amount; here never more than 3 bytes.
    monkeypatch.setattr(framing.os, "readv", lambda fd, bufs: real_readv(fd, [bufs[0][:3]]))
    frames = [bytes(range(i, i + 40)) for i in range(50)]
    write_in_thread(pipe, b"".join(len(f).to_bytes(4, "big") + f for f in frames))
    reader = FrameReader(read_fd, 4, buffer_size=64, spin_seconds=spin)
    assert [bytes(reader.read()) for _ in frames] == frames
    assert reader.read() is None


@SPINS
def test_frame_bigger_than_the_buffer(pipe, spin):
    read_fd, write_fd = pipe
    big = os.urandom(3_000_000)
    write_in_thread(pipe, len(big).to_bytes(4, "big") + big + b"\x00\x00\x00\x01z")
    reader = FrameReader(read_fd, 4, buffer_size=4096, spin_seconds=spin)
    assert bytes(reader.read()) == big
    assert bytes(reader.read()) == b"z"


@SPINS
def test_frames_arriving_after_the_polling_ended_are_read(pipe, spin):
    frames = [bytes([i]) * 10 for i in range(4)]
    # Pauses 100 times the polling time: the reader must go to sleep and be woken.
    write_in_thread(pipe, b"".join(len(f).to_bytes(4, "big") + f for f in frames),
                    pieces=8, pause=0.01)
    reader = FrameReader(pipe.read_fd, 4, spin_seconds=spin)
    assert [bytes(reader.read()) for _ in frames] == frames
    assert reader.read() is None


@pytest.mark.parametrize("size", [1024, framing._JOIN_LIMIT + 1])
def test_partial_writes_are_resumed(pipe, monkeypatch, size):
    # Small frames go out joined with os.write, large ones with os.writev: both resumed.
    read_fd, write_fd = pipe
    real_write, real_writev = os.write, os.writev
    monkeypatch.setattr(framing.os, "write", lambda fd, data: real_write(fd, data[:5]))
    monkeypatch.setattr(framing.os, "writev",
                        lambda fd, bufs: real_writev(fd, [memoryview(bufs[0])[:5]]))
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    writer = threading.Thread(target=FrameWriter(write_fd, 4).write, args=(payload,))
    writer.start()
    assert bytes(FrameReader(read_fd, 4, buffer_size=size + 8).read()) == payload
    writer.join(WAIT)


def test_wire_unwraps_and_refuses_opaques_in_small_big_and_compressed_frames():
    # A small uncompressed frame is decoded without the per-tuple hook when the opaque's
    # atom is not in its bytes; a compressed frame hides the atom, a big one is not scanned.
    from codec import Atom, encode
    from erlport_worker import wire as wire_module

    wire = wire_module.Wire()
    inner = encode(Atom("ok"))[1:]  # the term's bytes, without the version byte
    erlang = (Atom("$erlport.opaque"), Atom("erlang"), inner)
    python = (Atom("$erlport.opaque"), Atom("python"), b"\x80\x04K\x01.")
    for padding in ("p" * 200, "p" * wire_module._SCAN_LIMIT):
        for compressed in (0, 6):
            def call(arg):
                frame = encode((Atom("C"), 1, Atom("m"), Atom("f"), [arg, padding]),
                               compressed=compressed)
                assert (frame[1] == 80) == bool(compressed)
                assert (len(frame) > wire_module._SCAN_LIMIT) == (len(padding) > 200
                                                                  and not compressed)
                return frame
            assert wire.decode(call(erlang))[4] == ["ok", padding]
            with pytest.raises(wire_module.RefusedOpaque):
                wire.decode(call(python))


def test_frame_over_the_maximum_is_refused_before_reading_it(pipe):
    read_fd, write_fd = pipe
    os.write(write_fd, (10_000).to_bytes(4, "big"))
    with pytest.raises(FrameTooLarge, match="10000 bytes, over the maximum frame size of 100"):
        FrameReader(read_fd, 4, max_frame_size=100).read()


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "inside a 4-byte length header"),
    (b"\x00\x00\x00\x09abc", "inside a frame of 9 bytes"),
    (b"\x01\x00\x00\x00" + b"x" * 10, "inside a frame of 16777216 bytes"),
])
@SPINS
def test_stream_ending_inside_a_frame_is_an_error(pipe, data, message, spin):
    read_fd, write_fd = pipe
    write_in_thread(pipe, data)
    with pytest.raises(FrameError, match=message):
        FrameReader(read_fd, 4, buffer_size=1024, spin_seconds=spin).read()


def test_writer_refuses_a_payload_too_big_for_the_header(pipe):
    with pytest.raises(FrameTooLarge, match="256 bytes is over the limit of 255 bytes"):
        FrameWriter(pipe.write_fd, 1).write(b"x" * 256)


def test_writer_refuses_a_payload_over_the_maximum_frame_size(pipe):
    writer = FrameWriter(pipe.write_fd, 4, max_frame_size=100)
    writer.write(b"x" * 100)
    with pytest.raises(FrameTooLarge, match="101 bytes is over the limit of 100 bytes"):
        writer.write(b"x" * 101)


@SPINS
def test_a_big_frame_arriving_in_pieces_is_read_whole(pipe, spin):
    big = os.urandom(1_000_003)
    write_in_thread(pipe, len(big).to_bytes(4, "big") + big, pieces=7, pause=0.005)
    reader = FrameReader(pipe.read_fd, 4, buffer_size=1024, spin_seconds=spin)
    assert bytes(reader.read()) == big
    assert reader.read() is None


def test_bad_packet_size():
    with pytest.raises(ValueError, match="packet size must be 1, 2 or 4"):
        FrameReader(0, 3)


def test_stock_erlport_command_line():
    options = cli.parse(["-u", "-m", "erlport.cli", "--packet=2", "--nouse_stdio",
                         "--compressed=5", "--buffer_size=4096"])
    assert (options.packet, options.use_stdio, options.compressed, options.buffer_size) == \
        (2, False, 5, 4096)
    assert (options.strings, options.none) == ("binary", "nil")


def test_own_flags():
    options = cli.parse(["--strict", "--none", "nil", "--path", "/a", "--path", "/b",
                         "--allow", "m1", "--allow", "m2", "--concurrency", "1",
                         "--max-frame-size", "1000", "--log-level", "debug"])
    assert (options.strings, options.none, options.strict) == ("charlist", "nil", True)
    assert cli.parse([]).strict is False
    assert options.paths == ["/a", "/b"] and options.allow == ["m1", "m2"]
    assert (options.concurrency, options.max_frame_size, options.log_level) == \
        (1, 1000, "DEBUG")
    assert cli.parse([]).allow is None
    assert (cli.parse([]).spin_seconds, cli.parse(["--spin-us", "0"]).spin_seconds) == \
        (100e-6, 0.0)


def start_pool(size, **options):
    """A pool whose reader takes calls from a queue (None ends reading), as frames would."""
    feed = SimpleQueue()

    def read_loop():
        while True:
            job = feed.get()
            if job is None:
                return None
            if pool.take(*job):
                return job

    pool = CallPool(size, read_loop, **options)
    pool.start()
    return pool, lambda fn, *args: feed.put((fn, args))


def test_pool_bounds_running_calls():
    pool, submit = start_pool(2)
    lock = threading.Lock()
    release = threading.Event()
    state = {"running": 0, "most": 0, "done": 0}
    finished = threading.Semaphore(0)

    def job():
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        release.wait(WAIT)
        with lock:
            state["running"] -= 1
            state["done"] += 1
        finished.release()

    for _ in range(6):
        submit(job)
    wait_for(lambda: state["running"] == 2)
    release.set()
    for _ in range(6):
        assert finished.acquire(timeout=WAIT)
    assert state == {"running": 0, "most": 2, "done": 6}


def test_the_reader_runs_the_call_it_read_when_a_slot_is_free():
    pool, submit = start_pool(2)
    threads = []
    done = threading.Event()
    # The first call stays busy until the second ends, so which thread runs
    # the second one does not depend on how fast the first one is.
    submit(lambda: (threads.append(threading.current_thread().name), done.wait(WAIT)))
    submit(lambda: (threads.append(threading.current_thread().name), done.set()))
    assert done.wait(WAIT)
    # The first reader ran the first call; the thread it handed reading to ran the second.
    assert threads == ["call-1", "call-2"]


def test_short_calls_run_on_the_reader_without_waking_another_thread():
    # A delay no call here comes near, so the outcome does not depend on timing.
    pool, submit = start_pool(2, handoff_delay=WAIT)
    threads = []
    for _ in range(3):
        ran = threading.Event()
        submit(lambda ran=ran: (threads.append(threading.current_thread().name), ran.set()))
        assert ran.wait(WAIT)
    assert threads == ["call-1"] * 3


def test_waiting_on_erlang_frees_the_slot_for_nested_work():
    pool, submit = start_pool(1)
    inner_ran = threading.Event()
    outer_done = threading.Event()

    def outer():
        submit(inner_ran.set)  # the "nested call" that Erlang would send
        with pool.waiting_on_erlang():
            assert inner_ran.wait(WAIT)
        outer_done.set()

    submit(outer)
    assert outer_done.wait(WAIT)


def wait_for(condition):
    done = threading.Event()
    for _ in range(WAIT * 100):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not met")


def test_cancel_raises_in_a_plain_python_loop():
    job = jobs.Job(77, "m", "f")
    outcome = []

    def run():
        try:
            jobs.start(job)
            while True:
                pass
        except jobs.JobCancelled:
            outcome.append("cancelled")
        finally:
            jobs.finish(job)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: any(j["id"] == 77 for j in jobs.running()))
    assert jobs.cancel(77) is True
    thread.join(WAIT)
    assert outcome == ["cancelled"]
    assert job.cancelled
    assert jobs.cancel(77) is False
    assert all(j["id"] != 77 for j in jobs.running())


def test_cancel_needs_an_integer_id():
    with pytest.raises(TypeError, match="integer call id"):
        jobs.cancel("7")


@SPINS
def test_a_frame_over_the_eager_size_grows_as_it_arrives(pipe, spin):
    big = os.urandom(framing.EAGER_FRAME_SIZE + 3_000_001)
    write_in_thread(pipe, len(big).to_bytes(4, "big") + big + b"\x00\x00\x00\x01z")
    reader = FrameReader(pipe.read_fd, 4, spin_seconds=spin)
    assert bytes(reader.read()) == big
    assert bytes(reader.read()) == b"z"
