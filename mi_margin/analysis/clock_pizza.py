"""Clock vs Pizza metrics of Zhong et al. (2023, "The Clock and the Pizza", §4; docs/mathematics.md §6.2).

- Gradient symmetricity s_g (Def. 4.1): mean over 100 seeded random triples (a, b, c) ∈ Z_p³ of the
  cosine similarity between ∂Q_abc/∂E_a and ∂Q_abc/∂E_b, Q_abc the logit of c on input (a, b) and
  E_a, E_b the embeddings read at the two operand positions (``hook_embed``; for a theory-style
  HookedMLP that is each operand's contribution W_in[i, a_i] to the pre-activation, whose gradients
  are identical, so s_g = 1 exactly — the pre-activation is additive, like Zhong's Model A).
- Distance irrelevance q (Def. 4.2): with the correct-logit matrix L_{i,j} = Q_{i,j,i+j},
  q = mean_d std_i(L_{i,i+d}) / std_{i,j}(L_{i,j}) (population standard deviations). q = 0 when the
  correct logit depends only on a − b (pizza-like), 1 when it does not depend on a − b at all.
Defined for k = 2 operands, for transformers and MLPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from mi_margin.analysis.basis import require_labels
from mi_margin.analysis.core import Analyzable, cached, last
from mi_margin.analysis.results import AnalysisResult
from mi_margin.errors import MiMarginError
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task

N_TRIPLES = 100
#: Zhong et al.'s Fig. 7 counts a run as a pizza when s_g exceeds this and q is below the next
PIZZA_MIN_SYMMETRICITY = 0.98
PIZZA_MAX_IRRELEVANCE = 0.6


@dataclass(frozen=True)
class ClockPizza(AnalysisResult):
    """Zhong et al.'s metrics (see the module docstring).

    Attributes:
        gradient_symmetricity: s_g, the mean of ``similarities``.
        distance_irrelevance: q (NaN when the correct logit is constant over the grid).
        triples: int64 [n, 3] the sampled (a, b, c); similarities: [n] per-triple cosine.
        correct_logits: [p, p] L_{a,b} = logit of (a+b) mod p on input (a, b).
    """

    _score = "value"

    gradient_symmetricity: float
    distance_irrelevance: float
    triples: Int[Tensor, "n 3"] = field(repr=False)
    similarities: Float[Tensor, " n"] = field(repr=False)
    correct_logits: Float[Tensor, "p p"] = field(repr=False)

    @property
    def algorithm(self) -> str:
        """"pizza" when s_g > 98% and q < 0.6 (the rule of Zhong et al.'s Fig. 7), else "clock"."""
        pizza = (self.gradient_symmetricity > PIZZA_MIN_SYMMETRICITY
                 and self.distance_irrelevance < PIZZA_MAX_IRRELEVANCE)
        return "pizza" if pizza else "clock"

    def _table(self) -> pd.DataFrame:
        return pd.DataFrame([
            {"metric": "gradient_symmetricity", "value": self.gradient_symmetricity},
            {"metric": "distance_irrelevance", "value": self.distance_irrelevance}])


def distance_irrelevance(correct: Float[Tensor, "p p"]) -> float:
    """q = mean_d std_i(L[i, i+d]) / std(L) for a correct-logit matrix L (Zhong et al. Def. 4.2).

    Example:
        >>> i = torch.arange(7, dtype=torch.float64)
        >>> L = torch.cos(2 * torch.pi * (i[:, None] - i[None, :]) / 7)     # depends on a − b only
        >>> round(distance_irrelevance(L), 9)
        0.0
        >>> round(distance_irrelevance(i[:, None] + 0 * i[None, :]), 9)  # independent of a − b
        1.0
    """
    L = correct.double()
    p = L.shape[0]
    if L.ndim != 2 or L.shape[1] != p:
        raise MiMarginError(f"correct logits must be a square [p, p] matrix, got {tuple(L.shape)}")
    total = L.std(unbiased=False)
    if float(total) == 0.0:
        return float("nan")
    i = torch.arange(p)
    diag_std = torch.stack([L[i, (i + d) % p].std(unbiased=False) for d in range(p)])
    return float(diag_std.mean() / total)


def _embedding_gradients(model: HookedModel, x: Tensor, c: Tensor) -> Tensor:
    """∂Q_abc/∂(embedding at each operand position), [n, 2, width]."""
    leaf: dict[str, Tensor] = {}

    def grab(act: Tensor, hook: Any) -> Tensor:
        leaf["x"] = act.detach().requires_grad_(True)
        return leaf["x"]

    with torch.enable_grad():
        out = model.run_with_hooks(x, fwd_hooks=[("hook_embed", grab)])
        q = last(out).gather(1, c[:, None]).sum()
        (grad,) = torch.autograd.grad(q, leaf["x"])
    return grad[:, :2].double()


def clock_pizza(model: Analyzable, task: Task, seed: int = 0, n_triples: int = N_TRIPLES) -> ClockPizza:
    """Gradient symmetricity and distance irrelevance of a k = 2 modular-addition model.

    Args:
        model: HookedOneLayerTransformer or HookedMLP, or its grid cache.
        task: ModularAddition with k = 2.
        seed: seeds the random triples (Zhong et al. use 100 random triples of Z_p³).
        n_triples: number of triples.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> res = clock_pizza(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task)
        >>> round(res.gradient_symmetricity, 6)     # additive pre-activation: exactly symmetric
        1.0
    """
    require_labels(task, "frequency", "clock_pizza")
    if task.k != 2:
        raise MiMarginError(f"clock_pizza is defined for k=2 operands, got k={task.k}")
    c = cached(model, task)
    p = c.basis.n
    if n_triples < 1:
        raise MiMarginError(f"n_triples must be >= 1, got {n_triples}")
    gen = torch.Generator().manual_seed(seed)
    triples = torch.randint(0, task.d_vocab, (n_triples, 3), generator=gen)
    x = triples[:, :2]
    if c.kind == "transformer":
        x = torch.cat([x, torch.full((n_triples, 1), task.eq_token)], dim=1)
    grads = _embedding_gradients(c.model, x, triples[:, 2])
    sims = torch.nn.functional.cosine_similarity(grads[:, 0], grads[:, 1], dim=-1)
    correct = c.basis.grid_order(c.logits.gather(1, task.labels[:, None])).reshape(p, p).double()
    return ClockPizza(gradient_symmetricity=float(sims.mean()),
                      distance_irrelevance=distance_irrelevance(correct), triples=triples,
                      similarities=sims, correct_logits=correct)
