"""Attention pictures: circuitsvis views of single inputs and plotly maps over the whole input grid.

Nanda et al. 2023 (docs/mathematics.md §4.2) find that the attention from '=' to each operand is a function
of (a, b) of the form 0.5 + α(cos ω_k a − cos ω_k b) + …: per-example views (circuitsvis) show the
3×3 patterns, the grid heatmaps show that periodic structure.

circuitsvis's ``str(html)`` loads its bundle from a CDN, so :class:`AttentionView`
always renders with the bundle inlined (``local_src``) and never probes the network.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots

from mi_margin.errors import MiMarginError
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task
from mi_margin.viz import _html

PATTERN = "blocks.0.attn.hook_pattern"
OPERAND_NAMES = "abcdefghij"


@dataclass(frozen=True)
class AttentionPanel:
    """One input's attention patterns: ``pattern`` [heads, dest, src] over ``tokens``."""

    caption: str
    tokens: tuple[str, ...]
    pattern: Float[np.ndarray, "H dest src"]
    head_names: tuple[str, ...]
    causal: bool

    def props(self) -> dict[str, Any]:
        """circuitsvis ``AttentionHeads`` properties."""
        return {"attention": self.pattern.tolist(), "tokens": list(self.tokens),
                "attentionHeadNames": list(self.head_names), "maskUpperTri": self.causal}


@dataclass(frozen=True)
class AttentionView:
    """circuitsvis attention views of a few inputs, displayable offline in Jupyter and in HTML.

    ``local_src`` is a self-contained fragment (the circuitsvis bundle inlined once);
    ``fragment()`` omits the bundle for pages that load it once for many views (the report).

    Example:
        >>> view = attention_view(model, task, [(12, 5)])          # doctest: +SKIP
        >>> view.panels[0].tokens                                    # doctest: +SKIP
        ('a=12', 'b=5', '=')
        >>> view.save("attention.html")                              # doctest: +SKIP
    """

    panels: tuple[AttentionPanel, ...]
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:12])   # unique div ids per view

    def fragment(self) -> str:
        """The views as HTML that needs the circuitsvis bundle (``_html.circuitsvis_script``) earlier."""
        parts = []
        for i, panel in enumerate(self.panels):
            div = f"circuits-vis-{self.key}-{i}"
            parts.append(f"<h4>{_html.escape(panel.caption)}</h4>\n"
                         + _html.circuitsvis_call(div, "AttentionHeads", panel.props()))
        return '<div class="mm-attention">' + "\n".join(parts) + "</div>"

    @property
    def local_src(self) -> str:
        """Offline HTML: the circuitsvis bundle (inlined once) followed by every panel."""
        return _html.circuitsvis_script() + "\n" + self.fragment()

    def _repr_html_(self) -> str:
        return self.local_src

    def __str__(self) -> str:
        return self.local_src

    def save(self, path: str | Path) -> Path:
        """Write a standalone offline HTML page with the views; returns the path."""
        out = Path(path)
        out.write_text(_html.page("Attention patterns", self.fragment(),
                                  [_html.circuitsvis_script()]), encoding="utf-8")
        return out


def _check_transformer(model: HookedModel, what: str) -> None:
    if getattr(model, "model_kind", None) != "transformer":
        raise MiMarginError(f"{what} needs a HookedOneLayerTransformer (attention), got "
                            f"{type(model).__name__}")


def _check_tokens(task: Task, what: str) -> None:
    if task.algebra.inputs != "operands":
        raise MiMarginError(f"{what} needs a task whose tokens are operands, got "
                            f"{type(task).__name__} (its input is one vector)")


def token_labels(task: Task, operands: Sequence[int]) -> tuple[str, ...]:
    """Labels ``("a=12", "b=5", "=")`` for one input (group elements by their names).

    Example:
        >>> import mi_margin as mm
        >>> token_labels(mm.ModularAddition(p=7), (3, 5))
        ('a=3', 'b=5', '=')
    """
    names = getattr(getattr(task, "group", None), "labels", None)
    labels = [f"{OPERAND_NAMES[i]}={names[x] if names else x}" for i, x in enumerate(operands)]
    return (*labels, "=")


def example_index(task: Task, operands: Sequence[int]) -> int:
    """Row of ``task.inputs`` holding ``operands`` (the grid is lexicographic, last fastest)."""
    if len(operands) != task.k or not all(0 <= int(x) < task.d_vocab for x in operands):
        raise MiMarginError(f"operands must be {task.k} integers in [0, {task.d_vocab - 1}], "
                            f"got {tuple(operands)}")
    index = 0
    for x in operands:
        index = index * task.d_vocab + int(x)
    return index


def _default_examples(task: Task, n: int = 3) -> list[tuple[int, ...]]:
    """The first ``n`` test inputs (training inputs when there is no test split)."""
    pool = task.test_idx if len(task.test_idx) else task.train_idx
    return [tuple(int(x) for x in task.inputs[int(i)]) for i in pool[:n]]


@torch.no_grad()
def attention_view(model: HookedModel, task: Task, examples: Sequence[Sequence[int]] | None = None
                   ) -> AttentionView:
    """circuitsvis attention-head views for chosen inputs (default: the first three test inputs).

    Args:
        model: a HookedOneLayerTransformer.
        task: its ModularAddition or GroupComposition task.
        examples: operand tuples such as ``[(12, 5), (3, 3)]``.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7, train_fraction=0.5)
        >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, n_heads=2,
        ...                                      d_head=4, d_model=8, d_mlp=16))
        >>> view = attention_view(model, task, [(1, 2)])
        >>> view.panels[0].tokens, view.panels[0].pattern.shape
        (('a=1', 'b=2', '='), (2, 3, 3))
    """
    _check_transformer(model, "attention_view")
    _check_tokens(task, "attention_view")
    chosen = [tuple(int(x) for x in ex) for ex in (examples or _default_examples(task))]
    idx = torch.tensor([example_index(task, ex) for ex in chosen])
    _, cache = model.run_with_cache(task.tokens[idx], names_filter=PATTERN)
    patterns = cache[PATTERN].double().numpy()
    heads = tuple(f"L0H{h}" for h in range(patterns.shape[1]))
    causal = getattr(model.cfg, "attention_dir", "causal") == "causal"
    panels = []
    for ex, row, pattern in zip(chosen, idx.tolist(), patterns):
        operands = ", ".join(token_labels(task, ex)[:-1])
        caption = f"{operands} → label {int(task.labels[row])}"
        panels.append(AttentionPanel(caption, token_labels(task, ex), pattern, heads, causal))
    return AttentionView(tuple(panels))


@torch.no_grad()
def operand_attention(model: HookedModel, task: Task) -> Float[np.ndarray, "H k n n"]:
    """Attention from '=' to each operand as a function of the first two operands, [H, k, n, n].

    For k > 2 operands the map is averaged over the remaining operands.
    """
    _check_transformer(model, "operand_attention")
    _check_tokens(task, "operand_attention")
    _, cache = model.run_with_cache(task.tokens, names_filter=PATTERN, final_pos_only=True)
    last = cache[PATTERN][:, :, -1, : task.k].double()              # N H k
    n, k = task.d_vocab, task.k
    grid = last.permute(1, 2, 0).reshape(last.shape[1], k, *([n] * k))
    if k > 2:
        grid = grid.mean(dim=tuple(range(4, 2 + k)))
    return grid.numpy()


def attention_heatmap(model: HookedModel, task: Task, heads: Sequence[int] | None = None,
                      title: str | None = None) -> go.Figure:
    """Heatmaps of the attention from '=' to each operand over all (a, b): one row per head.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, n_heads=2,
        ...                                      d_head=4, d_model=8, d_mlp=16))
        >>> len(attention_heatmap(model, task).data)      # 2 heads × 2 operands
        4
    """
    grid = operand_attention(model, task)
    chosen = list(range(grid.shape[0])) if heads is None else list(heads)
    if not chosen or any(not 0 <= h < grid.shape[0] for h in chosen):
        raise MiMarginError(f"heads must be a non-empty list in [0, {grid.shape[0] - 1}], "
                            f"got {heads}")
    k = task.k
    titles = [f"head {h}: '=' → {OPERAND_NAMES[j]}" for h in chosen for j in range(k)]
    fig = make_subplots(rows=len(chosen), cols=k, subplot_titles=titles,
                        horizontal_spacing=0.08, vertical_spacing=0.3 / len(chosen))
    for r, h in enumerate(chosen):
        for j in range(k):
            fig.add_trace(go.Heatmap(z=grid[h, j], zmin=0.0, zmax=1.0, colorscale="Viridis",
                                     showscale=(r == 0 and j == 0), name=titles[r * k + j],
                                     colorbar={"title": "attention"},
                                     hovertemplate="a=%{y}, b=%{x}: %{z:.3f}<extra></extra>"),
                          row=r + 1, col=j + 1)
    fig.update_xaxes(title_text="b")
    fig.update_yaxes(title_text="a", autorange="reversed")
    extra = " (averaged over the other operands)" if k > 2 else ""
    fig.update_layout(title=title or f"Attention from '=' to each operand over (a, b){extra}",
                      width=330 * k + 120, height=300 * len(chosen) + 80)
    return fig
