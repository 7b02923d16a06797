"""The real Fourier basis of Z_p and the FFT transforms over Z_p^k, checked against dense maths."""

import math

import pytest
import torch

from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import (
    basis_labels,
    block_fractions,
    check_frequencies,
    filter_grid,
    fourier_basis,
    frequency_mask,
    frequency_of_index,
    from_fourier,
    grid_power,
    n_frequencies,
    pool_frequencies,
    sum_frequency_directions,
    to_fourier,
)
from mi_margin.tasks import grid

PRIMES_AND_EVEN = [2, 3, 5, 8, 12, 13]


def dense_basis(p: int, k: int) -> torch.Tensor:
    """The p^k × p^k tensor-product basis (rows), built explicitly: the reference."""
    B = fourier_basis(p)
    out = B
    for _ in range(k - 1):
        out = torch.kron(out, B)
    return out


@pytest.mark.parametrize("p", PRIMES_AND_EVEN)
def test_basis_is_orthonormal_with_nanda_index_convention(p):
    B = fourier_basis(p)
    assert torch.allclose(B @ B.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    x = torch.arange(p, dtype=torch.float64)
    for f in range(1, (p - 1) // 2 + 1):
        assert torch.allclose(B[2 * f - 1], math.sqrt(2 / p) * torch.cos(2 * math.pi * f * x / p))
        assert torch.allclose(B[2 * f], math.sqrt(2 / p) * torch.sin(2 * math.pi * f * x / p))
    assert frequency_of_index(p).tolist() == [(i + 1) // 2 for i in range(p)]
    assert len(basis_labels(p)) == p and n_frequencies(p) == p // 2


@pytest.mark.parametrize("p,k", [(5, 1), (7, 2), (4, 2), (5, 3)])
def test_transform_equals_dense_basis_and_inverts(p, k):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([p] * k + [3], generator=gen, dtype=torch.float64)
    coef = to_fourier(x, dims=range(k))
    dense = (dense_basis(p, k) @ x.reshape(p**k, 3)).reshape(coef.shape)
    assert torch.allclose(coef, dense, atol=1e-12)
    assert torch.allclose(from_fourier(coef, dims=range(k)), x, atol=1e-12)
    assert torch.allclose(coef.square().sum(), x.square().sum())          # Plancherel


def test_pool_frequencies_sums_cos_sin_pairs_per_axis():
    power = torch.arange(25.0).reshape(5, 5)
    pooled = pool_frequencies(power, dims=(0, 1))
    index = frequency_of_index(5)
    expected = torch.zeros(3, 3)
    for i in range(5):
        for j in range(5):
            expected[index[i], index[j]] += power[i, j]
    assert torch.equal(pooled, expected)


@pytest.mark.parametrize("p,k", [(5, 2), (7, 2), (5, 3), (6, 2)])
def test_block_fractions_match_dense_projection(p, k):
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(p**k, 4, generator=gen, dtype=torch.float64)
    values[:, 3] = 2.5                                                     # constant unit
    fractions = block_fractions(grid_power(values, p, k), k)
    centred = values - values.mean(0)
    coef = dense_basis(p, k) @ centred
    for f in range(1, p // 2 + 1):
        mask = frequency_mask(p, k, [f]).flatten()
        expected = coef[mask].square().sum(0) / coef.square().sum(0).clamp_min(1e-300)
        assert torch.allclose(fractions[:3, f - 1], expected[:3], atol=1e-12)
    assert torch.all(fractions[3] == 0)
    assert torch.all(fractions.sum(1) <= 1 + 1e-12)


def test_frequency_mask_counts_degree_k_terms():
    for p, k in [(7, 2), (7, 3), (11, 1)]:
        assert int(frequency_mask(p, k, [2]).sum()) == 3**k - 1
        assert int(frequency_mask(p, k, [1, 3]).sum()) == 2 * (3**k - 1)


@pytest.mark.parametrize("p,k", [(7, 2), (5, 3), (8, 2)])
def test_sum_frequency_directions_are_orthonormal_waves(p, k):
    freqs = list(range(1, p // 2 + 1))
    Q = sum_frequency_directions(p, k, freqs)
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64), atol=1e-12)
    s = grid([p] * k).sum(1).double()
    wave = torch.cos(2 * math.pi * freqs[0] * s / p)
    assert torch.allclose(Q[:, 0], wave / wave.norm())
    assert torch.allclose(Q.sum(0), torch.zeros(Q.shape[1], dtype=torch.float64), atol=1e-10)


def test_filter_grid_is_the_dense_orthogonal_projection():
    p, k = 5, 3
    mask = frequency_mask(p, k, [2])
    B = dense_basis(p, k)[mask.flatten()]
    values = torch.randn(p**k, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(filter_grid(values, p, k, mask), B.T @ (B @ values), atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(MiMarginError, match="p must be"):
        fourier_basis(1)
    with pytest.raises(MiMarginError, match=r"1\.\.3"):
        check_frequencies(7, [4])
    with pytest.raises(MiMarginError, match="distinct"):
        check_frequencies(7, [1, 1])
    with pytest.raises(MiMarginError, match="one size"):
        to_fourier(torch.zeros(3, 4), dims=(0, 1))
    with pytest.raises(MiMarginError, match=r"\[25, m\]"):
        grid_power(torch.zeros(24, 1), 5, 2)
