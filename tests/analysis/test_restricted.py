"""Restricted/excluded loss and the ablation hooks they are built from."""

import math

import pytest
import torch
from oracles.planted import exact_cosine_mlp

import mi_margin as mm
from mi_margin.analysis.ablation import ablation_hook, grid_projection_hook
from mi_margin.analysis.restricted import ablated_logits, restricted_loss
from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import sum_frequency_directions


@pytest.mark.parametrize("p,k,planted", [(11, 2, [2, 5]), (7, 3, [1, 3])])
def test_planted_network_restricted_equals_full_and_excluded_is_uniform(p, k, planted):
    """The planted logits κ Σ_S cos(ω_f(Σa − c)) lie in the kept span, so restricting changes
    nothing; excluding leaves the per-class grid mean, equal for all classes: loss log p."""
    task = mm.ModularAddition(p=p, k=k, train_fraction=0.5, seed=1)
    res = restricted_loss(exact_cosine_mlp(task, planted, scale=0.8), task)
    assert res.frequencies == tuple(sorted(planted))                  # default: key frequencies
    assert res.restricted == pytest.approx(res.full_loss, rel=1e-10)
    assert res.restricted_acc == 1.0
    assert res.excluded == pytest.approx(math.log(p), rel=1e-10)


def test_dropping_a_used_frequency_raises_the_restricted_loss():
    task = mm.ModularAddition(p=11, k=2, train_fraction=0.5)
    model = exact_cosine_mlp(task, [2, 5])
    partial = restricted_loss(model, task, [2])
    assert partial.restricted > partial.full_loss + 1e-3
    on_test = restricted_loss(model, task, [2, 5], restricted_on="test")
    assert on_test.restricted_on == "test"
    assert on_test.restricted == pytest.approx(on_test.full_loss, rel=1e-10)


def test_transformer_restricted_logits_are_projected_neurons_through_W_L_plus_a_constant():
    task = mm.ModularAddition(p=7, k=2)
    cfg = mm.TransformerConfig.for_task(task, d_model=16, n_heads=2, d_head=8, d_mlp=24,
                                        dtype="float64")
    model = mm.HookedOneLayerTransformer(cfg)
    _, cache = model.run_with_cache(task.tokens)
    post, mid = cache["post", 0][:, -1], cache["resid_mid", 0][:, -1]
    Q = sum_frequency_directions(7, 2, [1, 3])
    kept = post.mean(0) + Q @ (Q.T @ (post - post.mean(0)))
    expected = (mid.mean(0) + kept @ model.W_out[0]) @ model.W_U
    got = ablated_logits(model, task, [1, 3], "keep", direct_path="mean")
    assert torch.allclose(got, expected, atol=1e-10)
    direct = ablated_logits(model, task, [1, 3], "keep", direct_path="keep")
    assert torch.allclose(direct, (mid + kept @ model.W_out[0]) @ model.W_U, atol=1e-10)


def test_keep_and_remove_split_the_centred_activations():
    task = mm.ModularAddition(p=5, k=3)
    h = torch.randn(125, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for kind in ["product", "block"]:
        keep = ablation_hook(task, [2], "keep", subspace=kind)
        remove = ablation_hook(task, [2], "remove", subspace=kind)
        assert torch.allclose(keep(h, None) + remove(h, None), h + h.mean(0), atol=1e-12)
        assert torch.allclose(keep(keep(h, None), None), keep(h, None), atol=1e-12)


def test_generic_basis_hook_edits_only_the_chosen_position():
    gen = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(20, 4, generator=gen, dtype=torch.float64))
    act = torch.randn(20, 3, 5, generator=gen, dtype=torch.float64)
    out = grid_projection_hook(Q, "remove", position=-1)(act, None)
    assert torch.equal(out[:, :2], act[:, :2])
    centred = act[:, -1] - act[:, -1].mean(0)
    assert torch.allclose(out[:, -1], act[:, -1] - Q @ (Q.T @ centred), atol=1e-12)


def test_hooks_reject_bad_input():
    task = mm.ModularAddition(p=5)
    with pytest.raises(MiMarginError, match="orthonormal"):
        grid_projection_hook(torch.ones(25, 2))
    with pytest.raises(MiMarginError, match="mode"):
        ablation_hook(task, [1], mode="zero")
    with pytest.raises(MiMarginError, match="subspace"):
        ablation_hook(task, [1], subspace="odd")
    with pytest.raises(MiMarginError, match="whole input grid"):
        ablation_hook(task, [1])(torch.zeros(24, 3), None)
    with pytest.raises(MiMarginError, match="restricted_on"):
        restricted_loss(exact_cosine_mlp(task, [1]), task, [1], restricted_on="train")


def test_full_rows_carry_the_models_own_accuracy():
    """The 'full' rows show the unmodified model's accuracy (no NaN), equal to evaluating it."""
    task = mm.ModularAddition(p=11, k=2, train_fraction=0.5)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, seed=3))
    res = restricted_loss(model, task, [2], restricted_on="test")
    table = res.to_dataframe()
    assert not table["accuracy"].isna().any()
    with torch.no_grad():
        right = model(task.inputs).argmax(-1) == task.labels
    assert res.full_acc == pytest.approx(float(right[task.test_idx].double().mean()))
    assert res.full_train_acc == pytest.approx(float(right[task.train_idx].double().mean()))
    assert list(table["accuracy"][table["measure"] == "full"]) == [res.full_acc, res.full_train_acc]
