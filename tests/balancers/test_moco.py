"""MoCo: the tracking mode against a NumPy transcription of the algorithm
(projection and LibMTL's softmax variants), the Gramian-space fallback by hand,
and jit stability with a gradient template."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.balancers.moco import moco


def _proj_simplex(v):
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > css - 1)[0][-1]
    return np.maximum(v - (css[rho] - 1) / (rho + 1), 0)


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _reference(losses_seq, grads_seq, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0,
               update="projection"):
    t = grads_seq[0].shape[0]
    y = np.zeros_like(grads_seq[0])
    lam = np.full(t, 1.0 / t)
    outs = []
    for k, (losses, g) in enumerate(zip(losses_seq, grads_seq), start=1):
        h = g / (np.linalg.norm(g, axis=1, keepdims=True) + 1e-8) * losses[:, None]
        y = y - beta / k**beta_sigma * (y - h)
        z = lam - gamma / k**gamma_sigma * (y @ y.T + rho * np.eye(t)) @ lam
        lam = _proj_simplex(z) if update == "projection" else _softmax(z)
        outs.append((lam @ y, lam.copy()))
    return outs


def _tree(g):
    g = jnp.asarray(g, jnp.float32)
    return {"w": g[:, :3].reshape(-1, 3, 1), "b": g[:, 3:]}


def _flat(tree):
    return np.concatenate([np.asarray(tree["w"]).reshape(-1), np.asarray(tree["b"]).reshape(-1)])


@pytest.mark.parametrize("update,rho", [("projection", 0.0), ("projection", 0.5), ("softmax", 0.0)])
def test_tracking_matches_the_algorithm(update, rho):
    rng = np.random.default_rng(0)
    losses_seq = [rng.uniform(0.5, 2.0, size=3) for _ in range(4)]
    grads_seq = [rng.normal(size=(3, 5)) for _ in range(4)]
    b = moco(rho=rho, gamma=2.0, lambda_update=update)  # a large step so that lam moves visibly
    state = b.init(3, grads_like={"w": jnp.zeros((3, 1)), "b": jax.ShapeDtypeStruct((2,), jnp.float32)})
    step = jax.jit(b.update)
    for (losses, grads), (d_ref, lam_ref) in zip(zip(losses_seq, grads_seq),
                                                 _reference(losses_seq, grads_seq, gamma=2.0, rho=rho,
                                                            update=update)):
        d, lam, state = step(jnp.asarray(losses, jnp.float32), _tree(grads), state, key=None)
        np.testing.assert_allclose(lam, lam_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_flat(d), d_ref, rtol=1e-5, atol=1e-6)
    assert step._cache_size() == 1
    assert abs(float(jnp.sum(lam)) - 1) < 1e-6


def test_fallback_first_step_by_hand():
    # orthogonal gradients with norms (1, 2), losses (1, 3): h = (1 e1, 3 e2), H H^T = diag(1, 9)
    g = np.array([[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0, 0.0]])
    b = moco(gamma=0.1)
    d, lam, state = b.update(jnp.array([1.0, 3.0]), _tree(g), b.init(2), key=None)
    m = 0.5 * np.diag([1.0, 9.0])  # beta_1 = 0.5
    np.testing.assert_allclose(state.gram_y, m, rtol=1e-6)
    lam_ref = _proj_simplex(np.array([0.5, 0.5]) - 0.1 * m @ np.array([0.5, 0.5]))
    np.testing.assert_allclose(lam, lam_ref, rtol=1e-6)
    # d = H^T lam with the current normalised gradients
    np.testing.assert_allclose(_flat(d)[:2], [lam_ref[0] * 1.0, lam_ref[1] * 3.0], rtol=1e-6)
    assert state.y is None


def test_fallback_weights_favour_the_smaller_task_over_time():
    # MGDA-like dynamics: the task with the smaller normalised gradient gains weight
    g = np.array([[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    b = moco(gamma=1.0)
    state = b.init(2)
    step = jax.jit(b.update)
    for _ in range(50):
        _, lam, state = step(jnp.array([1.0, 3.0]), _tree(g), state, key=None)
    assert lam[0] > 0.8
    assert step._cache_size() == 1


def test_bad_lambda_update_is_refused():
    with pytest.raises(ValueError, match="lambda_update"):
        moco(lambda_update="adam")
