"""Start-up, stdout hygiene, shutdown and malformed input, driven through pipes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import codec
from codec import Atom

from erlport_worker.server import EXIT_PROTOCOL
from process_tree import cpu_seconds, survivors, wait_for_busy_descendants
from worker_harness import C, P, TIMEOUT, PortClosed, worker_env

T = "worker_targets"


def wait_until(condition, timeout=TIMEOUT, step=0.02):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def test_version_answers_like_cpython():
    ours = subprocess.run([sys.executable, "-m", "erlport_worker", "-V"], capture_output=True,
                          text=True, env=worker_env(), timeout=TIMEOUT)
    cpython = subprocess.run([sys.executable, "-V"], capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert ours.returncode == 0
    assert ours.stdout == cpython.stdout
    assert ours.stdout.startswith("Python 3.")


@pytest.mark.parametrize("use_stdio", [True, False])
def test_print_and_fd_level_writes_cannot_corrupt_the_stream(start_worker, use_stdio):
    port = start_worker(use_stdio=use_stdio)
    assert port.call(T, "noisy") == b"quiet"
    printed = b"".join(term[1] for term in port.side if term[0] == P)
    assert printed == b"printed line\n"
    assert port.call(T, "add", 1, 2) == 3
    port.close()
    assert "fd one noise" in port.stderr
    assert "child noise" in port.stderr


def test_port_close_ends_the_worker_during_a_long_call(worker):
    worker.send_call(T, "sleep_then", [300, b"never"])
    wait_until(lambda: worker.call("erlport_worker.jobs", "running") != [])
    started = time.monotonic()
    assert worker.close() == 0
    # The requirement is one second; the bound is loose for a loaded CI machine.
    assert time.monotonic() - started < 5


ENDLESS = {"levels": 2, "units_per_level": 2, "neurons_per_unit": 64, "epochs": 100000, "patience": 100000}


def start_parallel_search(worker, run_dir):
    """A run_nas call whose two trial processes train far longer than any test; its call id
    and the worker's processes, once both trial processes are busy."""
    call_id = worker.send_call("cerebros_service", "run_nas", [
        {"dataset_id": "digits", "search_space": ENDLESS},
        {"run_id": "endless", "run_dir": run_dir, "n_jobs": 2, "folds": 1,
         "budget": {"max_trials": 100, "max_time_seconds": 600}}])
    return call_id, wait_for_busy_descendants(worker.proc.pid, 2)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process tree from Linux's /proc")
def test_port_close_during_a_parallel_search_ends_its_trial_processes(worker, tmp_path):
    _, started = start_parallel_search(worker, str(tmp_path / "run"))
    assert worker.close() == 0
    assert survivors(started) == set()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process tree from Linux's /proc")
def test_cancelling_a_parallel_search_call_stops_its_trials_at_once(worker, tmp_path):
    call_id, started = start_parallel_search(worker, str(tmp_path / "run"))
    trial_processes = {pid for pid in started if cpu_seconds(pid) >= 1.0}
    assert worker.call("erlport_worker.jobs", "cancel", call_id) == Atom("true")
    # the search had 600 s left: its reply comes now only if its trials were stopped, not awaited
    reply = worker.reply_to(call_id, timeout=60)
    assert reply[0] == Atom("e") and "JobCancelled" in str(reply[2][1])
    assert survivors(trial_processes) == set()
    assert worker.call("cerebros_service", "run_status", "endless")["status"] == b"cancelled"
    assert worker.call("math", "sqrt", 4.0) == 2.0  # the worker lives on


def test_a_search_whose_worker_was_killed_resumes_in_a_new_one_and_ends_as_if_never_stopped(
        start_worker, tmp_path, monkeypatch):
    monkeypatch.setenv("CEREBROS_RUNS_DIR", str(tmp_path))  # the workers inherit it
    spec = {"dataset_id": "iris", "search_space": {"levels": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]}}
    opts = {"run_id": "nightly", "n_jobs": 2, "folds": 2, "seed": 3,
            "budget": {"max_trials": 30, "population_size": 4}}
    journal = tmp_path / "nightly" / "journal.jsonl"
    first = start_worker()
    first.send_call("cerebros_service", "run_nas", [spec, opts])
    wait_until(lambda: journal.exists() and len(journal.read_text().splitlines()) >= 4, timeout=120)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(TIMEOUT)
    second = start_worker()
    assert second.call("cerebros_service", "run_status", "nightly")["status"] == b"incomplete"
    resumed = second.call("cerebros_service", "run_nas", spec, {**opts, "resume": True})
    straight = second.call("cerebros_service", "run_nas", spec, {**opts, "run_id": "straight"})
    assert resumed["status"] == straight["status"] == b"success"
    assert resumed["completed_trials"] == straight["completed_trials"] == 30
    assert resumed["test_metric"] == straight["test_metric"]
    untimed = [{key: value for key, value in json.loads(line).items() if key != "duration_seconds"}
               for path in (journal, tmp_path / "straight" / "journal.jsonl") for line in path.read_text().splitlines()]
    assert untimed[:30] == untimed[30:]


def test_sigterm_exits_cleanly(worker):
    assert worker.call(T, "add", 1, 2) == 3
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(TIMEOUT) == 0
    assert "Traceback" not in worker.stderr


def _expect_protocol_exit(port, reason):
    with pytest.raises(PortClosed):
        port.recv()
    assert port.proc.wait(TIMEOUT) == EXIT_PROTOCOL
    assert "malformed data from Erlang" in port.stderr
    assert reason in port.stderr


@pytest.mark.parametrize("payload, reason", [
    (b"\x83\xff\x00", "undecodable frame"),
    (b"garbage", "undecodable frame"),
    (codec.encode([1, 2]), "not a protocol message"),
    (codec.encode((Atom("X"), 1)), "not a protocol message"),
    (codec.encode((C, b"id", Atom("m"), Atom("f"), [])), "call id must be an integer"),
])
def test_malformed_frames_exit_with_the_protocol_status(worker, payload, reason):
    worker.send_raw(payload)
    _expect_protocol_exit(worker, reason)


def test_frame_over_the_maximum_size_exits(start_worker):
    port = start_worker("--max-frame-size", "100")
    assert port.call(T, "echo", b"x" * 50) == b"x" * 50
    port.send_raw(b"\x83" + b"x" * 200)
    _expect_protocol_exit(port, "over the maximum frame size of 100 bytes")


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
    return int(kib) * 1024


def _unread_bytes(fd: int) -> int:
    import array
    import fcntl
    import termios
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_header_announcing_a_huge_frame_costs_only_what_arrives(worker):
    assert worker.call(T, "add", 1, 2) == 3
    before = _rss_bytes(worker.proc.pid)
    announced, sent = 200 * 1024 * 1024, 1024 * 1024
    worker.send_raw(b"\x83" + b"x" * (sent - 1), size=announced)
    wait_until(lambda: _unread_bytes(worker.proc.stdin.fileno()) == 0)
    # Today's worker allocated (and zeroed) all 200 MiB on reading the header; now at
    # most EAGER_FRAME_SIZE (16 MiB) is allocated before bytes arrive.
    assert _rss_bytes(worker.proc.pid) - before < 32 * 1024 * 1024
    worker.proc.stdin.close()
    _expect_protocol_exit(worker, f"stream ended inside a frame of {announced} bytes")


def test_stream_ending_inside_a_frame_exits(worker):
    worker.send_raw(codec.encode(1), size=100)
    worker.proc.stdin.close()
    _expect_protocol_exit(worker, "stream ended inside a frame of 100 bytes")


def test_python_opaque_values_are_refused_never_unpickled(worker):
    opaque = (Atom("$erlport.opaque"), Atom("python"), b"\x80\x04K\x01.")
    worker.send((C, 1, Atom(T), Atom("echo"), [opaque]))
    tag, call_id, error = worker.recv()
    assert (tag, call_id) == (Atom("e"), 1)
    assert error[1] == Atom("erlport_worker.wire.RefusedOpaque")
    assert worker.call(T, "add", 1, 2) == 3


def test_python_opaque_outside_a_call_exits(worker):
    worker.send((Atom("M"), (Atom("$erlport.opaque"), Atom("python"), b"\x80\x04K\x01.")))
    _expect_protocol_exit(worker, "refused")


@pytest.mark.parametrize("argv", [["--packet=3"], ["-m", "something.else"], ["--compressed=10"],
                                  ["--concurrency", "0"], ["--bogus"],
                                  ["--allow=os path"], ["--allow", "os;rm"]])
def test_bad_command_lines_exit_with_status_2(argv):
    done = subprocess.run([sys.executable, "-m", "erlport_worker", *argv], capture_output=True,
                          text=True, env=worker_env(), timeout=TIMEOUT)
    assert done.returncode == 2
    assert "erlport-worker: error:" in done.stderr


def test_stock_erlport_command_line_serves(start_worker):
    port = start_worker("-u", "-m", "erlport.cli", "--compressed=0", "--buffer_size=65536",
                        packet=2)
    assert port.call(T, "add", 20, 22) == 42
    assert port.close() == 0
