"""First load of a delimited file whose records are not one per line, side by side across checkouts.

    python -m benchmarks.quoted_lines --rows=1000000 --out=/tmp/mtl_quoted --checkouts=.,/tmp/old

Writes (when absent) a CSV of ``--rows`` rows, four columns, whose first record holds a quoted line
break, so that its lines and records do not correspond one to one. Then, alternating ``--repeats``
times, loads it with the tabular loader from each checkout (its ``mtl`` first on ``sys.path``) in a
fresh process with an empty cache, and prints the seconds and the peak resident memory (``VmHWM``).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("rows", 1_000_000, "Rows of the generated file.")
flags.DEFINE_string("out", "/tmp/mtl_quoted", "Folder for the generated file.")
flags.DEFINE_list("checkouts", ["."], "Checkouts (folders holding mtl/) to load it with.")
flags.DEFINE_integer("repeats", 2, "Alternating rounds.")

_LOAD = """
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import mtl.data
with tempfile.TemporaryDirectory() as cache:
    start = time.perf_counter()
    mtl.data.load("tabular", path=sys.argv[2], label_columns="y", verbose=False, cache_dir=cache)
    seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak}))
"""


def _write(path: pathlib.Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    y, cat, z = rng.integers(0, 2, rows), rng.integers(0, 100, rows), rng.integers(0, 999, rows)
    x = rng.normal(size=rows)
    with open(path, "w") as f:
        f.write('y,cat,x,z\n1,"two\nlines",0.5,1\n')
        f.write("".join(f"{a},k{b},{c:.4f},{d}\n" for a, b, c, d in zip(y, cat, x, z)))


def main(argv):
    del argv
    path = pathlib.Path(FLAGS.out) / f"quoted_{FLAGS.rows}.csv"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, FLAGS.rows)
    for r in range(FLAGS.repeats):
        for checkout in FLAGS.checkouts:
            root = str(pathlib.Path(checkout).resolve())
            with tempfile.TemporaryDirectory() as cwd:  # not the repository: its mtl/ must not shadow the checkout's
                out = subprocess.run([sys.executable, "-c", _LOAD, root, str(path)], cwd=cwd, check=True,
                                     capture_output=True, text=True).stdout  # fmt: skip
            m = json.loads(out.strip().splitlines()[-1])
            print(f"round {r}  {root:<40} {m['seconds']:6.2f} s  peak {m['peak_mb']:5.0f} MiB", flush=True)


if __name__ == "__main__":
    app.run(main)
