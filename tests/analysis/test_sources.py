"""Analyzer results name what they read (``sources`` / ``source``), and the names are right:
evaluating a named weight expression on the model reproduces the spectrum computed from it, and a
named hook exists on the model."""

from __future__ import annotations

import torch

import mi_margin as mm
from mi_margin.analysis.basis import basis_for


def _evaluate(expression: str, model) -> torch.Tensor:
    """A source such as ``"W_E[:7] @ W_in"`` evaluated on the model's weights (layer axis dropped)."""
    names = {n: getattr(model, n).detach() for n in ("W_E", "W_in", "W_out", "W_U", "W_in_eff")
             if hasattr(model, n)}
    value = eval(expression, {"__builtins__": {}}, names)          # our own strings
    return value[0] if value.ndim == 3 and value.shape[0] == 1 else value


def _shares(W: torch.Tensor, task) -> torch.Tensor:
    """Fraction of W's squared norm per label along its element axis (axis 0)."""
    energy = basis_for(task).weight_energy(W).sum(1)
    return energy / energy.sum()


def test_spectrum_sources_reproduce_the_weights_they_name():
    task = mm.ModularAddition(p=7)
    for model in (mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=16,
                                                                              d_mlp=24, seed=1)),
                  mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, seed=2))):
        spec = mm.fourier_spectrum(model, task)
        assert set(spec.sources) == set(spec.weights) | set(spec.grid)
        for name, W in spec.weights.items():
            source = _evaluate(spec.sources[name], model)
            # the element axis: rows of W_E / W_in_eff, the output axis of W_U, W_out, W_out @ W_U
            matrix = source if name.startswith(("embed", "neuron_in")) else source.T
            torch.testing.assert_close(_shares(matrix, task), W, rtol=0, atol=1e-12)
        for name in spec.grid:
            source = spec.sources[name]
            assert source == "logits" or source in model.hook_dict, (name, source)
        table = spec.to_dataframe()
        assert (table["source"] == table["component"].map(spec.sources)).all()


def test_logit_similarity_and_restricted_loss_name_their_source():
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
    sim = mm.logit_similarity(model, task)
    assert sim.source == "logits" and set(sim.to_dataframe()["source"]) == {"logits"}
    res = mm.restricted_loss(model, task, [1])
    assert res.source in model.hook_dict
    assert set(res.to_dataframe()["source"]) == {res.source}
    assert res.source in repr(res)


def test_neuron_clusters_name_what_they_read():
    task = mm.ModularAddition(p=7)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=16, d_mlp=24))
    by_activations = mm.neuron_clusters(model, task)
    assert by_activations.read_from == ("blocks.0.mlp.hook_post", "blocks.0.mlp.hook_pre",
                                        "W_out @ W_U")
    by_weights = mm.neuron_clusters(model, task, source="weights")
    assert by_weights.read_from == ("W_E[:7] @ W_in", "W_out @ W_U", "blocks.0.mlp.hook_pre")
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
    assert mm.neuron_clusters(mlp, task, source="weights").read_from == (
        "W_in_eff[0]", "W_in_eff[1]", "W_out", "blocks.0.mlp.hook_pre")
    for res in (by_activations, by_weights):
        hooks = [name for name in res.read_from if name.startswith("blocks.")]
        assert hooks and all(name in model.hook_dict for name in hooks)
        assert set(res.to_dataframe()["read_from"]) == {", ".join(res.read_from)}
