"""The max-margin recipe: trained margins approach γ* and never exceed it (a theorem-based bound);
the LP neuron reweighting recovers γ* from a certificate with scrambled neuron scales."""

from __future__ import annotations

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.margin import margin
from mi_margin.errors import MiMarginError
from mi_margin.theory import (
    certificate,
    max_margin,
    max_margin_recipe,
    reweight_neurons,
    train_to_max_margin,
)


def test_recipe_configs():
    tc, mc = max_margin_recipe(mm.ModularAddition(p=5, k=3), steps=800, penalty=1e-3,
                               method="gd")
    assert (tc.optimizer, tc.weight_decay, tc.norm_penalty, tc.lr_gamma) == ("sgd", 0.0, 1e-3, 2.0)
    assert tc.lr_milestones == tuple(20 * i for i in range(1, 11))
    adam, _ = max_margin_recipe(mm.ModularAddition(p=5, k=3), steps=800)
    assert (adam.optimizer, adam.weight_decay, adam.lr_gamma) == ("adamw", 0.0, 0.5)
    assert adam.lr_milestones == (400, 480, 560, 640, 720)
    assert (mc.act_fn, mc.act_degree, mc.d_mlp, mc.dtype, mc.use_biases) == (
        "power", 3, 2 * 64, torch.float64, False)
    _, group_cfg = max_margin_recipe(mm.GroupComposition("S3"), width=30)
    assert (group_cfg.act_fn, group_cfg.d_mlp) == ("quadratic", 30)
    with pytest.raises(MiMarginError, match="no max-margin theory"):
        max_margin_recipe(mm.GroupComposition("Q8"))
    with pytest.raises(MiMarginError, match="method"):
        max_margin_recipe(mm.ModularAddition(p=5), method="lbfgs")


@pytest.mark.parametrize("task, steps, method", [(mm.ModularAddition(p=5), 500, "adam"),
                                                 (mm.GroupComposition("S3"), 700, "gd")],
                         ids=["Z5-adam", "S3-gd"])
def test_training_reaches_90_percent_and_never_exceeds_gamma(task, steps, method):
    run = train_to_max_margin(task, steps=steps, method=method, double_every=25)
    ratios = run.history["ratio_to_gamma"]
    assert ratios.iloc[-1] >= 0.9
    assert (ratios <= 1 + 1e-9).all()
    polished = margin(reweight_neurons(run.model, task), task).normalized
    gamma = max_margin(task).gamma
    assert ratios.iloc[-1] * gamma <= polished * (1 + 1e-9) <= gamma * (1 + 1e-9)


def test_reweighting_restores_a_scrambled_certificate():
    task = mm.ModularAddition(p=7)
    model = certificate(task)
    scale = torch.rand(model.cfg.d_mlp, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64) + 0.2
    with torch.no_grad():
        model.blocks[0].mlp.W_in.mul_(scale)
        model.blocks[0].mlp.W_out.mul_(scale[:, None])
    gamma = max_margin(task).gamma
    assert margin(model, task).normalized < gamma * (1 - 1e-3)
    fixed = reweight_neurons(model, task)
    assert margin(fixed, task).normalized == pytest.approx(gamma, rel=1e-7)


def test_reweighting_needs_homogeneous_model():
    task = mm.ModularAddition(p=5)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, use_biases=True))
    with pytest.raises(MiMarginError, match="homogeneous"):
        reweight_neurons(model, task)
