"""One search spread over the pools of three BEAM nodes on this machine (src/beam_nas_cluster.erl,
src/beam_nas_lender.erl, cerebros_cluster.py): whatever the nodes do, the journal (timings and
node names aside) and the saved model are those of the same search on one node.

Each scenario of cluster_scenarios.erl runs in a fresh `erl -sname` node that starts the
others with `peer`; it prints what it did as key=value lines."""
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from cerebros.artifacts import load_model
from test_beam_side import ROOT, node_env  # noqa: F401 (a fixture)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ebin(tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster-ebin")
    sources = [*map(str, sorted((ROOT / "src").glob("*.erl"))), str(HERE / "cluster_scenarios.erl"),
               str(HERE / "beam_nas_cluster_tests.erl")]
    subprocess.run(["erlc", "-Werror", "-o", str(out), *sources], check=True)
    return out


def test_the_session_against_stand_in_lenders(ebin, tmp_path):
    """beam_nas_cluster_tests.erl: retries, refusals, lost lenders, data requests, stop and resume."""
    done = subprocess.run(["erl", "-noshell", "-pa", str(ebin), "-eval",
                           "halt(case eunit:test(beam_nas_cluster_tests, [verbose]) of ok -> 0; _ -> 1 end)."],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "All 5 tests passed." in done.stdout, done.stdout + done.stderr


def run_scenario(name, ebin, env, run_dir):
    """Run one scenario in a node of its own; returns its key=value lines as a dict of lists."""
    tag = uuid.uuid4().hex[:8]
    done = subprocess.run(
        ["erl", "-sname", f"coord_{tag}", "-noshell", "-pa", str(ebin), "-eval",
         f'cluster_scenarios:main(["{name}", "{run_dir}"])'],
        env=dict(env, BEAM_NAS_TEST_TAG=tag), cwd=run_dir.parent, capture_output=True, text=True, errors="replace",
        timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    shown = {}
    for key, value in re.findall(r"^(\w+)=(.*)$", done.stdout, re.M):
        shown.setdefault(key, []).append(value.strip('"'))
    return shown


def journal(run_dir):
    with open(Path(run_dir) / "journal.jsonl") as f:
        return [json.loads(line) for line in f]


def without_timings_and_nodes(records):
    return [{k: v for k, v in r.items() if k not in ("duration_seconds", "node", "dispatch_seconds")}
            for r in records]


def summary(run_dir):
    with open(Path(run_dir) / "summary.json") as f:
        found = json.load(f)
    return found["ensemble"]["members"], found["validation_metrics"], found["test_metrics"]


@pytest.fixture(scope="module")
def single_node(ebin, node_env, tmp_path_factory):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("single") / "run"
    run_scenario("single_node", ebin, node_env, run_dir)
    return run_dir


def assert_same_search(run_dir, reference):
    assert len(journal(reference)) == 8
    assert without_timings_and_nodes(journal(run_dir)) == without_timings_and_nodes(journal(reference))
    assert summary(run_dir) == summary(reference)
    X = load_iris().data
    assert np.array_equal(load_model(str(run_dir)).predict_proba(X), load_model(str(reference)).predict_proba(X))


def test_a_search_over_three_nodes_is_the_single_node_search(ebin, node_env, single_node, tmp_path):  # noqa: F811
    shown = run_scenario("three_nodes", ebin, node_env, tmp_path / "run")
    assert_same_search(tmp_path / "run", single_node)
    nodes = re.findall(r"\w+@[\w.-]+", shown["nodes"][0])
    assert {r["node"] for r in journal(tmp_path / "run")} == set(nodes) and len(nodes) == 3
    assert shown["fetches"] == ["[1,1,1]"]  # the data went to each node once


def test_a_node_killed_mid_trial_loses_no_trial(ebin, node_env, single_node, tmp_path):  # noqa: F811
    shown = run_scenario("node_killed", ebin, node_env, tmp_path / "run")
    assert_same_search(tmp_path / "run", single_node)
    victim, trial = shown["victim"][0], int(shown["victim_trial"][0])
    assert journal(tmp_path / "run")[trial]["node"] != victim  # it was running there: it ran again elsewhere


def test_a_node_joining_mid_search_gets_trials(ebin, node_env, single_node, tmp_path):  # noqa: F811
    shown = run_scenario("node_joins", ebin, node_env, tmp_path / "run")
    assert_same_search(tmp_path / "run", single_node)
    assert shown["late"][0] in {r["node"] for r in journal(tmp_path / "run")}


def test_a_disconnected_nodes_trial_runs_again(ebin, node_env, single_node, tmp_path):  # noqa: F811
    shown = run_scenario("node_disconnected", ebin, node_env, tmp_path / "run")
    assert_same_search(tmp_path / "run", single_node)
    victim, trial = shown["victim"][0], int(shown["victim_trial"][0])
    assert journal(tmp_path / "run")[trial]["node"] != victim


def test_a_node_of_another_version_is_refused_before_any_trial(ebin, node_env, single_node, tmp_path):  # noqa: F811
    shown = run_scenario("version_refused", ebin, node_env, tmp_path / "run")
    older = shown["older"][0]
    assert shown["alone_field"] == ["opts.cluster"]
    assert f"node {older} was refused: its version" in shown["alone_error"][0]
    assert "package 0.0.9" in shown["alone_error"][0]
    assert not os.path.exists(tmp_path / "run-alone" / "journal.jsonl") or not journal(tmp_path / "run-alone")
    assert_same_search(tmp_path / "run", single_node)
    assert older not in {r["node"] for r in journal(tmp_path / "run")}
    assert any(f"node {older} was refused" in warning for warning in shown["warning"])


def test_a_lending_worker_killed_mid_trial_loses_no_trial(ebin, node_env, single_node, tmp_path):  # noqa: F811
    shown = run_scenario("worker_killed", ebin, node_env, tmp_path / "run")
    assert_same_search(tmp_path / "run", single_node)  # the trial it trained ran again, maybe on its successor
    assert shown["victim_trial"] and shown["restarted"] == ["true"]


def test_cancel_run_stops_the_remote_trials_within_a_mini_batch(ebin, node_env, tmp_path):  # noqa: F811
    shown = run_scenario("cancelled", ebin, node_env, tmp_path / "run")
    assert shown["error_type"] == ["cancelled"]  # every trial was cut short: none has a score
    # trials that would train for hours: the search returns, and the workers are free, in seconds
    assert int(shown["search_returned_ms"][0]) < 10_000
    assert int(shown["workers_free_ms"][0]) < 10_000


def test_a_search_whose_coordinator_died_resumes_elsewhere_as_if_uninterrupted(ebin, node_env, single_node,  # noqa: F811
                                                                               tmp_path):
    shown = run_scenario("coordinator_killed", ebin, node_env, tmp_path / "run")
    assert 2 <= int(shown["journaled_before_resume"][0]) < 8
    assert_same_search(tmp_path / "run", single_node)
