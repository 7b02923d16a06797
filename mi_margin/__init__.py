"""mi_margin: train small networks on algebraic tasks and explain them against margin theory.

A TransformerLens 4 plugin. See README.md; the layers are described in docs/architecture.md.

Example:
    >>> import mi_margin as mm
    >>> task = mm.ModularAddition(p=113, k=2, train_fraction=0.3, seed=0)
    >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task))
"""

import importlib
from typing import Any

from mi_margin import analysis, fourier, groups, sweep, theory
from mi_margin.analysis import (
    clock_pizza,
    fourier_spectrum,
    irrep_logit_similarity,
    irrep_progress,
    irrep_restricted_loss,
    irrep_spectrum,
    key_frequencies,
    key_irreps,
    logit_similarity,
    margin,
    neuron_clusters,
    neuron_frequencies,
    neuron_irrep_clusters,
    neuron_irreps,
    progress_measures,
    restricted_loss,
)
from mi_margin.errors import CheckpointError, MiMarginError, TrainingDivergedError
from mi_margin.models import (
    HookedMLP,
    HookedOneLayerTransformer,
    MLPConfig,
    TransformerConfig,
)
from mi_margin.tasks import GroupComposition, ModularAddition, SparseParity
from mi_margin.theory import compare_to_theory
from mi_margin.training import Run, TrainConfig, evaluate_batched, load, resume, save, train, train_batched

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``mm.viz`` on first use, so ``import mi_margin`` does not pay for importing plotly."""
    if name == "viz":
        return importlib.import_module("mi_margin.viz")
    raise AttributeError(f"module 'mi_margin' has no attribute {name!r}")

__all__ = [
    "CheckpointError",
    "GroupComposition",
    "HookedMLP",
    "HookedOneLayerTransformer",
    "MLPConfig",
    "MiMarginError",
    "ModularAddition",
    "Run",
    "SparseParity",
    "TrainConfig",
    "TrainingDivergedError",
    "TransformerConfig",
    "analysis",
    "clock_pizza",
    "compare_to_theory",
    "evaluate_batched",
    "fourier",
    "fourier_spectrum",
    "groups",
    "irrep_logit_similarity",
    "irrep_progress",
    "irrep_restricted_loss",
    "irrep_spectrum",
    "key_frequencies",
    "key_irreps",
    "load",
    "logit_similarity",
    "margin",
    "neuron_clusters",
    "neuron_frequencies",
    "neuron_irrep_clusters",
    "neuron_irreps",
    "progress_measures",
    "restricted_loss",
    "resume",
    "save",
    "sweep",
    "theory",
    "train",
    "train_batched",
]
