"""Reading a .csv dataset: time and peak memory for files of a few sizes, each in a fresh process.

    python bench/dataset_bench.py [--sizes 10 100] [--markdown [PAGE]]     # file sizes in MB

Each file has 20 numeric feature columns and an integer label column. "peak RSS" is the
reading process's maximum resident size, the interpreter, numpy and scikit-learn included
(the "nothing read" row); "arrays" the features and labels read.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from markdown_section import add_markdown_flag, write_section

COLUMNS = 20
READ = """
import resource, sys, time
from cerebros import data
rows = seconds = arrays = 0
if len(sys.argv) > 1:
    started = time.perf_counter()
    X, y, _ = data.load(sys.argv[1], max_bytes=2 ** 40)
    seconds = time.perf_counter() - started
    rows, arrays = X.shape[0], X.nbytes + y.nbytes
print(rows, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, arrays)
"""


def write_csv(path, megabytes):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write(",".join(f"x{i}" for i in range(COLUMNS)) + ",y\n")
        while f.tell() < megabytes * 1_000_000:
            block = np.column_stack([rng.normal(size=(10_000, COLUMNS)), rng.integers(0, 3, 10_000)])
            np.savetxt(f, block, delimiter=",", fmt=["%.6f"] * COLUMNS + ["%d"])


def measure(*path):
    done = subprocess.run([sys.executable, "-c", READ, *path], capture_output=True, text=True, check=True)
    rows, seconds, peak, arrays = done.stdout.split()
    return int(rows), float(seconds), int(peak), int(arrays)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[10, 100], help="file sizes in MB")
    add_markdown_flag(parser)
    args = parser.parse_args()
    _, _, peak, _ = measure()
    lines = ["| file | rows | seconds | peak RSS MB | arrays MB |", "|---|---:|---:|---:|---:|",
             f"| nothing read | 0 | - | {peak / 1e6:.0f} | 0 |"]
    with tempfile.TemporaryDirectory() as folder:
        for megabytes in args.sizes:
            path = os.path.join(folder, f"{megabytes:g}.csv")
            write_csv(path, megabytes)
            rows, seconds, peak, arrays = measure(path)
            lines.append(f"| {os.path.getsize(path) / 1e6:.0f} MB | {rows} | {seconds:.1f} | {peak / 1e6:.0f} | "
                         f"{arrays / 1e6:.0f} |")
            os.remove(path)
    print("\n".join(lines))
    if args.markdown:
        write_section("dataset_bench", "\n".join(lines), path=args.markdown)


if __name__ == "__main__":
    main()
