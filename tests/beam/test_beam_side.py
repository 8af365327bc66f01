"""Runs the BEAM side (src/, lib/) on real Erlang and Elixir nodes with real workers.

Each EUnit generator in beam_nas_worker_tests.erl runs in its own `erl` node
(so one crash cannot hide another); the ExUnit files run in one `mix test`.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EUNIT_MODULE = HERE / "beam_nas_worker_tests.erl"
EXUNIT_FILES = sorted(HERE.glob("*_test.exs"))
EUNIT_TESTS = re.findall(r"^(\w+_test_)\(\) ->", EUNIT_MODULE.read_text(), re.M)


def worker_command():
    """The project's console script, preferring the one beside this Python."""
    beside = Path(sys.executable).parent / "erlport-worker"
    found = str(beside) if beside.exists() else shutil.which("erlport-worker")
    assert found, "erlport-worker is not installed (pip install -e .)"
    return found


@pytest.fixture(scope="session")
def ebin(tmp_path_factory):
    out = tmp_path_factory.mktemp("ebin")
    sources = sorted(map(str, (ROOT / "src").glob("*.erl")))
    subprocess.run(["erlc", "-Werror", "-o", str(out), *sources, str(EUNIT_MODULE)], check=True)
    return out


@pytest.fixture(scope="session")
def node_env():
    env = dict(os.environ)
    env["BEAM_NAS_TEST_PYTHON"] = worker_command()
    env["BEAM_NAS_TEST_PYPATH"] = str(HERE)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_node(args, env, timeout, cwd):
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def test_the_eunit_module_has_tests():
    assert len(EUNIT_TESTS) >= 15, EUNIT_TESTS


@pytest.mark.parametrize("name", EUNIT_TESTS)
def test_eunit(ebin, node_env, name, tmp_path):
    code, output = run_node(
        ["erl", "-noshell", "-pa", str(ebin), "-eval",
         f"halt(case eunit:test({{generator, beam_nas_worker_tests, {name}}}, [verbose])"
         " of ok -> 0; _ -> 1 end)."],
        node_env, timeout=120, cwd=tmp_path)
    assert code == 0 and "Test passed." in output, output


def test_exunit(node_env, tmp_path):
    """`mix test` in this repository, compiled afresh in a build folder of its own with
    warnings as errors; Mix must not reach for Hex (stdin is closed: a prompt fails)."""
    expected = sum(len(re.findall(r"^\s*test \"", f.read_text(), re.M)) for f in EXUNIT_FILES)
    env = dict(node_env, MIX_ENV="test", MIX_BUILD_ROOT=str(tmp_path / "_build"), HEX_OFFLINE="1",
               BEAM_NAS_TEST_RUNS=str(tmp_path / "runs"))
    done = subprocess.run(["mix", "do", "compile", "--warnings-as-errors", "+", "test"],
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(rf"\b{expected} tests?, 0 failures", output), output
