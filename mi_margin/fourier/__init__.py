"""Fourier bases: the real Fourier basis of Z_p and Z_p^k (FFT-based) and the group Fourier transform."""

from mi_margin.fourier.cyclic import (
    basis_labels,
    fourier_basis,
    from_fourier,
    grid_power,
    n_frequencies,
    pool_frequencies,
    to_fourier,
)
from mi_margin.fourier.group import (
    fourier_weight,
    group_fourier_transform,
    inverse_group_fourier_transform,
    irrep_variance_fractions,
    isotypic_basis,
    project,
)

__all__ = ["basis_labels", "fourier_basis", "fourier_weight", "from_fourier", "grid_power",
           "group_fourier_transform", "inverse_group_fourier_transform", "irrep_variance_fractions",
           "isotypic_basis", "n_frequencies", "pool_frequencies", "project", "to_fourier"]
