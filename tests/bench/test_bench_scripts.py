"""The quality benchmarks run end to end and print the tables docs/benchmarks.md records (tiny
budgets; their figures are checked for shape and range here, never for speed or quality)."""
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench")


def run_bench(script, *arguments):
    done = subprocess.run([sys.executable, os.path.join(BENCH, script), *arguments],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def table_rows(output, first_cell):
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in output.splitlines() if line.startswith(f"| {first_cell} |")]


def test_nas_bench_runs_one_search_per_split_and_seed_and_averages_them():
    output = run_bench("nas_bench.py", "--datasets", "iris", "--max-trials", "2", "--budget", "600",
                       "--n-jobs", "1", "--seeds", "0", "1", "--split-seeds", "0", "1")
    runs = table_rows(output, "iris")
    per_run, means = runs[:4], runs[4:]
    assert [(row[1], row[2]) for row in per_run] == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    for row in per_run:
        assert row[3] == "accuracy" and row[10] == "2"  # metric, trials
        assert row[9] == row[8]  # with time to spare, every member is refit
        assert all(0.0 <= float(value) <= 1.0 for value in row[4:8] + row[12:14])
        assert row[15] in ("ok", "MISSED")
    [mean] = means
    engine_scores = [float(row[4]) for row in per_run]
    assert abs(float(mean[1]) - sum(engine_scores) / 4) <= 1e-4  # a mean of figures printed to 4 places
    assert mean[5].endswith("of 4") and mean[6].endswith("of 4")


def test_reference_models_prints_every_family_and_the_best_of_them():
    output = run_bench("reference_models.py", "--datasets", "iris", "--split-seeds", "3")
    [row] = table_rows(output, "iris")
    scores = [float(value) for value in row[2:-1]]
    assert row[1] == "3" and len(scores) == 6 and all(0.0 <= value <= 1.0 for value in scores)
    assert row[-1].startswith(f"{max(scores):.4f} (")
