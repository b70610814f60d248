"""Models: every forward pass against an independent NumPy reference, the split
forward, the parameter tree's parts, dropout, gates, and parameter counts.

The references below are written from the papers' equations on the parameter
tree, in float64 NumPy; the Flax modules must agree with them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtl.models as mm
from mtl.models.layers import embedding_offsets

B, F_NUM, VOCAB = 6, 5, (4, 7, 3)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(B, F_NUM)).astype(np.float32)
    cat = np.stack([rng.integers(0, v, B) for v in VOCAB], 1).astype(np.int32)
    return num, cat


def _get(name, t=2, **kw):
    return _cached(name, t, tuple(sorted(kw.items())))


@functools.cache
def _cached(name, t, kw):
    return mm.get(name, num_tasks=t, num_numeric=F_NUM, vocab_sizes=VOCAB, **dict(kw))


def _apply(m, *, train=False):
    """One compiled forward pass per model (eager dispatch compiles every op separately)."""
    return _jitted(m, train)


@functools.cache
def _jitted(m, train):
    if train:
        return jax.jit(lambda p, n, c, k: m.apply(p, n, c, train=True, key=k))
    return jax.jit(lambda p, n, c: m.apply(p, n, c))


def _np(tree):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), tree)


def _randomize(params, seed=1):
    """Non-zero biases and larger weights, so that every term of the reference matters."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, x.shape) * 0.5 for k, x in zip(keys, leaves)])


# --- NumPy references --------------------------------------------------------------------------

def relu(x):
    return np.maximum(x, 0.0)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_embed(p, num, cat):
    if not p:
        return num.astype(np.float64)
    ids = cat + embedding_offsets(VOCAB)[None, :]
    return np.concatenate([num, p["table"][ids].reshape(len(num), -1)], 1)


def layer_names(mlp):
    hidden = sorted((k for k in mlp if k.startswith("hidden_")), key=lambda k: int(k.split("_")[1]))
    return hidden + ["last"]


def ref_mlp(mlp, x, final_activation=True):
    """One MLP, or S stacked copies when kernels are (S, in, out) (x: (B, in) shared or (S, B, in))."""
    names = layer_names(mlp)
    for i, n in enumerate(names):
        w, b = mlp[n]["kernel"], mlp[n]["bias"]
        if w.ndim == 3:
            x = np.einsum("bi,sio->sbo", x, w) if x.ndim == 2 else np.einsum("sbi,sio->sbo", x, w)
            x = x + b[:, None, :]
        else:
            x = x @ w + b
        if i < len(names) - 1 or final_activation:
            x = relu(x)
    return x


def ref_towers(towers, x):
    return ref_mlp(towers, x, final_activation=False)[..., 0].T  # (B, T)


def ref_shared_bottom(p, num, cat):
    h = ref_embed(p["embed"], num, cat)
    return ref_towers(p["heads"]["towers"], ref_mlp(p["shared"]["bottom"], h))


def ref_omoe(p, num, cat):
    h = ref_embed(p["embed"], num, cat)
    experts = ref_mlp(p["shared"]["experts"], h)  # (E, B, d)
    g = softmax(h @ p["shared"]["gate"])  # (B, E)
    return ref_towers(p["heads"]["towers"], np.einsum("be,ebd->bd", g, experts))


def ref_mmoe(p, num, cat):
    h = ref_embed(p["embed"], num, cat)
    experts = ref_mlp(p["shared"]["experts"], h)  # (E, B, d)
    t = p["heads"]["gates"].shape[0]
    mixed = np.stack([np.einsum("be,ebd->bd", softmax(h @ p["heads"]["gates"][k]), experts) for k in range(t)])
    return ref_towers(p["heads"]["towers"], mixed)


def ref_ple(p, num, cat, levels, t, et, es):
    """PLE, task by task and expert by expert, straight from the paper's equations."""
    h = ref_embed(p["embed"], num, cat)
    x_task = [h] * t
    x_shared = h

    def expert(mlp, i, x):
        one = {n: {"kernel": mlp[n]["kernel"][i], "bias": mlp[n]["bias"][i]} for n in layer_names(mlp)}
        return ref_mlp(one, x)

    for l in range(levels):
        lv = p["shared"][f"levels_{l}"]
        task_out = [[expert(lv["task_experts"], k * et + j, x_task[k]) for j in range(et)] for k in range(t)]
        shared_out = [expert(lv["shared_experts"], j, x_shared) for j in range(es)]
        gates = lv["task_gates"] if l < levels - 1 else p["heads"]["gates"]
        new_task = []
        for k in range(t):
            cands = task_out[k] + shared_out
            g = softmax(x_task[k] @ gates[k])
            new_task.append(sum(g[:, [j]] * cands[j] for j in range(len(cands))))
        if l == levels - 1:
            return ref_towers(p["heads"]["towers"], np.stack(new_task))
        every = [e for k in range(t) for e in task_out[k]] + shared_out  # the shared gate sees ALL experts
        gs = softmax(x_shared @ lv["shared_gate"])
        x_shared = sum(gs[:, [j]] * every[j] for j in range(len(every)))
        x_task = new_task


def ref_single_task(p, num, cat, t):
    out = []
    for k in range(t):
        ids = cat + embedding_offsets(VOCAB)[None, :]
        x = np.concatenate([num, p["heads"]["table"][k][ids].reshape(len(num), -1)], 1)
        net = {n: {"kernel": p["heads"]["net"][n]["kernel"][k], "bias": p["heads"]["net"][n]["bias"][k]}
               for n in layer_names(p["heads"]["net"])}
        out.append(ref_mlp(net, x, final_activation=False)[:, 0])
    return np.stack(out, 1)


def ref_esmm(p, num, cat):
    h = ref_embed(p["embed"], num, cat)
    return ref_towers(p["shared"]["towers"], h)  # (B, 2) logits: ctr, cvr


def ref_aitm(p, num, cat, t):
    h = ref_embed(p["embed"], num, cat)
    q = ref_mlp(p["shared"]["towers"], h)  # (T, B, k)
    z = [q[0]]
    k = q.shape[-1]
    for i in range(1, t):
        info = p["shared"][f"info_{i}"]
        pv = relu(z[i - 1] @ info["kernel"] + info["bias"])
        att = p["shared"][f"transfer_{i}"]
        u = np.stack([q[i], pv], 1)  # (B, 2, k)
        v, qq, kk = (u @ att[n]["kernel"] for n in ("value", "query", "key"))
        a = softmax(np.sum(qq * kk, -1) / np.sqrt(k))
        z.append(np.einsum("bu,buk->bk", a, v))
    out = p["shared"]["out"]
    return np.stack([z[i] @ out["kernel"][i][:, 0] + out["bias"][i][0] for i in range(t)], 1)


CASES = [
    ("single_task", {}, lambda p, n, c, t: ref_single_task(p, n, c, t)),
    ("shared_bottom", {"bottom_hidden": (9, 7)}, lambda p, n, c, t: ref_shared_bottom(p, n, c)),
    ("omoe", {"expert_hidden": (6, 4)}, lambda p, n, c, t: ref_omoe(p, n, c)),
    ("mmoe", {"expert_hidden": (6, 4)}, lambda p, n, c, t: ref_mmoe(p, n, c)),
    ("cgc", {}, lambda p, n, c, t: ref_ple(p, n, c, 1, t, 2, 1)),
    ("ple", {"num_levels": 2, "num_shared_experts": 2, "num_task_experts": 3},
     lambda p, n, c, t: ref_ple(p, n, c, 2, t, 3, 2)),
    ("ple", {"num_levels": 3}, lambda p, n, c, t: ref_ple(p, n, c, 3, t, 2, 1)),
]


@pytest.mark.parametrize("name,kw,ref", CASES, ids=lambda x: x if isinstance(x, str) else "")
@pytest.mark.parametrize("t", [1, 3])
def test_forward_matches_numpy_reference(name, kw, ref, t):
    m = _get(name, t, **kw)
    p = _randomize(m.init(jax.random.key(0)))
    num, cat = _inputs()
    y = np.asarray(_apply(m)(p, num, cat))
    assert y.shape == (B, t)
    np.testing.assert_allclose(y, ref(_np(p), num.astype(np.float64), cat, t), rtol=2e-4, atol=2e-4)


def test_funnel_models_match_numpy_reference():
    num, cat = _inputs()
    for name, ref in (("esmm", lambda p, n, c: ref_esmm(p, n, c)), ("aitm", lambda p, n, c: ref_aitm(p, n, c, 2))):
        m = _get(name, 2, task_names=("click", "conversion"))
        p = _randomize(m.init(jax.random.key(0)))
        np.testing.assert_allclose(np.asarray(_apply(m)(p, num, cat)), ref(_np(p), num.astype(np.float64), cat),
                                   rtol=2e-4, atol=2e-4, err_msg=name)


@pytest.mark.parametrize("name,kw", [(c[0], c[1]) for c in CASES[:-1]])
def test_dropout_in_training_only(name, kw):
    """Dropout reaches every part (split forward included), is keyed, and is off in evaluation."""
    m = _get(name, 2, dropout=0.5, **kw)
    plain = _get(name, 2, **kw)
    p = m.init(jax.random.key(0))
    num, cat = _inputs()

    @jax.jit
    def run(p, k):
        k1, k2 = jax.random.split(k)
        h = m.embed(p["embed"], num, cat)
        z = m.encode(p["shared"], h, train=True, key=k1)
        return (m.apply(p, num, cat, train=True, key=k), m.decode(p["heads"], z, h, train=True, key=k2),
                m.apply(p, num, cat), plain.apply(p, num, cat))

    a, split_a, eval_a, plain = run(p, jax.random.key(1))
    b = run(p, jax.random.key(2))[0]
    assert not np.allclose(a, b)
    np.testing.assert_allclose(split_a, a, rtol=1e-6)  # the split forward is the forward, dropout included
    np.testing.assert_allclose(eval_a, plain, rtol=1e-6)


@pytest.mark.parametrize("name,kw", [("omoe", {}), ("mmoe", {}), ("cgc", {}), ("ple", {"num_levels": 2})])
def test_gates_are_distributions(name, kw):
    m = _get(name, 3, **kw)
    p = m.init(jax.random.key(0))
    g = np.asarray(jax.jit(m.gates)(p, *_inputs()))
    assert g.shape[:2] == (3, B)
    assert np.all(g >= 0)
    np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-5)


def test_parts_of_the_parameter_tree():
    expected = {
        "shared_bottom": ({"table"}, {"bottom"}, {"towers"}),
        "omoe": ({"table"}, {"experts", "gate"}, {"towers"}),
        "mmoe": ({"table"}, {"experts"}, {"gates", "towers"}),
        "cgc": ({"table"}, {"levels_0"}, {"gates", "towers"}),
        "ple": ({"table"}, {"levels_0", "levels_1"}, {"gates", "towers"}),
        "single_task": (set(), set(), {"table", "net"}),
        "esmm": ({"table"}, {"towers"}, set()),
        "aitm": ({"table"}, {"towers", "info_1", "transfer_1", "out"}, set()),
    }
    for name, (embed, shared, heads) in expected.items():
        m = _get(name, 2, task_names=("click", "conversion"))
        p = jax.eval_shape(m.init, jax.random.key(0))
        assert set(p) == {"embed", "shared", "heads"}, name
        assert (set(p["embed"]), set(p["shared"]), set(p["heads"])) == (embed, shared, heads), name


def test_last_shared_layer_found_by_name():
    cases = {"shared_bottom": ["bottom/last/bias", "bottom/last/kernel"],
             "mmoe": ["experts/last/bias", "experts/last/kernel"],
             "ple": [f"levels_1/{k}/last/{w}" for k in ("shared_experts", "task_experts") for w in ("bias", "kernel")],
             "esmm": ["towers/last/bias", "towers/last/kernel"]}
    for name, paths in cases.items():
        m = _get(name, 2, expert_hidden=(6, 4)) if name in ("mmoe", "ple") else _get(name, 2)
        p = jax.eval_shape(m.init, jax.random.key(0))
        flat = jax.tree_util.tree_flatten_with_path(m.last_shared(p["shared"]))[0]
        marked = sorted("/".join(str(k.key) for k in path) for path, v in flat if v)
        assert marked == sorted(paths), name
    assert _get("single_task").last_shared is None


def test_heads_are_task_specific():
    """Every leaf under 'heads' is stacked over tasks; slice t influences only task t."""
    num, cat = _inputs()
    for name, kw, _ in [CASES[0], CASES[1], CASES[3], CASES[5]]:
        m = _get(name, 3, **kw)
        p = m.init(jax.random.key(0))
        jac = jax.jit(jax.jacrev(lambda heads: m.apply({**p, "heads": heads}, num, cat).sum(0)))(p["heads"])
        for leaf in jax.tree_util.tree_leaves(jac):  # (T_out, T, *rest)
            assert leaf.shape[1] == 3, name
            touched = np.abs(np.asarray(leaf)).reshape(3, 3, -1).sum(-1) > 0
            assert not np.any(touched & ~np.eye(3, dtype=bool)), name
            assert np.all(np.diag(touched)), name  # and does influence its own task


def test_single_task_networks_are_independent():
    m = _get("single_task")
    p = m.init(jax.random.key(0))
    assert jax.tree_util.tree_leaves(p["shared"]) == [] and jax.tree_util.tree_leaves(p["embed"]) == []
    num, cat = _inputs()
    g = jax.jit(jax.grad(lambda pr: m.apply(pr, num, cat)[:, 0].sum()))(p)
    for leaf in jax.tree_util.tree_leaves(g["heads"]):
        assert np.all(np.asarray(leaf[1]) == 0)


def test_ple_levels_add_extraction_layers():
    sizes = {}
    for levels in (1, 2, 3):
        p = jax.eval_shape(_get("ple", 2, num_levels=levels).init, jax.random.key(0))
        assert sorted(p["shared"]) == [f"levels_{l}" for l in range(levels)]
        assert all(("shared_gate" in p["shared"][f"levels_{l}"]) == (l < levels - 1) for l in range(levels))
        sizes[levels] = mm.count_params(p)
    assert sizes[1] < sizes[2] < sizes[3]
    with pytest.raises(ValueError, match="num_levels"):
        jax.eval_shape(_get("ple", 2, num_levels=0).init, jax.random.key(0))


def test_parameter_counts():
    """Exact counts for the paper's synthetic sizes and the census sizes (unchanged since the pytree models)."""
    counts = {n: mm.count_params(jax.eval_shape(mm.get(n, num_tasks=2, num_numeric=100).init, jax.random.key(0)))
              for n in ("mmoe", "omoe", "shared_bottom")}
    assert counts == {"mmoe": 14818, "omoe": 14018, "shared_bottom": 13255}
    census = mm.get("ple", num_tasks=2, num_numeric=8, vocab_sizes=(9, 52, 47, 17, 3), num_levels=2,
                    num_shared_experts=2, num_task_experts=2, expert_hidden=(64,), tower_hidden=(32,), embed_dim=8)
    assert mm.count_params(jax.eval_shape(census.init, jax.random.key(0))) == 50210


def test_init_follows_pytorch_linear_per_expert():
    """Stacked experts are initialised like independent nn.Linear layers: U(+-1/sqrt(fan_in)), fan_in = 400."""
    p = mm.get("mmoe", num_tasks=2, num_numeric=400, expert_hidden=(256,)).init(jax.random.key(0))
    w = np.asarray(p["shared"]["experts"]["last"]["kernel"])
    assert w.shape == (8, 400, 256)
    assert 0.049 < np.abs(w).max() <= 0.05 and abs(w.std() - 0.05 / np.sqrt(3)) < 1e-3
    assert np.all(np.asarray(p["shared"]["experts"]["last"]["bias"]) == 0)


def test_embedding_tables_are_per_field():
    m = mm.get("shared_bottom", num_tasks=2, num_numeric=0, vocab_sizes=VOCAB, embed_dim=2)
    p = m.init(jax.random.key(0))
    table = np.asarray(p["embed"]["table"])
    assert table.shape == (sum(VOCAB), 2)
    h = np.asarray(jax.jit(m.embed)(p["embed"], jnp.zeros((1, 0)), jnp.array([[3, 6, 2]], jnp.int32)))
    off = embedding_offsets(VOCAB)
    np.testing.assert_allclose(h[0], np.concatenate([table[off[f] + v] for f, v in enumerate([3, 6, 2])]))


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'nope'.*mmoe.*ple"):
        mm.get("nope", num_tasks=2, num_numeric=1)
    with pytest.raises(ValueError, match="takes no hyperparameter.*num_experts"):
        mm.get("mmoe", num_tasks=2, num_numeric=1, num_expert=3)


# --- ESMM and AITM -------------------------------------------------------------------------------

def _funnel_batch(n=64, clicks=True, seed=0):
    rng = np.random.default_rng(seed)
    num, cat = (rng.normal(size=(n, F_NUM)).astype(np.float32),
                np.stack([rng.integers(0, v, n) for v in VOCAB], 1).astype(np.int32))
    click = (rng.random(n) < 0.3).astype(np.float32) if clicks else np.zeros(n, np.float32)
    conv = click * (rng.random(n) < 0.3)
    return num, cat, np.stack([click, conv], 1).astype(np.float32)


def test_esmm_chain_and_losses():
    m = _get("esmm", task_names=("click", "conversion"))
    assert m.num_tasks == 2 and m.loss_names == ("click", "ctcvr")
    p = m.init(jax.random.key(0))
    num, cat, labels = _funnel_batch()
    out = _apply(m)(p, num, cat) * 30.0  # spread the probabilities; still inside (0, 1) in float64
    pctr, pcvr = jax.nn.sigmoid(out[:, 0]), jax.nn.sigmoid(out[:, 1])
    view = m.evaluation(np.asarray(out), labels, ("click", "conversion"), ("binary",) * 2)
    pctcvr = sigmoid(view.outputs[:, 2])
    np.testing.assert_allclose(pctcvr, np.asarray(pctr * pcvr), rtol=1e-5)
    assert np.all(pctcvr <= np.asarray(pctr) + 1e-7)  # the chain holds
    # losses by hand: CTR BCE over all impressions; CTCVR BCE of pCTR * pCVR against click * conversion
    y1, y2 = labels[:, 0], labels[:, 0] * labels[:, 1]
    pc, pv = np.asarray(pctr, np.float64), np.asarray(pctr * pcvr, np.float64)
    expected = [-np.mean(y1 * np.log(pc) + (1 - y1) * np.log(1 - pc)),
                -np.mean(y2 * np.log(pv) + (1 - y2) * np.log(1 - pv))]
    np.testing.assert_allclose(jax.jit(lambda o, y: m.task_losses(o, y, ()))(out, labels), expected, rtol=1e-4)
    # CVR is scored on clicked impressions only
    assert view.names == ("click", "conversion", "ctcvr")
    np.testing.assert_array_equal(view.masks["conversion"], labels[:, 0] > 0.5)


@pytest.mark.parametrize("name", ["esmm", "aitm"])
def test_funnel_losses_finite_without_clicks(name):
    m = _get(name, task_names=("click", "conversion"))
    p = m.init(jax.random.key(0))
    num, cat, labels = _funnel_batch(clicks=False)
    loss, grads = jax.jit(jax.value_and_grad(lambda q: m.task_losses(m.apply(q, num, cat), labels, ()).sum()))(p)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_aitm_calibrator_by_hand():
    m = _get("aitm", task_names=("click", "conversion"), calibrator_reduction="sum")
    num, cat, labels = _funnel_batch(n=8)
    out = jnp.asarray(np.array([[0.0, 1.0], [2.0, -1.0]] * 4, np.float32))
    y = np.cumprod(labels, 1)
    p = sigmoid(np.asarray(out, np.float64))
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), 0)
    calib = 0.6 * np.maximum(p[:, 1] - p[:, 0], 0).sum()
    np.testing.assert_allclose(jax.jit(lambda o, y: m.task_losses(o, y, ()))(out, labels), [bce[0], bce[1] + calib],
                               rtol=1e-5)


def test_funnel_models_name_missing_tasks():
    with pytest.raises(ValueError, match="needs a click task and a conversion"):
        mm.get("esmm", num_tasks=2, num_numeric=1, task_names=("income", "never_married"))
