"""The quality benchmarks run end to end and print the tables docs/benchmarks.md records (tiny
budgets; their figures are checked for shape and range here, never for speed or quality)."""
import json
import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")


def run_bench(script, *arguments):
    done = subprocess.run([sys.executable, os.path.join(BENCH, script), *arguments],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def table_rows(output, first_cell):
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in output.splitlines() if line.startswith(f"| {first_cell} |")]


def test_nas_bench_keeps_every_result_resumes_from_them_and_writes_the_table(tmp_path):
    cache, page = str(tmp_path / "results.json"), tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n<!-- begin nas_bench -->\nan older table\n<!-- end nas_bench -->\n")
    arguments = ["--datasets", "iris", "--max-trials", "2", "--budget", "600", "--n-jobs", "1",
                 "--split-seeds", "0", "1", "--methods", "engine", "mlp", "linear", "--cache", cache]
    output = run_bench("nas_bench.py", *arguments)
    with open(cache) as f:
        kept = json.load(f)
    results = kept["results"]
    assert sorted(results) == [f"iris|{split}|{method}" for split in (0, 1) for method in ("engine/seed0", "linear", "mlp")]
    assert all(0.0 <= cell["score"] <= 1.0 and cell["commit"] for cell in results.values())
    assert {results[f"iris|{split}|engine/seed0"]["trials"] for split in (0, 1)} == {2}
    [row] = table_rows(output, "iris")
    assert row[1] == "accuracy" and row[5] == "2" and row[-1] == "2"  # trials per search, splits
    engine = [results[f"iris|{split}|engine/seed0"]["score"] for split in (0, 1)]
    assert row[2] == f"{sum(engine) / 2:.4f} ± {abs(engine[0] - engine[1]) / 2:.4f}"
    means = {method: sum(results[f"iris|{split}|{method}"]["score"] for split in (0, 1)) / 2
             for method in ("mlp", "linear")}
    better = max(means, key=means.get)
    lead, plus_minus, error, named = row[6].split()
    assert float(lead) == pytest.approx(100 * (sum(engine) / 2 - means[better]), abs=0.006)
    differences = [100 * (engine[split] - results[f"iris|{split}|{better}"]["score"]) for split in (0, 1)]
    assert plus_minus == "±" and float(error) == pytest.approx(abs(differences[0] - differences[1]) / 2, abs=0.006)
    assert named == f"({better})"

    results["iris|1|mlp"]["score"] = 0.5  # a resumed run takes the file's results as they are
    engine_commit = results["iris|0|engine/seed0"]["commit"]
    for split in (0, 1):  # baselines kept from an earlier engine's run
        results[f"iris|{split}|linear"]["commit"] = results[f"iris|{split}|mlp"]["commit"] = "0ldc0de"
    with open(cache, "w") as f:
        json.dump(kept, f)
    done = subprocess.run([sys.executable, os.path.join(BENCH, "nas_bench.py"), *arguments, "--markdown", str(page)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stderr == ""  # nothing ran again
    [row] = table_rows(done.stdout, "iris")
    assert row[3].startswith(f"{(results['iris|0|mlp']['score'] + 0.5) / 2:.4f} ± ")
    written = page.read_text()
    assert table_rows(written, "iris") == [row] and "an older table" not in written
    assert "split seeds 0, 1, 25% test" in written and "600 s per search" in written
    assert (f"The engine's searches ran at commit(s) {engine_commit}, the other methods at\ncommit(s) 0ldc0de, on "
            in written)
    other = subprocess.run([sys.executable, os.path.join(BENCH, "nas_bench.py"), *arguments[:-2], "--budget", "30",
                            "--cache", cache], capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "made with other settings" in other.stderr


def test_trial_bench_trains_the_same_trials_with_both_versions_and_runs_their_searches():
    seconds = 8  # a trial takes 0.3 s; on a loaded machine a search may still finish none (the next test)
    output = run_bench("trial_bench.py", "--before", "HEAD", "--trials", "1", "--rounds", "1", "--rows", "300",
                       "--searches", "2", "--search-seconds", str(seconds))
    (before, before_searches), (after, after_searches) = table_rows(output, "before (HEAD)"), table_rows(
        output, "working tree")
    for row in (before, after):
        cpu, per_minute = float(row[1]), float(row[2])
        assert per_minute > 0 and abs(60 / per_minute - cpu) <= 0.05 + 0.01 * cpu  # seconds printed to 0.1
        assert 0.0 <= float(row[6]) <= 1.0 and 0.0 <= float(row[7]) <= 1.0
    assert "speed-up: " in output
    [breakdown] = table_rows(output, "1")  # where the one trial's mini-batch time goes
    assert float(breakdown[1]) == pytest.approx(float(after[1]), abs=0.11)  # one trial: all the CPU seconds
    layers, parameters, rows = (int(cell) for cell in breakdown[2:5])
    step, products, share, rate = float(breakdown[5]), float(breakdown[6]), breakdown[7], float(breakdown[8])
    assert layers >= 2 and parameters > 0 and rows > 0 and step > 0 and products > 0 and rate > 0
    assert abs(float(share.rstrip("%")) - 100 * products / step) <= 2  # the times are printed rounded
    assert "GFLOP/s on one BLAS thread" in output
    # each split's search runs with its own seed, the split's: one seed would give every split one first generation
    assert f"Whole searches: 2 per version (split seeds 0-1), {seconds} s each, n_jobs 2, search seeds 0, 1," in output
    without_a_model = [line for line in output.splitlines() if "finished no trial in the budget" in line]
    for row in (before_searches, after_searches):
        mean, spread = row[1].split(" (min ")
        least, most = (int(value) for value in spread.rstrip(")").split(", max "))
        assert 0 <= least <= float(mean) <= most and (least + most) / 2 == float(mean)  # two searches
        assert float(row[2]) == pytest.approx(60 * float(mean) / seconds, abs=0.051)
        if least:
            assert 0.0 <= float(row[4].split(" ± ")[0]) <= 1.0
        else:
            assert f"of {row[0]}'s" in without_a_model[0]
    if not without_a_model:
        assert before_searches[5] == "+0.00 ± 0.00"  # the first version's lead over itself
        lead = 100 * (float(after_searches[4].split(" ± ")[0]) - float(before_searches[4].split(" ± ")[0]))
        assert float(after_searches[5].split(" ± ")[0]) == pytest.approx(lead, abs=0.016)  # all printed rounded


def test_trial_bench_leaves_a_search_without_a_model_out_of_the_scores_and_says_so():
    sys.path.insert(0, BENCH)
    try:
        from trial_bench import search_table
    finally:
        sys.path.remove(BENCH)
    searches = {"before (v1)": [{"trials": 3, "seconds": 5.0, "test": 0.8, "seed": 0},
                                {"trials": 0, "seconds": 5.2, "test": None, "seed": 1}],
                "working tree": [{"trials": 4, "seconds": 5.0, "test": 0.85, "seed": 0},
                                 {"trials": 2, "seconds": 5.0, "test": 0.75, "seed": 1}]}
    lines = search_table(searches, 5)
    output = "\n".join(lines)
    assert table_rows(output, "before (v1)") == [["before (v1)", "1.5 (min 0, max 3)", "18.0", "5.1", "0.8000",
                                                  "+0.00"]]
    # the lead pairs split 0 alone: split 1's first search has no model to compare with
    assert table_rows(output, "working tree") == [["working tree", "3.0 (min 2, max 4)", "36.0", "5.0",
                                                   "0.8000 ± 0.0707", "+5.00"]]
    assert lines[-1] == ("1 of before (v1)'s searches finished no trial in the budget: they have no model, and "
                         "their splits are left out of the test accuracy and the lead.")
    searches["working tree"][0]["test"] = None
    assert table_rows("\n".join(search_table(searches, 5)), "working tree")[0][4:] == ["0.7500", "-"]


def test_reference_models_prints_every_family_the_best_of_them_and_their_means():
    output = run_bench("reference_models.py", "--datasets", "iris", "--split-seeds", "3", "4")
    rows = table_rows(output, "iris")
    assert [row[1] for row in rows] == ["3", "4", "mean"]
    scores = [[float(value) for value in row[2:-1]] for row in rows]
    for row, values in zip(rows, scores):
        assert len(values) == 6 and all(0.0 <= value <= 1.0 for value in values)
        assert row[-1].startswith(f"{max(values):.4f} (")
    assert scores[2] == pytest.approx([(a + b) / 2 for a, b in zip(scores[0], scores[1])], abs=6e-5)


def test_dataset_bench_reads_each_size_and_prints_its_memory():
    output = run_bench("dataset_bench.py", "--sizes", "1")
    [baseline] = table_rows(output, "nothing read")
    [row] = [cells for cells in (line.strip("|").split("|") for line in output.splitlines())
             if cells[0].strip().endswith(" MB")]  # the file's size, rounded up to whole 10 000-row blocks
    row = [cell.strip() for cell in row]
    assert int(row[1]) > 0 and float(row[2]) >= 0
    assert int(row[3]) >= int(baseline[3]) and float(row[4]) >= 0


def test_worker_bench_prints_a_quiet_and_a_loaded_table_with_a_column_per_subject(tmp_path):
    output = run_bench("worker_bench.py", "--rounds", "40", "--hogs", "1", "--no-baseline")
    assert "**quiet**, load average " in output
    assert "**loaded** (1 busy processes started by the benchmark, " in output
    medians = table_rows(output, "trivial call, one at a time: median (us)")
    assert len(medians) == 2 and len(table_rows(output, "echo 10 MB binary: median (ms)")) == 2
    for row in medians:
        worker, nospin, floor, stock = row[1:5]
        assert all(float(cell.replace(",", "")) > 0 for cell in (worker, nospin, floor))
        assert stock == "not run"
    assert [row[-1] for row in medians] == ["<= pipe floor + 5", "<= stock ErlPort"]
    done = subprocess.run([sys.executable, os.path.join(BENCH, "worker_bench.py"), "--rounds", "1",
                           "--stock-erlport", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and f"--stock-erlport {tmp_path}: neither a checkout" in done.stderr


def test_worker_profile_prints_each_stage_and_the_whole_call():
    output = run_bench("worker_profile.py", "--calls", "300", "--repeats", "1")
    stages = [line.strip("|").split("|") for line in output.splitlines()
              if line.startswith("| ") and not line.startswith("| stage")]
    names = [name.strip().split(" (")[0] for name, _ in stages]
    assert names == ["read", "decode", "run", "encode", "write", "whole call"]
    assert all(float(micros) > 0 for _, micros in stages)


def test_selection_bench_replays_the_engine_s_own_choice(tmp_path):
    scratch, page = tmp_path / "runs", tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\n<!-- begin selection_bench -->\nold\n<!-- end selection_bench -->\n")
    output = run_bench("selection_bench.py", "--datasets", "iris", "--split-seeds", "0", "--max-trials", "6",
                       "--prefixes", "3", "6", "--ensemble-size", "6", "--scratch", str(scratch),
                       "--markdown", str(page))
    rows = {row[1]: row for row in table_rows(output, "iris")}
    assert set(rows) == {"engine", "best", "greedy", "top5", "bagged", "engine/ll", "best/ll", "greedy/ll",
                         "top5/ll", "bagged/ll"}
    assert all(0.0 <= float(cell) <= 1.0 for row in rows.values() for cell in row[2:4])
    # replayed at the search's own budget and candidates, the engine's rule is the saved model
    with open(scratch / "iris-0-6" / "summary.json") as f:
        saved = json.load(f)["test_metrics"]["accuracy"]
    assert rows["engine"][3] == f"{saved:.4f}"
    assert table_rows(page.read_text(), "iris") == list(table_rows(output, "iris")) and "old" not in page.read_text()


def test_cluster_bench_runs_the_search_on_one_node_and_over_nodes_and_writes_the_table(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("<!-- begin cluster_bench -->\n<!-- end cluster_bench -->\n")
    output = run_bench("cluster_bench.py", "--trials", "2", "--markdown", str(page))
    rows = [table_rows(output, label) for label in ("1 node, no cluster (n_jobs 1)", "1 node lending 1 worker",
                                                     "2 nodes lending 1 worker each")]
    assert all(len(found) == 1 for found in rows), output
    (local,), (one,), (two,) = rows
    assert [row[1] for row in (local, one, two)] == ["2", "2", "2"]  # every search ran its trials
    assert local[4] == "-" and one[4] == "1.00x" and float(two[4].rstrip("x")) > 0
    assert all(float(row[5]) >= 0 and float(row[6]) >= float(row[5]) for row in (one, two))
    assert table_rows(page.read_text(), "2 nodes lending 1 worker each")


def test_simple_model_bench_reads_the_kept_search_and_scores_the_linear_model_as_nas_bench(tmp_path):
    scratch, page = tmp_path / "runs", tmp_path / "benchmarks.md"
    page.write_text("<!-- begin simple_model_bench -->\n<!-- end simple_model_bench -->\n")
    output = run_bench("simple_model_bench.py", "--datasets", "iris", "--split-seeds", "0", "--max-trials", "30",
                       "--n-jobs", "1", "--scratch", str(scratch), "--markdown", str(page))
    [row] = table_rows(output, "iris")
    with open(scratch / "iris-0-30" / "journal.jsonl") as f:
        linear = [record for record in map(json.loads, f) if record["value"] is not None
                  and not record["candidate"]["levels"]]
    improving = sum(min(record["best_epoch"]) >= record["epochs"] for record in linear)
    assert linear and row[1] == f"{len(linear):.1f}" and row[2] == f"{improving / len(linear):.0%}"
    assert row[4] == f"{max(record['value'] for record in linear):.4f}" and 0.0 <= float(row[5]) <= 1.0
    with open(os.path.join(BENCH, "nas_bench_results.json")) as f:  # the same split's linear model as nas_bench's
        assert row[6] == f"{json.load(f)['results']['iris|0|linear']['score']:.4f}" and row[-1] == "1"
    assert table_rows(page.read_text(), "iris") == [row]
    with pytest.raises(AssertionError, match="diabetes not classification"):
        run_bench("simple_model_bench.py", "--datasets", "diabetes", "--scratch", str(scratch))
