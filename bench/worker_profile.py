"""The worker's own work per trivial call, stage by stage, in microseconds (no Erlang, no wake-ups).

    python bench/worker_profile.py [--calls 10000] [--repeats 7]

A real ``Worker`` serves ``operator:add(1, 2)`` calls from pipes filled beforehand, in this
process and on this thread, so what is timed is the worker's code and its system calls, never
a process or thread waking up. "whole call" serves ``--calls`` frames through the worker's
own loop (read, decode, dispatch, run, encode, write) and divides; each stage row runs that
stage's own code on the same frame the same number of times. The figures are this thread's
CPU time (so time other processes take the CPU is not counted), the least of ``--repeats``
runs. The stages do not add up to the whole call exactly: the whole call also has the pool's
bookkeeping and the loop's glue, and a stage run alone keeps its caches warmer.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from erlport_worker import cli, jobs  # noqa: E402
from erlport_worker import pool as pool_module  # noqa: E402
from erlport_worker.framing import FrameReader, FrameWriter, enlarge_pipe  # noqa: E402
from erlport_worker.server import Worker  # noqa: E402
from erlport_worker.stock_api import SHIM_PATH  # noqa: E402
from codec import Atom, encode as encode_raw  # noqa: E402

CALL = encode_raw((Atom("C"), 7, Atom("operator"), Atom("add"), [1, 2]), minor_version=1)
HEADER = len(CALL).to_bytes(4, "big")
_PIPE_BYTES = 1 << 20


def pipe_pair():
    """A pipe with a 1 MiB buffer, so thousands of small frames fit without a reader."""
    read_fd, write_fd = os.pipe()
    enlarge_pipe(write_fd)
    return read_fd, write_fd


def timed(calls: int, repeats: int, run) -> float:
    """Least CPU time of ``repeats`` runs of ``run(calls)``, in microseconds per call."""
    return min(run(calls) for _ in range(repeats)) / calls / 1000


def cpu_time(body, calls: int) -> int:
    """This thread's CPU time (ns) for ``calls`` runs of ``body()``."""
    start = time.thread_time_ns()
    for _ in range(calls):
        body()
    return time.thread_time_ns() - start


def whole_call(calls: int, worker_options) -> int:
    """Serve ``calls`` frames through the worker's own reader loop, on this thread."""
    in_fd, in_write = pipe_pair()
    os.write(in_write, (HEADER + CALL) * calls)
    os.close(in_write)
    out_read, out_write = pipe_pair()
    worker = Worker(worker_options, in_fd, out_write)
    start = time.thread_time_ns()
    # The loop a pool thread runs, here on this thread: read and run calls until the end.
    worker._pool._thread(pool_module._READ)
    elapsed = time.thread_time_ns() - start
    for fd in (in_fd, out_read, out_write):
        os.close(fd)
    return elapsed


def stage_runs(worker_options):
    """{stage: run(calls) -> CPU ns}, each the worker's own code for that stage."""
    in_fd, in_write = pipe_pair()
    out_read, out_write = pipe_pair()
    worker = Worker(worker_options, in_fd, out_write)
    # A buffer of exactly one frame: each read() makes one system call, as when calls
    # come one at a time.
    reader = FrameReader(in_fd, 4, worker_options.max_frame_size, len(HEADER + CALL))
    writer = FrameWriter(out_write)
    message = worker._wire.decode(CALL)
    call_id, module, function, args = message[1:]
    reply = worker._encode_result(call_id, module, function, 3)

    def read(calls):
        os.write(in_write, (HEADER + CALL) * calls)
        return cpu_time(reader.read, calls)

    def run_call():
        job = jobs.Job(call_id, module, function)
        jobs.start(job)
        worker._outcome(module, function, args)
        jobs.finish(job)

    def write(calls):
        elapsed = cpu_time(lambda: writer.write(reply), calls)
        os.read(out_read, _PIPE_BYTES)
        return elapsed

    return {
        "read (one frame, one system call)": read,
        "decode (plain mapping)": lambda calls: cpu_time(lambda: worker._wire.decode(CALL), calls),
        "run (register, resolve, call, unregister)": lambda calls: cpu_time(run_call, calls),
        "encode (size probe, reply term)": lambda calls: cpu_time(
            lambda: worker._encode_result(call_id, module, function, 3), calls),
        "write (one frame, one system call)": write,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10000,
                        help="calls per run, at most 20000 (default 10000)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="runs; the least CPU time counts (default 7)")
    args = parser.parse_args()
    if not 0 < args.calls <= 20000:
        parser.error("--calls must be 1 to 20000 (the frames must fit in a pipe)")
    options = cli.parse([])
    sys.path.append(SHIM_PATH)  # as the worker's start-up does
    stages = stage_runs(options)
    gc.freeze()  # as the worker's start-up does: start-up objects are not scanned again
    rows = [(name, timed(args.calls, args.repeats, run)) for name, run in stages.items()]
    rows.append(("whole call (the worker's loop)",
                 timed(args.calls, args.repeats, lambda calls: whole_call(calls, options))))
    print(f"| stage ({args.calls} calls of operator:add(1, 2), best of {args.repeats}) "
          "| us per call |\n|---|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.2f} |")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n(load average {load}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]})")


if __name__ == "__main__":
    main()
