"""A planted Clock and a planted Pizza (Zhong et al. 2023; docs/mathematics.md §6.2): one-layer
transformers whose weights are written by hand, oracles for :func:`~mi_margin.analysis.clock_pizza`.

Both embed an operand t as (cos ωt, sin ωt), ω = 2πf/p, use a quadratic MLP and no biases.

- :func:`pizza_transformer`: attention rate 0 (Zhong's constant-attention "Model A"). The '='
  position sums the values of all positions, h = E_a + E_b = 2 cos(ω(a−b)/2)·(cos, sin)(ω(a+b)/2),
  and the MLP squares h as a complex number, so the logits are
  4 cos²(ω(a−b)/2) cos(ω(a+b−c)). E_a and E_b enter only through their sum, so the gradient
  symmetricity is exactly 1, and the correct logit depends on a − b only, so the distance
  irrelevance is exactly 0.
- :func:`clock_transformer`: attention rate 1 ("Model B"). Head 0 copies E_a and head 1 copies E_b
  (hard positional attention), the MLP multiplies them by the trig identities (Nanda et al.'s
  algorithm), so the logits are cos(ω(a+b−c)) + ε cos(ω(a+b)) (the ε term is the same for every c:
  it changes no prediction but makes the correct logit vary with a + b, so the distance
  irrelevance is exactly 1). Its embedding gradients are analytic (:func:`clock_gradients`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mi_margin.models import HookedOneLayerTransformer, TransformerConfig
from mi_margin.tasks import ModularAddition

#: attention score margin of the clock's positional heads (softmax leak e^-60 ≈ 1e-26)
HARD_SCORE = 60.0


def _blank(task: ModularAddition, **cfg: object) -> HookedOneLayerTransformer:
    config = TransformerConfig.for_task(task, act_fn="quadratic", dtype="float64", **cfg)
    model = HookedOneLayerTransformer(config)
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
    return model.eval()


def _embed_circle(model: HookedOneLayerTransformer, p: int, omega: float) -> None:
    """Operand t ↦ (cos ωt, sin ωt) in residual dims 0, 1; '=' ↦ 0."""
    t = torch.arange(p, dtype=torch.float64)
    model.embed.W_E[:p, 0] = torch.cos(omega * t)
    model.embed.W_E[:p, 1] = torch.sin(omega * t)


def _unembed_circle(model: HookedOneLayerTransformer, p: int, omega: float, dims: tuple[int, int]
                    ) -> None:
    """logit_c = X cos ωc + Y sin ωc for (X, Y) in residual ``dims``."""
    c = torch.arange(p, dtype=torch.float64)
    model.unembed.W_U[dims[0]] = torch.cos(omega * c)
    model.unembed.W_U[dims[1]] = torch.sin(omega * c)


def pizza_transformer(task: ModularAddition, frequency: int = 1) -> HookedOneLayerTransformer:
    """The planted Pizza (module docstring): constant attention, logits 4cos²(ω(a−b)/2)cos(ω(a+b−c)).

    Example:
        >>> task = ModularAddition(p=7)
        >>> model = pizza_transformer(task)
        >>> bool((model.last_logits(task.tokens).argmax(-1) == task.labels).all())
        True
    """
    p, omega = task.p, 2 * math.pi * frequency / task.p
    model = _blank(task, d_model=4, n_heads=1, d_head=2, d_mlp=3, attn_rate=0.0,
                   attention_dir="bidirectional", use_pos_embed=False)
    attn, mlp = model.block.attn, model.block.mlp
    with torch.no_grad():
        _embed_circle(model, p, omega)
        attn.W_V[0, 0, 0] = attn.W_V[0, 1, 1] = 1.0          # dims 0,1 → head
        attn.W_O[0, 0, 2] = attn.W_O[0, 1, 3] = 1.0          # head → h in dims 2,3
        mlp.W_in[2, 0] = mlp.W_in[3, 1] = 1.0                # neurons h_x, h_y, h_x + h_y
        mlp.W_in[2, 2] = mlp.W_in[3, 2] = 1.0
        # X = h_x² − h_y², Y = 2 h_x h_y = (h_x + h_y)² − h_x² − h_y², into dims 0, 1
        mlp.W_out[:, 0] = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
        mlp.W_out[:, 1] = torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)
        _unembed_circle(model, p, omega, (0, 1))
    return model


#: clock residual layout: token circle 0-1, positions 2-4, E_a 5-6, E_b 7-8, (X, Y) 9-10
_PRODUCTS = [  # (x dim, y dim, output dim, sign): X = c_a c_b − s_a s_b, Y = s_a c_b + c_a s_b
    (5, 7, 9, 1.0), (6, 8, 9, -1.0), (6, 7, 10, 1.0), (5, 8, 10, 1.0)]


def clock_transformer(task: ModularAddition, frequency: int = 1, epsilon: float = 0.5
                      ) -> HookedOneLayerTransformer:
    """The planted Clock (module docstring): logits cos(ω(a+b−c)) + ε cos(ω(a+b)).

    Example:
        >>> task = ModularAddition(p=7)
        >>> model = clock_transformer(task)
        >>> bool((model.last_logits(task.tokens).argmax(-1) == task.labels).all())
        True
    """
    p, omega = task.p, 2 * math.pi * frequency / task.p
    model = _blank(task, d_model=11, n_heads=2, d_head=2, d_mlp=8, attn_rate=1.0)
    attn, mlp = model.block.attn, model.block.mlp
    with torch.no_grad():
        _embed_circle(model, p, omega)
        model.pos_embed.W_pos[:, 2:5] = torch.eye(3, dtype=torch.float64)
        for head in range(2):                                 # head h reads position h
            attn.W_Q[head, 4, 0] = HARD_SCORE * math.sqrt(2)
            attn.W_K[head, 2 + head, 0] = 1.0
            attn.W_V[head, 0, 0] = attn.W_V[head, 1, 1] = 1.0
            attn.W_O[head, 0, 5 + 2 * head] = attn.W_O[head, 1, 6 + 2 * head] = 1.0
        for j, (x, y, out, sign) in enumerate(_PRODUCTS):     # xy = ((x+y)² − (x−y)²)/4
            mlp.W_in[x, 2 * j] = mlp.W_in[y, 2 * j] = mlp.W_in[x, 2 * j + 1] = 1.0
            mlp.W_in[y, 2 * j + 1] = -1.0
            mlp.W_out[2 * j, out], mlp.W_out[2 * j + 1, out] = sign / 4, -sign / 4
        _unembed_circle(model, p, omega, (9, 10))
        model.unembed.W_U[9] += epsilon
    return model


def clock_gradients(triples: Tensor, p: int, frequency: int = 1, epsilon: float = 0.5
                    ) -> tuple[Tensor, Tensor]:
    """∂Q_abc/∂E_a and ∂Q_abc/∂E_b of the planted clock in the circle coordinates, [n, 2] each.

    With Q = cos(ω(a+b−c)) + ε cos(ω(a+b)) written in E_a = (cos ωa, sin ωa):
    ∂Q/∂E_a = (cos ω(b−c) + ε cos ωb, −sin ω(b−c) − ε sin ωb), and symmetrically for b.
    """
    omega = 2 * math.pi * frequency / p
    a, b, c = (triples[:, i].double() for i in range(3))

    def grad(other: Tensor) -> Tensor:
        return torch.stack([torch.cos(omega * (other - c)) + epsilon * torch.cos(omega * other),
                            -torch.sin(omega * (other - c)) - epsilon * torch.sin(omega * other)], -1)

    return grad(b), grad(a)
