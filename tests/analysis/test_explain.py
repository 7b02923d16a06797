"""mm.explain and fidelity: certificate networks are their own explanation, planted off-label
components are removed exactly, and the fidelity rows are the losses they claim to be."""

import math

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.explain import RESAMPLED, build, fidelity, operand_tables
from mi_margin.models.evaluation import cross_entropy64

TASKS = [lambda: mm.ModularAddition(p=7), lambda: mm.ModularAddition(p=5, k=3),
         lambda: mm.GroupComposition("S3"), lambda: mm.SparseParity(n=6, k=4)]


def loss_of(model, task):
    x = task.inputs.to(model.W_out.dtype) if task.inputs.is_floating_point() else task.inputs
    with torch.no_grad():
        return float(cross_entropy64(model(x), task.labels))


@pytest.mark.parametrize("make", TASKS)
def test_certificate_network_is_its_own_explanation(make):
    task = make()
    model = mm.theory.certificate(task)
    expl = mm.explain(model, task)
    assert None not in expl.counts
    scale = float(operand_tables(model).abs().max())
    assert torch.allclose(operand_tables(expl.model), operand_tables(model), atol=1e-12 * scale)
    W = model.W_out.detach()
    assert torch.allclose(expl.model.W_out.detach(), W, atol=1e-12 * float(W.abs().max()))
    table = fidelity(expl).to_dataframe().set_index("measure")
    for row in ["explanation", "input maps replaced", "output map replaced"]:
        assert table.loc[row, "loss"] == pytest.approx(table.loc["model", "loss"], rel=1e-9)
        assert table.loc[row, "accuracy"] == 1.0


def test_planted_off_label_component_is_removed():
    task = mm.ModularAddition(p=7)
    model = mm.theory.certificate(task)
    clean = operand_tables(model).clone()
    freq = mm.neuron_clusters(model, task).label[0]
    other = next(f for f in range(1, 4) if f != freq)
    planted = clean.clone()
    planted[0, :, 0] += 0.05 * clean[0, :, 0].norm() * torch.cos(
        2 * math.pi * other * torch.arange(7.0, dtype=torch.float64) / 7)
    noisy = build(model, planted, model.W_out.detach().double())
    expl = mm.explain(noisy, task)
    assert expl.label[0] == freq
    assert torch.allclose(operand_tables(expl.model), clean, atol=1e-12)
    assert float(expl.kept[0]) < 1.0


def test_embed_style_explanation_factorizes_exactly():
    task = mm.GroupComposition("S3")
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, input_style="embed", d_embed=8,
                                               dtype="float64"))
    expl = mm.explain(model, task)
    same = build(model, operand_tables(model), model.W_out.detach().double())
    assert torch.allclose(same.W_in_eff, model.W_in_eff, atol=1e-12)
    assert loss_of(same, task) == pytest.approx(loss_of(model, task), rel=1e-12)
    assert expl.model.W_E.shape == model.W_E.shape


def test_embed_style_too_narrow_is_refused():
    task = mm.GroupComposition("S3")
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, input_style="embed", d_embed=4))
    with pytest.raises(mm.MiMarginError, match="d_embed=4 < d_vocab=6"):
        mm.explain(model, task)


def tiny_transformer(seed=0):
    task = mm.ModularAddition(p=7)
    cfg = mm.TransformerConfig.for_task(task, d_model=32, n_heads=2, d_head=8, d_mlp=24,
                                        seed=seed)
    return mm.HookedOneLayerTransformer(cfg), task


@pytest.mark.filterwarnings("ignore::mi_margin.NotGeneralizedWarning")
def test_transformer_with_every_label_kept_is_its_own_explanation():
    """Z_7 has frequencies 1..3: with every live neuron labelled, the projections are the
    identity and only dead neurons (constant at the last position) are zeroed, so the
    explanation computes the model's answers and scrubbing what it leaves out changes nothing."""
    model, task = tiny_transformer()
    expl = mm.explain(model, task, min_purity=1e-9)
    assert set(expl.key) == {1, 2, 3}
    zeroed = [i for i, lab in enumerate(expl.label) if lab is None]
    assert bool(expl.clusters.dead[zeroed].all())
    for name, value in model.state_dict().items():
        if name != "blocks.0.mlp.W_out":
            torch.testing.assert_close(expl.model.state_dict()[name], value, rtol=1e-5,
                                       atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(expl.model(task.tokens)[:, -1], model(task.tokens)[:, -1],
                                   rtol=1e-5, atol=1e-5)         # the answer's position
    table = fidelity(expl, draws=2).to_dataframe().set_index("measure")
    assert table.loc[RESAMPLED[0], "recovered"] == pytest.approx(1.0, abs=1e-6)
    assert table.loc[RESAMPLED[1], "recovered"] == pytest.approx(0.0, abs=1e-6)
    for row in ["explanation", "embedding replaced", "MLP replaced", "unembedding replaced"]:
        assert table.loc[row, "loss"] == pytest.approx(table.loc["model", "loss"], rel=1e-5)


@pytest.mark.filterwarnings("ignore::mi_margin.NotGeneralizedWarning")
def test_transformer_explanation_projects_onto_the_kept_labels():
    model, task = tiny_transformer(seed=1)
    expl = mm.explain(model, task, min_purity=1e-9, keep={2})
    basis = mm.analysis.core.subject(model, task).basis
    drop = torch.cat([basis.operand_basis(f) for f in set(basis.labels[1:]) - set(expl.key)], 1)
    assert float((drop.T @ expl.model.W_E[:7].detach().double()).abs().max()) < 1e-6
    assert float((expl.model.W_U.detach().double() @ drop).abs().max()) < 1e-6
    zeroed = [i for i, lab in enumerate(expl.label) if lab is None]
    assert bool((expl.model.W_out[0][zeroed] == 0).all())
    table = fidelity(expl, draws=1).to_dataframe().set_index("measure")
    hybrid = type(model)(model.cfg)
    hybrid.load_state_dict({**model.state_dict(), "embed.W_E": expl.model.W_E.detach()})
    with torch.no_grad():
        loss = float(cross_entropy64(hybrid(task.tokens)[:, -1], task.labels))
    assert table.loc["embedding replaced", "loss"] == pytest.approx(loss, rel=1e-6)


def test_nanda_transformer_explanation_is_faithful():
    """The zoo's Nanda model: the key-frequency circuit keeps its accuracy, and scrubbing what
    it leaves out recovers nearly all the loss while scrubbing what it keeps recovers little."""
    run = mm.zoo.load("nanda_p113_transformer")
    expl = mm.explain(run.model, run.task)
    keys = mm.key_frequencies(run.model, run.task)
    assert set(expl.key) == set(keys) | {lab for lab in expl.label if lab is not None}
    table = fidelity(expl, draws=1).to_dataframe().set_index("measure")
    assert table.loc["explanation", "accuracy"] > 0.99
    assert table.loc[RESAMPLED[0], "recovered"] > 0.99
    assert table.loc[RESAMPLED[1], "recovered"] < 0.1
    with pytest.raises(mm.MiMarginError, match="certified per input"):
        mm.analysis.certify(expl)                # the default bound is the MLPs' uniform one


def test_fidelity_rows_are_the_losses_they_name():
    task = mm.ModularAddition(p=7)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, dtype="float64"))
    expl = mm.explain(model, task, min_purity=0.3)
    fid = fidelity(expl, draws=3)
    table = fid.to_dataframe().set_index("measure")
    assert table.loc["model", "loss"] == pytest.approx(loss_of(model, task), rel=1e-12)
    assert table.loc["explanation", "loss"] == pytest.approx(loss_of(expl.model, task), rel=1e-12)
    hybrid = build(model, operand_tables(expl.model), model.W_out.detach().double())
    assert table.loc["input maps replaced", "loss"] == pytest.approx(loss_of(hybrid, task),
                                                                     rel=1e-12)
    base = table.loc["resample any (baseline)", "loss"]
    for row in RESAMPLED:
        assert table.loc[row, "recovered"] == pytest.approx(
            (base - table.loc[row, "loss"]) / (base - table.loc["model", "loss"]), rel=1e-6)
    assert fid.recovered == table.loc[RESAMPLED[0], "recovered"]


@pytest.mark.parametrize("make", TASKS)
def test_scrubbing_an_exact_explanation_changes_nothing(make):
    """A certificate network is its own explanation: the left-out part is zero, so scrubbing it
    is the model and scrubbing the kept part is the baseline, draw by draw."""
    task = make()
    table = fidelity(mm.explain(mm.theory.certificate(task), task)).to_dataframe()
    table = table.set_index("measure")
    assert table.loc[RESAMPLED[0], "recovered"] == pytest.approx(1.0, abs=1e-9)
    assert table.loc[RESAMPLED[1], "recovered"] == pytest.approx(0.0, abs=1e-9)


def test_scrubbing_detects_a_mechanism_left_out():
    """Z_7's certificate network uses frequencies 1, 2 and 3; an explanation that keeps fewer of
    them leaves out part of the mechanism and must recover clearly less, less the more it omits,
    while the weak same-answer test cannot tell (it recovers 1 for every explanation)."""
    task = mm.ModularAddition(p=7)
    model = mm.theory.certificate(task)
    full, two, one = (fidelity(mm.explain(model, task, keep=keep)) for keep in
                      (None, {1, 2}, {1}))
    assert full.recovered == pytest.approx(1.0, abs=1e-9)
    assert two.recovered < 0.8 and one.recovered < two.recovered - 0.1
    for fid in (full, two, one):
        same = fid.to_dataframe().set_index("measure").loc[RESAMPLED[2], "recovered"]
        assert same == pytest.approx(1.0, abs=1e-9)


def test_keep_restricts_the_labels_and_refuses_unknown_ones():
    task = mm.ModularAddition(p=7)
    model = mm.theory.certificate(task)
    expl = mm.explain(model, task, keep=[2])
    assert set(expl.counts) == {2, None}
    with pytest.raises(mm.MiMarginError, match=r"keep .*\[5\]"):
        mm.explain(model, task, keep=[2, 5])


def test_summary_and_table():
    task = mm.GroupComposition("S3")
    expl = mm.explain(mm.theory.certificate(task), task)
    text = expl.summary()
    for lab, n in expl.counts.items():
        assert f"irrep {lab}: {n}" in text
    assert "Algorithm" in text
    assert len(expl.to_dataframe()) == expl.model.cfg.d_mlp


@pytest.mark.parametrize("make", TASKS)
def test_written_is_each_neurons_term_in_the_logits(make):
    """written[i] is the Frobenius norm of neuron i's own term in the centred logits over every
    input, read off the hooks here: hook_post's column times W_out's row, the neuron alone."""
    task = make()
    model = mm.theory.certificate(task).double()
    x = task.inputs.double() if task.inputs.is_floating_point() else task.inputs
    _, cache = model.run_with_cache(x)
    post, W = cache["blocks.0.mlp.hook_post"], model.W_out.detach()
    direct = [torch.linalg.matrix_norm(torch.outer(post[:, i], W[i] - W[i].mean()))
              for i in range(len(W))]
    written = mm.explain(model, task).written
    assert torch.allclose(written, torch.stack(direct).double(), rtol=1e-12)


def test_written_shares_follow_a_planted_scale():
    """Scaling the output maps of one frequency's neurons by c scales their terms by c: on the
    certificate of p = 7 (three frequencies, alike by symmetry) that frequency then holds
    c/(c + 2) of what the neurons write, and the summary says so."""
    task, c = mm.ModularAddition(p=7), 5.0
    model = mm.theory.certificate(task)
    plain = mm.explain(model, task)
    idx = [i for i, lab in enumerate(plain.label) if lab == 1]
    with torch.no_grad():
        model.W_out[idx] *= c
    expl = mm.explain(model, task)
    assert [expl.written_share(f) for f in (1, 2, 3)] == pytest.approx(
        [c / (c + 2), 1 / (c + 2), 1 / (c + 2)], rel=1e-9)
    assert expl.written_share(None) == 0
    assert f"frequency 1: 8 neurons, {100 * c / (c + 2):.1f}% of what the neurons write" in \
        expl.summary()


def test_summary_shows_how_little_tiny_neurons_write():
    """A neuron labelled by the rounding in its weights (the parity zoo model has six beside
    its 15 neurons of the task's subset) is shown with its share, so that the count of labels
    does not read as the count of subsets the network uses."""
    run = mm.zoo.load("morwani_parity_n10_k4_quartic")
    expl = mm.explain(run.model, run.task)
    support = tuple(sorted(run.task.support))
    others = [lab for lab in expl.counts if lab is not None and tuple(lab) != support]
    assert others and sum(expl.written_share(lab) for lab in others) < 1e-3
    text = expl.summary()
    assert all(f"subset {lab}: {expl.counts[lab]}, <0.001%" in text or
               f"subset {lab}: {expl.counts[lab]}, 0.00" in text for lab in others)


@pytest.mark.parametrize("make", TASKS[:3])
def test_weight_labels_agree_with_activation_labels_on_certificate_networks(make):
    task = make()
    model = mm.theory.certificate(task)
    by_weights = mm.explain(model, task, source="weights")
    assert by_weights.label == mm.explain(model, task).label
    assert by_weights.clusters.source == "weights"


def test_weight_labels_are_refused_where_there_are_no_maps():
    task = mm.SparseParity(n=6, k=4)
    with pytest.raises(mm.MiMarginError, match="source='activations'"):
        mm.explain(mm.theory.certificate(task), task, source="weights")
    model, task = tiny_transformer()
    with pytest.raises(mm.MiMarginError, match="transformer"):
        mm.explain(model, task, source="weights")
    with pytest.raises(mm.MiMarginError, match="source='grid'"):
        mm.explain(mm.theory.certificate(task), task, source="grid")


def two_irrep_network(task, pairs, per_pair=4, seed=0):
    """A ReLU MLP (theory style) whose neurons each read and write exactly the two irreps of
    their pair (random coefficients in both blocks, plus constants)."""
    G, gen = task.group, torch.Generator().manual_seed(seed)
    n, cols, rows, planted = G.order, [], [], []
    for pair in pairs:
        R = torch.cat([torch.tensor(G.irrep(name).matrices, dtype=torch.float64).reshape(n, -1)
                       for name in pair], 1)
        for _ in range(per_pair):
            maps = R @ torch.randn(R.shape[1], 3, generator=gen, dtype=torch.float64) + 0.1
            cols.append(maps[:, :2].T)
            rows.append(maps[:, 2])
            planted.append(set(pair))
    cfg = mm.MLPConfig.for_task(task, d_mlp=len(planted), act_fn="relu", dtype=torch.float64)
    return build(mm.HookedMLP(cfg), torch.stack(cols, 2), torch.stack(rows)), planted


def test_two_labels_per_neuron_recover_planted_pairs():
    """From the weights: a ReLU's activation of a sign + (2,1,1) neuron also carries their
    product's irrep (3,1), so the activation labels of such a neuron need not be its pair."""
    source = "weights"
    task = mm.GroupComposition("S4")
    pairs = [("(3,1)", "(2,1,1)"), ("(2,2)", "(3,1)"), ("(1,1,1,1)", "(2,1,1)")]
    model, planted = two_irrep_network(task, pairs)
    two = mm.explain(model, task, source=source, labels_per_neuron=2)
    assert [set(lab) for lab in two.label] == planted
    assert all(isinstance(lab, mm.analysis.LabelSet) for lab in two.label)
    T = operand_tables(model)
    torch.testing.assert_close(operand_tables(two.model), T, rtol=0,
                               atol=1e-12 * float(T.abs().max()))
    assert float(two.kept.min()) == pytest.approx(1.0, abs=1e-12)
    one = mm.explain(model, task, source=source, min_purity=0.1)
    assert float(one.kept.max()) < 1 - 1e-3                  # one label cuts every neuron
    assert "+" in two.summary() and len(two.counts) == len(pairs)
    kept = mm.explain(model, task, source=source, labels_per_neuron=2, keep={"(3,1)"})
    assert {lab for lab in kept.label} == {("(3,1)",), None}


def test_two_labels_per_neuron_certify_the_a5_mlp():
    """The zoo's A5 MLP: its neurons read pairs of irreps ((3,2)+(4,1), (3,1,1)[a]+(3,1,1)[b]);
    cut to one label, the per-input bound certifies under a third of the inputs, with two it
    certifies nearly all, and stays sound input by input."""
    from tests.oracles.margins import true_margins
    run = mm.zoo.load("chughtai_A5_mlp_seed1")
    certs = {m: mm.analysis.certify(mm.explain(run.model, run.task, labels_per_neuron=m),
                                    "per_input") for m in (1, 2)}
    truth = true_margins(run.model, run.task)
    for cert in certs.values():
        assert bool((cert.margin_bound <= truth + 1e-9 * truth.abs().max()).all())
        assert cert.certified_accuracy <= cert.accuracy
    assert certs[1].certified_accuracy < 0.5 < 0.99 < certs[2].certified_accuracy
    fid = mm.analysis.fidelity(mm.explain(run.model, run.task, labels_per_neuron=2), draws=1)
    assert fid.recovered > 0.99


def test_labels_per_neuron_refusals():
    task = mm.GroupComposition("S3")
    model = mm.theory.certificate(task)
    with pytest.raises(mm.MiMarginError, match="labels_per_neuron must be"):
        mm.explain(model, task, labels_per_neuron=0)
    with pytest.raises(mm.MiMarginError, match="labels_per_neuron must be"):
        mm.explain(model, task, labels_per_neuron=len(task.group.irreps()))
    with pytest.raises(mm.MiMarginError, match="several per neuron"):
        mm.analysis.certify(mm.explain(model, task, labels_per_neuron=2), "harmonic")
    with pytest.raises(mm.MiMarginError, match="transformer keeps one label"):
        mm.explain(*tiny_transformer(), labels_per_neuron=2)
    parity = mm.SparseParity(n=6, k=3)
    with pytest.raises(mm.MiMarginError, match="sparse-parity MLP"):
        mm.explain(mm.HookedMLP(mm.MLPConfig.for_task(parity, d_mlp=8)), parity,
                   labels_per_neuron=2)
