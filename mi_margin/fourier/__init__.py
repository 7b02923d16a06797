"""Fourier bases: the real Fourier basis of Z_p and Z_p^k (FFT-based) and the group Fourier transform."""

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
from mi_margin.fourier.group import (
    fourier_weight,
    group_fourier_transform,
    inverse_group_fourier_transform,
    irrep_variance_fractions,
    isotypic_basis,
    project,
)

__all__ = [
    "basis_labels",
    "block_fractions",
    "check_frequencies",
    "filter_grid",
    "fourier_basis",
    "fourier_weight",
    "frequency_mask",
    "frequency_of_index",
    "from_fourier",
    "grid_power",
    "group_fourier_transform",
    "inverse_group_fourier_transform",
    "irrep_variance_fractions",
    "isotypic_basis",
    "n_frequencies",
    "pool_frequencies",
    "project",
    "sum_frequency_directions",
    "to_fourier",
]
