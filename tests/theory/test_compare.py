"""compare_to_theory: perfect agreement on certificates, planted deviations measured exactly, and
graceful reports on models the theory does not cover."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import mi_margin as mm
from mi_margin.analysis import basis_for, key_components, logit_similarity, spectrum
from mi_margin.theory import certificate, compare_to_theory
from mi_margin.theory.certificates import parity_weights


@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.GroupComposition("S3"), mm.GroupComposition("D5"),
                                  mm.GroupComposition("C7"), mm.GroupComposition("A5"),
                                  mm.SparseParity(n=6, k=3)],
                         ids=["Z7", "Z5k3", "S3", "D5", "C7", "A5", "parity"])
def test_certificate_is_perfect(task):
    report = compare_to_theory(certificate(task), task)
    pred = report.prediction
    assert report.ratio == pytest.approx(1.0, rel=1e-9)
    assert report.fraction_pure == 1.0
    table = report.to_dataframe()
    assert (table["used_observed"] == table["used_predicted"]).all()
    assert (table["neurons_observed"] == table["neurons_certificate"]).all()
    torch.testing.assert_close(torch.tensor(table["share_observed"].to_numpy()),
                               torch.tensor(table["share_predicted"].to_numpy()),
                               rtol=1e-9, atol=1e-12)
    scalars = report.summary()
    assert scalars["live_neurons"] == pred.width_bound
    if report.structure.phase_error is not None:
        assert scalars["phase_error"] < 1e-9
    for check in report.structure.checks.values():
        assert check == 1.0
    assert isinstance(report.plot(), go.Figure)


def _planted(p, neurons):
    """Theory-style quadratic MLP whose neurons are (ζ, θ_u, θ_v, θ_w) cosines (+ a 2nd frequency)."""
    task = mm.ModularAddition(p=p)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=len(neurons), dtype="float64"))
    a = torch.arange(p, dtype=torch.float64)
    W_in = torch.zeros(2, p, len(neurons), dtype=torch.float64)
    W_out = torch.zeros(len(neurons), p, dtype=torch.float64)
    for j, terms in enumerate(neurons):
        for amp, z, tu, tv, tw in terms:
            alpha = 2 * math.pi * z / p
            W_in[0, :, j] += amp * torch.cos(alpha * a + tu)
            W_in[1, :, j] += amp * torch.cos(alpha * a + tv)
            W_out[j] += amp * torch.cos(alpha * a + tw)
    with torch.no_grad():
        model.blocks[0].mlp.W_in.copy_(W_in)
        model.blocks[0].mlp.W_out.copy_(W_out)
    return model, task


def test_planted_phase_error_and_purity():
    """A neuron with θ_u + θ_v − θ_w = δ has phase error δ; an equal mix of two frequencies has
    purity 1/2; pure neurons have purity 1."""
    delta = 0.7
    model, task = _planted(11, [[(1.0, 2, 0.3, 0.5, 0.8 - delta)],
                                [(1.0, 3, 1.0, -2.0, -1.0)],
                                [(1.0, 1, 0.0, 0.0, 0.0), (1.0, 4, 0.0, 0.0, 0.0)]])
    report = compare_to_theory(model, task)
    s = report.structure
    assert float(s.phase_error[0]) == pytest.approx(delta, abs=1e-12)
    assert float(s.phase_error[1]) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(s.purity, torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64))
    assert report.dominant[:2] == ["freq_2", "freq_3"]
    assert report.fraction_pure == pytest.approx(2 / 3)
    table = report.to_dataframe().set_index("label")
    assert not table.loc["freq_5", "used_observed"]


def test_relu_transformer_is_reported_not_failed():
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    cfg = mm.TransformerConfig.for_task(task, d_model=32, n_heads=2, d_head=16, d_mlp=64)
    model = mm.HookedOneLayerTransformer(cfg)
    mm.train(model, task, mm.TrainConfig(steps=30, lr=1e-2, weight_decay=1.0, progress=False,
                                         checkpoint_schedule="none"))
    report = compare_to_theory(model, task)
    assert report.ratio is None and "transformer" in report.ratio_reason
    assert not report.prediction.applies and report.prediction.gamma is not None
    s = report.structure
    assert s.energy.shape == (64, 3) and len(s.phase_error) == 64
    assert bool(((s.purity >= 0) & (s.purity <= 1 + 1e-12)).all())
    assert report.fraction_pure < 1.0
    assert report.scalars()["metric"].tolist()[:2] == ["normalized_margin", "ratio_to_gamma"]
    assert isinstance(report.plot(), go.Figure)


def test_mlp_with_biases_reports_structure_without_normalized_margin():
    task = mm.GroupComposition("S3")
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="relu", use_biases=True))
    report = compare_to_theory(model, task)
    assert report.margins.normalized is None and "biases" in report.ratio_reason
    assert report.structure.energy.shape == (24, 2)
    assert report.structure.phase_error is None
    assert len(report.neurons()) == 24


def test_relu_mlp_without_biases_has_incomparable_normalization():
    task = mm.ModularAddition(p=5)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, act_fn="relu"))
    report = compare_to_theory(model, task)
    assert report.margins.normalized is not None and report.ratio is None
    assert "not comparable" in report.ratio_reason


def test_random_quadratic_mlp_ratio_below_one():
    task = mm.GroupComposition("S3")
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=36, dtype="float64"))
    report = compare_to_theory(model, task)
    assert report.ratio is not None and report.ratio < 1.0


def test_uncovered_group_still_reports_structure():
    task = mm.GroupComposition("Q8")
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, dtype="float64"))
    report = compare_to_theory(model, task)
    assert report.ratio is None and report.prediction.gamma is None
    assert report.to_dataframe()["used_predicted"].isna().all()
    assert report.structure.energy.shape == (16, 4)


def test_parity_transformer_reports_missing_structure():
    task = mm.SparseParity(n=6, k=2)
    cfg = mm.TransformerConfig.for_task(task, d_model=16, n_heads=2, d_head=8, d_mlp=32)
    report = compare_to_theory(mm.HookedOneLayerTransformer(cfg), task)
    assert report.ratio is None and report.structure.weight.numel() == 0
    assert "linear input map" in report.structure.reason
    assert report.fraction_pure == 0.0


def test_parity_planted_off_support_neuron():
    """A certificate plus one neuron reading an off-support bit: that neuron has purity < 1."""
    task = mm.SparseParity(n=6, k=3)
    cert = certificate(task)
    model = mm.HookedMLP(cert.cfg.replace(d_mlp=cert.cfg.d_mlp + 1))
    with torch.no_grad():
        model.W_in[:, :, :-1].copy_(cert.W_in)
        model.W_out[:-1].copy_(cert.W_out)
        model.W_in[0, :, -1] = 0.0
        model.W_in[0, 5, -1] = 0.3
        model.W_in[0, 0, -1] = 0.3
        model.W_out[-1] = torch.tensor([0.3, -0.3], dtype=torch.float64)
    report = compare_to_theory(model, task)
    purity = report.structure.purity
    assert bool((purity[:-1] == 1.0).all()) and float(purity[-1]) == pytest.approx(
        (0.09 + 0.18) / (0.09 + 0.09 + 0.18), rel=1e-12)
    assert report.ratio < 1.0


def test_parity_through_the_core():
    """Parity through the core: Theorem 8's neurons planted on S = (1, 3, 4) and weaker ones on
    T = (0, 2, 5). The core's spectrum, logit similarity and key subsets recover S alone, and
    compare_to_theory's per-neuron structure is the planted weights' energy on S's characters
    (u on S, w along (1, −1)), the same as the parity basis's Walsh energy of the neurons' input."""
    S, T, weak = (1, 3, 4), (0, 2, 5), 0.5
    task = mm.SparseParity(n=6, k=3, support=S)
    (in_S, out_S), (in_T, out_T) = parity_weights(6, S), parity_weights(6, T)
    W_in = torch.from_numpy(np.concatenate([in_S, weak * in_T], -1))
    W_out = torch.from_numpy(np.concatenate([out_S, weak * out_T]))
    model = mm.HookedMLP(certificate(task).cfg.replace(d_mlp=W_out.shape[0]))
    with torch.no_grad():
        model.W_in.copy_(W_in)
        model.W_out.copy_(W_out)
    # the core recovers S
    assert key_components(model, task) == [S] == key_components(model, task, method="similarity")
    spec, sim = spectrum(model, task), logit_similarity(model, task)
    assert spec.labels[1:][int(spec.shares("logits").argmax())] == S
    assert sim.labels[int(sim.similarity.abs().argmax())] == S
    # compare_to_theory reads the planted structure
    report = compare_to_theory(model, task)
    u, w = W_in[0].T, W_out                                           # m n, m 2
    off_S = [j for j in range(task.n) if j not in S]
    along = torch.tensor([1.0, -1.0], dtype=torch.float64) / math.sqrt(2)
    const = torch.tensor([1.0, 1.0], dtype=torch.float64) / math.sqrt(2)
    on = u[:, list(S)].square().sum(1) + (w @ along) ** 2
    torch.testing.assert_close(report.structure.energy[:, 0], on, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(report.structure.mixed,
                               u[:, off_S].square().sum(1) + (w @ const) ** 2,
                               rtol=1e-12, atol=1e-15)
    basis = basis_for(task)
    pre = task.inputs.double() @ u.T
    inside = [i for i, lab in enumerate(basis.nontrivial) if set(lab) <= set(S)]
    walsh = basis.grid_energy(pre).blocks[:, inside].sum(1) / len(task.inputs)
    torch.testing.assert_close(report.structure.energy[:, 0], walsh + (w @ along) ** 2,
                               rtol=1e-12, atol=1e-15)
    n_S = in_S.shape[-1]
    torch.testing.assert_close(report.structure.purity[:n_S],
                               torch.ones(n_S, dtype=torch.float64), rtol=0, atol=1e-12)
    assert bool((report.structure.purity[n_S:] < 1.0).all())
    assert report.fraction_pure == n_S / len(w) and report.dominant == ["support"] * len(w)
    assert report.summary()["fraction_sign_condition"] == 1.0


def test_parity_on_a_sample_of_the_cube_reports_missing_structure():
    """The parity basis needs the whole cube: on a sample the margins are still compared and the
    structure says why it is empty."""
    task = mm.SparseParity(n=20, k=2, n_samples=64, seed=0)
    report = compare_to_theory(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
    assert report.structure.weight.numel() == 0 and "whole cube" in report.structure.reason
    assert report.margins.normalized is not None and report.fraction_pure == 0.0
