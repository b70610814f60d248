"""DWA: epoch bookkeeping and the weight formula, checked by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.balancers import with_run_facts
from mtl.balancers.dwa import DEFAULT_STEPS_PER_EPOCH, dwa


def _run(b, loss_rows):
    state = b.init(len(loss_rows[0]))
    step = jax.jit(lambda l, s: b.update(l, None, s, key=None))
    out = []
    for row in loss_rows:
        _, w, state = step(jnp.asarray(row, jnp.float32), state)
        out.append(np.asarray(w))
    assert step._cache_size() == 1
    return out, state


def test_equal_weights_for_first_two_epochs_then_softmax_of_ratios():
    b = dwa(steps_per_epoch=2)  # temperature 2
    rows = [[3.0, 4.0], [1.0, 4.0],   # epoch 0: means (2, 4)
            [1.5, 4.0], [0.5, 4.0],   # epoch 1: means (1, 4)
            [9.0, 9.0], [9.0, 9.0],   # epoch 2: weights from 1/2 and 4/4
            [1.0, 1.0]]               # epoch 3: weights from (9/1, 9/4)
    w, _ = _run(b, rows)
    for i in range(4):
        np.testing.assert_array_equal(w[i], [1.0, 1.0])
    # epoch 2: r = (0.5, 1.0); w = 2 * softmax(r / 2)
    e0, e1 = math.exp(0.25), math.exp(0.5)
    expected = [2 * e0 / (e0 + e1), 2 * e1 / (e0 + e1)]
    np.testing.assert_allclose(w[4], expected, rtol=1e-6)
    np.testing.assert_allclose(w[5], expected, rtol=1e-6)
    # epoch 3: r = (9/1, 9/4) = (9, 2.25)
    a, c = math.exp(4.5), math.exp(1.125)
    np.testing.assert_allclose(w[6], [2 * a / (a + c), 2 * c / (a + c)], rtol=1e-6)


def test_slower_task_gets_more_weight_and_weights_sum_to_t():
    b = dwa(steps_per_epoch=1, temperature=2.0)
    rows = [[1.0, 1.0, 1.0], [0.5, 1.0, 0.9], [0.1, 1.0, 0.8]]
    w, _ = _run(b, rows)
    # epoch 2 uses epoch1/epoch0 = (0.5, 1.0, 0.9)
    assert w[2][1] > w[2][2] > w[2][0]
    np.testing.assert_allclose(w[2].sum(), 3.0, rtol=1e-6)


def test_temperature_flattens_weights():
    rows = [[2.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    hot, _ = _run(dwa(steps_per_epoch=1, temperature=100.0), rows)
    cold, _ = _run(dwa(steps_per_epoch=1, temperature=0.1), rows)
    assert abs(hot[2][0] - 1.0) < 0.01
    assert cold[2][1] > 1.98  # 2 * sigmoid(5)


def test_state_holds_epoch_means():
    b = dwa(steps_per_epoch=3)
    rows = [[1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [10.0, 10.0]]
    _, state = _run(b, rows)
    np.testing.assert_allclose(state.prev_mean, [2.0, 4.0])
    np.testing.assert_allclose(state.loss_sum, [10.0, 10.0])
    assert int(state.step) == 4 and float(state.loss_count) == 1.0


def test_bad_hyperparameters():
    with pytest.raises(ValueError):
        dwa(steps_per_epoch=0)
    with pytest.raises(ValueError):
        dwa(temperature=0.0)


def test_steps_per_epoch_is_a_run_fact():
    rows = [[3.0, 4.0], [1.0, 4.0], [1.5, 4.0], [0.5, 4.0], [9.0, 9.0]]
    assert dwa().run_facts == ("steps_per_epoch",)
    # bound by the training loop: the same method as passing it
    bound, _ = _run(with_run_facts(dwa(), steps_per_epoch=2, rep_grad=True), rows)
    explicit, _ = _run(dwa(steps_per_epoch=2), rows)
    np.testing.assert_array_equal(np.stack(bound), np.stack(explicit))
    # a value the user passed explicitly is kept: epochs of 3 calls, so the epoch-0 mean is (11/6, 4)
    _, state = _run(with_run_facts(dwa(steps_per_epoch=3), steps_per_epoch=2), rows)
    np.testing.assert_allclose(state.prev_mean, [11 / 6, 4.0], rtol=1e-6)


def test_unbound_steps_per_epoch_warns_and_uses_the_documented_default():
    b = dwa()
    with pytest.warns(UserWarning, match="steps_per_epoch"):
        _, state = _run(b, [[2.0, 1.0]] * (DEFAULT_STEPS_PER_EPOCH + 1))
    np.testing.assert_allclose(state.prev_mean, [2.0, 1.0])  # the first epoch closed after 100 calls
    np.testing.assert_allclose(state.loss_count, 1.0)
