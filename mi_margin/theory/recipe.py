"""A training recipe that drives small networks close to the predicted max margin γ*.

The theorem's network (activation x^k, no biases, theory-style untied inputs, float64 here) is
trained on cross-entropy over the **full** table plus a small L_{2,ν} penalty λ·Σ_i ||ω_i||_2^ν,
full batch, no weight decay. By Wei et al. (2019, Thm 4.1) the normalized margin of the global
minimizers tends to γ* as λ → 0.

- ``method="gd"``: Morwani et al. (2024, App. B; docs/mathematics.md §1.6): gradient descent with a learning
  rate doubled at a series of milestones (the loss, hence the gradient, shrinks exponentially as
  the margin grows, so a constant step size stalls).
- ``method="adam"`` (default, ours): AdamW without weight decay, its learning rate halved over the
  second half of training (Adam is invariant to the gradient's scale, so it needs no doubling).
  Measured against "gd" in ``bench/bench_max_margin_recipe.py``.

:func:`reweight_neurons` is an optional finishing step we add (measured in the same bench): with
the neuron directions fixed, the best non-negative rescaling of the neurons is a linear program
(the margins are linear in c_i = s_i^ν and the norm budget is Σ_i c_i ||ω_i||^ν) — Lemma 6's
"combine maximizing neurons with non-negative weights". It never lowers the normalized margin
and, like every network, cannot exceed γ*.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mi_margin.analysis.margin import margin, neuron_norms64
from mi_margin.errors import MiMarginError
from mi_margin.models import HookedMLP, MLPConfig
from mi_margin.models.compat import check_fits
from mi_margin.models.evaluation import model_inputs
from mi_margin.models.protocol import HookedModel
from mi_margin.tasks import Task
from mi_margin.theory.predictions import max_margin
from mi_margin.training import Run, TrainConfig, train


def _schedule(method: str, steps: int, lr: float | None, n_doublings: int,
              double_every: int | None) -> dict[str, Any]:
    """Optimizer and LR schedule of the two methods (see :func:`max_margin_recipe`)."""
    if method == "gd":
        every = max(steps // 40, 1) if double_every is None else double_every
        return {"optimizer": "sgd", "lr": 0.05 if lr is None else lr, "lr_gamma": 2.0,
                "lr_milestones": tuple(every * i for i in range(1, n_doublings + 1))}
    if method == "adam":
        every = max(steps // 10, 1)
        return {"optimizer": "adamw", "lr": 0.01 if lr is None else lr, "lr_gamma": 0.5,
                "betas": (0.9, 0.98), "lr_milestones": tuple(range(steps // 2, steps, every))}
    raise MiMarginError(f"method must be 'adam' or 'gd', got method={method!r}")


def max_margin_recipe(task: Task, width: int | None = None, steps: int = 1000, *,
                      method: str = "adam", lr: float | None = None, penalty: float = 1e-4,
                      n_doublings: int = 10, double_every: int | None = None, seed: int = 0,
                      **train_overrides: Any) -> tuple[TrainConfig, MLPConfig]:
    """(TrainConfig, MLPConfig) of the max-margin recipe for ``task``.

    Both methods train the theorem's network (float64) on cross-entropy plus λ·Σ||ω_i||^ν with
    no weight decay, full batch:

    - ``method="gd"``: Morwani et al.'s gradient descent, lr (default 0.05) doubled
      ``n_doublings`` times, every ``double_every`` steps (default steps // 40);
    - ``method="adam"`` (default; measured better in ``bench/bench_max_margin_recipe.py``): AdamW
      (weight_decay 0) at lr 0.01, halved 5 times over the second half of training.

    Args:
        task: ModularAddition, SparseParity or GroupComposition (use the full table,
            ``train_fraction=1``, as the theorem does).
        width: hidden width; default twice the theorem's width bound.
        steps: full-batch steps.
        method, lr, penalty: see above; λ = ``penalty``.
        n_doublings, double_every: the "gd" schedule.
        seed: model initialisation seed.
        train_overrides: any other TrainConfig field (e.g. ``lr_milestones``, ``eval_every``).

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory.recipe import max_margin_recipe
        >>> tc, mc = max_margin_recipe(mm.ModularAddition(p=5), steps=400, method="gd")
        >>> mc.d_mlp, mc.act_fn, tc.optimizer, tc.lr_milestones[:3]
        (32, 'quadratic', 'sgd', (10, 20, 30))
    """
    pred = max_margin(task)
    if pred.width_bound is None:
        raise MiMarginError(f"no max-margin theory for {task!r}: " + "; ".join(pred.reasons))
    width = 2 * pred.width_bound if width is None else width
    degree = pred.degree
    act: dict[str, Any] = ({"act_fn": "quadratic"} if degree == 2
                           else {"act_fn": "power", "act_degree": degree})
    model_cfg = MLPConfig.for_task(task, d_mlp=width, dtype="float64", use_biases=False,
                                   input_style="theory", seed=seed, **act)
    base: dict[str, Any] = {
        "steps": steps, "momentum": 0.0, "weight_decay": 0.0, "norm_penalty": penalty,
        "warmup_steps": 0, "batch_size": None, "eval_every": max(steps // 20, 1),
        "checkpoint_schedule": "log", "progress": False,
        **_schedule(method, steps, lr, n_doublings, double_every)}
    return TrainConfig(**{**base, **train_overrides}), model_cfg


def margin_metric(gamma: float | None) -> Any:
    """A ``train(metrics=...)`` callable recording the normalized margin (and its ratio to γ*)."""
    def metric(model: HookedModel, task: Task) -> dict[str, float]:
        res = margin(model, task)
        norm = float("nan") if res.normalized is None else res.normalized
        out = {"margin": res.value, "normalized_margin": norm}
        if gamma:
            out["ratio_to_gamma"] = norm / gamma
        return out
    return metric


def train_to_max_margin(task: Task, width: int | None = None, steps: int = 1000, *,
                        out_dir: str | Path | None = None, overwrite: bool = False,
                        **kwargs: Any) -> Run:
    """Build the recipe's model, train it, and return the :class:`Run`.

    ``run.history`` has the columns ``margin``, ``normalized_margin`` and ``ratio_to_gamma``
    (normalized margin / γ*). ``out_dir``, ``overwrite``: save the run there as it trains (see
    ``mm.train``).
    Other keyword arguments go to :func:`max_margin_recipe`.

    Example:
        >>> import mi_margin as mm
        >>> from mi_margin.theory.recipe import train_to_max_margin
        >>> run = train_to_max_margin(mm.ModularAddition(p=5), steps=500)   # doctest: +SKIP
        >>> run.history["ratio_to_gamma"].iloc[-1] > 0.9                     # doctest: +SKIP
        True
    """
    train_cfg, model_cfg = max_margin_recipe(task, width, steps, **kwargs)
    model = HookedMLP(model_cfg)
    return train(model, task, train_cfg, out_dir=out_dir, overwrite=overwrite,
                 metrics=[margin_metric(max_margin(task).gamma)])


def _pairwise_margins(model: HookedMLP, task: Task) -> np.ndarray:
    """[N·(C−1), m]: neuron i's contribution to f[y] − f[y'] for every example and wrong y'."""
    with torch.no_grad():
        _, cache = model.run_with_cache(model_inputs(model, task),
                                        names_filter="blocks.0.mlp.hook_post")
        post = cache["blocks.0.mlp.hook_post"].double()                       # N m
        out = model.W_out.double()                                             # m C
        y = task.labels
        diff = post[:, :, None] * (out[:, y].T[:, :, None] - out[None])        # N m C
        wrong = torch.ones(len(y), out.shape[1], dtype=torch.bool)
        wrong[torch.arange(len(y)), y] = False
        return diff.permute(0, 2, 1)[wrong].numpy()


def reweight_neurons(model: HookedMLP, task: Task) -> HookedMLP:
    """A copy of ``model`` with its neurons rescaled to maximize the normalized margin (an LP).

    Neuron i scaled by s_i ≥ 0 contributes c_i = s_i^ν times its logits and costs
    c_i ||ω_i||^ν of the budget, so max_c min_{x, y'} Σ_i c_i (f_i(x)[y] − f_i(x)[y']) subject to
    Σ_i c_i ||ω_i||^ν = 1, c ≥ 0 is a linear program (solved with HiGHS). The returned network has
    ||θ||_{2,ν} = 1 and its margin is the optimal value.

    Raises:
        MiMarginError: the model is not homogeneous with separable neurons.
    """
    check_fits(model, task, finite=True)
    nu, why = model.homogeneity()
    if nu is None:
        raise MiMarginError(f"reweight_neurons needs a homogeneous theory-style MLP: {why}")
    D = _pairwise_margins(model, task)
    norms = (neuron_norms64(model) ** nu).numpy()
    m = D.shape[1]
    A_ub = np.hstack([-D, np.ones((D.shape[0], 1))])
    obj = np.zeros(m + 1)
    obj[-1] = -1.0
    from scipy.optimize import linprog  # scipy loads when first used, not at ``import mi_margin``

    res = linprog(obj, A_ub=A_ub, b_ub=np.zeros(len(D)), A_eq=np.append(norms, 0.0)[None],
                  b_eq=[1.0], bounds=[(0, None)] * m + [(None, None)], method="highs")
    if res.status != 0:
        raise MiMarginError(f"the neuron-reweighting LP failed: {res.message}")
    scale = torch.from_numpy(np.clip(res.x[:m], 0.0, None) ** (1.0 / nu))
    new = copy.deepcopy(model)
    with torch.no_grad():
        new.W_in.mul_(scale.to(new.W_in.dtype))
        new.W_out.mul_(scale.to(new.W_out.dtype)[:, None])
    return new
