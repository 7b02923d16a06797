"""The sweep specification: a base configuration, the axes to vary, the analyses to run.

A sweep is a grid: every combination of the axis values gives one run (Chughtai et al. 2023 ran
50 seeds of one configuration for their universality table, docs/mathematics.md §3.5; a weight decay ×
train fraction grid maps where grokking happens, Nanda et al. 2023). An axis is a dotted name:
``task.<arg>`` (a task constructor argument, e.g. ``task.train_fraction``), ``model.<field>``
(an :class:`MLPConfig` / :class:`TransformerConfig` field, e.g. ``model.d_mlp``), ``train.<field>``
(a :class:`TrainConfig` field, e.g. ``train.weight_decay``) or ``seed``, which sets the task's split
seed, the model's init seed and the training seed at once.

The same spec is a Python dataclass (:class:`SweepSpec`) or a TOML / YAML / JSON file::

    name = "s4-universality"
    analyses = ["irreps", "margin"]
    [task]
    kind = "group_composition"
    group = "S4"
    train_fraction = 0.5
    [model]
    kind = "mlp"
    d_mlp = 64
    [train]
    steps = 800
    [axes]
    seed = [0, 1, 2, 3]
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mi_margin.errors import MiMarginError
from mi_margin.models import MLPConfig, TransformerConfig
from mi_margin.sweep.analyses import ANALYSES, OPTIONS
from mi_margin.tasks import TASKS
from mi_margin.training import TrainConfig

#: config sections and the axis that sets every seed
SECTIONS = ("task", "model", "train")
SEED_AXIS = "seed"
SEED_FIELDS = ("task.seed", "model.seed", "train.seed")


def _task_fields(kind: str) -> set[str]:
    """Constructor arguments of the task ``kind`` as spelled in ``Task.to_dict``."""
    if kind not in TASKS:
        raise MiMarginError(f"task.kind must be one of {sorted(TASKS)}, got task.kind={kind!r}")
    return {*TASKS[kind].ARGS, "train_fraction", "seed"}


def _model_fields(kind: str) -> set[str]:
    classes = {"mlp": MLPConfig, "transformer": TransformerConfig}
    if kind not in classes:
        raise MiMarginError(f"model.kind must be one of {sorted(classes)}, got model.kind={kind!r}")
    return {f.name for f in dataclasses.fields(classes[kind])}


def _train_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)} - {"progress"}


@dataclass(frozen=True)
class RunSpec:
    """One point of the sweep grid: the full configuration of one training run.

    Attributes:
        index: position in the grid (axes in spec order, last axis fastest).
        point: the axis values of this run, by dotted name.
        task, model, train: the configuration sections (``task`` and ``model`` carry ``kind``;
            ``model`` holds overrides of ``for_task``; ``train`` holds :class:`TrainConfig` fields).
        analyses: analysis names to run on the finished model; analysis_options: their keyword
            arguments by name.
    """

    index: int
    point: dict[str, Any]
    task: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    analyses: tuple[str, ...]
    analysis_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        """Short hash of the configuration (not of the analyses, which never change a model)."""
        text = json.dumps({"task": self.task, "model": self.model, "train": self.train},
                          sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        """The run folder's name: grid index and configuration hash, e.g. ``0003-1a2b3c4d5e``."""
        return f"{self.index:04d}-{self.config_hash}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["analyses"] = list(self.analyses)
        d["run_id"] = self.run_id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(index=int(d["index"]), point=dict(d["point"]), task=dict(d["task"]),
                   model=dict(d["model"]), train=dict(d["train"]), analyses=tuple(d["analyses"]),
                   analysis_options=dict(d.get("analysis_options", {})))


def _same_number(value: Any) -> Any:
    """``value`` with integral floats as ints, so that 1 and 1.0 are the same axis value (they
    build the same run)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class SweepSpec:
    """A base configuration, the axes to vary over it, and the analyses to run on every model.

    Attributes:
        name: a label for the sweep (written into the output folder's ``sweep.json``).
        task: base task, ``{"kind": <a key of mi_margin.tasks.TASKS>, ...constructor
            arguments}`` (the format of ``Task.to_dict``).
        model: ``{"kind": "mlp" | "transformer", ...config overrides}``; vocabulary sizes come
            from the task (``for_task``).
        train: :class:`~mi_margin.TrainConfig` fields (``progress`` is always off in sweeps).
        axes: dotted name -> list of values; the runs are the Cartesian product.
        analyses: names from :data:`ANALYSES` run on each finished model.
        analysis_options: keyword arguments per analysis, e.g. ``{"irreps": {"min_similarity": 0.05}}``
            (``key_irreps``'s min_similarity), ``{"fourier": {"method": "embed"}}``,
            ``{"margin": {"subset": "train"}}``. Changing them re-runs only the analyses.

    Example:
        >>> spec = SweepSpec(task={"kind": "modular_addition", "p": 5},
        ...                  model={"kind": "mlp", "d_mlp": 16}, train={"steps": 50},
        ...                  axes={"seed": [0, 1], "train.weight_decay": [0.0, 1.0]})
        >>> [r.point for r in spec.runs()][:2]
        [{'seed': 0, 'train.weight_decay': 0.0}, {'seed': 0, 'train.weight_decay': 1.0}]
    """

    task: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    analyses: tuple[str, ...] = ()
    analysis_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    name: str = "sweep"

    def __post_init__(self) -> None:
        if isinstance(self.analyses, str) or not isinstance(self.analyses, (list, tuple)):
            raise MiMarginError(f"analyses must be a list of names, got {self.analyses!r}")
        if not isinstance(self.axes, dict) or not isinstance(self.name, str):
            raise MiMarginError(f"axes must be a table/dict and name a string, got "
                                f"axes={self.axes!r}, name={self.name!r}")
        object.__setattr__(self, "analyses", tuple(self.analyses))
        for name, values in self.axes.items():
            if not isinstance(values, (list, tuple)):
                raise MiMarginError(f"axis {name!r} must be a list of values, got {values!r}")
        object.__setattr__(self, "axes", {k: list(v) for k, v in self.axes.items()})
        for section in SECTIONS:
            if not isinstance(getattr(self, section), dict):
                raise MiMarginError(f"{section} must be a table/dict, got "
                                    f"{type(getattr(self, section)).__name__}")
        for name, values in self.axes.items():
            section, dot, key = name.partition(".")
            if name != SEED_AXIS and (section not in SECTIONS or not dot or not key or "." in key):
                raise MiMarginError(f"axis {name!r} must be 'seed' or 'task.<arg>', "
                                    "'model.<field>', 'train.<field>'")
            if not values:
                raise MiMarginError(f"axis {name!r} has no values")
            seen = [json.dumps(_same_number(v), sort_keys=True, default=repr) for v in values]
            if len(set(seen)) != len(seen):
                raise MiMarginError(f"axis {name!r} repeats a value: {values!r} (each run of a "
                                    "sweep is its own grid point)")
        both = [name for name in SEED_FIELDS if SEED_AXIS in self.axes and name in self.axes]
        if both:
            raise MiMarginError(f"the 'seed' axis sets {list(SEED_FIELDS)}, so axes {both} would "
                                "be overwritten by it (every point repeated): drop one of them")
        unknown = [a for a in self.analyses if a not in ANALYSES]
        if unknown:
            raise MiMarginError(f"unknown analyses {unknown}; valid: {list(ANALYSES)}")
        if not isinstance(self.analysis_options, dict):
            raise MiMarginError(f"analysis_options must be a table/dict, got "
                                f"{self.analysis_options!r}")
        stray = sorted(set(self.analysis_options) - set(self.analyses))
        if stray:
            raise MiMarginError(f"analysis_options for {stray}, which are not in analyses "
                                f"{list(self.analyses)}")
        for name, options in self.analysis_options.items():
            if not isinstance(options, dict):
                raise MiMarginError(f"analysis_options.{name} must be a table/dict, got {options!r}")
            unknown = sorted(set(options) - set(OPTIONS[name]))
            if unknown:
                raise MiMarginError(f"unknown options {unknown} for analysis {name!r}; valid: "
                                    f"{list(OPTIONS[name])}")
        for run in self.runs():
            _check_fields(run)

    def runs(self) -> list[RunSpec]:
        """Every grid point as a :class:`RunSpec`, in a deterministic order."""
        names = list(self.axes)
        out = []
        for index, values in enumerate(itertools.product(*(self.axes[n] for n in names))):
            point = dict(zip(names, values))
            sections = {s: dict(getattr(self, s)) for s in SECTIONS}
            sections["train"].pop("progress", None)
            for name, value in point.items():
                for target in SEED_FIELDS if name == SEED_AXIS else (name,):
                    section, key = target.split(".")
                    sections[section][key] = value
            out.append(RunSpec(index=index, point=point, analyses=self.analyses,
                               analysis_options=self.analysis_options, **sections))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": dict(self.task), "model": dict(self.model),
                "train": dict(self.train), "axes": dict(self.axes),
                "analyses": list(self.analyses), "analysis_options": dict(self.analysis_options)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSpec:
        if not isinstance(d, dict):
            raise MiMarginError(f"a sweep spec must be a table/mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MiMarginError(f"unknown sweep spec keys {unknown}; valid: {sorted(known)}")
        for required in ("task", "model"):
            if required not in d:
                raise MiMarginError(f"a sweep spec needs a [{required}] table")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> SweepSpec:
        """Read a spec from ``.toml``, ``.yaml`` / ``.yml`` or ``.json``.

        Example:
            >>> spec = SweepSpec.load("examples/sweeps/s4_universality.toml")   # doctest: +SKIP
        """
        return cls.from_dict(read_spec_file(Path(path)))


def _check_fields(run: RunSpec) -> None:
    """Names only (values are checked when the run is built, and a bad one fails that run)."""
    if "kind" not in run.task or "kind" not in run.model:
        raise MiMarginError("the task and model tables need a 'kind' key")
    valid = {"task": _task_fields(run.task["kind"]) | {"kind"},
             "model": _model_fields(run.model["kind"]) | {"kind"}, "train": _train_fields()}
    for section, fields in valid.items():
        unknown = sorted(set(getattr(run, section)) - fields)
        if unknown:
            raise MiMarginError(f"unknown {section} fields {unknown} for run {run.point}; "
                                f"valid: {sorted(fields)}")


def read_spec_file(path: Path) -> dict[str, Any]:
    """Parse a TOML (stdlib ``tomllib``), YAML (PyYAML) or JSON sweep file into a dict."""
    if not path.is_file():
        raise MiMarginError(f"sweep spec {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError as err:
                raise MiMarginError("reading TOML on Python 3.10 needs tomli: pip install tomli "
                                    "(or write the spec as JSON)") from err
        parse: Any = lambda text: tomllib.loads(text)  # noqa: E731
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as err:
            raise MiMarginError("reading YAML needs PyYAML: pip install pyyaml "
                                "(or write the spec as TOML or JSON)") from err
        parse = yaml.safe_load
    elif suffix == ".json":
        parse = json.loads
    else:
        raise MiMarginError(f"sweep spec must end in .toml, .yaml, .yml or .json, got {path.name}")
    try:
        data = parse(path.read_bytes().decode("utf-8"))
    except Exception as err:  # each parser has its own error types; all mean "malformed"
        raise MiMarginError(f"sweep spec {path} is not valid {suffix[1:].upper()}: "
                            f"{type(err).__name__}: {err}") from err
    if not isinstance(data, dict):
        raise MiMarginError(f"{path} must hold a table/mapping at the top level")
    return data
