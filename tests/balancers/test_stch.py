"""STCH: warm-up, nadir collection and the smooth Tchebycheff weights."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers import with_run_facts
from mtl.balancers.stch import stch


def _run(b, rows):
    state = b.init(len(rows[0]))
    step = jax.jit(lambda l, s: b.update(l, None, s))
    ws = []
    for r in rows:
        _, w, state = step(jnp.asarray(r, jnp.float32), state)
        ws.append(np.asarray(w))
    return ws, state


def test_schedule_by_hand():
    b = stch(mu=1.0, warmup_epochs=1, steps_per_epoch=2)
    rows = [[1.0, 2.0], [2.0, 4.0],    # epoch 0: log-loss warm-up
            [1.0, 3.0], [3.0, 5.0],    # epoch 1: warm-up, nadir = (2, 4)
            [2.0, 8.0]]                # epoch 2: STCH
    ws, state = _run(b, rows)
    for w, r in zip(ws[:4], rows[:4]):
        np.testing.assert_allclose(w, 1.0 / np.asarray(r), rtol=1e-6)
    np.testing.assert_allclose(state.loss_sum / state.loss_count, [2.0, 4.0])
    # f = log(L / n) = (0, log 2); softmax = (1/3, 2/3); w_i = 2 * softmax_i / L_i
    np.testing.assert_allclose(ws[4], [2 * (1 / 3) / 2, 2 * (2 / 3) / 8], rtol=1e-5)


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 4), st.floats(0.05, 3.0), st.integers(0, 10_000))
def test_weights_are_gradient_of_official_objective(t, mu, seed):
    rng = np.random.default_rng(seed)
    nadir = rng.uniform(0.5, 2.0, size=t).astype(np.float32)
    losses = jnp.asarray(rng.uniform(0.1, 3.0, size=t), jnp.float32)
    lam = rng.uniform(0.5, 2.0, size=t)
    b = stch(mu=mu, warmup_epochs=0, steps_per_epoch=1, preference=tuple(lam))
    state = b.init(t)._replace(step=jnp.array(1, jnp.int32), loss_sum=jnp.asarray(nadir), loss_count=jnp.array(1.0))
    _, w, _ = b.update(losses, None, state)

    def objective(l):
        f = jnp.log(l / nadir + 1e-20)
        return t * mu * jax.nn.logsumexp(jnp.asarray(lam, jnp.float32) * f / mu)

    np.testing.assert_allclose(w, jax.grad(objective)(losses), rtol=1e-4)


def test_small_mu_focuses_on_the_worst_normalised_task():
    b = stch(mu=0.01, warmup_epochs=0, steps_per_epoch=1)
    ws, _ = _run(b, [[1.0, 1.0, 1.0], [1.0, 1.5, 1.2]])
    # task 1 has the largest L / n; its weight is T / L_1, the others ~0
    np.testing.assert_allclose(ws[1], [0.0, 3 / 1.5, 0.0], atol=1e-6)


def test_nadir_is_frozen_after_the_nadir_epoch():
    b = stch(warmup_epochs=0, steps_per_epoch=1)
    _, state = _run(b, [[2.0, 2.0], [5.0, 7.0], [9.0, 1.0]])
    np.testing.assert_allclose(state.loss_sum, [2.0, 2.0])
    assert float(state.loss_count) == 1.0


def test_bad_preference():
    with pytest.raises(ValueError):
        stch(preference=(1.0, -1.0))
    with pytest.raises(ValueError):
        stch(preference=(1.0, 1.0)).init(3)
    b = stch(steps_per_epoch=1)
    assert math.isfinite(b.update(jnp.array([0.0, 1.0]), None, b.init(2))[1][0])


def test_steps_per_epoch_is_a_run_fact():
    rows = [[1.0, 2.0], [2.0, 4.0], [1.0, 3.0], [3.0, 5.0], [2.0, 8.0]]
    assert stch().run_facts == ("steps_per_epoch",)
    bound, _ = _run(with_run_facts(stch(warmup_epochs=1), steps_per_epoch=2), rows)
    explicit, _ = _run(stch(warmup_epochs=1, steps_per_epoch=2), rows)
    np.testing.assert_array_equal(np.stack(bound), np.stack(explicit))
    # an explicit value is kept: 1 call per epoch, the nadir is epoch 1's loss (2, 4)
    _, state = _run(with_run_facts(stch(warmup_epochs=1, steps_per_epoch=1), steps_per_epoch=2), rows)
    np.testing.assert_allclose(state.loss_sum / state.loss_count, [2.0, 4.0])


def test_unbound_steps_per_epoch_warns():
    with pytest.warns(UserWarning, match="steps_per_epoch"):
        stch().update(jnp.array([1.0, 2.0]), None, stch().init(2))
