"""The reader's polling rule (``erlport_worker.polling``), fed made-up timings: no test here
depends on how fast this machine is."""
import os
import threading

import pytest

from erlport_worker import polling
from erlport_worker.framing import FrameReader
from erlport_worker.polling import (BACKOFF_MAX, BACKOFF_MIN, LOAD_EVERY, MISSES, SpinPolicy)

WINDOW = 100e-6


class Runnable:
    """A stand-in for the machine's runnable-process count that records its calls."""

    def __init__(self, value=1.0):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def policy(cores=2, runnable=None):
    return SpinPolicy(WINDOW, cores, runnable or Runnable())


def test_polls_the_whole_window_while_frames_come_quickly():
    spin = policy()
    now = 10.0
    for _ in range(100):
        assert spin.budget(now) == WINDOW
        spin.waited(20e-6, False, now + 20e-6)
        now += 1e-3


@pytest.mark.parametrize("window, cores", [(WINDOW, 1), (0.0, 2), (0.0, 1)])
def test_never_polls_on_one_core_or_with_no_window(window, cores):
    spin = SpinPolicy(window, cores, Runnable())
    for now in (0.0, 1.0, 100.0):
        spin.waited(1e-6, False, now)
        assert spin.budget(now) == 0.0


def test_stops_after_slow_frames_and_resumes_on_a_quick_one_even_while_sleeping():
    spin = policy()
    for miss in range(MISSES):
        assert spin.budget(float(miss)) == WINDOW
        spin.waited(WINDOW * 3, False, miss + 0.5)
    assert spin.budget(10.0) == 0.0
    spin.waited(WINDOW * 50, False, 10.5)  # slow again, while sleeping: still off
    assert spin.budget(11.0) == 0.0
    spin.waited(WINDOW / 2, False, 11.5)  # a frame that polling would have caught
    assert spin.budget(12.0) == WINDOW


def test_losing_the_cpu_while_polling_pauses_it_with_a_doubling_back_off():
    spin = policy()
    now = 5.0
    expected = BACKOFF_MIN
    for _ in range(12):
        spin.waited(WINDOW, True, now)
        assert spin.budget(now + expected * 0.99) == 0.0
        now += expected * 1.01
        assert spin.budget(now) == WINDOW
        expected = min(BACKOFF_MAX, expected * 2)
    assert expected == BACKOFF_MAX
    # Long after the last back-off, a preemption starts again from the smallest one.
    now += 10 * BACKOFF_MAX
    spin.waited(WINDOW, True, now)
    assert spin.budget(now + BACKOFF_MIN * 1.01) == WINDOW


def test_a_busy_machine_pauses_polling_and_is_sampled_at_most_every_load_every():
    runnable = Runnable(value=3.0)  # more runnable processes than the 2 cores: busy
    spin = policy(cores=2, runnable=runnable)
    assert spin.budget(1.0) == 0.0
    for step in range(1, 10):
        assert spin.budget(1.0 + step * LOAD_EVERY / 10) == 0.0
    assert runnable.calls == 1
    runnable.value = 2.0
    assert spin.budget(1.0 + LOAD_EVERY) == WINDOW
    assert runnable.calls == 2
    for step in range(1, 10):
        assert spin.budget(1.0 + LOAD_EVERY + step * LOAD_EVERY / 10) == WINDOW
    assert runnable.calls == 2


def test_the_machine_count_reads_a_number():
    count = polling.runnable_now()
    assert count >= 0 and polling.usable_cores() >= 1


class Recording:
    """A policy that polls for ``budget`` seconds and keeps what the reader reports."""

    def __init__(self, budget):
        self.window = budget
        self.reports = []
        self.waiting = threading.Event()

    def budget(self, now):
        self.waiting.set()
        return self.window

    def waited(self, seconds, preempted, now):
        self.reports.append((seconds, preempted))


@pytest.mark.parametrize("budget", [0.0, 60.0])
def test_the_reader_waits_by_polling_or_sleeping_and_reports_each_wait(budget):
    # A 60 s budget polls until the frame comes; 0 sleeps at once. Either way the frame is
    # read whole and the wait is reported. The frame is sent once the reader waits.
    read_fd, write_fd = os.pipe()
    recording = Recording(budget)
    reader = FrameReader(read_fd, 4, policy=recording)

    def send():
        assert recording.waiting.wait(30)
        os.write(write_fd, (3).to_bytes(4, "big") + b"abc")
        os.close(write_fd)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert bytes(reader.read()) == b"abc"
        assert reader.read() is None
    finally:
        sender.join(30)
        os.close(read_fd)
    assert recording.reports and all(seconds > 0 for seconds, _ in recording.reports)
