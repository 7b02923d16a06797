"""Check cells of tutorial 6 (06_transformerlens_walkthrough.ipynb): each ``check_*`` calls your
function and compares its answer with an independent computation (a fresh forward pass, a plain
``torch.fft`` transform, functions with a known answer, or the package's analyzers), raising an
``AssertionError`` that says what differs.

Tolerance: your answers and the references are float64 numbers computed from the float32 model
by different routes, so they differ by float32 rounding (unit roundoff u = 2⁻²⁴ ≈ 6e-8, times
the length of a few dot products), while a wrong answer is off by a sizeable fraction of the
value. The checks accept relative differences up to √u ≈ 2.4e-4, halfway between the two on a
log scale; results that never leave float64 are held to float64 precision.
"""

from __future__ import annotations

import math

import torch

import mi_margin as mm

#: relative tolerance for float64 results of float32 computations (see the module docstring)
FLOAT32_TOL = math.sqrt(2.0**-24)
#: relative tolerance for results that are float64 throughout (a few hundred roundings)
FLOAT64_TOL = 2.0**-52 * 1e3


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float, what: str) -> None:
    got, want = torch.as_tensor(got).detach().double(), torch.as_tensor(want).detach().double()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    scale = float(want.abs().max()) or 1.0
    error = float((got - want).abs().max())
    assert error <= rtol * scale, (f"{what}: differs from the reference by up to {error:.3g} "
                                   f"(values up to {scale:.3g}, tolerance {rtol * scale:.3g})")


def check_neuron_grids(neuron_grids, model, task, cache) -> None:
    """Your grids against fresh forward passes on random (a, b) pairs."""
    grids = neuron_grids(cache, task.p)
    d_mlp, p = model.W_in.shape[-1], task.p
    assert tuple(grids.shape) == (d_mlp, p, p), \
        f"grids must be [d_mlp, p, p] = {[d_mlp, p, p]}, got {list(grids.shape)}"
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randint(p, (64,), generator=gen), torch.randint(p, (64,), generator=gen)
    tokens = torch.stack([a, b, torch.full_like(a, int(task.tokens[0, -1]))], 1)
    with torch.no_grad():
        _, fresh = model.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_post")
    _close(grids[:, a, b].T, fresh["blocks.0.mlp.hook_post"][:, -1], FLOAT32_TOL,
           "grids[:, a, b] vs the activations of a forward pass on [a, b, =]")
    print(f"Exercise 1 passed: grids[n, a, b] matches a fresh forward pass on {len(a)} random pairs.")


def _fft_shares(grids: torch.Tensor) -> torch.Tensor:
    """The block shares from torch.fft.fft2: power (1/p²)|G(j_a, j_b)|² pooled over ±j."""
    p = grids.shape[-1]
    g = grids.double() - grids.double().mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(g).abs().square() / p**2
    f = torch.arange(1, p // 2 + 1)
    both = [(f, f), (f, -f % p), (-f % p, f), (-f % p, -f % p)]
    blocks = sum(power[:, i, j] for i, j in both) + power[:, 0, f] + power[:, 0, -f % p] \
        + power[:, f, 0] + power[:, -f % p, 0]
    total = power.sum((-2, -1))
    return blocks / torch.where(total > 0, total, 1.0)[:, None]


def check_frequency_shares(frequency_shares, grids) -> None:
    """Your shares on functions with a known answer, then on (the first 64 of) your grids against
    torch.fft.fft2."""
    p = grids.shape[-1]
    x = torch.arange(p, dtype=torch.float64)
    w = 2 * math.pi / p
    a, b = x[:, None], x[None, :]
    planted = torch.stack([torch.cos(3 * w * a) + 0 * b,                   # all in frequency 3
                           torch.cos(2 * w * (a + b)),                     # all in frequency 2
                           torch.cos(2 * w * a) + torch.sin(5 * w * b),    # half 2, half 5
                           torch.cos(w * a) * torch.cos(4 * w * b)])       # f_a ≠ f_b: no block
    want = torch.zeros(4, p // 2, dtype=torch.float64)
    want[0, 2], want[1, 1], want[2, 1], want[2, 4] = 1.0, 1.0, 0.5, 0.5
    _close(frequency_shares(planted), want, FLOAT64_TOL, "shares of cos/sin test functions")
    _close(frequency_shares(grids[:64]), _fft_shares(grids[:64]), FLOAT64_TOL,
           "shares of your grids vs a torch.fft.fft2 computation")
    print("Exercise 2 passed: the shares are right on test functions and equal the torch.fft ones.")


def check_logit_map_shares(logit_map_shares, model, task) -> None:
    """Your W_logit spectrum against mm.fourier_spectrum's (an FFT-based implementation)."""
    want = mm.fourier_spectrum(model, task, where="W_L").weights["W_L"]
    _close(logit_map_shares(model, task.p), want, FLOAT32_TOL,
           "W_logit's share per frequency vs mm.fourier_spectrum(..., where='W_L')")
    print("Exercise 3 passed: W_out·W_U's spectrum equals the analyzer's.")


def check_head_logit_attribution(head_logit_attribution, model, task, cache) -> None:
    """Your per-head attributions against z · W_O · W_U[:, correct answer] by einsum."""
    z = cache["z", 0][:, -1].double()                                  # [N, heads, d_head]
    W_U = model.W_U.double()[:, task.labels]                           # [d_model, N]
    want = torch.einsum("nhe,hed,dn->hn", z, model.W_O[0].double(), W_U)
    _close(head_logit_attribution(cache, task.labels), want, FLOAT32_TOL,
           "per-head direct logit attribution vs z·W_O·W_U")
    print("Exercise 4 passed: each head's direct effect on the correct logit is right.")


def check_restricted_loss(restricted_loss_by_hand, cache, model, task, restricted) -> None:
    """Your restricted loss against ``restricted = mm.restricted_loss(model, task, frequencies)``,
    for the frequencies it was computed for."""
    frequencies = list(restricted.labels)
    got = restricted_loss_by_hand(cache, model, task, frequencies)
    _close(torch.tensor(got), torch.tensor(restricted.restricted), FLOAT32_TOL,
           f"restricted loss for frequencies {frequencies} vs mm.restricted_loss")
    print(f"Exercise 5 passed: your restricted loss for frequencies {frequencies} equals "
          "mm.restricted_loss.")
