"""A new user's path, end to end: a brand-new Mix project and a brand-new rebar3 project
depend on this repository, install the Python side with the install task (into its default
place under the build folder), start the application with a pool from their configuration,
run a search on iris and predict with its model. Nothing is fetched but pip's packages:
stdin is closed (a Hex prompt fails), `erlport-worker` is not on PATH and this repository
is not on PYTHONPATH, so the worker can only be the installed one.

Each takes about a minute on 2 cores with a warm pip cache (most of it pip)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
IRIS_ROWS = "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]"


@pytest.fixture
def user_env():
    """The environment of a user who has Erlang, Elixir and python3, but no beam-nas."""
    venv_bin = str(ROOT / ".venv" / "bin")
    path = [d for d in os.environ["PATH"].split(os.pathsep)
            if d != venv_bin and not (Path(d) / "erlport-worker").exists()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MIX_", "BEAM_NAS"))}
    return dict(env, PATH=os.pathsep.join(path), HEX_OFFLINE="1")


def run(args, cwd, env, timeout=400):
    done = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return output


def check_install(first, second, venv):
    assert f"the worker answers: {venv}/bin/erlport-worker" in first, first
    assert "pip-installing" in first, first
    assert "pip skipped" in second and "pip-installing" not in second, second


MIX_EXS = """
defmodule MyApp.MixProject do
  use Mix.Project
  def project, do: [app: :my_app, version: "0.1.0", deps: [{{:beam_nas, path: {root!r}}}]]
  def application, do: [extra_applications: [:logger]]
end
"""

MIX_CHECK = """
[w | _] = :beam_nas_pool.workers(:beam_nas)
IO.puts("worker: " <> File.read!("/proc/#{BeamNas.os_pid(w)}/cmdline"))
opts = [run_id: "app-iris", seed: 1, budget: [max_trials: 2, population_size: 2]]
{:ok, %{"run_id" => "app-iris"}} = BeamNas.run_nas(%{dataset_id: "iris"}, opts, 300_000)
{:ok, %{"predictions" => predictions}} = BeamNas.predict("app-iris", ROWS)
IO.puts("predictions: #{inspect(predictions)}")
""".replace("ROWS", IRIS_ROWS)


@pytest.mark.timeout(600)
def test_a_new_mix_project(tmp_path, user_env):
    app = tmp_path / "my_app"
    (app / "config").mkdir(parents=True)
    (app / "mix.exs").write_text(MIX_EXS.format(root=str(ROOT)))
    (app / "config" / "config.exs").write_text(
        'import Config\nconfig :beam_nas, pool: [size: 2], runs_root: "runs"\n')
    (app / "check.exs").write_text(MIX_CHECK)
    venv = app / "_build" / "dev" / "lib" / "beam_nas" / "venv"

    first = run(["mix", "beam_nas.install", "--system-site-packages"], app, user_env)
    second = run(["mix", "beam_nas.install", "--system-site-packages"], app, user_env)
    check_install(first, second, venv)
    output = run(["mix", "run", "check.exs"], app, user_env)
    assert f"worker: {venv}/bin/python\0{venv}/bin/erlport-worker" in output, output
    assert "predictions: [0, 2]" in output, output
    assert (app / "runs" / "app-iris" / "journal.jsonl").is_file()


ERL_CHECK = """
-module(my_erl_app).
-export([check/0]).

check() ->
    {ok, _} = application:ensure_all_started(my_erl_app),
    Spec = #{<<"dataset_id">> => <<"iris">>},
    Opts = #{<<"run_id">> => <<"erl-iris">>, <<"seed">> => 1,
             <<"budget">> => #{<<"max_trials">> => 2, <<"population_size">> => 2}},
    {ok, #{<<"status">> := <<"success">>}} =
        beam_nas_pool:call(beam_nas, cerebros_service, run_nas, [Spec, Opts], 300000),
    {ok, #{<<"status">> := <<"success">>, <<"predictions">> := Predictions}} =
        beam_nas_pool:call(beam_nas, cerebros_service, predict, [<<"erl-iris">>, ROWS]),
    io:format("predictions: ~w~n", [Predictions]),
    halt(0).
""".replace("ROWS", IRIS_ROWS)


@pytest.mark.timeout(600)
@pytest.mark.skipif(shutil.which("rebar3") is None, reason="rebar3 is not installed (scripts/setup-env.sh installs it)")
def test_a_new_rebar3_project(tmp_path, user_env):
    """The dependency comes from _checkouts (a link to this repository): rebar3's way to
    build a dependency from a local folder, as a git dependency is built once fetched."""
    app = tmp_path / "my_erl_app"
    for folder in ("src", "config", "_checkouts"):
        (app / folder).mkdir(parents=True)
    (app / "_checkouts" / "beam_nas").symlink_to(ROOT)
    (app / "rebar.config").write_text("{deps, [beam_nas]}.\n")
    (app / "src" / "my_erl_app.app.src").write_text(
        '{application, my_erl_app, [{description, "a user of beam_nas"}, {vsn, "0.1.0"},'
        " {applications, [kernel, stdlib, beam_nas]}, {modules, []}, {registered, []}]}.\n")
    (app / "src" / "my_erl_app.erl").write_text(ERL_CHECK)
    (app / "config" / "sys.config").write_text(
        '[{beam_nas, [{pool, [{size, 2}]}, {runs_root, "runs"}]}].\n')
    run(["rebar3", "compile"], app, user_env)
    ebin = app / "_build" / "default" / "checkouts" / "beam_nas" / "ebin"
    venv = ebin.parent / "venv"
    install = ["erl", "-noshell", "-pa", str(ebin), "-config", "config/sys",
               "-run", "beam_nas_install", "main", "-extra", "--system-site-packages"]

    first = run(install, app, user_env)
    second = run(install, app, user_env)
    check_install(first, second, venv)
    output = run(["erl", "-noshell", "-pa", str(ebin), str(app / "_build/default/lib/my_erl_app/ebin"),
                  "-config", "config/sys", "-run", "my_erl_app", "check"], app, user_env)
    assert "predictions: [0,2]" in output, output
    assert (app / "runs" / "erl-iris" / "journal.jsonl").is_file()
