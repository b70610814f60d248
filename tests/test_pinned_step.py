"""The train step (mtl.train.make_train_step) pinned against gradients taken by hand with
jax.grad: K-batch balancers, weighted heads on the rep_grad path, GradNorm's last shared
layer, non-finite gradients with finite losses, and the PRNG key of every step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.models as mm
from mtl.balancers.base import Balancer, EmptyState, weighted_sum
from mtl.models.base import Model
from mtl.train import init_train_state, make_train_step

KINDS = ("binary", "regression")
LR = 0.5


def _batch(seed, n=16, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {"numeric": jnp.asarray(scale * rng.normal(size=(n, 4)) + shift, jnp.float32),
            "categorical": jnp.asarray(rng.integers(0, 3, (n, 1)), jnp.int32),
            "labels": jnp.asarray(np.stack([rng.integers(0, 2, n), 3.0 * rng.normal(size=n) + shift], 1),
                                  jnp.float32)}


def _model(name="shared_bottom", **kw):
    sizes = {"shared_bottom": dict(bottom_hidden=(6, 5), tower_hidden=(3,)),
             "mmoe": dict(num_experts=2, expert_hidden=(5,), tower_hidden=(3,))}[name]
    return mm.get(name, num_tasks=2, num_numeric=4, vocab_sizes=(3,), embed_dim=2, **{**sizes, **kw})


def _task_losses_by_hand(m, params, batch):
    """(T,) per-task losses, written out: BCE on logits for task 0, squared error for task 1."""
    out = m.apply(params, batch["numeric"], batch["categorical"])
    y = batch["labels"]
    bce = jnp.mean(jnp.logaddexp(0.0, out[:, 0]) - out[:, 0] * y[:, 0])
    return jnp.stack([bce, jnp.mean((out[:, 1] - y[:, 1]) ** 2)])


def _task_grads_by_hand(m, params, batch):
    return [jax.grad(lambda p, i=i: _task_losses_by_hand(m, p, batch)[i])(params) for i in range(2)]


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)]).astype(np.float64)


def _assert_tree_close(a, b, rtol=1e-4, atol=1e-6):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _one_step(m, balancer, batch, **kw):
    opt = optax.sgd(LR)
    step = jax.jit(make_train_step(m, balancer, opt, KINDS, **kw))
    s0 = init_train_state(m, balancer, opt, jax.random.key(0))
    s1, out = step(s0, batch)
    return s0, s1, out


def _implied_grads(s0, s1):
    """The gradient an SGD step applied: (params_before - params_after) / lr."""
    return jax.tree_util.tree_map(lambda a, b: (a - b) / LR, s0.params, s1.params)


# --- K-batch balancers ----------------------------------------------------------------------------


def _k_batches():
    """Batch 0 and two extra batches from a visibly different distribution (shifted features and labels)."""
    parts = [_batch(10), _batch(11, shift=2.0, scale=3.0), _batch(12, shift=-2.0, scale=2.0)]
    return {k: jnp.stack([p[k] for p in parts]) for k in parts[0]}, parts


@pytest.mark.parametrize("name,kw", [("modo", dict(gamma=2.0, rho=0.1)), ("sdmgrad", dict(max_norm=0.0))])
def test_k_batch_update_is_computed_on_the_steps_own_batch(name, kw):
    m = _model()
    b = mb.get(name, **kw)
    assert b.num_batches == 3
    batches, parts = _k_batches()
    s0, s1, out = _one_step(m, b, batches)
    g0 = _task_grads_by_hand(m, s0.params, parts[0])
    w = np.asarray(out["weights"])
    # reported losses are batch 0's
    np.testing.assert_allclose(out["losses"], _task_losses_by_hand(m, s0.params, parts[0]), rtol=1e-5)
    implied = _implied_grads(s0, s1)
    # shared layers: the method's weights times batch 0's task gradients; heads and embeddings: the plain sum
    expected = {"embed": jax.tree_util.tree_map(lambda a, c: a + c, g0[0]["embed"], g0[1]["embed"]),
                "shared": jax.tree_util.tree_map(lambda a, c: w[0] * a + w[1] * c, g0[0]["shared"], g0[1]["shared"]),
                "heads": jax.tree_util.tree_map(lambda a, c: a + c, g0[0]["heads"], g0[1]["heads"])}
    _assert_tree_close(implied, expected, rtol=2e-3, atol=2e-5)
    # the same rule on batch 1 would give a visibly different update
    g1 = _task_grads_by_hand(m, s0.params, parts[1])
    wrong = jax.tree_util.tree_map(lambda a, c: a + c, g1[0]["heads"], g1[1]["heads"])
    assert np.abs(_flat(wrong) - _flat(implied["heads"])).max() > 0.1


def test_modo_weights_come_from_the_two_extra_batches():
    """lam <- Pi_simplex(lam - gamma (J_1 J_2^T lam + rho lam)), J_k the shared-layer task gradients of batch k."""
    gamma, rho = 2.0, 0.1
    m = _model()
    batches, parts = _k_batches()
    s0, _, out = _one_step(m, mb.get("modo", gamma=gamma, rho=rho), batches)
    j1, j2 = ([_flat(g["shared"]) for g in _task_grads_by_hand(m, s0.params, parts[k])] for k in (1, 2))
    lam = np.full(2, 0.5)
    v = lam - gamma * (np.array([[a @ c for c in j2] for a in j1]) @ lam + rho * lam)
    l0 = np.clip((v[0] - v[1] + 1.0) / 2.0, 0.0, 1.0)  # projection onto the 2-simplex
    np.testing.assert_allclose(out["weights"], [l0, 1.0 - l0], rtol=1e-4, atol=1e-6)
    assert abs(l0 - 0.5) > 0.05  # the extra batches moved the weights


# --- weighted heads on the rep_grad path ----------------------------------------------------------

W = (0.3, 1.7)


def _fixed_loss_weights():
    return Balancer(lambda t: EmptyState(), lambda losses, g, s, *, key=None: (None, jnp.asarray(W, losses.dtype), s),
                    grads="none", rep_grad=True, name="fixed")


def _fixed_gradient_weights():
    def update(losses, task_grads, s, *, key=None):
        w = jnp.asarray(W, losses.dtype)
        return weighted_sum(task_grads, w), w, s

    return Balancer(lambda t: EmptyState(), update, grads="shared", rep_grad=True, name="fixed_grads")


@pytest.mark.parametrize("rep_grad", [False, True])
@pytest.mark.parametrize("case", ["loss_weighting_with_diagnostics", "weight_heads"])
def test_weighted_gradient_reaches_towers_and_task_gates(case, rep_grad):
    """Every parameter, per-task gates and towers included, gets grad of sum_i w_i L_i."""
    m = _model("mmoe")
    if case == "weight_heads":
        b, kw = _fixed_gradient_weights(), dict(weight_heads=True)
    else:
        b, kw = _fixed_loss_weights(), dict(diagnostics=True)
    batch = _batch(3)
    s0, s1, out = _one_step(m, b, batch, rep_grad=rep_grad, **kw)
    np.testing.assert_allclose(out["weights"], W)
    expected = jax.grad(lambda p: jnp.dot(jnp.asarray(W), _task_losses_by_hand(m, p, batch)))(s0.params)
    assert "gates" in str(jax.tree_util.tree_structure(expected["heads"]))  # MMoE's per-task gates are heads
    _assert_tree_close(_implied_grads(s0, s1), expected, rtol=2e-3, atol=2e-6)


def test_without_weight_heads_towers_get_the_plain_sum():
    m = _model("mmoe")
    batch = _batch(3)
    s0, s1, _ = _one_step(m, _fixed_gradient_weights(), batch, rep_grad=True)
    g = _task_grads_by_hand(m, s0.params, batch)
    expected = jax.tree_util.tree_map(lambda a, c: a + c, g[0]["heads"], g[1]["heads"])
    _assert_tree_close(_implied_grads(s0, s1)["heads"], expected, rtol=2e-3, atol=2e-6)


# --- GradNorm: norms of the last shared layer -----------------------------------------------------


def test_gradnorm_norms_come_from_the_last_shared_layer_only():
    m = _model()  # bottom 4+2 -> 6 -> 5: two shared layers
    assert set(m.init(jax.random.key(0))["shared"]["bottom"]) == {"hidden_0", "last"}
    b = mb.get("gradnorm", learning_rate=0.1)
    batch = _batch(4)
    s0, s1, out = _one_step(m, b, batch, diagnostics=True)
    g = _task_grads_by_hand(m, s0.params, batch)
    last = [g[i]["shared"]["bottom"]["last"] for i in range(2)]
    norms = np.array([np.linalg.norm(_flat(x)) for x in last])
    all_shared = np.array([np.linalg.norm(_flat(g[i]["shared"])) for i in range(2)])
    assert np.abs(norms - all_shared).max() > 1e-3 * norms.max()  # the two choices differ here
    np.testing.assert_allclose(out["grad_norms"], norms, rtol=1e-4)
    # the weights' step is GradNorm's update on those gradients, and the network gets sum_i w_i L_i
    losses = _task_losses_by_hand(m, s0.params, batch)
    _, w, expected_state = b.update(losses, jax.tree_util.tree_map(lambda a, c: jnp.stack([a, c]), *last),
                                    s0.balancer_state)
    _assert_tree_close(s1.balancer_state, expected_state, rtol=1e-4, atol=1e-7)
    expected = jax.grad(lambda p: jnp.dot(w, _task_losses_by_hand(m, p, batch)))(s0.params)
    _assert_tree_close(_implied_grads(s0, s1), expected, rtol=2e-3, atol=2e-6)


# --- a non-finite gradient with finite losses -----------------------------------------------------


@jax.custom_vjp
def nan_cotangent(x):
    return x


nan_cotangent.defvjp(lambda x: (x, None), lambda _, g: (jnp.full_like(g, jnp.nan),))


def nan_gradient_model():
    """A 2-task linear model whose shared layer's gradient is NaN while its outputs and losses stay finite."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"embed": {}, "shared": {"w": 0.3 * jax.random.normal(k1, (4, 3))},
                "heads": {"v": 0.3 * jax.random.normal(k2, (3, 2))}}

    def encode(p, h, *, train=False, key=None):
        return nan_cotangent(h @ p["w"])

    def decode(p, z, h, *, train=False, key=None):
        return z @ p["v"]

    return Model(init=init, embed=lambda p, num, cat: num, encode=encode, decode=decode, last_shared=None,
                 num_tasks=2, name="nan_gradient")


@pytest.mark.parametrize("balancer", ["ew", "famo", "pcgrad", "uw"])
def test_nonfinite_gradient_with_finite_losses_is_not_applied(balancer):
    """A NaN gradient is caught even though every loss is finite; params, optimizer and balancer state stay."""
    m = nan_gradient_model()
    b = mb.get(balancer)
    opt = optax.adam(0.1)
    step = jax.jit(make_train_step(m, b, opt, ("regression", "regression")))
    s0 = init_train_state(m, b, opt, jax.random.key(0))
    batch = {"numeric": jnp.ones((8, 4)), "categorical": jnp.zeros((8, 0), jnp.int32),
             "labels": jnp.ones((8, 2))}
    s1, out = step(s0, batch)
    assert np.all(np.isfinite(out["losses"])) and bool(np.all(out["loss_finite"]))
    assert not bool(out["finite"])
    for part in ("params", "opt_state", "balancer_state"):
        for a, c in zip(jax.tree_util.tree_leaves(getattr(s0, part)), jax.tree_util.tree_leaves(getattr(s1, part)),
                        strict=True):
            np.testing.assert_array_equal(a, c, err_msg=part)


# --- the PRNG key advances every step -------------------------------------------------------------


def _repeat_steps(m, b, batch, n=3, lr=0.0):
    """n steps on the same batch, each from the initial params/optimizer/balancer state but the
    key the previous step returned: whatever differs comes from the key."""
    opt = optax.sgd(lr)
    step = jax.jit(make_train_step(m, b, opt, KINDS))
    s0 = init_train_state(m, b, opt, jax.random.key(7))
    s, outs = s0, []
    for _ in range(n):
        s1, out = step(s, batch)
        outs.append((out, s1.params))
        s = s0._replace(key=s1.key)
    return outs


def _distinct(xs):
    return len({np.asarray(x).tobytes() for x in xs})


def test_dropout_masks_change_every_step_and_repeat_for_a_seed():
    m = _model(dropout=0.5)
    batch = _batch(5)
    a = _repeat_steps(m, mb.get("ew"), batch)
    assert _distinct([o["losses"] for o, _ in a]) == 3  # lr 0, same batch: only the dropout mask differs
    b = _repeat_steps(m, mb.get("ew"), batch)
    for (x, _), (y, _) in zip(a, b):
        np.testing.assert_array_equal(x["losses"], y["losses"])


def test_random_balancers_draw_anew_every_step():
    m = _model()
    batch = _batch(6)
    rlw = _repeat_steps(m, mb.get("rlw"), batch)
    assert _distinct([o["weights"] for o, _ in rlw]) == 3
    graddrop = _repeat_steps(m, mb.get("graddrop"), batch, lr=1.0)
    assert _distinct([_flat(p["shared"]) for _, p in graddrop]) == 3  # a new sign-dropout draw per step
    again = _repeat_steps(m, mb.get("graddrop"), batch, lr=1.0)
    for (_, p), (_, q) in zip(graddrop, again):
        np.testing.assert_array_equal(_flat(p), _flat(q))
