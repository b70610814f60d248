"""ExcessMTL: the per-coordinate mode against a NumPy transcription of the
official recurrence, the isotropic fallback (exact for one coordinate), and
the direction of the weight change."""

import jax
import jax.numpy as jnp
import numpy as np

from mtl.balancers.excess_mtl import excess_mtl


def _reference(grads_seq, step_size):
    """Official ExcessMTL.backward on flat (T, D) gradients, step by step."""
    t = grads_seq[0].shape[0]
    acc = np.zeros_like(grads_seq[0])
    lw = np.ones(t)
    initial = None
    outs = []
    for g in grads_seq:
        acc = acc + g**2
        w = np.sum(g * g / np.sqrt(acc + 1e-7), axis=1)
        if initial is None:
            initial = w
        else:
            lw = lw * np.exp(w / initial * step_size)
            lw = lw / lw.sum() * t
        outs.append(lw.copy())
    return outs


def _tree(g):
    g = jnp.asarray(g, jnp.float32)
    return {"w": g[:, :3].reshape(-1, 3, 1), "b": g[:, 3:]}


def _flat(tree):
    return np.concatenate([np.asarray(tree["w"]).reshape(-1), np.asarray(tree["b"]).reshape(-1)])


def test_matches_the_official_recurrence():
    rng = np.random.default_rng(0)
    grads_seq = [rng.normal(size=(3, 5)) * [[1.0], [3.0], [0.3]] for _ in range(5)]
    b = excess_mtl(robust_step_size=0.5)  # larger than the default so the weights move visibly
    state = b.init(3, grads_like={"w": jnp.zeros((3, 1)), "b": jax.ShapeDtypeStruct((2,), jnp.float32)})
    step = jax.jit(b.update)
    for g, lw_ref in zip(grads_seq, _reference(grads_seq, 0.5)):
        d, lw, state = step(jnp.ones(3), _tree(g), state, key=None)
        np.testing.assert_allclose(lw, lw_ref, rtol=1e-5)
        np.testing.assert_allclose(_flat(d), lw_ref @ g, rtol=1e-4, atol=1e-5)
    assert step._cache_size() == 1
    assert not np.allclose(lw, 1.0)


def test_first_step_keeps_equal_weights():
    b = excess_mtl()
    _, lw, state = b.update(jnp.ones(2), _tree(np.eye(2, 5) * [[1.0], [5.0]]), b.init(2), key=None)
    np.testing.assert_allclose(lw, 1.0)
    np.testing.assert_allclose(state.initial_excess, [1.0, 5.0], rtol=1e-5)  # |g|^2 / |g|


def test_isotropic_fallback_is_exact_for_one_coordinate():
    rng = np.random.default_rng(1)
    grads_seq = [rng.normal(size=(3, 1)) for _ in range(4)]
    b = excess_mtl(robust_step_size=0.5)
    s_fb = b.init(3)
    s_full = b.init(3, grads_like=jnp.zeros((1,)))
    for g in grads_seq:
        g = jnp.asarray(g, jnp.float32)
        _, lw_fb, s_fb = b.update(jnp.ones(3), g, s_fb, key=None)
        _, lw_full, s_full = b.update(jnp.ones(3), g, s_full, key=None)
        np.testing.assert_allclose(lw_fb, lw_full, rtol=1e-5)
    assert s_fb.grad_rss is None


def test_task_whose_gradient_stays_large_gains_weight():
    # task 0's gradients keep their size, task 1's shrink (its excess risk falls)
    b = excess_mtl(robust_step_size=0.1)
    state = b.init(2)
    for k in range(20):
        g = jnp.array([[1.0, 0.0], [0.0, 1.0 / (k + 1)]])
        _, lw, state = b.update(jnp.ones(2), g, state, key=None)
    assert lw[0] > 1.0 > lw[1]
    np.testing.assert_allclose(jnp.sum(lw), 2.0, rtol=1e-6)


def test_zero_first_gradient_is_recorded_later():
    b = excess_mtl()
    state = b.init(2)
    _, lw, state = b.update(jnp.ones(2), jnp.array([[1.0, 0.0], [0.0, 0.0]]), state, key=None)
    assert float(state.initial_excess[1]) == 0.0
    _, lw, state = b.update(jnp.ones(2), jnp.array([[1.0, 0.0], [0.0, 2.0]]), state, key=None)
    np.testing.assert_allclose(state.initial_excess[1], 2.0, rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(lw)))
