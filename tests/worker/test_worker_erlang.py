"""erlport-worker under a real `erl`, opened exactly as stock ErlPort opens Python.

The cases live in erl/worker_port_tests.erl; it is compiled here with erlc
and run once per port mode, printing one line per case.
"""
import os
import subprocess

import pytest

from worker_harness import HERE, worker_env, worker_script

ERL_SOURCE = HERE / "erl" / "worker_port_tests.erl"


@pytest.fixture(scope="module")
def beam_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("worker_erl")
    subprocess.run(["erlc", "-o", str(out), str(ERL_SOURCE)], check=True, timeout=120)
    return out


@pytest.mark.parametrize("mode", ["stdio", "nouse_stdio"])
def test_erlang_cases(beam_dir, mode, tmp_path):
    exe = worker_script()
    python_path = worker_env()["PYTHONPATH"]
    done = subprocess.run(
        ["erl", "-noshell", "-pa", str(beam_dir), "-run", "worker_port_tests", "main",
         exe, python_path, mode],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, CEREBROS_RUNS_DIR=str(tmp_path)))
    lines = done.stdout.splitlines()
    declared = next(line.split()[1:] for line in lines if line.startswith("CASES "))
    results = dict(line.split(" ", 2)[1:] for line in lines if line.startswith("CASE "))
    assert list(results) == declared, done.stdout + done.stderr
    failures = {case: result for case, result in results.items() if result != "ok"}
    assert failures == {}, done.stderr
