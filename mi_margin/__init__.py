"""mi_margin: train small networks on algebraic tasks and explain them against margin theory.

A TransformerLens 4 plugin. See README.md; the layers are described in docs/architecture.md and
the mathematics in docs/mathematics.md. ``import mi_margin`` costs little more than importing
TransformerLens: the optional, heavier parts (``mi_margin.viz``, ``mi_margin.sweep``, the demo and
the CLI) load on first use, e.g. ``mm.viz.write_report(run)``.

Example:
    >>> import mi_margin as mm
    >>> task = mm.ModularAddition(p=113, k=2, train_fraction=0.3, seed=0)
    >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task))
"""

import importlib
import warnings
from typing import Any

from mi_margin import analysis, errors, fourier, groups, models, tasks, theory, training
from mi_margin.analysis import (
    clock_pizza,
    explain,
    fourier_spectrum,
    grid_cache,
    irrep_logit_similarity,
    irrep_progress,
    irrep_restricted_loss,
    irrep_spectrum,
    key_components,
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
    spectrum,
)
from mi_margin.errors import CheckpointError, MiMarginError, NotGeneralizedWarning, TrainingDivergedError
from mi_margin.models import (
    HookedMLP,
    HookedOneLayerTransformer,
    MLPConfig,
    TransformerConfig,
    load_tl_checkpoint,
)
from mi_margin.tasks import GroupComposition, ModularAddition, ModularOperation, SparseParity
from mi_margin.theory import compare_to_theory
from mi_margin.training import Run, TrainConfig, evaluate_batched, load, resume, save, train, train_batched

# ``result.plot()`` imports the plotting layer on first use (it registers the figures).
analysis.results.figure_loader = lambda: importlib.import_module("mi_margin.viz")

# TransformerLens's patching module imports tqdm.auto, which warns "IProgress not found" in every
# notebook without ipywidgets; the bars are usable without the widget (ours: mi_margin._progress).
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")

__version__ = "0.1.0"

#: subpackages imported on first attribute access (plotly, circuitsvis, Ray load with them)
LAZY_SUBMODULES = ("viz", "sweep", "demo", "cli", "zoo", "studies")
#: functions of lazy subpackages offered at the root: ``mm.study`` is ``mm.studies.study`` (documented
#: there; not in ``__all__``, which the API reference resolves without importing lazy packages)
LAZY_FUNCTIONS = {"study": "studies"}


def __getattr__(name: str) -> Any:
    if name in LAZY_SUBMODULES:
        return importlib.import_module(f"mi_margin.{name}")
    if name in LAZY_FUNCTIONS:
        return getattr(importlib.import_module(f"mi_margin.{LAZY_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module 'mi_margin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *LAZY_SUBMODULES, *LAZY_FUNCTIONS])

__all__ = [
    "CheckpointError",
    "GroupComposition",
    "HookedMLP",
    "HookedOneLayerTransformer",
    "MLPConfig",
    "MiMarginError",
    "ModularAddition",
    "ModularOperation",
    "NotGeneralizedWarning",
    "Run",
    "SparseParity",
    "TrainConfig",
    "TrainingDivergedError",
    "TransformerConfig",
    "analysis",
    "clock_pizza",
    "compare_to_theory",
    "errors",
    "evaluate_batched",
    "explain",
    "fourier",
    "fourier_spectrum",
    "grid_cache",
    "groups",
    "irrep_logit_similarity",
    "irrep_progress",
    "irrep_restricted_loss",
    "irrep_spectrum",
    "key_components",
    "key_frequencies",
    "key_irreps",
    "load",
    "load_tl_checkpoint",
    "logit_similarity",
    "margin",
    "models",
    "neuron_clusters",
    "neuron_frequencies",
    "neuron_irrep_clusters",
    "neuron_irreps",
    "progress_measures",
    "restricted_loss",
    "resume",
    "save",
    "spectrum",
    "studies",
    "sweep",
    "tasks",
    "theory",
    "train",
    "train_batched",
    "training",
    "viz",
    "zoo",
]
