"""Irrep analyzers on small trained group-composition MLPs (S3, D5, S4): structural facts.

Trained for a few hundred full-batch AdamW steps (Chughtai et al.'s recipe, scaled down; docs/mathematics.md
§3.3). Whatever a trained model learned, these must hold: weight FVE fractions sum to 1 over the
irreps, the trivial irrep is never key (centred logits), a model that generalizes has key irreps,
and its logits live in them more than in the rest (restricted loss < excluded loss).
"""

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.neurons import neuron_irrep_clusters
from mi_margin.analysis.progress import ProgressMeasures, irrep_progress
from mi_margin.analysis.restricted import irrep_restricted_loss
from mi_margin.analysis.spectrum import irrep_logit_similarity, irrep_spectrum, key_irreps
from mi_margin.errors import MiMarginError
from mi_margin.models.evaluation import evaluate

SETUPS = {"S3": (0.9, 500), "D5": (0.9, 500), "S4": (0.9, 600)}


@pytest.fixture(scope="module")
def runs():
    out = {}
    for group, (fraction, steps) in SETUPS.items():
        task = mm.GroupComposition(group, train_fraction=fraction, seed=0)
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=48, act_fn="quadratic", seed=0))
        out[group] = mm.train(model, task, mm.TrainConfig(
            steps=steps, lr=1e-2, weight_decay=1.0, eval_every=100, n_checkpoints=5,
            progress=False))
    return out


@pytest.mark.parametrize("group", list(SETUPS))
def test_structural_facts_of_trained_models(runs, group):
    run = runs[group]
    task, model = run.task, run.model
    train_loss, train_acc = evaluate(model, task, task.train_idx)
    assert train_acc == 1.0
    spec = irrep_spectrum(model, task)
    for comp in spec.weights:
        assert sum(spec.fve(comp).values()) == pytest.approx(1.0, abs=1e-9), comp
    hidden = spec.hidden_fractions()
    assert bool((hidden >= 0).all()) and float(hidden.sum()) <= 1 + 1e-9
    keys = key_irreps(model, task)
    assert "trivial" not in keys
    sim = irrep_logit_similarity(model, task)
    assert 0 <= sim.fve(keys) <= sim.fve() <= 1 + 1e-9
    if keys:
        res = irrep_restricted_loss(model, task)
        assert res.irreps == tuple(keys)
        assert res.restricted < res.excluded
        assert res.full_train_loss == pytest.approx(train_loss, rel=1e-5)   # float32 model
    clusters = neuron_irrep_clusters(model, task)
    assert sum(clusters.counts.values()) == model.cfg.d_mlp
    assert all(name != "trivial" for name in clusters.counts)


def test_a_generalizing_model_has_key_irreps(runs):
    run = runs["S4"]
    _, test_acc = evaluate(run.model, run.task, run.task.test_idx)
    assert test_acc == 1.0                     # the setup generalizes: the check is not vacuous
    keys = key_irreps(run.model, run.task)
    assert keys
    res = irrep_restricted_loss(run.model, run.task, keys)
    assert res.restricted_acc == 1.0 and res.restricted < res.excluded


def test_progress_measures_over_checkpoints(runs):
    run = runs["S4"]
    prog = irrep_progress(run)
    keys = tuple(key_irreps(run.model, run.task))
    table = prog.to_dataframe()
    assert prog.irreps == keys
    assert table["step"].tolist() == sorted(run.checkpoints)
    last = table.iloc[-1]
    final = irrep_restricted_loss(run.model, run.task, keys)
    assert last["restricted_loss"] == pytest.approx(final.restricted, rel=1e-9)
    assert last["excluded_loss"] == pytest.approx(final.excluded, rel=1e-9)
    sim = irrep_logit_similarity(run.model, run.task)
    assert last["key_logit_fve"] == pytest.approx(sim.fve(keys), rel=1e-9)
    for name, s in zip(sim.irreps, sim.similarity.tolist()):
        assert last[f"sim[{name}]"] == pytest.approx(s, abs=1e-12)
    spec = irrep_spectrum(run.model, run.task, where="neurons")
    product = spec.hidden_fractions()[[spec.irreps.index(n) for n in keys], -1].sum()
    assert last["hidden_product_fve"] == pytest.approx(float(product), rel=1e-9)
    assert last["test_loss"] < table.iloc[0]["test_loss"]
    names = {t.name for t in prog.plot().data}
    assert isinstance(prog, ProgressMeasures) and names >= {"train_loss", "key_logit_fve",
                                                            *(f"sim[{k}]" for k in keys)}
    subset = irrep_progress(run, irreps=["sign"], steps=[0])
    assert subset.irreps == ("(1,1,1,1)",) and len(subset.to_dataframe()) == 1
    with pytest.raises(MiMarginError, match="no checkpoints at steps"):
        irrep_progress(run, steps=[7777])


def test_embed_style_transformer_and_mlp_run_end_to_end():
    task = mm.GroupComposition("S3", train_fraction=0.8, seed=0)
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, d_embed=8, input_style="embed",
                                             act_fn="relu"))
    tr = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=16, d_mlp=16))
    for model in (mlp, tr):
        run = mm.train(model, task, mm.TrainConfig(steps=30, lr=1e-2, progress=False,
                                                   n_checkpoints=2))
        prog = irrep_progress(run, irreps=["standard"])
        assert len(prog.to_dataframe()) == len(run.checkpoints)
        assert torch.isfinite(torch.tensor(prog.to_dataframe()["excluded_loss"].values)).all()
