"""Irrep analyzers on certificate networks with planted irreps, their maths checked exhaustively,
and their figures.

Oracle (docs/mathematics.md §1.5, built by ``mi_margin.theory.certificates.group_weights``): for every planted
real irrep ρ and (i, j, l) ∈ [d]^3 the quadratic neuron pair (β ρ_ij, ±β ρ_jl, ±β ρ_il); the network's
logits are exactly 4β³ Σ_ρ c_ρ χ_ρ(abc⁻¹). Every neuron is pure in its irrep, the u², v² and mean
terms cancel within each pair and the non-ρ(ab) part of ρ(a)_ij ρ(b)_jl cancels in the sum over j,
so keeping ρ(ab) of the planted irreps leaves the logits unchanged and removing it makes them 0.
"""

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.ablation import ablation_hook
from mi_margin.analysis.basis import basis_for, term_labels
from mi_margin.analysis.neurons import neuron_irrep_clusters, neuron_irreps
from mi_margin.analysis.restricted import irrep_restricted_loss
from mi_margin.analysis.spectrum import (
    character_similarity,
    irrep_logit_similarity,
    irrep_spectrum,
    key_irreps,
)
from mi_margin.errors import MiMarginError
from mi_margin.fourier.group import isotypic_basis
from mi_margin.theory.certificates import certificate, group_weights
from mi_margin.theory.predictions import Prediction, max_margin
from mi_margin.viz.harmonic import neuron_purity_heatmap
from mi_margin.viz.irreps import cayley_table_figure, character_table_figure

PLANTED = [("S3", ["standard"]), ("D5", ["freq_1", "freq_2"]), ("S4", ["standard"]),
           ("S4", ["sign", "(2,2)", "standard_sign"]), ("A4", ["(3,1)"])]


def planted_mlp(task, coefficients, beta=2.0):
    """Quadratic float64 HookedMLP with logits 4 Σ_ρ (β³ c_ρ) χ_ρ(abc⁻¹) (docs/mathematics.md §1.5)."""
    pred = Prediction(theorem="planted", task_kind=task.kind, gamma=None, applies=False,
                      logit_coefficients={name: beta**3 * c for name, c in coefficients.items()})
    W_in, W_out = group_weights(task.group, pred)
    cfg = mm.MLPConfig.for_task(task, d_mlp=W_in.shape[2], act_fn="quadratic", dtype="float64")
    model = mm.HookedMLP(cfg)
    with torch.no_grad():
        model.W_in.copy_(torch.from_numpy(W_in))
        model.W_out.copy_(torch.from_numpy(W_out))
    return model


def _planted(group, irreps, train_fraction=0.5):
    task = mm.GroupComposition(group, train_fraction=train_fraction, seed=0)
    names = basis_for(task).resolve(irreps)
    return task, names, planted_mlp(task, dict.fromkeys(names, 1.0))


def _chi_cube(task, name):
    """χ_ρ(s(x) c⁻¹) over the grid × classes, built directly, [N, n]."""
    G = task.group
    chi = torch.tensor(G.irrep(name).character)
    return chi[torch.tensor(G.table)[task.labels][:, torch.tensor(G.inverse)]]


@pytest.mark.parametrize("group,irreps", PLANTED)
def test_oracle_logits_are_the_planted_characters(group, irreps):
    task, names, model = _planted(group, irreps)
    logits = model(task.inputs).detach()
    expected = 4 * 2.0**3 * sum(_chi_cube(task, name) for name in names)
    assert torch.allclose(logits, expected, atol=1e-9)


@pytest.mark.parametrize("group,irreps", PLANTED)
def test_key_irreps_and_similarities_recover_the_planted_set(group, irreps):
    """Equal coefficients, cube norms² = |G|^{k+1} e_ρ: sim_ρ = sqrt(e_ρ / Σ_planted e) on the set."""
    task, names, model = _planted(group, irreps)
    assert key_irreps(model, task) == list(names)
    sim = irrep_logit_similarity(model, task)
    e = {r.name: r.commutant_dim for r in task.group.irreps()}
    total = sum(e[n] for n in names)
    expected = torch.tensor([math.sqrt(e[n] / total) if n in names else 0.0 for n in sim.irreps],
                            dtype=torch.float64)
    assert torch.allclose(sim.similarity, expected, atol=1e-10)
    assert sim.fve() == pytest.approx(1.0, abs=1e-10)
    assert sim.fve(names) == pytest.approx(1.0, abs=1e-10)
    assert sorted(sim.top(len(names))["irrep"]) == sorted(names)


@pytest.mark.parametrize("group,irreps", PLANTED)
def test_every_neuron_is_pure_in_its_planted_irrep(group, irreps):
    task, names, model = _planted(group, irreps)
    res = neuron_irrep_clusters(model, task)
    expected = [r.name for r in task.group.irreps() if r.name in names
                for _ in range(2 * r.dim**3)]         # group_weights' neuron order
    assert list(res.irrep) == expected == neuron_irreps(model, task)
    assert torch.allclose(res.purity, torch.ones_like(res.purity), atol=1e-12)
    assert res.counts == {r.name: 2 * r.dim**3 for r in task.group.irreps() if r.name in names}
    assert not bool(res.dead.any())


@pytest.mark.parametrize("group,irreps", PLANTED)
def test_weight_fve_lives_in_the_planted_irreps(group, irreps):
    task, names, model = _planted(group, irreps)
    spec = irrep_spectrum(model, task)
    assert set(spec.weights) == {"embed[0]", "embed[1]", "unembed"}
    for comp, fractions in spec.weights.items():
        fve = spec.fve(comp)
        assert sum(fve.values()) == pytest.approx(1.0, abs=1e-12), comp
        assert sum(fve[n] for n in names) == pytest.approx(1.0, abs=1e-12), comp
        assert len(fractions) == len(task.group.irreps())


@pytest.mark.parametrize("group,irreps", PLANTED)
def test_restricted_loss_keeps_the_loss_and_excluded_loss_destroys_it(group, irreps):
    task, names, model = _planted(group, irreps)
    res = irrep_restricted_loss(model, task)            # default irreps: the key irreps
    assert res.irreps == names
    assert res.n_directions == sum(task.group.irrep(n).isotypic_dim for n in names)
    assert res.full_loss < 1e-6 and res.restricted_acc == 1.0
    assert res.restricted == pytest.approx(res.full_loss, abs=1e-9)
    assert res.excluded == pytest.approx(math.log(task.group.order), abs=1e-9)


def test_removing_one_of_two_planted_irreps_leaves_the_other():
    """D5 with freq_1 and freq_2: removing freq_1(ab) leaves logits 4β³ χ_freq_2(abc⁻¹) exactly."""
    task, _, model = _planted("D5", ["freq_1", "freq_2"])
    hook = ablation_hook(task, ["freq_1"], "remove")
    logits = model.run_with_hooks(task.inputs, fwd_hooks=[("blocks.0.mlp.hook_post", hook)])
    assert torch.allclose(logits.detach(), 4 * 2.0**3 * _chi_cube(task, "freq_2"), atol=1e-9)


@pytest.mark.parametrize("group", ["S3", "D5"])
def test_theory_certificate_similarity_follows_its_logit_coefficients(group):
    """theory.certificate: logits ∝ Σ c_ρ χ_ρ, so sim_ρ = c_ρ sqrt(e_ρ) / sqrt(Σ c² e), all key."""
    task = mm.GroupComposition(group)
    coeffs = max_margin(task).logit_coefficients
    sim = irrep_logit_similarity(certificate(task), task)
    e = {r.name: r.commutant_dim for r in task.group.irreps()}
    norm = math.sqrt(sum(c * c * e[n] for n, c in coeffs.items()))
    expected = [coeffs.get(n, 0.0) * math.sqrt(e[n]) / norm for n in sim.irreps]
    assert torch.allclose(sim.similarity, torch.tensor(expected, dtype=torch.float64), atol=1e-10)
    assert key_irreps(certificate(task), task) == [n for n in sim.irreps if n != "trivial"]
    res = neuron_irrep_clusters(certificate(task), task)
    assert torch.allclose(res.purity, torch.ones_like(res.purity), atol=1e-12)


# -- maths, checked exhaustively -----------------------------------------------------------------
@pytest.mark.parametrize("group,k", [("S3", 2), ("S3", 3), ("A4", 2), ("Q8", 2)])
def test_grid_bases_are_orthonormal_across_irreps_and_terms(group, k):
    task = mm.GroupComposition(group, k=k)
    nontrivial = [r.name for r in task.group.irreps() if r.name != "trivial"]
    Q = torch.cat([basis_for(task).term_directions(task, nontrivial, term) for term in term_labels(k)],
                  dim=1)
    r = sum(task.group.irrep(n).isotypic_dim for n in nontrivial)
    assert Q.shape == (task.group.order**k, (k + 1) * r)
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("group,k", [("S3", 2), ("S3", 3), ("A4", 2)])
def test_character_similarity_matches_brute_force_cosine(group, k):
    task = mm.GroupComposition(group, k=k)
    logits = torch.randn(len(task.labels), task.group.order, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    centred = logits - logits.mean(1, keepdim=True)
    brute = []
    for rho in task.group.irreps():
        cube = _chi_cube(task, rho.name)
        denom = centred.norm() * cube.norm()
        brute.append(float((centred * cube).sum() / denom))
    assert torch.allclose(character_similarity(logits, task),
                          torch.tensor(brute, dtype=torch.float64), atol=1e-12)


def test_character_similarity_ignores_per_input_offsets():
    task = mm.GroupComposition("S4")
    offset = torch.arange(len(task.labels), dtype=torch.float64)[:, None]
    sim = character_similarity(_chi_cube(task, "(2,2)") + offset, task)
    names = [r.name for r in task.group.irreps()]
    expected = torch.zeros(len(names), dtype=torch.float64)
    expected[names.index("(2,2)")] = 1.0
    assert torch.allclose(sim, expected, atol=1e-12)


@pytest.mark.parametrize("group,k,kind", [("S3", 2, "mlp"), ("S3", 3, "mlp"), ("D5", 2, "transformer")])
def test_hidden_energies_match_explicit_projections(group, k, kind):
    task = mm.GroupComposition(group, k=k)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, act_fn="relu")) if kind == "mlp" \
        else mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=16, d_mlp=12))
    spec = irrep_spectrum(model, task)
    _, cache = model.run_with_cache(task.tokens if kind == "transformer" else task.inputs)
    H = cache["blocks.0.mlp.hook_post"].double()
    H = H[:, -1] if H.ndim == 3 else H
    H = H - H.mean(0)
    for i, name in enumerate(spec.irreps):
        for t, term in enumerate(spec.terms):
            Q = basis_for(task).term_directions(task, [name], term)
            assert torch.allclose(spec.hidden[:, i, t], (Q.T @ H).square().sum(0), atol=1e-9)
    assert torch.allclose(spec.hidden_variance, H.square().sum(0), atol=1e-9)
    residual = spec.to_dataframe().query("irrep == 'residual'")["fraction"].item()
    assert residual == pytest.approx(1 - float(spec.hidden_fractions().sum()), abs=1e-12)
    assert 0 <= residual <= 1


@pytest.mark.parametrize("input_style", ["theory", "embed"])
def test_weight_fve_sums_to_one_and_uses_effective_maps(input_style):
    task = mm.GroupComposition("S4", k=3)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=10, d_embed=6, input_style=input_style,
                                               act_fn="relu"))
    spec = irrep_spectrum(model, task, where=["embed", "unembed"])
    assert sorted(spec.weights) == ["embed[0]", "embed[1]", "embed[2]", "unembed"]
    assert spec.hidden is None
    G = task.group
    for i in range(3):
        W = model.W_in_eff[i].detach().double().numpy()
        direct = [float(np.sum((isotypic_basis(G, r).T @ W) ** 2) / np.sum(W**2))
                  for r in G.irreps()]
        assert np.allclose(spec.weights[f"embed[{i}]"].numpy(), direct, atol=1e-12)
        assert float(spec.weights[f"embed[{i}]"].sum()) == pytest.approx(1.0, abs=1e-12)


def test_transformer_components_and_neurons():
    task = mm.GroupComposition("S3", train_fraction=0.5)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=16, d_mlp=10))
    spec = irrep_spectrum(model, task)
    assert sorted(spec.weights) == ["W_L", "embed", "neuron_in", "unembed"]
    for comp in spec.weights:
        assert sum(spec.fve(comp).values()) == pytest.approx(1.0, abs=1e-9)
    res = neuron_irrep_clusters(model, task)
    assert res.energy.shape == (10, 3) and res.model_kind == "transformer"
    n_nontrivial = len(task.group.irreps()) - 1          # max of m shares summing to 1 is ≥ 1/m
    assert bool(((res.purity >= 1 / n_nontrivial - 1e-12) & (res.purity <= 1 + 1e-12)).all())
    loss = irrep_restricted_loss(model, task, ["standard"])
    assert loss.n_directions == 4 and np.isfinite(loss.restricted) and np.isfinite(loss.excluded)


def test_activation_source_on_the_oracle_assigns_the_planted_irrep():
    """S3 standard: the neurons' activations lie in standard(a), standard(b), standard(ab) and
    products of standard with itself, which split into trivial ⊕ sign ⊕ standard; by weights and by
    activations every neuron is assigned the planted irrep."""
    task, names, model = _planted("S3", ["standard"])
    res = neuron_irrep_clusters(model, task, source="activations")
    assert set(res.irrep) == set(names)


def test_dead_neurons_are_unassigned():
    task, _, model = _planted("S3", ["standard"])
    with torch.no_grad():
        model.W_in[:, :, 0] = 0.0
    res = neuron_irrep_clusters(model, task)
    assert bool(res.dead[0]) and res.irrep[0] is None and not bool(res.dead[1:].any())
    assert None in res.clusters and res.clusters[None] == [0]


@pytest.mark.parametrize("scale", [0.0, 1e-20, 1e-12])
def test_neurons_decayed_below_the_models_precision_are_dead(scale):
    """Weight decay leaves neurons at ~1e-21 that are not exactly constant: at the model's float32
    precision they are, so they get no label (a neuron at 1e-3 of the others stays live)."""
    task, _, model = _planted("S3", ["standard"])
    with torch.no_grad():
        model.W_in[:, :, 0] *= scale
        model.W_in[:, :, 1] *= 1e-3
    res = neuron_irrep_clusters(model, task)
    assert bool(res.dead[0]) and res.irrep[0] is None and not bool(res.dead[1:].any())
    assert res.irrep[1] is not None


def test_bad_input_raises_clear_errors():
    task = mm.GroupComposition("S3")
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
    add = mm.ModularAddition(p=5)
    with pytest.raises(MiMarginError, match="reads irreps"):
        irrep_spectrum(mm.HookedMLP(mm.MLPConfig.for_task(add, d_mlp=8)), add)
    with pytest.raises(MiMarginError, match="k >= 2"):
        key_irreps(mm.HookedMLP(mm.MLPConfig.for_task(mm.GroupComposition("S3", k=1), d_mlp=4)),
                   mm.GroupComposition("S3", k=1))
    with pytest.raises(MiMarginError, match="where"):
        irrep_spectrum(model, task, where=["attention"])
    with pytest.raises(MiMarginError, match="term"):
        basis_for(task).term_directions(task, ["sign"], "c")
    with pytest.raises(MiMarginError, match="min_similarity"):
        key_irreps(model, task, min_similarity=1.5)
    with pytest.raises(MiMarginError, match="min_purity"):
        neuron_irrep_clusters(model, task, min_purity=0.0)
    with pytest.raises(MiMarginError, match="source"):
        neuron_irrep_clusters(model, task, source="gradients")
    with pytest.raises(MiMarginError):
        irrep_restricted_loss(model, task, ["no_such_irrep"])
    with pytest.raises(MiMarginError, match="d_vocab_out"):
        irrep_spectrum(mm.HookedMLP(mm.MLPConfig(**{**task.mlp_fields(), "d_vocab_out": 5},
                                                 d_mlp=8)), task)


# -- figures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted_s4():
    task = mm.GroupComposition("S4", train_fraction=0.5)
    return task, planted_mlp(task, {"(2,2)": 1.0, "(3,1)": 1.0})


def test_result_plots(planted_s4):
    task, model = planted_s4
    result = irrep_spectrum(model, task)
    spec = result.plot()                           # one trace per component, then per term
    assert isinstance(spec, go.Figure) and [t.name for t in spec.data] == \
        [*result.weights, *result.grid, *(f"ρ({t})" for t in result.terms)]
    sim = irrep_logit_similarity(model, task).plot()
    assert list(sim.data[0].y) == pytest.approx(irrep_logit_similarity(model, task).similarity.tolist())
    clusters = neuron_irrep_clusters(model, task)
    counts = clusters.plot()
    assert dict(zip(counts.data[0].x, counts.data[0].y)) == {"(2,2)": 16, "(3,1)": 54}
    heat = np.asarray(neuron_purity_heatmap(clusters).data[0].z)
    assert heat.shape == (70, 5) and np.allclose(heat.max(1), 1.0)
    losses = irrep_restricted_loss(model, task).plot()
    assert len(losses.data[0].y) == 4


def test_group_figures():
    G = mm.groups.get("D5")
    cayley = cayley_table_figure(G)
    assert np.array_equal(np.asarray(cayley.data[0].z), G.table)
    table = character_table_figure(G)
    ct = G.character_table()
    assert np.allclose(np.asarray(table.data[0].z), np.asarray(ct.values).real)
    assert list(table.data[0].y) == list(ct.irrep_names)
