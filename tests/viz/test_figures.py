"""Figure functions of viz.attention and viz.training: plotly Figures with the expected traces,
values checked against planted models (uniform attention) and the cache, and no CDN URL anywhere
in a figure or attention view.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import mi_margin as mm
from mi_margin import groups
from mi_margin.errors import MiMarginError
from mi_margin.viz import _html
from mi_margin.viz.attention import (
    AttentionView,
    attention_heatmap,
    attention_view,
    example_index,
    operand_attention,
    token_labels,
)
from mi_margin.viz.training import progress_columns, progress_curves, training_curves

URL_MARKERS = ("http://", "https://", "cdn.", "unpkg")
#: ways a page pulls code from the network (the circuitsvis bundle itself mentions URLs in strings)
REMOTE_LOADS = ('src="http', "src='http", 'from "http', "from 'http", "import(\"http", "unpkg.com",
                "cdn.plot.ly", "cdn.jsdelivr")


def _no_url(text: str) -> None:
    """Figure JSON and figure divs mention no URL at all."""
    assert not [m for m in URL_MARKERS if m in text], [m for m in URL_MARKERS if m in text]


def _no_remote_load(text: str) -> None:
    assert not [m for m in REMOTE_LOADS if m in text], [m for m in REMOTE_LOADS if m in text]


def _transformer(task: mm.ModularAddition, heads: int = 2) -> mm.HookedOneLayerTransformer:
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, n_heads=heads, d_head=4, d_model=8, d_mlp=16, seed=0))


def _uniform_attention(model: mm.HookedOneLayerTransformer) -> mm.HookedOneLayerTransformer:
    """W_Q = 0 makes every attention score 0, so each query attends uniformly to its prefix."""
    with torch.no_grad():
        model.blocks[0].attn.W_Q.zero_()
    return model


@pytest.fixture(scope="module")
def task7() -> mm.ModularAddition:
    return mm.ModularAddition(p=7, train_fraction=0.5, seed=0)


@pytest.fixture(scope="module")
def run7(task7):
    model = _transformer(task7)
    return mm.train(model, task7, mm.TrainConfig(steps=20, eval_every=5, progress=False))


# -- attention ----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3])
def test_heatmap_of_uniform_attention_is_one_over_k_plus_one(k):
    task = mm.ModularAddition(p=5, k=k)
    model = _uniform_attention(_transformer(task, heads=3))
    fig = attention_heatmap(model, task)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 3 * k
    assert all(t.type == "heatmap" and np.asarray(t.z).shape == (5, 5) for t in fig.data)
    for trace in fig.data:
        np.testing.assert_allclose(np.asarray(trace.z), 1 / (k + 1), atol=1e-6)
    _no_url(fig.to_json())


def test_operand_attention_matches_the_cache_at_every_input(task7):
    model = _transformer(task7)
    grid = operand_attention(model, task7)                          # H k a b
    _, cache = model.run_with_cache(task7.tokens)
    pattern = cache["blocks.0.attn.hook_pattern"][:, :, -1].double()  # N H src
    for n, (a, b) in enumerate(task7.inputs.tolist()):
        np.testing.assert_allclose(grid[:, :, a, b], pattern[n, :, :2].numpy(), atol=1e-6)


def test_heatmap_heads_subset_and_bad_heads(task7):
    model = _transformer(task7)
    assert len(attention_heatmap(model, task7, heads=[1]).data) == 2
    with pytest.raises(MiMarginError, match="heads"):
        attention_heatmap(model, task7, heads=[2])


def test_attention_needs_a_transformer(task7):
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task7, d_mlp=8))
    with pytest.raises(MiMarginError, match="HookedOneLayerTransformer"):
        attention_heatmap(mlp, task7)


def test_example_index_inverts_the_grid():
    with pytest.warns(UserWarning, match="not prime"):
        task = mm.ModularAddition(p=4, k=3)
    for x in itertools.product(range(4), repeat=3):
        assert tuple(task.inputs[example_index(task, x)].tolist()) == x
    with pytest.raises(MiMarginError, match=r"\[0, 3\]"):
        example_index(task, (0, 4, 1))


def test_attention_view_tokens_patterns_and_offline_html(task7):
    model = _uniform_attention(_transformer(task7))
    view = attention_view(model, task7, [(1, 2), (6, 0)])
    assert isinstance(view, AttentionView)
    assert [p.tokens for p in view.panels] == [("a=1", "b=2", "="), ("a=6", "b=0", "=")]
    causal = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]    # uniform over each prefix
    for panel in view.panels:
        assert panel.causal and panel.head_names == ("L0H0", "L0H1")
        np.testing.assert_allclose(panel.pattern, np.broadcast_to(causal, (2, 3, 3)), atol=1e-6)
    html = view.local_src
    assert html.count("var CircuitsVis") == 1                       # one bundle for two panels
    assert html.count("CircuitsVis.render(") == 2
    assert str(view) == html and view._repr_html_() == html
    _no_remote_load(html)


def test_attention_view_defaults_to_test_inputs_and_saves(task7, tmp_path):
    view = attention_view(_transformer(task7), task7)
    first = tuple(task7.inputs[int(task7.test_idx[0])].tolist())
    assert len(view.panels) == 3 and view.panels[0].tokens[:2] == token_labels(task7, first)[:2]
    out = view.save(tmp_path / "att.html")
    assert out.read_text().count("var CircuitsVis") == 1


def test_token_labels_name_group_elements():
    task = mm.GroupComposition(groups.symmetric(3))
    G = task.group
    assert token_labels(task, (1, 4)) == (f"a={G.labels[1]}", f"b={G.labels[4]}", "=")


# -- training curves ----------------------------------------------------------------------------
def test_training_curves_of_a_run(run7):
    fig = training_curves(run7)
    assert [t.name for t in fig.data] == ["train loss", "test loss", "train accuracy",
                                         "test accuracy", "weight norm"]
    norm = fig.data[-1]
    np.testing.assert_allclose(norm.y, np.sqrt(run7.history["weight_norm_sq"]))
    assert fig.layout.yaxis.type == "log"
    _no_url(fig.to_json())


def test_training_curves_skip_missing_splits_and_log_x():
    hist = pd.DataFrame({"step": [0, 5], "train_loss": [2.0, 1.0], "train_acc": [0.1, 0.9],
                         "test_loss": [float("nan")] * 2, "test_acc": [float("nan")] * 2})
    fig = training_curves(hist, log_x=True)
    assert [t.name for t in fig.data] == ["train loss", "train accuracy"]
    assert list(fig.data[0].x) == [1, 5]


def test_progress_curves_split_losses_from_other_measures(run7):
    hist = run7.history.assign(restricted_loss=1.0, excluded_loss=2.0, gini_embed=0.3)
    assert progress_columns(hist) == ["restricted_loss", "excluded_loss", "gini_embed"]
    fig = progress_curves(hist)
    axes = {t.name: t.yaxis for t in fig.data}
    assert axes["restricted_loss"] == axes["excluded_loss"] != axes["gini_embed"]
    with pytest.raises(MiMarginError, match="no progress columns"):
        progress_curves(run7)


def test_training_curves_reject_non_history():
    with pytest.raises(MiMarginError, match="Run or a history"):
        training_curves([1, 2, 3])
    with pytest.raises(MiMarginError, match="'step'"):
        training_curves(pd.DataFrame({"loss": [1.0]}))


# -- html helpers -------------------------------------------------------------------------------
def test_figure_div_needs_no_cdn(run7):
    div = _html.figure_div(training_curves(run7), div_id="x")
    assert 'id="x"' in div and "<script src" not in div
    _no_url(div)


def test_plotting_what_has_no_figure_says_where_the_figures_are():
    """A run has no figure of its own: the message names what plot draws and the run's curves
    (it said figures are registered on importing mm.viz, which was imported)."""
    run = mm.zoo.load("zhong_p59_clock_transformer")
    with pytest.raises(mm.MiMarginError, match=r"training_curves\(run\)"):
        mm.viz.plot(run)


def test_the_theory_and_nfa_figures_title_their_axes():
    """Each panel of the comparison with the theory and of the NFA heatmaps says what its axes
    hold (they had subplot titles only)."""
    from mi_margin.analysis.nfa import nfa_correlation

    task = mm.ModularAddition(p=5, train_fraction=0.6)
    cmp = mm.compare_to_theory(mm.theory.certificate(mm.ModularAddition(p=5)),
                               mm.ModularAddition(p=5))
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
    for fig in (mm.viz.plot(cmp), mm.viz.plot(nfa_correlation(mlp, task))):
        axes = [a for name, a in fig.layout.to_plotly_json().items() if name[1:5] == "axis"]
        assert axes and all(a.get("title", {}).get("text") is not None for a in axes)
