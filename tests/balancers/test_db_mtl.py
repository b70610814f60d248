"""DB-MTL: the gradient-buffer mode against a literal NumPy transcription of
LibMTL's recurrence, the norm-only fallback by hand, and jit stability with a
gradient template."""

import jax
import jax.numpy as jnp
import numpy as np

from mtl.balancers.db_mtl import db_mtl


def _reference(losses_seq, grads_seq, beta, beta_sigma):
    """LibMTL DB_MTL.backward on flat (T, D) gradients, step by step."""
    buf = np.zeros_like(grads_seq[0])
    outs = []
    for step, (losses, grads) in enumerate(zip(losses_seq, grads_seq), start=1):
        g = grads / (losses[:, None] + 1e-8)
        buf = g + (beta / step**beta_sigma) * (buf - g)
        u = np.linalg.norm(buf, axis=1)
        alpha = u.max() / (u + 1e-8)
        outs.append((alpha @ buf, alpha))
    return outs


def _tree(g):
    # (T, 5) -> two leaves, as the train step passes pytrees
    g = jnp.asarray(g, jnp.float32)
    return {"w": g[:, :3].reshape(-1, 3, 1), "b": g[:, 3:]}


def _flat(tree):
    return np.concatenate([np.asarray(tree["w"]).reshape(-1), np.asarray(tree["b"]).reshape(-1)])


def test_gradient_buffer_matches_libmtl_recurrence():
    rng = np.random.default_rng(0)
    losses_seq = [rng.uniform(0.5, 2.0, size=3) for _ in range(4)]
    grads_seq = [rng.normal(size=(3, 5)) * [[1.0], [10.0], [0.1]] for _ in range(4)]
    for beta, beta_sigma in [(0.9, 0.0), (0.5, 0.5)]:
        b = db_mtl(beta=beta, beta_sigma=beta_sigma)
        like = {"w": jnp.zeros((3, 1)), "b": jax.ShapeDtypeStruct((2,), jnp.float32)}
        state = b.init(3, grads_like=like)
        step = jax.jit(b.update)
        ref = _reference(losses_seq, grads_seq, beta, beta_sigma)
        for losses, grads, (d_ref, a_ref) in zip(losses_seq, grads_seq, ref):
            d, alpha, state = step(jnp.asarray(losses, jnp.float32), _tree(grads), state, key=None)
            np.testing.assert_allclose(_flat(d), d_ref, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(alpha, a_ref, rtol=1e-5)
        assert step._cache_size() == 1
        assert int(state.step) == 4


def test_every_task_gets_the_largest_magnitude():
    # after the magnitude balancing all alpha_i b_i have the same norm
    rng = np.random.default_rng(1)
    b = db_mtl()
    state = b.init(3, grads_like={"w": jnp.zeros((3, 1)), "b": jnp.zeros((2,))})
    grads = rng.normal(size=(3, 5)) * [[1.0], [100.0], [0.01]]
    _, alpha, state = b.update(jnp.array([1.0, 2.0, 3.0]), _tree(grads), state, key=None)
    buf = np.stack([_flat(jax.tree_util.tree_map(lambda x: x[i], state.grad_buffer)) for i in range(3)])
    norms = np.linalg.norm(np.asarray(alpha)[:, None] * buf, axis=1)
    np.testing.assert_allclose(norms, norms.max(), rtol=1e-4)  # up to the 1e-8 in alpha's denominator


def test_fallback_by_hand():
    # losses (2, 4), gradient norms (4, 2): log-gradient norms (2, 0.5)
    g = np.array([[4.0, 0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0, 0.0]])
    losses = jnp.array([2.0, 4.0])
    b = db_mtl(beta=0.0)  # no averaging: alpha = max / n = (1, 4)
    d, w, state = b.update(losses, _tree(g), b.init(2), key=None)
    np.testing.assert_allclose(w, [1.0 / 2.0, 4.0 / 4.0], rtol=1e-6)  # alpha_i / L_i
    np.testing.assert_allclose(_flat(d), [2.0, 2.0, 0.0, 0.0, 0.0], rtol=1e-6)
    assert state.grad_buffer is None
    # with beta = 0.9 the norm buffer averages: second step norms (1, 1) -> buffer
    b = db_mtl(beta=0.9)
    _, _, state = b.update(losses, _tree(g), b.init(2), key=None)
    np.testing.assert_allclose(state.norm_buffer, [0.2, 0.05], rtol=1e-6)
    g2 = np.array([[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0, 0.0]])
    _, w, state = b.update(losses, _tree(g2), state, key=None)
    nb = np.array([1.0 + 0.9 * (0.2 - 1.0), 1.0 + 0.9 * (0.05 - 1.0)])
    np.testing.assert_allclose(state.norm_buffer, nb, rtol=1e-6)
    np.testing.assert_allclose(w, (nb.max() / (nb + 1e-8)) / np.array([2.0, 4.0]), rtol=1e-6)


def test_fallback_and_buffer_agree_without_averaging():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(3, 5))
    losses = jnp.array([0.5, 1.0, 2.0])
    b = db_mtl(beta=0.0)
    d_fb, _, _ = b.update(losses, _tree(g), b.init(3), key=None)
    d_buf, _, _ = b.update(losses, _tree(g), b.init(3, grads_like={"w": jnp.zeros((3, 1)), "b": jnp.zeros((2,))}),
                           key=None)
    np.testing.assert_allclose(_flat(d_fb), _flat(d_buf), rtol=1e-5)
