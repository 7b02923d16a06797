"""MLPs with planted Fourier structure: oracles for the analyzers' tests and for users' checks.

Every neuron j is a "cosine neuron" at one frequency f_j (Morwani et al. Thm 7, Li et al. Thm 4.1,
Gromov eq. 6): u_{j,i}(a) = s_{j,i} cos(ω a + θ_{j,i}) for operand i and
w_j(c) = (Π_i s_{j,i}) cos(ω c + θ_{j,1} + … + θ_{j,k}), ω = 2π f_j / p, activation x^k, no
biases. :func:`exact_cosine_mlp` uses the phases {0, π/2}^k and sign patterns of docs/mathematics.md §1.3
/ §2.2 so that the logits are exactly κ Σ_{f∈S} cos(ω_f(a_1+…+a_k − c)); :func:`gromov_mlp` draws
random phases (Gromov 2023, §6.1). The official max-margin certificates live in
``mi_margin.theory``; these are simple planted networks restricted to chosen frequencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import check_frequencies, cosine_neurons, exact_cosine_rows
from mi_margin.models import HookedMLP, MLPConfig
from mi_margin.tasks import ModularAddition


def cosine_mlp(task: ModularAddition, frequency: Int[Tensor, " m"],
               phases: Float[Tensor, "m k"], signs: Float[Tensor, "m k"] | None = None,
               scale: float = 1.0) -> HookedMLP:
    """A float64 HookedMLP (act x^k, width m) whose neuron j is the cosine neuron described above.

    Example:
        >>> task = ModularAddition(p=7)
        >>> mlp = cosine_mlp(task, torch.tensor([2]), torch.tensor([[0.3, 0.5]]))
        >>> round(float(mlp.W_out[0, 1]), 6) == round(math.cos(2 * math.pi * 2 / 7 + 0.8), 6)
        True
    """
    p, k = task.p, task.k
    m = len(frequency)
    if tuple(phases.shape) != (m, k) or (signs is not None and tuple(signs.shape) != (m, k)):
        raise MiMarginError(f"phases (and signs) must be [m, k] = [{m}, {k}], got "
                            f"{tuple(phases.shape)}")
    check_frequencies(p, sorted(set(frequency.tolist())))
    u, w = cosine_neurons(p, frequency, phases, signs)
    act = "quadratic" if k == 2 else "power"
    cfg = MLPConfig.for_task(task, d_mlp=m, act_fn=act, dtype="float64")
    model = HookedMLP(cfg)
    with torch.no_grad():
        model.W_in.copy_(scale * u)
        model.W_out.copy_(scale * w)
    return model


def exact_cosine_mlp(task: ModularAddition, frequencies: Sequence[int], scale: float = 1.0
                     ) -> HookedMLP:
    """docs/mathematics.md §1.3 (k=2) / §2.2 (any k) construction restricted to ``frequencies``.

    Per frequency: phases θ ∈ {0, π/2}^k and signs s ∈ {±1}^k with s_1 = +1, i.e. 2^{2k−1}
    neurons; the logits are exactly κ Σ_{f∈frequencies} cos(ω_f(Σ a_i − c)) for some κ > 0.

    Example:
        >>> task = ModularAddition(p=7, k=3)
        >>> exact_cosine_mlp(task, [1, 3]).cfg.d_mlp        # 2 frequencies × 2^5 neurons
        64
    """
    return cosine_mlp(task, *exact_cosine_rows(task.k, check_frequencies(task.p, frequencies)),
                      scale=scale)


def gromov_mlp(task: ModularAddition, frequencies: Sequence[int], neurons_per_frequency: int,
               seed: int = 0, scale: float = 1.0) -> HookedMLP:
    """Gromov's construction (eq. 6, 12) on ``frequencies``: random phases θ_1..θ_k, θ_w = Σθ_i.

    Returns the model; its planted phases are recoverable as ``W_in``'s and ``W_out``'s phases
    (see ``neuron_clusters``). Neurons are grouped by frequency in the order given.

    Example:
        >>> mlp = gromov_mlp(ModularAddition(p=11), [2, 5], neurons_per_frequency=3)
        >>> mlp.cfg.d_mlp
        6
    """
    freqs = check_frequencies(task.p, frequencies)
    if neurons_per_frequency < 1:
        raise MiMarginError(f"neurons_per_frequency must be >= 1, got {neurons_per_frequency}")
    gen = torch.Generator().manual_seed(seed)
    frequency = torch.tensor(freqs).repeat_interleave(neurons_per_frequency)
    phases = (torch.rand((len(frequency), task.k), generator=gen, dtype=torch.float64) * 2 - 1) \
        * math.pi
    return cosine_mlp(task, frequency, phases, scale=scale)
