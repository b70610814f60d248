"""GradDrop: sign-consistent outputs, keep probabilities equal to the purity."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers import with_run_facts
from mtl.balancers.graddrop import graddrop

_KEYS = jax.random.split(jax.random.key(0), 2000)


def _many(b, grads):
    """Combined outputs for 2000 keys (vmapped), as numpy."""
    t = jax.tree_util.tree_leaves(grads)[0].shape[0]
    run = jax.jit(jax.vmap(lambda k: b.update(jnp.ones((t,)), grads, b.init(t), key=k)[0]))
    return jax.tree_util.tree_map(np.asarray, run(_KEYS))


def test_parameter_mode_by_hand():
    g = jnp.array([[1.0, -2.0, 3.0], [1.0, 2.0, -1.0]])
    out = _many(graddrop(), {"w": g})["w"]  # (keys, 3)
    # coordinate 0: both positive, P = 1: always the sum 2
    np.testing.assert_array_equal(out[:, 0], 2.0)
    # coordinate 1: P = 1/2: +2 (keep the positive) or -2 (keep the negative)
    assert set(np.unique(out[:, 1])) == {-2.0, 2.0}
    np.testing.assert_allclose((out[:, 1] > 0).mean(), 0.5, atol=0.04)
    # coordinate 2: P = (1 + 2/4)/2 = 3/4: +3 w.p. 3/4, else -1
    assert set(np.unique(out[:, 2])) == {-1.0, 3.0}
    np.testing.assert_allclose((out[:, 2] > 0).mean(), 0.75, atol=0.04)


def test_representation_mode_uses_batch_summed_signs_and_one_mask_per_feature():
    # (T=2, B=2, d=1): task 0 sums to -2, task 1 to +3: P = (1 + 1/5)/2 = 0.6
    g = jnp.array([[[1.0], [-3.0]], [[2.0], [1.0]]])
    out = _many(graddrop(rep_grad=True), g)  # (keys, 2, 1)
    is_task1 = np.all(out == np.asarray(g[1]), axis=(1, 2))
    is_task0 = np.all(out == np.asarray(g[0]), axis=(1, 2))
    assert np.all(is_task0 | is_task1)  # the whole batch follows one mask
    np.testing.assert_allclose(is_task1.mean(), 0.6, atol=0.04)


def test_leak_one_is_the_plain_sum_and_same_signs_pass_unchanged():
    g = {"a": jnp.array([[1.0, -2.0], [-3.0, 4.0]]), "b": jnp.array([[[0.5]], [[0.25]]])}
    b = graddrop(leak=1.0)
    out, w, _ = b.update(jnp.ones(2), g, b.init(2), key=jax.random.key(0))
    np.testing.assert_allclose(out["a"], [-2.0, 2.0])
    np.testing.assert_allclose(out["b"], [[0.75]])
    np.testing.assert_allclose(w, [1.0, 1.0])
    out, w, _ = graddrop().update(jnp.ones(2), g, b.init(2), key=jax.random.key(0))
    np.testing.assert_allclose(out["b"], [[0.75]])  # same sign: kept by every draw


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10_000), st.floats(0.0, 0.9))
def test_each_coordinate_is_the_sum_of_one_sign(t, seed, leak):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(t, 6)).astype(np.float32)
    b = graddrop(leak=leak)
    out, w, _ = b.update(jnp.ones(t), {"g": jnp.asarray(g)}, b.init(t), key=jax.random.key(seed))
    out = np.asarray(out["g"])
    pos = np.where(g > 0, g, 0).sum(0)
    neg = np.where(g < 0, g, 0).sum(0)
    # leak + (1 - leak) * mask: the kept sign at full weight, the other at `leak`
    keep_pos = pos + leak * neg
    keep_neg = neg + leak * pos
    chose_pos = np.isclose(out, keep_pos, atol=1e-5)
    chose_neg = np.isclose(out, keep_neg, atol=1e-5)
    assert np.all(chose_pos | chose_neg)
    # the logged weights: the fraction of each task's entries kept, counting the leak; an entry is kept
    # when its sign is the chosen one (where both sums agree, e.g. one sign only, it is kept either way)
    kept = np.where(chose_pos & ~chose_neg, g > 0, np.where(chose_neg & ~chose_pos, g < 0, True))
    np.testing.assert_allclose(w, (leak + (1 - leak) * kept).mean(axis=1), rtol=1e-5)


def test_rep_grad_is_a_run_fact():
    g = jnp.array([[[1.0], [-3.0]], [[2.0], [1.0]]])  # (T=2, B=2, d=1), as in the test above
    assert graddrop().run_facts == ("rep_grad",)
    bound = with_run_facts(graddrop(), rep_grad=True, steps_per_epoch=5)
    out = _many(bound, g)
    np.testing.assert_array_equal(out, _many(graddrop(rep_grad=True), g))  # the batch-level mask
    # unbound (None) is the per-parameter mode; an explicit False is kept
    np.testing.assert_array_equal(_many(graddrop(), g), _many(graddrop(rep_grad=False), g))
    kept = with_run_facts(graddrop(rep_grad=False), rep_grad=True)
    np.testing.assert_array_equal(_many(kept, g), _many(graddrop(rep_grad=False), g))
    assert not np.array_equal(_many(kept, g), out)
