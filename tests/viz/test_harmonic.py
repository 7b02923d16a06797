"""Every Fourier result's ``.plot()`` returns a plotly figure built from the result's numbers."""

import plotly.graph_objects as go
import torch
from oracles.planted import exact_cosine_mlp

import mi_margin as mm
from mi_margin.analysis.clock_pizza import clock_pizza
from mi_margin.analysis.neurons import neuron_clusters
from mi_margin.analysis.progress import progress_measures
from mi_margin.analysis.restricted import restricted_loss
from mi_margin.analysis.spectrum import fourier_spectrum, logit_similarity
from mi_margin.viz.harmonic import neuron_heatmaps


def test_results_plot_their_own_numbers():
    task = mm.ModularAddition(p=7, k=2, train_fraction=0.5)
    model = exact_cosine_mlp(task, [1, 3])
    sim = logit_similarity(model, task)
    fig = sim.plot()
    assert isinstance(fig, go.Figure)
    assert list(fig.data[0].y) == sim.similarity.tolist()
    spec = fourier_spectrum(model, task)
    names = {trace.name for trace in spec.plot().data}
    assert names == set(spec.weights) | set(spec.grid) | {f"ρ({t})" for t in spec.terms}
    clusters = neuron_clusters(model, task)
    assert dict(zip(clusters.plot().data[0].x, clusters.plot().data[0].y, strict=True)) == \
        clusters.counts
    assert len(restricted_loss(model, task).plot().data[0].y) == 4
    assert clock_pizza(model, task).plot().data[0].z is not None


def test_progress_and_heatmaps():
    task = mm.ModularAddition(p=7, k=3, train_fraction=0.5)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
    run = mm.train(model, task, mm.TrainConfig(steps=4, eval_every=2, n_checkpoints=2,
                                               progress=False))
    fig = progress_measures(run, [1]).plot()
    assert {t.name for t in fig.data} >= {"train_loss", "restricted_loss", "gini_embed"}
    assert "key frequencies [1]" in fig.layout.title.text        # plural of each label kind
    heat = neuron_heatmaps(model, task, neurons=[0, 5])
    _, cache = model.run_with_cache(task.inputs)
    post = cache["blocks.0.mlp.hook_post"].double().reshape(7, 7, 7, 8)
    assert len(heat.data) == 2
    assert torch.allclose(torch.tensor(heat.data[1].z, dtype=torch.float64), post[:, :, 0, 5])
