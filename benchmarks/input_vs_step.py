"""Input path versus train step: batches per second, side by side.

    python -m benchmarks.input_vs_step --data_dir=../shared/data

Loads Census-Income (test_split protocol), moves the training split to the
device once, then measures in one run, alternating:

* input path: the epoch permutation drawn on the device and one epoch of
  batches gathered from the device-resident columns inside one compiled
  ``lax.scan`` (exactly what ``mtl.train.fit`` does, minus the step);
* train step: one epoch of MMoE + EW train steps on those batches in one
  compiled scan (the same gather included).

The input path must be a small fraction of a step (it never limits training).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from mtl.train import init_train_state, make_train_step

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Folder with census_income_kdd/ (default: $MTL_DATA_DIR).")
flags.DEFINE_integer("batch", 1024, "Batch size.")
flags.DEFINE_integer("rounds", 7, "Alternating measurement rounds.")



def main(_):
    data = md.load("census_income", data_dir=FLAGS.data_dir, task_group=1)
    arrays = {k: jnp.asarray(v) for k, v in data.train.as_dict().items()}
    n, b = len(data.train), FLAGS.batch
    steps = n // b  # one epoch
    model = mm.get("mmoe", num_tasks=2, num_numeric=len(data.numeric_names), vocab_sizes=data.vocab_sizes)
    balancer, opt = mb.get("ew"), optax.adam(1e-3)
    step = make_train_step(model, balancer, opt, data.task_kinds)
    state = init_train_state(model, balancer, opt, jax.random.key(0))

    def batches(key):
        perm = jax.random.permutation(key, n)[: steps * b].reshape(steps, b)
        return perm

    @jax.jit
    def input_only(arrays, key):
        def body(acc, idx):
            batch = {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}
            return acc + batch["numeric"][0, 0] + batch["labels"][0, 0] + batch["categorical"][0, 0], None

        return jax.lax.scan(body, 0.0, batches(key))[0]

    @jax.jit
    def train_steps(state, arrays, key):
        def body(s, idx):
            batch = {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}
            return step(s, batch)[0], None

        return jax.lax.scan(body, state, batches(key))[0]

    jax.block_until_ready(input_only(arrays, jax.random.key(0)))
    state = jax.block_until_ready(train_steps(state, arrays, jax.random.key(0)))
    t_in, t_step = [], []
    for r in range(FLAGS.rounds):
        k = jax.random.key(r + 1)
        t0 = time.perf_counter()
        jax.block_until_ready(input_only(arrays, k))
        t_in.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        state = jax.block_until_ready(train_steps(state, arrays, k))
        t_step.append(time.perf_counter() - t0)
    ti, ts = np.median(t_in) / steps, np.median(t_step) / steps
    print(f"Census-Income train split: {n:,} rows, batch {b}, {jax.devices()[0].platform}")
    print(f"input path (device permutation + gather): {1 / ti:10.0f} batches/s  ({ti * 1e3:.3f} ms/batch)")
    print(f"train step incl. gather (MMoE + EW):      {1 / ts:10.0f} batches/s  ({ts * 1e3:.3f} ms/batch)")
    print(f"input share of a step: {100 * ti / ts:.1f}%")


if __name__ == "__main__":
    app.run(main)
