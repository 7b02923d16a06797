"""AdamW and SGD over stacked parameters, with per-instance hyperparameter tensors.

The updates repeat the operations of ``torch.optim.AdamW`` / ``SGD`` with [N, 1, ...] tensors instead
of scalar hyperparameters, so each instance gets exactly the update its own optimizer would give.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mi_margin.training.config import TrainConfig
from mi_margin.training.stacked import instance_column

#: Adam's epsilon, as in ``torch.optim.AdamW`` (which ``train()`` uses with its default).
ADAM_EPS = 1e-8


# -- the optimizers ---------------------------------------------------------------------------------
class StackedAdamW:
    """``torch.optim.AdamW`` over stacked parameters with per-instance lr, weight decay and betas.

    Each line repeats the single-tensor update of ``torch.optim.AdamW`` (same kernels, with the
    Python-float hyperparameters replaced by [N, 1, ...] tensors computed in float64 the same way),
    so instance n follows exactly the trajectory AdamW gives its model alone.
    """

    def __init__(self, params: list[Tensor], configs: Sequence[TrainConfig]):
        self.params, self.configs = params, list(configs)
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = [0] * len(params)

    def _coefficients(self, lrs: Sequence[float], step: int, like: Tensor) -> Tensor:
        """Rows decay, 1-β1, β2, 1-β2, sqrt(bias correction 2), -step size; [6, N]. Python floats
        as in torch's update (``step`` is a float there: the ``.item()`` of its step tensor)."""
        rows, step_f = [], float(step)
        for lr, cfg in zip(lrs, self.configs, strict=True):
            b1, b2 = cfg.betas
            decay = 1 - lr * cfg.weight_decay if cfg.weight_decay != 0 else 1.0
            rows.append([decay, 1 - b1, b2, 1 - b2, (1 - b2**step_f) ** 0.5,
                         -(lr / (1 - b1**step_f))])
        return torch.tensor(rows, dtype=torch.float64).to(like.dtype).T.contiguous().to(like.device)

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        coefficients: dict[int, Tensor] = {}      # by step count (the same for all parameters)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.steps[i] += 1
            if self.steps[i] not in coefficients:
                coefficients[self.steps[i]] = self._coefficients(lrs, self.steps[i], p)
            coef = coefficients[self.steps[i]]
            decay, w1, b2, c2, bc2_sqrt, neg_step = (instance_column(r, p) for r in coef)
            g, m, v = p.grad, self.exp_avg[i], self.exp_avg_sq[i]
            p.mul_(decay)
            m.lerp_(g, w1)
            v.mul_(b2).addcmul_(c2 * g, g)
            denom = (v.sqrt() / bc2_sqrt).add_(ADAM_EPS)
            p.addcdiv_(neg_step * m, denom)

    def state(self, n: int) -> dict[str, Tensor]:
        """Instance ``n``'s optimizer state in ``train()``'s ``train_state`` layout."""
        out = {}
        for i in range(len(self.params)):
            if self.steps[i]:
                out[f"opt.{i}.step"] = torch.tensor(float(self.steps[i]))
                out[f"opt.{i}.exp_avg"] = self.exp_avg[i][n].cpu().clone()
                out[f"opt.{i}.exp_avg_sq"] = self.exp_avg_sq[i][n].cpu().clone()
        return out


class StackedSGD:
    """``torch.optim.SGD`` (L2 weight decay, heavy-ball momentum) over stacked parameters with
    per-instance lr, weight decay and momentum; op for op as torch's single-tensor update."""

    def __init__(self, params: list[Tensor], configs: Sequence[TrainConfig]):
        self.params, self.configs = params, list(configs)
        self.buffers: list[Tensor | None] = [None] * len(params)
        self.use_momentum = any(c.momentum != 0 for c in configs)
        self.use_decay = any(c.weight_decay != 0 for c in configs)

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        like = self.params[0]
        rows = [[-lr, c.weight_decay, c.momentum] for lr, c in zip(lrs, self.configs, strict=True)]
        table = torch.tensor(rows, dtype=torch.float64).to(like.dtype).T.contiguous()
        neg_lr, wd, mom = table.to(like.device)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.use_decay:
                g = g.addcmul(p, instance_column(wd, p))
            if self.use_momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.detach().clone()
                else:
                    buf.mul_(instance_column(mom, p)).add_(g)
                g = buf
            p.addcmul_(g, instance_column(neg_lr, p))

    def state(self, n: int) -> dict[str, Tensor]:
        """Instance ``n``'s optimizer state in ``train()``'s ``train_state`` layout."""
        if self.configs[n].momentum == 0:
            return {}
        return {f"opt.{i}.momentum_buffer": buf[n].cpu().clone()
                for i, buf in enumerate(self.buffers) if buf is not None}
