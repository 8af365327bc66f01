"""Where trials run: no more processes than the CPU limits allow, and none outliving its search."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cerebros.runners import available_cores
from process_tree import survivors, wait_for_busy_descendants

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
