"""Margins: per-example values against a brute-force loop, homogeneity of the normalization,
and honest reasons where the normalized margin is undefined."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.margin import margin
from mi_margin.errors import MiMarginError


def _mlp(task, **kw):
    return mm.HookedMLP(mm.MLPConfig.for_task(task, **{"d_mlp": 12, "dtype": "float64", **kw}))


def _brute_force(model, task):
    """Margin of every example by explicit loops over classes (independent of the analyzer)."""
    with torch.no_grad():
        logits = model(task.inputs).tolist()
    out = []
    for row, y in zip(logits, task.labels.tolist()):
        wrong = max(v for c, v in enumerate(row) if c != y)
        out.append(row[y] - wrong)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.SparseParity(n=5, k=2), mm.GroupComposition("S3")],
                         ids=["Z7", "Z5k3", "parity", "S3"])
def test_per_example_matches_brute_force(task):
    model = _mlp(task, act_fn="power")
    res = margin(model, task)
    expected = _brute_force(model, task)
    torch.testing.assert_close(res.per_example, expected, rtol=1e-12, atol=1e-12)
    assert res.value == pytest.approx(float(expected.min()), rel=1e-12)
    assert res.per_example.dtype == torch.float64


def test_normalized_margin_is_scale_invariant_and_value_scales_as_nu():
    """f(λθ) = λ^ν f(θ): h scales by λ^ν, h/Σ||ω||^ν does not (Morwani et al. §1.1)."""
    task = mm.ModularAddition(p=5)
    model = _mlp(task)
    res = margin(model, task)
    assert res.nu == 3
    lam = 1.7
    with torch.no_grad():
        model.blocks[0].mlp.W_in.mul_(lam)
        model.blocks[0].mlp.W_out.mul_(lam)
    scaled = margin(model, task)
    assert scaled.value == pytest.approx(res.value * lam**3, rel=1e-12)
    assert scaled.normalized == pytest.approx(res.normalized, rel=1e-12)
    norms = model.neuron_norms().detach().pow(3).sum()
    assert scaled.normalized == pytest.approx(scaled.value / float(norms), rel=1e-12)


def test_single_neuron_scaling_respects_per_neuron_homogeneity():
    """Scaling one neuron's ω by s scales its logits by s^ν; the normalization tracks it."""
    task = mm.ModularAddition(p=5)
    model = _mlp(task, d_mlp=1)
    base = margin(model, task)
    with torch.no_grad():
        model.blocks[0].mlp.W_in.mul_(2.0)
        model.blocks[0].mlp.W_out.mul_(2.0)
    assert margin(model, task).normalized == pytest.approx(base.normalized, rel=1e-12)


def test_relu_without_biases_uses_nu_2():
    task = mm.ModularAddition(p=5)
    model = _mlp(task, act_fn="relu")
    res = margin(model, task)
    assert res.nu == 2 and res.normalized is not None
    with torch.no_grad():
        model.blocks[0].mlp.W_in.mul_(3.0)
        model.blocks[0].mlp.W_out.mul_(3.0)
    scaled = margin(model, task)
    assert scaled.value == pytest.approx(9.0 * res.value, rel=1e-12)
    assert scaled.normalized == pytest.approx(res.normalized, rel=1e-12)


@pytest.mark.parametrize("kw, word", [({"use_biases": True, "act_fn": "relu"}, "biases"),
                                      ({"input_style": "embed", "d_embed": 8}, "embed"),
                                      ({"act_fn": "gelu"}, "homogeneous")])
def test_undefined_normalization_says_why(kw, word):
    task = mm.ModularAddition(p=5)
    res = margin(_mlp(task, **kw), task)
    assert res.normalized is None and res.nu is None
    assert word in res.reason
    assert res.value == pytest.approx(float(_brute_force(_mlp(task, **kw), task).min()), rel=1e-12)


def test_transformer_margin_and_reason():
    task = mm.ModularAddition(p=5)
    cfg = mm.TransformerConfig.for_task(task, d_model=16, n_heads=2, d_head=8, d_mlp=32)
    model = mm.HookedOneLayerTransformer(cfg)
    res = margin(model, task)
    assert res.normalized is None and "transformer" in res.reason
    with torch.no_grad():
        logits = model.last_logits(task.tokens).double()
    correct = logits.gather(1, task.labels[:, None])[:, 0]
    wrong = logits.scatter(1, task.labels[:, None], float("-inf")).max(1).values
    torch.testing.assert_close(res.per_example, correct - wrong, rtol=1e-5, atol=1e-5)


def test_float32_model_is_scored_in_float64():
    task = mm.ModularAddition(p=7)
    model32 = _mlp(task, dtype="float32")
    model64 = _mlp(task, dtype="float64")
    model64.load_state_dict({k: v.double() for k, v in model32.state_dict().items()})
    r32, r64 = margin(model32, task), margin(model64, task)
    torch.testing.assert_close(r32.per_example, r64.per_example, rtol=0, atol=0)
    assert r32.normalized == pytest.approx(r64.normalized, rel=1e-12)


def test_subsets_and_table():
    task = mm.ModularAddition(p=7, train_fraction=0.5, seed=1)
    model = _mlp(task)
    full = margin(model, task)
    train = margin(model, task, subset="train")
    test = margin(model, task, subset="test")
    assert torch.equal(train.idx, task.train_idx) and torch.equal(test.idx, task.test_idx)
    torch.testing.assert_close(train.per_example, full.per_example[task.train_idx])
    assert full.value == min(train.value, test.value)
    df = full.to_dataframe()
    assert list(df.columns) == ["example", "x0", "x1", "label", "runner_up", "margin",
                                "wrong_spread", "on_margin"]
    top = full.top(3)
    assert top["margin"].tolist() == sorted(df["margin"])[:3]
    assert int(df["on_margin"].sum()) >= 1 and bool(df.loc[top.index[0], "on_margin"]) is not None
    assert (df["runner_up"] != df["label"]).all()
    assert isinstance(full.plot(), go.Figure)
    assert full.summary()["n_examples"] == 49


def test_bad_subset_errors():
    task = mm.ModularAddition(p=5)
    model = _mlp(task)
    with pytest.raises(MiMarginError, match="subset"):
        margin(model, task, subset="validation")
    with pytest.raises(MiMarginError, match="empty"):
        margin(model, task, subset="test")     # train_fraction=1: no test examples
