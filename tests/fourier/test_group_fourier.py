"""Group Fourier transform: round trip, Plancherel (all three types), isotypic bases, cyclic case."""

from __future__ import annotations

import numpy as np
import pytest

from mi_margin.errors import MiMarginError
from mi_margin.fourier.group import (
    fourier_weight,
    group_fourier_transform,
    inverse_group_fourier_transform,
    irrep_variance_fractions,
    isotypic_basis,
    project,
)
from mi_margin.groups import FiniteGroup, get

NAMES = ["C1", "C2", "C7", "C12", "D3", "D4", "D5", "D6", "S3", "S4", "S5", "A4", "A5", "Q8",
         "C2xC3", "C3xC3", "D3xC2", "Q8xC3"]
ALL = [*NAMES, "relabeled A4"]


def _random(G: FiniteGroup, m: int | None, seed: int = 0) -> np.ndarray:
    shape = (G.order,) if m is None else (G.order, m)
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("m", [None, 3])
def test_round_trip_and_plancherel(name, m, group_named):
    G = group_named(name)
    f = _random(G, m)
    coeffs = group_fourier_transform(G, f)
    assert list(coeffs) == [r.name for r in G.irreps()]
    for rho in G.irreps():
        assert coeffs[rho.name].shape == (rho.dim, rho.dim) + (() if m is None else (m,))
    assert np.allclose(inverse_group_fourier_transform(G, coeffs), f, atol=1e-10)
    energy = sum(fourier_weight(G, r) * np.sum(coeffs[r.name] ** 2) for r in G.irreps())
    assert np.isclose(energy, np.sum(f**2), rtol=1e-10)


@pytest.mark.parametrize("name", ["C7", "C12", "C2xC3"])
def test_plancherel_complex_type_against_complex_dft(name):
    """For an abelian group the complex irreps are the characters; the real term of freq_k pair
    equals (1/n)(|F(k)|² + |F(−k)|²) with F the complex DFT."""
    G = get(name)
    f = _random(G, None, seed=1)
    ct = G.character_table()
    # complex Fourier coefficient of f at character χ: Σ_g f(g) χ(g)
    chi_full = ct.values[:, G.class_of]  # abelian: classes are singletons
    F = chi_full @ f
    coeffs = group_fourier_transform(G, f)
    for rho in G.irreps():
        rows = [i for i, r in enumerate(ct.real_irreps) if r == rho.name]
        complex_term = sum(abs(F[i]) ** 2 for i in rows) / G.order
        assert np.isclose(fourier_weight(G, rho) * np.sum(coeffs[rho.name] ** 2), complex_term)


def test_plancherel_quaternionic_type_against_pauli_rep():
    """Q8's 2-dim complex irrep π (i ↦ diag(i, −i), j ↦ [[0, 1], [−1, 0]]): the real term of the
    quaternionic irrep equals (2/8)·‖f̂(π)‖²."""
    Q = get("Q8")
    one = np.eye(2, dtype=complex)
    units = {"1": one, "i": np.diag([1j, -1j]), "j": np.array([[0, 1], [-1, 0]], dtype=complex)}
    units["k"] = units["i"] @ units["j"]
    pi = np.array([(-1 if lab.startswith("-") else 1) * units[lab.lstrip("-")]
                   for lab in Q.labels])
    assert np.allclose(np.einsum("aij,bjk->abik", pi, pi), pi[Q.table])  # π is a homomorphism
    f = _random(Q, None, seed=2)
    f_pi = np.tensordot(f, pi, axes=(0, 0))
    rho = Q.irrep("dim4")
    assert rho.kind == "quaternionic"
    lhs = fourier_weight(Q, rho) * np.sum(group_fourier_transform(Q, f)["dim4"] ** 2)
    assert np.isclose(lhs, 2 / Q.order * np.sum(np.abs(f_pi) ** 2))


@pytest.mark.parametrize("name", ALL)
def test_isotypic_bases_are_an_orthonormal_basis(name, group_named):
    G = group_named(name)
    bases = [isotypic_basis(G, r) for r in G.irreps()]
    for rho, q in zip(G.irreps(), bases):
        assert q.shape == (G.order, rho.dim**2 // rho.commutant_dim)
        if rho.kind == "complex":
            assert q.shape[1] == 2 * rho.complex_dim**2
        coeff = rho.matrices.reshape(G.order, -1)
        assert np.allclose(q @ (q.T @ coeff), coeff, atol=1e-10)  # spans the matrix coefficients
    Q = np.hstack(bases)
    assert Q.shape == (G.order, G.order)
    assert np.allclose(Q.T @ Q, np.eye(G.order), atol=1e-10)


@pytest.mark.parametrize("name", ["S4", "A4", "Q8", "C3xC3"])
def test_projections_decompose_f(name):
    G = get(name)
    f = _random(G, 2)
    parts = [project(G, f, r) for r in G.irreps()]
    assert np.allclose(sum(parts), f, atol=1e-10)
    for rho, p in zip(G.irreps(), parts):
        assert np.allclose(project(G, p, rho.name), p, atol=1e-10)
    # subset inverse transform = projection
    coeffs = group_fourier_transform(G, f)
    rho = G.irreps()[-1]
    assert np.allclose(inverse_group_fourier_transform(G, {rho.name: coeffs[rho.name]}),
                       parts[-1], atol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_variance_fractions(name, group_named):
    G = group_named(name)
    f = _random(G, 4) + 5.0
    if G.order == 1:  # nothing is left after centering
        with pytest.raises(MiMarginError, match="zero centered"):
            irrep_variance_fractions(G, f)
        return
    fr = irrep_variance_fractions(G, f)
    assert list(fr) == [r.name for r in G.irreps()]
    assert abs(fr["trivial"]) < 1e-12
    assert np.isclose(sum(fr.values()), 1.0) and min(fr.values()) >= -1e-12
    raw = irrep_variance_fractions(G, f, center=False)
    assert np.isclose(sum(raw.values()), 1.0)
    assert np.isclose(raw["trivial"], G.order * np.sum(f.mean(axis=0) ** 2) / np.sum(f**2))


@pytest.mark.parametrize("n", [2, 7, 12, 13])
def test_cyclic_matches_real_fourier_basis(n):
    G = get(f"C{n}")
    x = np.arange(n)
    assert np.allclose(isotypic_basis(G, "trivial"), np.full((n, 1), 1 / np.sqrt(n)))
    if n % 2 == 0:
        assert np.allclose(isotypic_basis(G, "sign")[:, 0] * np.sqrt(n), (-1.0) ** x)
    for k in range(1, (n - 1) // 2 + 1):
        theta = 2 * np.pi * k * x / n
        expected = np.sqrt(2 / n) * np.stack([np.cos(theta), np.sin(theta)], axis=1)
        assert np.allclose(isotypic_basis(G, f"freq_{k}"), expected, atol=1e-12)
    f = np.random.default_rng(3).standard_normal(n)
    power = np.abs(np.fft.fft(f - f.mean())) ** 2
    fr = irrep_variance_fractions(G, f)
    for k in range(1, (n - 1) // 2 + 1):
        assert np.isclose(fr[f"freq_{k}"], (power[k] + power[n - k]) / power.sum())


def test_errors():
    G = get("S3")
    with pytest.raises(MiMarginError, match=r"shape \[6\]"):
        group_fourier_transform(G, np.zeros(5))
    with pytest.raises(MiMarginError, match="no irrep named"):
        project(G, np.zeros(6), "freq_9")
    with pytest.raises(MiMarginError, match="must have shape"):
        inverse_group_fourier_transform(G, {"standard": np.zeros((3, 3))})
    with pytest.raises(MiMarginError, match="twice"):
        inverse_group_fourier_transform(G, {"(2,1)": np.zeros((2, 2)),
                                            "standard": np.zeros((2, 2))})
    with pytest.raises(MiMarginError, match="zero centered sum of squares"):
        irrep_variance_fractions(G, np.ones((6, 2)))
    with pytest.raises(MiMarginError, match="has 24 matrices"):
        isotypic_basis(G, get("S4").irrep("standard"))


def test_numerical_irreps_give_the_same_isotypic_projectors():
    G = get("A5")
    for rho in G.irreps("numerical"):
        same = [r for r in G.irreps() if np.allclose(r.character, rho.character, atol=1e-9)]
        assert len(same) == 1
        q, q_closed = isotypic_basis(G, rho), isotypic_basis(G, same[0])
        assert np.allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-10)
        assert np.allclose(q @ q.T, q_closed @ q_closed.T, atol=1e-9)
