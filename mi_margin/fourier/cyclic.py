"""The real Fourier basis of Z_p and FFT-based transforms over the grid Z_p^k.

Basis (Nanda et al. 2023, ``helpers.py`` index convention; docs/mathematics.md §0): index 0 is the constant
``1/sqrt(p)``, index ``2f-1`` is ``sqrt(2/p) cos(2π f x / p)`` and index ``2f`` is
``sqrt(2/p) sin(2π f x / p)`` for f = 1..(p-1)/2; for even p the last index p-1 is the Nyquist
cosine ``cos(π x) / sqrt(p)``. The basis is orthonormal, so squared coefficients are variances
(Plancherel) and the k-fold tensor product is an orthonormal basis of functions on Z_p^k.

Transforms over Z_p^k run one axis at a time with ``torch.fft.rfft`` (O(p^k · k log p)); no
p^k × p^k matrix is ever built. "Frequency f" always means the real pair {f, -f}.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from mi_margin.checks import as_python
from mi_margin.errors import MiMarginError


def _check_p(p: int) -> None:
    if not isinstance(p, int) or p < 2:
        raise MiMarginError(f"p must be an integer >= 2, got p={p!r}")


def n_frequencies(p: int) -> int:
    """Number of non-zero real frequencies of Z_p: ``p // 2`` (f = 1..p//2).

    Example:
        >>> n_frequencies(113), n_frequencies(8)
        (56, 4)
    """
    _check_p(p)
    return p // 2


def frequency_of_index(p: int) -> Int[Tensor, " p"]:
    """The frequency of every basis index: ``[0, 1, 1, 2, 2, ...]`` (index i has frequency (i+1)//2).

    Example:
        >>> frequency_of_index(5).tolist()
        [0, 1, 1, 2, 2]
    """
    _check_p(p)
    return (torch.arange(p) + 1) // 2


def basis_labels(p: int) -> list[str]:
    """Human-readable labels of the basis indices: ``["const", "cos 1", "sin 1", ...]``.

    Example:
        >>> basis_labels(5)
        ['const', 'cos 1', 'sin 1', 'cos 2', 'sin 2']
    """
    freq = frequency_of_index(p).tolist()
    return ["const"] + [f"{'cos' if i % 2 else 'sin'} {f}" for i, f in enumerate(freq) if i > 0]


def fourier_basis(p: int) -> Float[Tensor, "p p"]:
    """The orthonormal real Fourier basis of Z_p as rows: ``B[i, x]`` is basis function i at x.

    Built for reference and small checks; the transforms below use the FFT instead.

    Example:
        >>> B = fourier_basis(7)
        >>> bool(torch.allclose(B @ B.T, torch.eye(7, dtype=torch.float64)))
        True
    """
    _check_p(p)
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64)]
    for f in range(1, (p - 1) // 2 + 1):
        angle = 2 * math.pi * f * x / p
        rows += [math.sqrt(2 / p) * torch.cos(angle), math.sqrt(2 / p) * torch.sin(angle)]
    if p % 2 == 0:
        rows.append(torch.cos(math.pi * x) / math.sqrt(p))
    return torch.stack(rows)


def _move_last(x: Tensor, dim: int) -> Tensor:
    return x.movedim(dim, -1)


def _rfft_to_real(spec: Tensor, p: int) -> Tensor:
    """rfft bins [..., p//2+1] → real-basis coefficients [..., p] in Nanda's index order.

    c_0 = G(0)/√p, c_{2f−1} = √(2/p) Re G(f), c_{2f} = −√(2/p) Im G(f) (cos/sin interleaved by
    ``view_as_real``), and for even p the Nyquist c_{p−1} = G(p/2)/√p.
    """
    n_pairs = (p - 1) // 2
    parts = [spec[..., :1].real / math.sqrt(p)]
    pairs = torch.view_as_real(spec[..., 1 : n_pairs + 1])
    sign = torch.tensor([1.0, -1.0], dtype=pairs.dtype) * math.sqrt(2 / p)
    parts.append((pairs * sign).flatten(-2))
    if p % 2 == 0:
        parts.append(spec[..., p // 2 :].real / math.sqrt(p))
    return torch.cat(parts, dim=-1)


def _real_to_rfft(coef: Tensor, p: int) -> Tensor:
    """Inverse of :func:`_rfft_to_real`: real-basis coefficients → rfft bins."""
    n_pairs = (p - 1) // 2
    pairs = coef[..., 1 : 2 * n_pairs + 1].unflatten(-1, (n_pairs, 2))
    sign = torch.tensor([1.0, -1.0], dtype=coef.dtype) * math.sqrt(p / 2)
    parts = [torch.complex(coef[..., :1] * math.sqrt(p), torch.zeros_like(coef[..., :1])),
             torch.view_as_complex((pairs * sign).contiguous())]
    if p % 2 == 0:
        nyq = coef[..., p - 1 :] * math.sqrt(p)
        parts.append(torch.complex(nyq, torch.zeros_like(nyq)))
    return torch.cat(parts, dim=-1)


def _check_dims(x: Tensor, dims: Sequence[int]) -> tuple[int, list[int]]:
    dims = [d % x.ndim for d in dims]
    sizes = {x.shape[d] for d in dims}
    if len(dims) == 0 or len(sizes) != 1:
        raise MiMarginError(f"dims {list(dims)} must be non-empty and of one size p; "
                            f"got sizes {[x.shape[d] for d in dims]} in shape {tuple(x.shape)}")
    return sizes.pop(), dims


def to_fourier(x: Float[Tensor, "..."], dims: Sequence[int] = (-1,)) -> Float[Tensor, "..."]:
    """Coefficients of ``x`` in the real Fourier basis along each axis in ``dims`` (float64).

    Along an axis of size p, entry i of the result is ``Σ_x B[i, x] · values[x]`` with ``B`` =
    :func:`fourier_basis`; over several axes this is the tensor-product basis of Z_p^k.

    Example:
        >>> x = torch.randn(7, 7, 3, dtype=torch.float64)
        >>> c = to_fourier(x, dims=(0, 1))
        >>> B = fourier_basis(7)
        >>> bool(torch.allclose(c, torch.einsum("ia,jb,abn->ijn", B, B, x)))
        True
    """
    p, dims = _check_dims(x, dims)
    out = x.to(torch.float64)
    for d in dims:
        spec = torch.fft.rfft(_move_last(out, d), dim=-1)
        out = _rfft_to_real(spec, p).movedim(-1, d)
    return out


def from_fourier(c: Float[Tensor, "..."], dims: Sequence[int] = (-1,)) -> Float[Tensor, "..."]:
    """Inverse of :func:`to_fourier`: values on the grid from real-basis coefficients.

    Example:
        >>> x = torch.randn(5, 5, dtype=torch.float64)
        >>> bool(torch.allclose(from_fourier(to_fourier(x, (0, 1)), (0, 1)), x))
        True
    """
    p, dims = _check_dims(c, dims)
    out = c.to(torch.float64)
    for d in dims:
        spec = _real_to_rfft(_move_last(out, d), p)
        out = torch.fft.irfft(spec, n=p, dim=-1).movedim(-1, d)
    return out


def pool_frequencies(power: Float[Tensor, "..."], dims: Sequence[int] = (-1,)
                     ) -> Float[Tensor, "..."]:
    """Sum squared coefficients over the cos/sin pair of each frequency along ``dims``.

    An axis of size p (basis indices) becomes an axis of size p//2 + 1 (frequencies 0..p//2), so
    a k-D power spectrum becomes the power per frequency tuple (f_1, ..., f_k).

    Example:
        >>> pool_frequencies(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])).tolist()
        [1.0, 5.0, 9.0]
    """
    p, dims = _check_dims(power, dims)
    n_pairs = (p - 1) // 2
    out = power
    for d in dims:
        moved = _move_last(out, d)
        parts = [moved[..., :1], moved[..., 1 : 2 * n_pairs + 1].unflatten(-1, (n_pairs, 2)).sum(-1)]
        if p % 2 == 0:
            parts.append(moved[..., p - 1 :])
        out = torch.cat(parts, dim=-1).movedim(-1, d)
    return out


def grid_power(values: Float[Tensor, "N m"], p: int, k: int, center: bool = True
               ) -> Float[Tensor, "..."]:
    """Power per frequency tuple of m functions on Z_p^k given as rows over the task's grid.

    ``values`` holds the functions at the p^k inputs in lexicographic order (``task.inputs``
    order). Returns [p//2+1] * k + [m]: squared real-Fourier coefficients summed over the cos/sin
    pairs of every axis, computed from one complex FFT as (1/p^k) Σ |G(±f_1, …, ±f_k)|².
    With ``center`` the mean over the grid (the all-constant coefficient) is removed first, as
    Chughtai et al. (App. E) and Nanda et al. do for activations.

    Example:
        >>> b = torch.arange(25.0).reshape(25, 1) % 5          # a function of the last operand
        >>> P = grid_power(4 * torch.cos(2 * math.pi * 2 * b / 5), p=5, k=2)
        >>> P[..., 0].round().tolist()      # all power at the frequency tuple (0, 2): 16 * 25 / 2
        [[0.0, 0.0, 200.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if values.ndim != 2 or values.shape[0] != p**k:
        raise MiMarginError(f"values must be [p^k, m] = [{p**k}, m] for p={p}, k={k}; "
                            f"got shape {tuple(values.shape)}")
    v = values.to(torch.float64)
    if center:
        v = v - v.mean(dim=0)
    spec = torch.fft.rfft(v.reshape([p] * k + [v.shape[1]]), dim=k - 1)
    if k > 1:
        spec = torch.fft.fftn(spec, dim=tuple(range(k - 1)))
    power = spec.abs().square() / p**k
    for d in range(k):
        power = _fold(power.movedim(d, -1), p, half=(d == k - 1)).movedim(-1, d)
    return power


def _fold(power: Tensor, p: int, half: bool) -> Tensor:
    """Pool |G(j)|² over j = ±f on the last axis (Plancherel per real frequency block).

    On a full FFT axis bins f and p−f are added; on the rfft axis the −f bin is implied by
    conjugate symmetry of a real input, so bin f is doubled. Nyquist (even p) stays single.
    """
    n_pairs = (p - 1) // 2
    pairs = 2 * power[..., 1 : n_pairs + 1] if half else \
        power[..., 1 : n_pairs + 1] + power[..., p - n_pairs :].flip(-1)
    parts = [power[..., :1], pairs]
    if p % 2 == 0:
        parts.append(power[..., p // 2 : p // 2 + 1])
    return torch.cat(parts, dim=-1)


def block_fractions(power: Float[Tensor, "..."], k: int) -> Float[Tensor, "m F"]:
    """Fraction of each function's variance in each single-frequency block, [m, p//2].

    Column f-1 is the share of variance in the span of {const, cos f, sin f}^k minus the
    all-constant term — Nanda et al.'s "degree-2 polynomial in one frequency" (``extract_freq_2d``)
    generalised to k inputs. ``power`` is :func:`grid_power` output ([F+1]*k + [m]). Blocks of
    different frequencies are disjoint, so a row sums to at most 1; zero-variance rows give 0.

    Example:
        >>> a = torch.arange(25.0).reshape(25, 1) % 5
        >>> fr = block_fractions(grid_power(torch.cos(2 * math.pi * 2 * a / 5), 5, 2), k=2)
        >>> fr.round(decimals=6).tolist()
        [[0.0, 1.0]]
    """
    n_freq = power.shape[0] - 1
    freqs = torch.arange(1, n_freq + 1)
    zeros = torch.zeros_like(freqs)
    block = power.new_zeros((n_freq, power.shape[-1]))
    for corner in range(1, 2**k):
        index = tuple(freqs if corner >> axis & 1 else zeros for axis in range(k))
        block += power[index]
    total = power.flatten(0, k - 1).sum(0) - power[(0,) * k]
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, block / safe, torch.zeros_like(block)).T


def check_frequencies(p: int, frequencies: Sequence[int]) -> list[int]:
    """``frequencies`` as a list of distinct ints in 1..p//2, or a :class:`MiMarginError`.
    Integers of any library are taken (numpy integers, integer arrays and tensors); floats and
    bools are not.

    Example:
        >>> import numpy as np
        >>> check_frequencies(7, [3, 1]), check_frequencies(7, np.array([2]))
        ([3, 1], [2])
    """
    _check_p(p)
    given = as_python(frequencies)
    many = isinstance(given, Iterable) and not isinstance(given, (str, bytes))
    freqs = [as_python(f) for f in given] if many else [given]
    if (any(isinstance(f, bool) or not isinstance(f, int) or not 1 <= f <= p // 2 for f in freqs)
            or len(set(freqs)) != len(freqs)):
        raise MiMarginError(f"frequencies must be distinct integers in 1..{p // 2} for p={p}, "
                            f"got {freqs}")
    return freqs


def sum_frequency_directions(p: int, k: int, frequencies: Sequence[int]
                             ) -> Float[Tensor, "N r"]:
    """Orthonormal grid vectors cos(ω_f(a_1+…+a_k)), sin(ω_f(a_1+…+a_k)) for f in ``frequencies``.

    Rows follow the task's grid order (p^k rows); ω_f = 2πf/p. Two columns per frequency (cos,
    sin), one for the Nyquist frequency of even p. These span what Nanda et al.'s restricted loss
    keeps (docs/mathematics.md §4.3). Memory is p^k × 2|frequencies|, never p^k × p^k.

    Example:
        >>> Q = sum_frequency_directions(7, 3, [1, 3])
        >>> bool(torch.allclose(Q.T @ Q, torch.eye(4, dtype=torch.float64)))
        True
    """
    frequencies = check_frequencies(p, frequencies)
    sums = torch.zeros(1, dtype=torch.float64)
    for _ in range(k):
        sums = (sums[:, None] + torch.arange(p, dtype=torch.float64)).flatten()
    cols = []
    for f in frequencies:
        angle = 2 * math.pi * f * sums / p
        cols.append(torch.cos(angle))
        if 2 * f != p:
            cols.append(torch.sin(angle))
    if not cols:
        return torch.zeros((p**k, 0), dtype=torch.float64)
    mat = torch.stack(cols, dim=1)
    return mat / mat.norm(dim=0)


def cosine_neurons(p: int, frequency: Int[Tensor, " m"], phases: Float[Tensor, "m k"],
                   signs: Float[Tensor, "m k"] | None = None
                   ) -> tuple[Float[Tensor, "k p m"], Float[Tensor, "m p"]]:
    """Input maps W_in [k, p, m] and output map W_out [m, p] of m "cosine neurons" (float64).

    Neuron j reads u_{j,i}(x) = s_{j,i} cos(ω x + θ_{j,i}) from operand i and writes
    w_j(c) = (Π_i s_{j,i}) cos(ω c + θ_{j,1} + … + θ_{j,k}), ω = 2π f_j / p: the max-margin neurons
    of Morwani et al. Thm 7 / Li et al. Thm 4.1 and Gromov's construction (docs/mathematics.md §1.3).

    Example:
        >>> W_in, W_out = cosine_neurons(7, torch.tensor([2]), torch.tensor([[0.3, 0.5]]))
        >>> tuple(W_in.shape), round(float(W_out[0, 1]), 6) == round(math.cos(4 * math.pi / 7 + 0.8), 6)
        ((2, 7, 1), True)
    """
    m, k = phases.shape
    signs = torch.ones((m, k), dtype=torch.float64) if signs is None else signs.double()
    angle = (2 * math.pi * frequency.double() / p)[:, None] * torch.arange(p, dtype=torch.float64)
    u = signs[:, :, None] * torch.cos(angle[:, None, :] + phases.double()[:, :, None])  # m k p
    w = signs.prod(1)[:, None] * torch.cos(angle + phases.double().sum(1)[:, None])     # m p
    return u.permute(1, 2, 0), w


def exact_cosine_rows(k: int, frequencies: Sequence[int]
                      ) -> tuple[Int[Tensor, " m"], Float[Tensor, "m k"], Float[Tensor, "m k"]]:
    """(frequency, phases, signs) of the exact construction of docs/mathematics.md §1.3 / §2.2.

    Per frequency: phases θ ∈ {0, π/2}^k and signs s ∈ {±1}^k with s_1 = +1 (2^{2k−1} neurons; Li et
    al. Lemma G.1), for which Σ over the neurons of Π_i u_i(a_i) · w(c) ∝ cos(ω(Σa_i − c)).

    Example:
        >>> [t.shape[0] for t in exact_cosine_rows(2, [1, 3])]
        [16, 16, 16]
    """
    rows = [(f, th, (1.0, *s)) for f in frequencies
            for th in itertools.product((0.0, math.pi / 2), repeat=k)
            for s in itertools.product((1.0, -1.0), repeat=k - 1)]
    return (torch.tensor([r[0] for r in rows]),
            torch.tensor([r[1] for r in rows], dtype=torch.float64).reshape(-1, k),
            torch.tensor([r[2] for r in rows], dtype=torch.float64).reshape(-1, k))


def frequency_mask(p: int, k: int, frequencies: Sequence[int]) -> Bool[Tensor, "..."]:
    """Boolean mask over the k-D real-basis coefficients [p]*k: the single-frequency blocks.

    True on {const, cos f, sin f}^k (minus the all-constant index) for every f in ``frequencies``
    — the k-input analogue of Nanda et al.'s ``extract_freq_2d`` index set.

    Example:
        >>> int(frequency_mask(5, 2, [1]).sum())    # 3*3 - 1 terms
        8
    """
    frequencies = check_frequencies(p, frequencies)
    index_freq = frequency_of_index(p)
    mask = torch.zeros([p] * k, dtype=torch.bool)
    for f in frequencies:
        axis = (index_freq == f) | (index_freq == 0)
        block = axis
        for _ in range(k - 1):
            block = block[..., None] & axis
        mask |= block
    mask[(0,) * k] = False
    return mask


def filter_grid(values: Float[Tensor, "N m"], p: int, k: int, mask: Bool[Tensor, "..."]
                ) -> Float[Tensor, "N m"]:
    """Keep only the real-Fourier components of m grid functions where ``mask`` ([p]*k) is True.

    Transform, mask, inverse-transform with the FFT: the orthogonal projection onto the span of
    the selected tensor-product basis functions, without building the p^k × p^k basis.

    Example:
        >>> v = torch.randn(25, 3, dtype=torch.float64)
        >>> full = torch.ones(5, 5, dtype=torch.bool)
        >>> bool(torch.allclose(filter_grid(v, 5, 2, full), v))
        True
    """
    if values.ndim != 2 or values.shape[0] != p**k or tuple(mask.shape) != (p,) * k:
        raise MiMarginError(f"need values [p^k, m] = [{p**k}, m] and mask {[p] * k} for p={p}, "
                            f"k={k}; got {tuple(values.shape)} and {tuple(mask.shape)}")
    coef = to_fourier(values.reshape([p] * k + [values.shape[1]]), dims=range(k))
    kept = coef * mask[..., None]
    return from_fourier(kept, dims=range(k)).reshape(p**k, values.shape[1])
