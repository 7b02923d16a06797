"""The grid cache: one pass over the grid that every analyzer reads, with results equal to the
former per-analyzer passes (tests/analysis/reference_analysis.py) on every zoo entry."""

from __future__ import annotations

import math

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis import progress
from mi_margin.analysis.ablation import ablation_edit
from mi_margin.analysis.core import POST, PRE, RESID_MID, GridCache
from mi_margin.analysis.restricted import ablated_logits, default_components
from mi_margin.errors import MiMarginError

#: the one-pass and the reference computations differ only by float32 rounding of the logits
#: (the reference rounds the patched activations to float32 and runs the model again); losses
#: of a few nats move by a few ulps of float32 (1.2e-7 relative)
TOL = 1e-6


def _close(new: float, old: float) -> bool:
    return (math.isnan(new) and math.isnan(old)) or abs(new - old) <= TOL * max(1.0, abs(old))


#: entries whose reference takes about a minute (the grid is run ~8 times): marked slow
HEAVY = {"nanda_p113_transformer", "chughtai_S5_transformer_seed1", "li_p23_k3_max_margin"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in mm.zoo.list()])
def test_every_zoo_entry_gives_the_reference_results_from_one_pass(name, reference):
    """The progress row of the final model and of the first checkpoint, from one grid cache,
    equals the former analyzers' (restricted/excluded loss by patching, losses by ``evaluate``)
    to 1e-6; the cache made one pass."""
    run = mm.zoo.load(name)
    keys = mm.analysis.basis_for(run.task).resolve(default_components(run.model, run.task))
    for model in (run.model, run.model_at(min(run.checkpoints))) if run.checkpoints else \
            (run.model,):
        cache = mm.grid_cache(model, run.task, progress.row_hooks(model.model_kind))
        new, old = progress.progress_row(cache, keys), reference.progress_row(model, run.task, keys)
        assert cache.passes == 1
        assert sorted(new) == sorted(old)
        bad = {k: (new[k], old[k]) for k in old if not _close(new[k], old[k])}
        assert not bad, bad


def test_analyzers_read_a_cache_without_another_pass():
    task = mm.ModularAddition(p=11, train_fraction=0.5)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=16, n_heads=2, d_head=8, d_mlp=24, seed=1))
    cache = mm.grid_cache(model, task)
    assert isinstance(cache, GridCache) and sorted(cache.names) == sorted(
        [POST, PRE, RESID_MID, "blocks.0.attn.hook_pattern"])
    results = [mm.spectrum(cache, task), mm.logit_similarity(cache, task),
               mm.neuron_clusters(cache, task), mm.restricted_loss(cache, task),
               mm.key_frequencies(cache, task), mm.clock_pizza(cache, task)]
    assert cache.passes == 1
    fresh = [mm.spectrum(model, task), mm.logit_similarity(model, task),
             mm.neuron_clusters(model, task), mm.restricted_loss(model, task),
             mm.key_frequencies(model, task), mm.clock_pizza(model, task)]
    spec, spec0 = results[0], fresh[0]
    for part in spec0.grid:
        assert torch.equal(spec.grid[part], spec0.grid[part])
    assert torch.equal(results[1].similarity, fresh[1].similarity)
    assert torch.equal(results[2].energy, fresh[2].energy)
    assert results[3] == fresh[3] and results[4] == fresh[4]
    assert results[5].distance_irrelevance == fresh[5].distance_irrelevance


def test_a_missing_hook_is_read_in_one_more_pass():
    task = mm.GroupComposition("S3")
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
    cache = mm.grid_cache(model, task, [POST])
    mm.spectrum(cache, task)
    assert cache.passes == 1
    cache.need([PRE, POST])
    assert cache.passes == 2 and PRE in cache
    cache.need([PRE])
    assert cache.passes == 2


@pytest.mark.parametrize("mode", ["keep", "remove"])
@pytest.mark.parametrize("direct_path", ["mean", "keep"])
@pytest.mark.parametrize("subspace", ["product", "block", "a"])
def test_ablated_logits_from_the_cache_equal_the_patched_model(mode, direct_path, subspace):
    """The linear ablation (no second pass) equals the edited activations patched into the
    model, exactly in float64, for every subspace and both direct paths."""
    task = mm.ModularAddition(p=7, k=2)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=16, n_heads=2, d_head=8, d_mlp=24, dtype="float64", seed=2))
    _, acts = model.run_with_cache(task.tokens)
    post, mid = acts[POST][:, -1], acts[RESID_MID][:, -1]
    edited = ablation_edit(task, [1, 3], mode, subspace)(post)
    bypass = mid.mean(0) if direct_path == "mean" else mid
    expected = (bypass + edited @ model.W_out[0] + model.b_out[0]) @ model.W_U + model.b_U
    got = ablated_logits(mm.grid_cache(model, task), task, [1, 3], mode, direct_path, subspace)
    assert torch.allclose(got, expected, atol=1e-10)


def test_a_cache_of_another_task_is_refused():
    task = mm.ModularAddition(p=5)
    cache = mm.grid_cache(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4)), task)
    with pytest.raises(MiMarginError, match="grid cache was made on"):
        mm.spectrum(cache, mm.ModularAddition(p=5, train_fraction=0.5))
    assert mm.spectrum(cache, mm.ModularAddition(p=5)).n == 5
