"""Solutions to the exercises of tutorial 6 (06_transformerlens_walkthrough.ipynb).

Try each exercise in the notebook first; its check cell (walkthrough_checks.py) tells you whether
your version is right. The notebook shows these solutions under "Solution" after each check.
"""

from __future__ import annotations

import math

import einops
import torch
import torch.nn.functional as F
from transformer_lens import ActivationCache, FactoredMatrix

from mi_margin.fourier.cyclic import fourier_basis, pool_frequencies


def neuron_grids(cache: ActivationCache, p: int) -> torch.Tensor:
    """Exercise 1: the MLP activations at '=' as functions on the table, [d_mlp, p, p], with
    ``grids[n, a, b]`` the activation of neuron n on the input (a, b)."""
    post = cache["post", 0][:, -1]                    # [p*p, d_mlp], inputs in (a, b) order
    return einops.rearrange(post, "(a b) n -> n a b", a=p, b=p)


def frequency_shares(grids: torch.Tensor) -> torch.Tensor:
    """Exercise 2: [m, p//2] the share of each grid's centred variance in the block of each
    frequency f = 1..p//2 ({const, cos f, sin f}² minus const⊗const), via the 2D real Fourier
    transform F·g·Fᵀ (docs/mathematics.md §0, §4.2)."""
    p = grids.shape[-1]
    B = fourier_basis(p)                              # rows: const, cos 1, sin 1, cos 2, ...
    coef = B @ grids.double() @ B.T                   # [m, p, p] 2D Fourier coefficients
    coef[:, 0, 0] = 0.0                               # centre: drop the mean
    power = pool_frequencies(coef.square(), dims=(-2, -1))      # [m, f_a, f_b]
    blocks = power[:, 0, 1:] + power[:, 1:, 0] + power[:, 1:, 1:].diagonal(dim1=-2, dim2=-1)
    total = power.sum((-2, -1))
    return blocks / torch.where(total > 0, total, 1.0)[:, None]


def logit_map_shares(model: torch.nn.Module, p: int) -> torch.Tensor:
    """Exercise 3: [p//2 + 1] the share of W_logit = W_out·W_U's squared norm in each frequency of
    the answer axis (frequency 0, the constant, first)."""
    W_logit = FactoredMatrix(model.W_out[0], model.W_U)        # [d_mlp, p], rank <= d_model
    coef = (W_logit @ fourier_basis(p).T.float()).AB.double()  # answer axis in the Fourier basis
    power = pool_frequencies(coef.square().sum(0))
    return power / power.sum()


def head_logit_attribution(cache: ActivationCache, labels: torch.Tensor) -> torch.Tensor:
    """Exercise 4: [n_heads, N] each head's direct contribution to the correct logit at '='."""
    heads = cache.stack_head_results(layer=1, pos_slice=-1)     # [heads, N, d_model]
    return cache.logit_attrs(heads, tokens=labels, pos_slice=-1)


@torch.no_grad()
def restricted_loss_by_hand(cache: ActivationCache, model: torch.nn.Module, task,
                            frequencies: list[int]) -> float:
    """Exercise 5: Nanda et al.'s restricted loss (docs/mathematics.md §4.3) from the cache: keep
    only the neurons' components along cos/sin(ω_f(a+b)) (plus each neuron's mean), replace the
    residual stream that bypasses the MLP by its mean, and take the loss on the whole table."""
    a, b = task.inputs[:, 0].double(), task.inputs[:, 1].double()
    waves = [fn(2 * math.pi * f * (a + b) / task.p) for f in frequencies for fn in (torch.cos,
                                                                                      torch.sin)]
    Q = torch.linalg.qr(torch.stack(waves, 1)).Q                # [N, 2K] orthonormal directions
    post = cache["post", 0][:, -1].double()
    centre = post.mean(0)
    kept = centre + Q @ (Q.T @ (post - centre))
    resid_mid = cache["resid_mid", 0][:, -1].double().mean(0)   # the bypass, averaged
    resid = resid_mid + kept @ model.W_out[0].double() + model.b_out[0].double()
    logits = resid @ model.W_U.double() + model.b_U.double()
    return float(F.cross_entropy(logits, task.labels))
