"""The T per-task pullbacks of a Jacobian method: a loop (what ``mtl.train.step`` does) against one ``jax.vmap``.

    python -m benchmarks.pullback_vmap                      # paper-size MMoE, T = 7, ew / pcgrad / mgda, 2 rounds

Times the scanned train step of ``benchmarks.step_time`` (same model, data and
columns: ``x flops`` = (time / ew's) / (FLOPs / ew's), ``GB`` = XLA's bytes
accessed) with ``mtl.train.step._pullback_rows`` as it is and replaced by
``jax.vmap(pull)(eye)``, alternating the two formulations round by round.
"""

from __future__ import annotations

import jax
from absl import app, flags

import mtl.train.step as step_module
from benchmarks import step_time

FLAGS = flags.FLAGS
flags.DEFINE_string("pullback_size", "paper", "A size of benchmarks.step_time.")
flags.DEFINE_integer("pullback_tasks", 7, "Task count T.")
flags.DEFINE_integer("pullback_rounds", 2, "Alternating rounds of both formulations.")


def _vmapped(pull, eye):
    return jax.vmap(pull)(eye)


def main(argv):
    del argv
    loop = step_module._pullback_rows
    peak = step_time.measure_peak(FLAGS.pullback_size, False)
    print(f"{FLAGS.pullback_size} MMoE, T = {FLAGS.pullback_tasks}; 3 timed calls a measurement, "
          f"{FLAGS.scan_steps} steps a call")
    try:
        for r in range(FLAGS.pullback_rounds):
            for name, fn in (("loop", loop), ("vmap", _vmapped)):
                step_module._pullback_rows = fn
                for row in step_time.measure(FLAGS.pullback_size, FLAGS.pullback_tasks, ["ew", "pcgrad", "mgda"], 3,
                                             FLAGS.scan_steps, False, 0, peak):
                    print(f"round {r} {name:4s} {row['method']:7s} {row['mtl_ms']:8.2f} ms  x ew "
                          f"{row['ew_ratio']:5.2f}  x flops {row['cost_over_flops']:.3f}  GB "
                          f"{row['gb_per_step']:.3f}", flush=True)
    finally:
        step_module._pullback_rows = loop


if __name__ == "__main__":
    app.run(main)
