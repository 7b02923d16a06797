"""certify: sound (never above the brute-force accuracy, and the certified margin never above the
true one) on random, perturbed, trained and zoo models; tight (1.0) on certificate networks."""

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.certify import BOUNDS, certify
from mi_margin.analysis.explain import build, operand_tables


def true_margins(model, task):
    """min_{c≠y} (logit_y − logit_c) per input, brute force in float64."""
    model64 = build(model, operand_tables(model), model.W_out.detach().double())
    x = task.inputs.double() if task.inputs.is_floating_point() else task.inputs
    with torch.no_grad():
        logits = model64.double()(x)
    rows = torch.arange(len(x))
    gap = logits[rows, task.labels][:, None] - logits
    gap[rows, task.labels] = float("inf")
    return gap.amin(1)


def assert_sound(model, task):
    expl = mm.explain(model, task)
    for bound in BOUNDS:
        cert = certify(expl, bound)
        assert cert.certified_accuracy <= cert.accuracy
        truth = true_margins(model, task)
        assert bool((cert.margin_bound <= truth + 1e-9 * truth.abs().max()).all())
        assert cert.min_certified_margin == float(cert.margin_bound.min())
    return cert


@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.GroupComposition("S3"), mm.SparseParity(n=6, k=4)],
                         ids=str)
@pytest.mark.parametrize("bound", BOUNDS)
def test_tight_on_certificate_networks(task, bound):
    cert = certify(mm.explain(mm.theory.certificate(task), task), bound)
    assert cert.certified_accuracy == 1.0 == cert.accuracy
    assert cert.min_certified_margin > 0


@pytest.mark.parametrize("scale", [1e-3, 1e-2, 1e-1, 1.0])
@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.GroupComposition("S3"),
                                  mm.SparseParity(n=6, k=4)], ids=str)
def test_sound_on_noisy_certificate_networks(task, scale):
    model = mm.theory.certificate(task)
    gen = torch.Generator().manual_seed(0)
    T = operand_tables(model)
    W = model.W_out.detach().double()
    noisy_T = T + scale * T.abs().max() * torch.randn(T.shape, generator=gen, dtype=T.dtype)
    if model.cfg.input_kind == "vector":            # a ±1 bit's table is (−w, +w)
        noisy_T[:, 0] = -noisy_T[:, 1]
    noisy_W = W + scale * W.abs().max() * torch.randn(W.shape, generator=gen, dtype=W.dtype)
    assert_sound(build(model, noisy_T, noisy_W), task)


def test_sound_with_a_planted_off_label_neuron():
    task = mm.ModularAddition(p=7)
    model = mm.theory.certificate(task)
    T, W = operand_tables(model).clone(), model.W_out.detach().double().clone()
    x = torch.arange(7.0, dtype=torch.float64)
    f = mm.neuron_clusters(model, task).label[0]
    g = next(h for h in range(1, 4) if h != f)
    wave = torch.cos(2 * torch.pi * g * x / 7)
    T[:, :, 0] += 0.4 * T[:, :, 0].norm(dim=1, keepdim=True) * wave
    W[0] += 2.0 * W[0].norm() * wave
    planted = build(model, T, W)
    cert = assert_sound(planted, task)
    assert cert.error.max() > 0


@pytest.mark.parametrize("style,act", [("theory", "relu"), ("theory", "quadratic"),
                                       ("theory", "gelu"), ("embed", "relu")])
def test_sound_on_random_models(style, act):
    task = mm.GroupComposition("S3")
    extra = {"d_embed": 8} if style == "embed" else {}
    for seed in range(3):
        cfg = mm.MLPConfig.for_task(task, d_mlp=24, input_style=style, act_fn=act, seed=seed,
                                    **extra)
        assert_sound(mm.HookedMLP(cfg), task)


def test_sound_on_a_trained_model():
    task = mm.ModularAddition(p=7)
    torch.manual_seed(0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=32, act_fn="relu"))
    mm.train(model, task, mm.TrainConfig(steps=300, lr=1e-2, weight_decay=1e-3, progress=False,
                                          n_checkpoints=1))
    assert_sound(model, task)


@pytest.mark.parametrize("name", ["chughtai_S4_mlp_seed0", "morwani_parity_n10_k4_quartic"])
def test_sound_on_zoo_entries(name):
    run = mm.zoo.load(name)
    assert_sound(run.model, run.task)


def test_per_input_bound_costs_more_and_is_refused_when_unknown():
    task = mm.GroupComposition("S3")
    expl = mm.explain(mm.theory.certificate(task), task)
    assert certify(expl, "uniform").flops < certify(expl, "per_input").flops
    with pytest.raises(mm.MiMarginError, match="bound="):
        certify(expl, "loose")
