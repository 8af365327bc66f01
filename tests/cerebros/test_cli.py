"""The command line: run with a progress bar and summary, predict, errors."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cerebros.cli import main

TINY = json.dumps({"levels": [1, 2], "neurons_per_unit": [4, 12], "epochs": [3, 8]})


def test_run_then_predict(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    code = main(["run", "--dataset", "iris", "--max-trials", "3", "--seed", "2", "--run-dir", run_dir,
                 "--search-space", TINY, "--param", "population_size=3"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "3/3 trials" in err and "best accuracy" in err  # the progress bar
    assert "best trial" in out and "test (held out)" in out and "stopped by max_trials" in out
    assert "saved model        ensemble of #" in out and "5 fold network(s) per trial; 5 more refit on all" in out
    assert len((tmp_path / "run" / "journal.jsonl").read_text().splitlines()) == 3

    rows = tmp_path / "rows.csv"
    rows.write_text("sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    done = subprocess.run([sys.executable, "-m", "cerebros", "predict", "--model", run_dir, "--input", str(rows)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 2 and set(done.stdout.split()) <= {"0", "1", "2"}


def test_test_size_0_from_the_command_line(tmp_path, capsys):
    assert main(["run", "--dataset", "iris", "--max-trials", "2", "--run-dir", str(tmp_path), "--quiet",
                 "--search-space", TINY, "--folds", "3", "--test-size", "0"]) == 0
    out = capsys.readouterr().out
    assert "0 test rows" in out and "3 fold network(s) per trial; 3 more refit on all search rows" in out
    assert "test (held out)    none: --test-size 0 trains the model on every row" in out


def test_resume_from_the_command_line(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    arguments = ["run", "--dataset", "iris", "--run-dir", run_dir, "--search-space", TINY, "--quiet",
                 "--strategy", "random"]
    assert main(arguments + ["--max-trials", "2"]) == 0
    assert main(arguments + ["--max-trials", "4", "--resume", "--no-refit"]) == 0
    out = capsys.readouterr().out
    assert "4 (stopped by max_trials)" in out and "(5 fold network(s) per trial)" in out


def test_the_search_stops_on_no_improvement_from_the_command_line(tmp_path, capsys):
    assert main(["run", "--dataset", "iris", "--run-dir", str(tmp_path), "--search-space", TINY, "--quiet",
                 "--max-trials", "50", "--max-trials-without-improvement", "2", "--min-improvement", "1"]) == 0
    assert "3 (stopped by no_improvement)" in capsys.readouterr().out


def test_without_run_dir_each_run_gets_a_new_directory_under_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = ["run", "--dataset", "iris", "--max-trials", "1", "--search-space", TINY, "--quiet"]
    assert main(arguments) == 0 and main(arguments) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(run.name.startswith("iris-") and (run / "journal.jsonl").exists() for run in runs)
    out = capsys.readouterr().out
    assert all(f"{run.name}\n" in out for run in runs)  # the summary says where each run went
    assert main(arguments + ["--resume"]) == 1
    assert "--resume: give --run-dir" in capsys.readouterr().err


def test_errors_are_reported_with_exit_status_1(tmp_path, capsys):
    assert main(["run", "--dataset", "no_such", "--run-dir", str(tmp_path)]) == 1
    assert "unknown dataset 'no_such'" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "missing"), "--input", "x.csv"]) == 1
    assert "no saved model" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,\n")
    main(["run", "--dataset", "iris", "--run-dir", str(tmp_path / "run"), "--max-trials", "1", "--quiet",
          "--search-space", TINY])
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "bad.csv")]) == 1
    assert "bad.csv line 3, 'b': missing value" in capsys.readouterr().err
    assert main(["run", "--dataset", "iris", "--run-dir", str(tmp_path), "--param", "tau"]) == 1
    assert "--param: expected NAME=VALUE" in capsys.readouterr().err
    assert main(["run", "--dataset", "iris", "--run-dir", str(tmp_path), "--param", "tau=hot"]) == 1
    assert "--param tau: expected a number, got 'hot'" in capsys.readouterr().err


def test_someone_elses_directory_and_an_oversized_dataset_are_refused(tmp_path, capsys):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "summary.json").write_text("mine")
    assert main(["run", "--dataset", "iris", "--run-dir", str(tmp_path / "theirs"), "--quiet"]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert os.listdir(tmp_path / "theirs") == ["summary.json"]
    (tmp_path / "d.csv").write_text("a,y\n" + "1,0\n2,1\n" * 20)
    assert main(["run", "--dataset", str(tmp_path / "d.csv"), "--max-dataset-bytes", "10", "--quiet",
                 "--run-dir", str(tmp_path / "run")]) == 1
    assert "over the limit of 10" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "theirs"), "--input", str(tmp_path / "d.csv"),
                 "--max-dataset-bytes", "10"]) == 1
    assert "not a run directory" in capsys.readouterr().err


def test_ctrl_c_with_worker_processes_still_prints_the_best_so_far(tmp_path):
    """The terminal's SIGINT reaches the whole process group, the trial processes included."""
    run_dir = tmp_path / "run"
    search = subprocess.Popen([sys.executable, "-m", "cerebros", "run", "--dataset", "iris", "--n-jobs", "2",
                               "--max-trials", "100000", "--search-space", TINY, "--run-dir", str(run_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    journal = run_dir / "journal.jsonl"
    deadline = time.monotonic() + 120
    while not (journal.exists() and len(journal.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
        assert search.poll() is None, search.communicate()
        time.sleep(0.1)
    os.killpg(search.pid, signal.SIGINT)
    out, err = search.communicate(timeout=120)
    assert search.returncode == 0, err
    assert "Traceback" not in err
    assert "best trial" in out and "(stopped by cancelled)" in out and "result is the best so far" in out


def test_a_shortened_or_unknown_flag_is_refused_not_guessed(tmp_path, capsys):
    # argparse took --split for --split-seed and --ensemble for --ensemble-size (--max-t was ambiguous)
    for flag in ("--split", "--ensemble", "--max-t", "--dataset-id"):
        with pytest.raises(SystemExit) as info:
            main(["run", "--dataset", "iris", "--run-dir", str(tmp_path), flag, "5"])
        assert info.value.code == 2 and f"unrecognized arguments: {flag} 5" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_an_unknown_search_space_field_or_strategy_parameter_names_the_closest(tmp_path, capsys):
    assert main(["run", "--dataset", "iris", "--run-dir", str(tmp_path), "--search-space", '{"levles": 2}']) == 1
    assert "search_space.levles: unknown field; did you mean `levels`?" in capsys.readouterr().err
    assert main(["run", "--dataset", "iris", "--run-dir", str(tmp_path), "--param", "mutaton_rate=0.2"]) == 1
    assert ("mutaton_rate: not a parameter of the evolution strategy; did you mean `mutation_rate`?"
            in capsys.readouterr().err)
    assert not os.listdir(tmp_path)


def test_max_time_alone_runs_until_the_deadline(tmp_path, capsys):
    space = json.dumps({"levels": 1, "units_per_level": 1, "neurons_per_unit": 4, "epochs": 1})
    assert main(["run", "--dataset", "iris", "--run-dir", str(tmp_path), "--search-space", space, "--max-time", "4",
                 "--folds", "1", "--no-refit", "--strategy", "random"]) == 0
    out, err = capsys.readouterr()
    trials = int(out.split("trials", 1)[1].split()[0])
    assert "(stopped by max_time)" in out and trials > 30  # more than the default cap of 30
    assert f"] {trials} trials" in err  # the progress bar counts trials without a cap
