"""The analysis core: one entry point, every task through its harmonic basis, a TransformerBridge as
input, and a p = 113, k = 3 analysis in bounded memory."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from oracles.planted import exact_cosine_mlp

import mi_margin as mm
from mi_margin.analysis import (
    basis_for,
    key_components,
    logit_similarity,
    neuron_clusters,
    restricted_loss,
    spectrum,
)
from mi_margin.analysis.basis import CyclicBasis, IrrepBasis, ParityBasis
from mi_margin.errors import MiMarginError
from mi_margin.theory.certificates import certificate

ROOT = Path(__file__).resolve().parents[2]


# -- the basis, checked as maths -----------------------------------------------------------------
@pytest.mark.parametrize("task", [mm.ModularAddition(p=6, k=2), mm.ModularAddition(p=5, k=3),
                                  mm.GroupComposition("S3"), mm.SparseParity(n=4, k=2)],
                         ids=["Z6", "Z5k3", "S3", "parity"])
def test_blocks_and_terms_match_dense_projections(task):
    """Every label's block and term energies equal ||Pᵀ h||² with explicit orthonormal bases."""
    b = basis_for(task)
    values = torch.randn(len(task.labels), 3, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    centred = values - values.mean(0)
    grid = b.grid_energy(values)
    assert torch.allclose(grid.total, centred.square().sum(0), atol=1e-9)
    for j, lab in enumerate(b.nontrivial):
        dense = b.block_projection(values, [lab])
        assert torch.allclose(grid.blocks[:, j], dense.square().sum(0), atol=1e-9)
        for term in b.terms():
            Q = b.term_directions(task, [lab], term)
            assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64), atol=1e-10)
            energy = b.term_energy(task, values, term)[b.labels.index(lab)]
            assert torch.allclose(energy, (Q.T @ centred).square().sum(0), atol=1e-9)


@pytest.mark.parametrize("task", [mm.ModularAddition(p=6), mm.ModularAddition(p=7),
                                  mm.GroupComposition("S3"), mm.GroupComposition("D4"),
                                  mm.SparseParity(n=3, k=2)],
                         ids=["Z6", "Z7", "S3", "D4", "parity"])
def test_coefficient_names_name_each_basis_vector(task):
    """Each label's orthonormal basis vectors have one coefficient 1, at a name of that label."""
    b = basis_for(task)
    names = b.coefficient_names()
    assert len(names) == len(set(names)) == sum(b.dims) == b.n
    for lab in b.labels:
        Q = b.operand_basis(lab)
        coef = b.coefficients(Q)
        for i in range(Q.shape[1]):
            at = int(coef[:, i].abs().argmax())
            assert coef[at, i].abs() == pytest.approx(1.0, abs=1e-9)
            assert coef[:, i].square().sum() == pytest.approx(1.0, abs=1e-9)
            assert int(b.index_labels[at]) == b.labels.index(lab)
            word = names[at]
            if b.label_kind == "frequency":    # "const", "cos f" or "sin f"
                assert word == "const" if lab == 0 else word.split()[1:] == [str(lab)]
            else:
                assert word.split("[")[0] == str(lab)


def test_basis_kinds_and_labels():
    assert isinstance(basis_for(mm.ModularAddition(p=7)), CyclicBasis)
    assert basis_for(mm.GroupComposition("D5")).labels == ("trivial", "sign", "freq_1", "freq_2")
    assert isinstance(basis_for(mm.GroupComposition("A4")), IrrepBasis)
    parity = basis_for(mm.SparseParity(n=3, k=2))
    assert isinstance(parity, ParityBasis) and len(parity.labels) == 2**3
    with pytest.raises(MiMarginError, match="whole cube"):
        basis_for(mm.SparseParity(n=4, k=2, n_samples=10))


def test_a_sample_as_large_as_the_cube_is_not_the_cube():
    """n_samples = 2^n draws 2^n rows with replacement (here 10 distinct of 16, unordered): the
    harmonic analyses and the theorem refuse it as they refuse any sample (they took it for the
    cube, and gave other key subsets than the cube's for the same weights)."""
    sample = mm.SparseParity(n=4, k=2, n_samples=16)
    assert len(torch.unique(sample.inputs, dim=0)) < 16 and not sample.whole_grid
    with pytest.raises(MiMarginError, match="drawn at random"):
        basis_for(sample)
    assert not mm.theory.max_margin(sample).applies
    assert "drawn at random" in mm.theory.max_margin(sample).reasons[0]


# -- sparse parity through the core ----------------------------------------------------------------
def test_parity_certificate_through_the_core():
    """Theorem 8's certificate computes κ χ_S(x) on the logit difference: its Walsh spectrum, logit
    similarity and key subsets are S alone, keeping χ_S leaves the loss unchanged, and removing it
    leaves equal logits, i.e. loss log 2 exactly."""
    task = mm.SparseParity(n=6, k=3, support=(1, 3, 4))
    model = certificate(task)
    S = (1, 3, 4)
    assert key_components(model, task) == [S] == key_components(model, task, method="similarity")
    sim = logit_similarity(model, task)
    assert float(sim.similarity[sim.labels.index(S)]) == pytest.approx(1.0, abs=1e-9)
    assert sim.fve() == pytest.approx(1.0, abs=1e-9)
    spec = spectrum(model, task)
    assert float(spec.shares("logits")[spec.labels[1:].index(S)]) == pytest.approx(1.0, abs=1e-9)
    losses = restricted_loss(model, task, [S])
    assert losses.restricted == pytest.approx(losses.full_loss, rel=1e-9)
    assert losses.excluded == pytest.approx(math.log(2), abs=1e-9)
    assert losses.n_directions == 1


def test_parity_neurons_are_labelled_by_their_subset_of_the_task_s_order():
    """Every neuron of Theorem 8's certificate computes (Σ_{j∈S} w_j x_j)^k: its activation
    carries every product of fewer of S's bits too, which hold most of its energy; its label is S,
    of purity 1 among the subsets of order k (over all subsets none was labelled)."""
    task = mm.SparseParity(n=6, k=3, support=(1, 3, 4))
    res = neuron_clusters(certificate(task), task)
    assert set(res.label) == {(1, 3, 4)}
    torch.testing.assert_close(res.purity, torch.ones_like(res.purity), rtol=0, atol=1e-9)
    assert res.label == mm.explain(certificate(task), task).label


# -- the one entry point -----------------------------------------------------------------------------
def test_every_analyzer_checks_the_model_against_the_task():
    task = mm.ModularAddition(p=7)
    other = mm.HookedMLP(mm.MLPConfig.for_task(mm.ModularAddition(p=11), d_mlp=4))
    for analyzer in (spectrum, logit_similarity, neuron_clusters, key_components, restricted_loss):
        with pytest.raises(MiMarginError, match="does not fit"):
            analyzer(other, task)
    broken = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4))
    with torch.no_grad():
        broken.W_out[0, 0] = float("nan")
    with pytest.raises(MiMarginError, match="NaN"):
        spectrum(broken, task)


# -- TransformerBridge input -------------------------------------------------------------------------
@pytest.mark.parametrize("task", [mm.ModularAddition(p=11, train_fraction=0.5),
                                  mm.GroupComposition("S3", train_fraction=0.5)],
                         ids=["Z11", "S3"])
def test_bridge_gives_the_models_analyses(task):
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=16, n_heads=2, d_head=8, d_mlp=24, seed=1))
    bridge = model.to_bridge()
    ours, theirs = spectrum(model, task), spectrum(bridge, task)
    assert ours.weights.keys() == theirs.weights.keys() and ours.grid.keys() == theirs.grid.keys()
    for name in ours.weights:
        assert torch.allclose(ours.weights[name], theirs.weights[name], atol=1e-6)
    for name in ours.grid:
        assert torch.allclose(ours.grid[name], theirs.grid[name], atol=1e-4)
    assert torch.allclose(logit_similarity(model, task).similarity,
                          logit_similarity(bridge, task).similarity, atol=1e-5)
    assert torch.allclose(neuron_clusters(model, task).shares, neuron_clusters(bridge, task).shares,
                          atol=1e-4)
    labels = list(basis_for(task).nontrivial[:1])
    a, b = restricted_loss(model, task, labels), restricted_loss(bridge, task, labels)
    for field in ("full_loss", "restricted", "excluded"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-4)


# -- bounded memory --------------------------------------------------------------------------------
MEMORY_SCRIPT = """
import json, resource, sys, torch
torch.set_num_threads(1)
import mi_margin as mm
from mi_margin.analysis import (key_frequencies, logit_similarity, neuron_clusters,
                                restricted_loss, spectrum)
task = mm.ModularAddition(p=113, k=3, train_fraction=0.3)
model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
spec = spectrum(model, task, where=["embed", "neurons"])
keys = key_frequencies(model, task, method="embed")
clusters = neuron_clusters(model, task)
sim = logit_similarity(model, task)
losses = restricted_loss(model, task, [1, 2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux: kilobytes
print(json.dumps({"peak_bytes": peak, "neurons": len(clusters.label), "F": len(sim.labels),
                  "excluded": losses.excluded, "grid": list(spec.grid["neurons"].shape)}))
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux")
def test_a_p113_k3_analysis_stays_within_4_gb():
    """1,442,897 inputs × 113 classes: the logits alone are 0.65 GB in float32, a float64 copy of
    every activation several GB; the core runs the grid in chunks of rows and the transforms in
    chunks of columns. Peak RSS of a fresh process is measured (it includes torch itself)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["neurons"] == 8 and out["F"] == 113 // 2 and out["grid"] == [8, 56]
    assert math.isfinite(out["excluded"])
    assert out["peak_bytes"] < 4 * 2**30, f"peak RSS {out['peak_bytes'] / 2**30:.2f} GiB"


# -- the old keyword names are gone ---------------------------------------------------------------
def test_old_keyword_names_are_refused():
    """threshold=, min_fraction=, frequencies= and method="embedding" were removed in 0.1."""
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    model = exact_cosine_mlp(task, [1, 3])
    with pytest.raises(TypeError, match="threshold"):
        mm.key_frequencies(model, task, threshold=0.5)
    with pytest.raises(MiMarginError, match="method"):
        mm.key_frequencies(model, task, method="embedding")
    with pytest.raises(TypeError, match="min_fraction"):
        neuron_clusters(model, task, min_fraction=0.9)
    with pytest.raises(TypeError, match="frequencies"):
        restricted_loss(model, task, frequencies=[1])
    group = mm.GroupComposition("S3")
    with pytest.raises(TypeError, match="threshold"):
        mm.key_irreps(mm.HookedMLP(mm.MLPConfig.for_task(group, d_mlp=8)), group, threshold=0.3)


def test_analyses_of_neurons_refuse_an_attention_only_transformer_by_name():
    task = mm.ModularAddition(p=7)
    cfg = mm.TransformerConfig.for_task(task, d_model=16, d_mlp=24, n_heads=2, d_head=8,
                                        attn_only=True)
    model = mm.HookedOneLayerTransformer(cfg)
    for analysis in (mm.key_frequencies, mm.neuron_clusters, mm.fourier_spectrum):
        with pytest.raises(mm.MiMarginError, match="attention-only"):
            analysis(model, task)
