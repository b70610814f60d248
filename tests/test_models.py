import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtl.models as mm
from mtl.models.base import embedding_offsets

B, F_NUM, VOCAB = 6, 5, (4, 7, 3)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    num = jnp.asarray(rng.normal(size=(B, F_NUM)), jnp.float32)
    cat = jnp.asarray(np.stack([rng.integers(0, v, B) for v in VOCAB], 1), jnp.int32)
    return num, cat


CASES = [("single_task", {}), ("shared_bottom", {}), ("omoe", {}), ("mmoe", {}), ("cgc", {}),
         ("ple", {"num_levels": 1}), ("ple", {"num_levels": 2}), ("ple", {"num_levels": 3})]


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("t", [1, 3])
def test_output_shape_and_split_forward(name, kw, t):
    m = mm.get(name, num_tasks=t, num_numeric=F_NUM, vocab_sizes=VOCAB, **kw)
    p = m.init(jax.random.key(0))
    assert set(p) == {"embed", "shared", "heads"}
    num, cat = _inputs()
    y = m.apply(p, num, cat)
    assert y.shape == (B, t) and np.all(np.isfinite(y))
    h = m.embed(p["embed"], num, cat)
    np.testing.assert_allclose(m.decode(p["heads"], m.encode(p["shared"], h), h), y, rtol=1e-6)
    # dropout makes training forward passes random, evaluation deterministic
    m2 = mm.get(name, num_tasks=t, num_numeric=F_NUM, vocab_sizes=VOCAB, dropout=0.5, **kw)
    a = m2.apply(p, num, cat, train=True, key=jax.random.key(1))
    b = m2.apply(p, num, cat, train=True, key=jax.random.key(2))
    assert not np.allclose(a, b)
    np.testing.assert_allclose(m2.apply(p, num, cat), y, rtol=1e-6)


@pytest.mark.parametrize("name,kw", [c for c in CASES if c[0] in ("omoe", "mmoe", "cgc", "ple")])
def test_gates_are_distributions(name, kw):
    m = mm.get(name, num_tasks=3, num_numeric=F_NUM, vocab_sizes=VOCAB, **kw)
    p = m.init(jax.random.key(0))
    g = np.asarray(m.gates(p, *_inputs()))
    assert g.shape[:2] == (3, B)
    assert np.all(g >= 0)
    np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-5)


def test_mmoe_gates_are_task_specific_and_omoe_gate_shared():
    num, cat = _inputs()
    m = mm.get("mmoe", num_tasks=2, num_numeric=F_NUM, vocab_sizes=VOCAB)
    p = m.init(jax.random.key(0))
    g = np.asarray(m.gates(p, num, cat))
    assert not np.allclose(g[0], g[1])
    assert p["heads"]["gates"].shape[0] == 2
    o = mm.get("omoe", num_tasks=2, num_numeric=F_NUM, vocab_sizes=VOCAB)
    po = o.init(jax.random.key(0))
    go = np.asarray(o.gates(po, num, cat))
    np.testing.assert_allclose(go[0], go[1])
    assert "gate" in po["shared"]


def test_ple_levels_add_extraction_layers():
    sizes = {}
    for levels in (1, 2, 3):
        m = mm.get("ple", num_tasks=2, num_numeric=F_NUM, vocab_sizes=VOCAB, num_levels=levels)
        p = m.init(jax.random.key(0))
        assert len(p["shared"]["levels"]) == levels
        # every level but the last has a shared gate over all experts
        assert all(("shared_gate" in lv) == (i < levels - 1) for i, lv in enumerate(p["shared"]["levels"]))
        sizes[levels] = mm.count_params(p)
    assert sizes[1] < sizes[2] < sizes[3]
    with pytest.raises(ValueError, match="num_levels"):
        mm.get("ple", num_tasks=2, num_numeric=F_NUM, num_levels=0)


def test_heads_are_task_specific():
    """Every leaf under 'heads' is stacked over tasks; slice t influences only task t."""
    num, cat = _inputs()
    for name, kw in CASES:
        m = mm.get(name, num_tasks=3, num_numeric=F_NUM, vocab_sizes=VOCAB, **kw)
        p = m.init(jax.random.key(0))
        jac = jax.jacrev(lambda heads: m.apply({**p, "heads": heads}, num, cat).sum(0))(p["heads"])
        for leaf in jax.tree_util.tree_leaves(jac):  # (T_out, T, *rest)
            assert leaf.shape[1] == 3, name
            touched = np.abs(np.asarray(leaf)).reshape(3, 3, -1).sum(-1) > 0
            assert not np.any(touched & ~np.eye(3, dtype=bool)), name


def test_single_task_networks_are_independent():
    m = mm.get("single_task", num_tasks=2, num_numeric=F_NUM, vocab_sizes=VOCAB)
    p = m.init(jax.random.key(0))
    assert jax.tree_util.tree_leaves(p["shared"]) == [] and jax.tree_util.tree_leaves(p["embed"]) == []
    num, cat = _inputs()
    g = jax.grad(lambda pr: m.apply(pr, num, cat)[:, 0].sum())(p)
    # task 0's output does not depend on task 1's copy of anything
    for leaf in jax.tree_util.tree_leaves(g["heads"]):
        assert np.all(np.asarray(leaf[1]) == 0)


def test_embedding_tables_are_per_field():
    m = mm.get("shared_bottom", num_tasks=2, num_numeric=0, vocab_sizes=VOCAB, embed_dim=2)
    p = m.init(jax.random.key(0))
    table = np.asarray(p["embed"]["table"])
    assert table.shape == (sum(VOCAB), 2)
    cat = jnp.array([[3, 6, 2]], jnp.int32)
    h = np.asarray(m.embed(p["embed"], jnp.zeros((1, 0)), cat))
    off = embedding_offsets(VOCAB)
    np.testing.assert_allclose(h[0], np.concatenate([table[off[f] + v] for f, v in enumerate([3, 6, 2])]))


def test_paper_sizes_parameter_matched():
    counts = {n: mm.count_params(mm.get(n, num_tasks=2, num_numeric=100, **kw).init(jax.random.key(0)))
              for n, kw in [("mmoe", {}), ("omoe", {}), ("shared_bottom", {})]}
    assert abs(counts["shared_bottom"] - counts["mmoe"]) / counts["mmoe"] < 0.15


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'nope'.*mmoe.*ple"):
        mm.get("nope", num_tasks=2, num_numeric=1)
