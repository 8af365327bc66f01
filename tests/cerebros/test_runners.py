"""Where trials run: no more processes than the CPU limits allow, and none outliving its search."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cerebros.runners import available_cores
from process_tree import descendants, survivors, wait_for_busy_descendants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Trials that would train far longer than the test: the processes are busy when the search dies.
ENDLESS = {"levels": 2, "units_per_level": 2, "neurons_per_unit": 64, "epochs": 100000, "batch_size": 16,
           "patience": 100000}
SEARCH = textwrap.dedent(f"""
    import sys
    if __name__ == "__main__":  # the forkserver imports this module too: it need not load the engine
        from cerebros.study import SearchConfig, Study
        config = SearchConfig(dataset_id="digits", search_space={ENDLESS!r}, max_trials=100,
                              max_time_seconds=600, n_jobs=2, folds=1)
        Study.prepare(config).run(sys.argv[1])
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process tree from Linux's /proc")
def test_trial_processes_end_when_the_search_process_is_killed(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SEARCH)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    search = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")], env=env)
    try:
        started = wait_for_busy_descendants(search.pid, 2)  # both trial processes are training
    finally:
        search.send_signal(signal.SIGKILL)
        search.wait()
    assert survivors(started) == set()


def test_available_cores_follow_a_cpu_limit(monkeypatch):
    assert available_cores() >= 1
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")  # read by joblib beside a container's CPU quota
    assert available_cores() == 1



# Training makes and frees arrays of a few hundred KiB every mini-batch, a few MiB together. With
# glibc's defaults the freed memory goes back to the system and each new array's pages fault in
# again: counted here as minor page faults, which do not depend on the machine's load.
FAULTS = textwrap.dedent("""
    import resource, sys
    import numpy as np
    if sys.argv[1] == "tuned":
        from cerebros.runners import tune_allocator
        tune_allocator()
    def one_batch():
        arrays = [np.ones(1 << 17, np.float32) for _ in range(8)]  # 8 x 512 KiB
        del arrays
    one_batch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        one_batch()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="tunes glibc's malloc")
def test_trial_processes_reuse_freed_memory_instead_of_faulting_it_in_again():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    faults = {how: int(subprocess.run([sys.executable, "-c", FAULTS, how], env=env, capture_output=True, text=True,
                                      check=True).stdout) for how in ("default", "tuned")}
    assert faults["default"] > 50 * 8 * 64  # at least half of every array's 128 pages faulted in again
    assert faults["tuned"] < 1000, faults


# A search cancelled while its pool starts the second trial process: by its cancel event, or by an
# exception raised into its thread, as the port worker's cancellation (erlport_worker.jobs.cancel)
# or a Ctrl-C can. The first trial process waits in its start-up until the second has ended, so
# that the second reads the pool's first exit message: after the exception, the old code's pool
# had lost track of the second process, sent a single exit message, and waited for the first
# process for ever.
INTERRUPTED_AT_START = textwrap.dedent(f"""
    import ctypes, json, multiprocessing.context, os, sys, threading, time
    import cerebros.runners
    from process_tree import running, survivors

    MARKS = os.environ["TEST_MARKS"]  # the forkserver imports this module too, without our argv


    def _first_process_waits_for_the_second(*args):
        open(os.path.join(MARKS, str(os.getpid())), "w").close()
        if len(os.listdir(MARKS)) == 1:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (len(os.listdir(MARKS)) < 2 or any(
                    running(int(pid)) for pid in os.listdir(MARKS) if int(pid) != os.getpid())):
                time.sleep(0.05)
        cerebros.runners._init_worker(*args)


    class JobCancelled(BaseException):
        pass


    if __name__ == "__main__":
        from cerebros.study import SearchConfig, SearchStopped, Study
        search_thread = threading.get_ident()
        cancel = threading.Event()
        started = []
        real_start = multiprocessing.context.ForkServerProcess.start

        def start(process):
            if started:  # the second process starts once the first is in its start-up
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not os.listdir(MARKS):
                    time.sleep(0.05)
            real_start(process)
            started.append(process.pid)
            if len(started) == 2 and sys.argv[2] == "event":
                cancel.set()
            elif len(started) == 2:  # raised in the search's thread, as erlport_worker.jobs.cancel does
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(search_thread),
                                                           ctypes.py_object(JobCancelled))

        multiprocessing.context.ForkServerProcess.start = start
        cerebros.runners._init_worker = _first_process_waits_for_the_second
        config = SearchConfig(dataset_id="iris", search_space={ENDLESS!r}, max_trials=100,
                              max_time_seconds=600, n_jobs=2, folds=1)
        try:
            Study.prepare(config).run(sys.argv[1], cancel=cancel)
        except (JobCancelled, SearchStopped) as stopped:
            print(json.dumps({{"raised": getattr(stopped, "kind", type(stopped).__name__),
                               "started": started, "left": sorted(survivors(started))}}))
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the process tree from Linux's /proc")
@pytest.mark.skipif(available_cores() < 2, reason="needs two trial processes")
@pytest.mark.parametrize("how, raised", [("event", "cancelled"), ("exception", "JobCancelled")])
def test_a_search_cancelled_while_starting_its_trial_processes_ends_them_and_returns(tmp_path, how, raised):
    script = tmp_path / "search.py"
    script.write_text(INTERRUPTED_AT_START)
    marks = tmp_path / "marks"
    marks.mkdir()
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TEST_MARKS=str(marks),
               PYTHONPATH=os.pathsep.join([ROOT, tests, os.environ.get("PYTHONPATH", "")]))
    search = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), how], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        output, _ = search.communicate(timeout=120)  # it answers within seconds when it answers
    except subprocess.TimeoutExpired:
        left = descendants(search.pid)
        search.kill()
        search.communicate()
        survivors(left, timeout=0)
        pytest.fail("the cancelled search never returned: its pool waited for a trial process for ever")
    assert search.returncode == 0
    result = json.loads(output)
    assert result["raised"] == raised  # no trial finished: the contract's "cancelled" error
    assert len(result["started"]) == 2
    assert sorted(result["started"]) == sorted(int(pid) for pid in os.listdir(marks))  # both started up
    assert result["left"] == []
