"""Frozen, validated configurations of the two model families.

Both configs round-trip through ``to_dict``/``from_dict`` and are filled from a task by
``for_task(task, **overrides)``. They also carry the attributes TransformerLens code reads from
``model.cfg`` (``n_layers``, ``n_heads``, ``d_model``, ``d_mlp``, ``attn_only``,
``normalization_type``, ``model_name``, ``eps``, ``original_architecture``, ``device``,
``use_attn_result``...). ``cfg.dtype`` is a ``torch.dtype`` (written as its name,
``"float32"``/``"float64"``, by ``to_dict``; ``from_dict`` and the constructor take either).

The saved fields are frozen (a model is built from them; ``cfg.replace(...)`` makes a changed
copy), but TransformerLens's runtime flags are set as in TransformerLens, on the model's own copy
of its config: ``model.cfg.use_attn_result = True``. A flag a model cannot honour (split Q/K/V
inputs on a one-layer model, anything about attention on an MLP) raises
:class:`~mi_margin.MiMarginError` instead of being silently ignored.

Example:
    >>> import torch, mi_margin as mm
    >>> cfg = mm.TransformerConfig(d_model=8, d_head=2)
    >>> cfg.dtype, cfg.to_dict()["dtype"], torch.zeros(2, dtype=cfg.dtype).dtype
    (torch.float32, 'float32', torch.float32)
    >>> cfg.use_attn_result = True
    >>> cfg.use_attn_result
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from mi_margin.checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    keep,
    named_fields,
)
from mi_margin.errors import MiMarginError

ACT_FNS = ("relu", "gelu", "quadratic", "power")
#: the model dtypes, by the name ``to_dict`` writes
DTYPES = {"float32": torch.float32, "float64": torch.float64}

C = TypeVar("C", bound="_Config")


def polynomial_degree(act_fn: str, act_degree: int | None) -> int | None:
    """Degree of a polynomial activation (2 for quadratic, ``act_degree`` for power), else None."""
    return 2 if act_fn == "quadratic" else act_degree if act_fn == "power" else None


#: the largest degree of the power activation x^k: beyond it even |x| = 4 overflows float32
#: (4^64 = 2^128 > 3.4e38), so no trained network could use it
MAX_ACT_DEGREE = 64
#: the largest seed ``torch.manual_seed`` takes
MAX_SEED = 2**63 - 1


def dtype_name(dtype: torch.dtype | str) -> str:
    """``"float32"`` for ``torch.float32`` (or ``"float32"``), ``"float64"`` likewise.

    Example:
        >>> dtype_name(torch.float64)
        'float64'
    """
    for name, value in DTYPES.items():
        if dtype in (name, value):
            return name
    raise MiMarginError(f"dtype must be one of {list(DTYPES)} (or torch.float32/torch.float64), "
                        f"got dtype={dtype!r}")


def _check_common(cfg: Any, *positive: str) -> None:
    """Checks shared by both configs: sizes, activation, seed, dtype and flags."""
    for name in positive:
        keep(cfg, name, check_int(name, getattr(cfg, name), low=1))
    check_choice("act_fn", cfg.act_fn, ACT_FNS)
    object.__setattr__(cfg, "dtype", DTYPES[dtype_name(cfg.dtype)])
    keep(cfg, "seed", check_int("seed", cfg.seed, low=0, high=MAX_SEED))
    check_bool("use_biases", cfg.use_biases)
    if cfg.act_fn == "power" and cfg.act_degree is None:
        raise MiMarginError("act_fn='power' needs act_degree, an integer in "
                            f"[1, {MAX_ACT_DEGREE}], got act_degree=None")
    if cfg.act_degree is not None:
        keep(cfg, "act_degree", check_int("act_degree", cfg.act_degree, low=1, high=MAX_ACT_DEGREE))


@dataclass(frozen=True)
class _Config:
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with a ``kind`` key (``dtype`` as its name, e.g. ``"float32"``)."""
        return {"kind": self.kind, **dataclasses.asdict(self),
                "dtype": dtype_name(self.dtype)}  # type: ignore[attr-defined]  # both configs have it

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error (no silent typos:
        :func:`~mi_margin.checks.named_fields`), and so is the ``kind`` of the other config."""
        if not isinstance(d, dict):
            raise MiMarginError(f"a {cls.__name__} dict is needed, got {type(d).__name__}")
        if d.get("kind", cls.kind) != cls.kind:
            raise MiMarginError(f"{cls.__name__}.from_dict needs kind={cls.kind!r}, got "
                                f"kind={d['kind']!r} (use config_from_dict for either kind)")
        return cls(**{k: v for k, v in d.items() if k != "kind"})

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # what TransformerLens code reads from model.cfg; the runtime flags (device, use_attn_result...)
    # are not saved fields: each model sets them on its own copy of the config (RUNTIME_FLAGS)
    n_layers: ClassVar[int] = 1
    normalization_type: ClassVar[None] = None
    n_key_value_heads: ClassVar[None] = None
    positional_embedding_type: ClassVar[str] = "standard"
    #: TransformerLens's LayerNorm epsilon; these models have no LayerNorm, so nothing reads it
    eps: ClassVar[float] = 1e-5
    parallel_attn_mlp: ClassVar[bool] = False
    default_prepend_bos: ClassVar[bool] = False
    device: ClassVar[str] = "cpu"
    use_attn_result: ClassVar[bool] = False
    use_split_qkv_input: ClassVar[bool] = False
    use_attn_in: ClassVar[bool] = False
    use_hook_mlp_in: ClassVar[bool] = False
    #: runtime flags this config honours when set to True (the others may only be set to False)
    honoured_flags: ClassVar[tuple[str, ...]] = ()
    #: the model class, what TransformerLens calls the original architecture
    original_architecture: ClassVar[str] = ""

    @property
    def model_name(self) -> str:
        """A TransformerLens-style name, e.g. ``"mi_margin-transformer-d128-h4-mlp512-relu"``."""
        return f"mi_margin-{self.kind}-" + "-".join(self._name_parts())

    def _name_parts(self) -> list[str]:
        raise NotImplementedError


#: TransformerLens's runtime flags: settable on a config (``model.cfg.use_attn_result = True``)
RUNTIME_FLAGS = ("device", "use_attn_result", "use_split_qkv_input", "use_attn_in",
                 "use_hook_mlp_in", "default_prepend_bos")
#: why a flag cannot be set to True, by flag
_FLAG_REFUSALS = {
    "use_split_qkv_input": "split Q/K/V inputs exist to patch paths from one layer's heads into "
                           "a later layer's, and a one-layer model has no later layer",
    "use_attn_in": "per-head attention inputs exist to patch paths between layers, and a "
                   "one-layer model has one layer",
    "use_hook_mlp_in": "the MLP's input already has a hook point (the transformer's "
                       "blocks.0.hook_resid_mid, the HookedMLP's blocks.0.hook_resid_pre): hook that",
    "default_prepend_bos": "the models read operands and '=', with no beginning-of-sequence token",
    "use_attn_result": "a HookedMLP has no attention",
}


def _check_for_task(cls: type, task: Any) -> None:
    """``for_task``'s task argument: a task object (a misspelt override is refused by the
    constructor, :func:`~mi_margin.checks.named_fields`)."""
    from mi_margin.tasks.base import check_task

    check_task(task, f"{cls.__name__}.for_task takes a task")


def _with_degree(task: Any, base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` (what the task dictates) updated by ``overrides``, which may not contradict it
    (such a model would not fit the task, and be refused only when used); ``act_fn="power"``
    without a degree, or with ``act_degree=None``, takes the task's k (Li et al.'s x^k)."""
    clash = {name: value for name, value in overrides.items()
             if name in base and value != base[name]}
    if clash:
        said = ", ".join(f"{name}={value!r}" for name, value in clash.items())
        wants = ", ".join(f"{name}={base[name]!r}" for name in clash)
        raise MiMarginError(f"for_task: {said} contradicts the task {task!r}, which needs "
                            f"{wants}; for_task takes these from the task: leave them out")
    fields = {**base, **overrides}
    if fields.get("act_fn") == "power" and fields.get("act_degree") is None:
        fields["act_degree"] = task.k
    return fields


def _set_runtime_flag(cfg: _Config, name: str, value: Any) -> None:
    """Set a TransformerLens runtime flag on ``cfg`` (checked: see :data:`RUNTIME_FLAGS`)."""
    if name == "device":
        object.__setattr__(cfg, name, str(value))
        return
    check_bool(name, value)
    if value and name not in cfg.honoured_flags:
        raise MiMarginError(f"{type(cfg).__name__} cannot set {name}=True: {_FLAG_REFUSALS[name]}")
    object.__setattr__(cfg, name, bool(value))


def _with_runtime_flags(cls: type[C]) -> type[C]:
    """Let a frozen config set :data:`RUNTIME_FLAGS` (every other field stays frozen)."""
    frozen_setattr = cls.__setattr__

    def __setattr__(self: _Config, name: str, value: Any) -> None:
        if name in RUNTIME_FLAGS:
            _set_runtime_flag(self, name, value)
        else:
            frozen_setattr(self, name, value)

    cls.__setattr__ = __setattr__  # type: ignore[method-assign,assignment]
    return cls


@_with_runtime_flags
@named_fields
@dataclass(frozen=True)
class TransformerConfig(_Config):
    """One-layer transformer; the defaults are Nanda et al.'s grokking model (docs/mathematics.md §4.1).

    d_model 128, 4 heads of 32, d_mlp 512, ReLU, no LayerNorm, learned positional embeddings, causal
    attention, logits read at the last position, no biases (``use_biases=False`` keeps zero bias
    buffers so that weight names and shapes are TransformerLens's), Nanda's N(0,1)/sqrt(fan) init.

    ``attn_rate`` α is Zhong et al.'s attention rate (2023, "The Clock and the Pizza", App. F.1;
    docs/mathematics.md §6.2): the attention actually applied is ``α·softmax(scores) + (1 − α)·J``
    with J all ones on the keys a query may see, so α = 0 is their constant-attention "Model A"
    and α = 1 (the default) ordinary attention, their "Model B". Their runs also use
    ``attention_dir="bidirectional"``.
    """

    kind: ClassVar[str] = "transformer"
    original_architecture: ClassVar[str] = "HookedOneLayerTransformer"
    honoured_flags: ClassVar[tuple[str, ...]] = ("use_attn_result",)
    d_vocab: int = 114
    d_vocab_out: int = 113
    n_ctx: int = 3
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act_fn: str = "relu"
    act_degree: int | None = None
    attention_dir: str = "causal"
    attn_rate: float = 1.0
    attn_only: bool = False
    use_biases: bool = False
    use_pos_embed: bool = True
    seed: int = 0
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        _check_common(self, "d_vocab", "d_vocab_out", "n_ctx", "d_model", "n_heads", "d_head",
                      "d_mlp")
        check_choice("attention_dir", self.attention_dir, ("causal", "bidirectional"))
        check_bool("attn_only", self.attn_only)
        check_bool("use_pos_embed", self.use_pos_embed)
        keep(self, "attn_rate", check_float("attn_rate", self.attn_rate, low=0.0, high=1.0))

    @property
    def degree(self) -> int | None:
        """Degree of the polynomial activation (2 for quadratic, ``act_degree`` for power)."""
        return polynomial_degree(self.act_fn, self.act_degree)

    def _name_parts(self) -> list[str]:
        return [f"d{self.d_model}", f"h{self.n_heads}",
                "attn-only" if self.attn_only else f"mlp{self.d_mlp}", self.act_fn]

    @classmethod
    def for_task(cls, task: Any, **overrides: Any) -> TransformerConfig:
        """Vocabulary (operands + '='), output classes and context length from ``task``.

        ``act_fn="power"`` defaults its degree to the task's k (Li et al.'s x^k).
        """
        _check_for_task(cls, task)
        return cls(**_with_degree(task, {"d_vocab": task.d_vocab + 1,
                                         "d_vocab_out": task.d_vocab_out, "n_ctx": task.n_ctx},
                                  overrides))


@_with_runtime_flags
@named_fields
@dataclass(frozen=True)
class MLPConfig(_Config):
    """One-hidden-layer MLP over k operands.

    ``input_style="theory"`` (default): each operand's one-hot goes through its own map
    ``W_in[i]`` (d_vocab × d_mlp), so the pre-activation is u(a) + v(b) + ... (Morwani et al. §1.1).
    ``input_style="embed"``: Chughtai et al.'s per-operand embeddings ``W_E[i]`` (d_vocab × d_embed),
    concatenated and mapped by a linear layer (stored split per operand as ``W_in[i]``,
    d_embed × d_mlp). ``input_kind="vector"`` is for sparse parity: the ±1 vector is read by one
    linear map ``W_in[0]`` (n × d_mlp). No biases by default.
    """

    kind: ClassVar[str] = "mlp"
    original_architecture: ClassVar[str] = "HookedMLP"
    d_vocab: int = 113
    d_vocab_out: int = 113
    k: int = 2
    d_mlp: int = 512
    act_fn: str = "quadratic"
    act_degree: int | None = None
    input_style: str = "theory"
    input_kind: str = "one_hot"
    d_embed: int = 256
    use_biases: bool = False
    init_scale: float = 1.0
    seed: int = 0
    dtype: torch.dtype = torch.float32

    n_heads: ClassVar[int] = 0
    attn_only: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_common(self, "d_vocab", "d_vocab_out", "k", "d_mlp", "d_embed")
        check_choice("input_style", self.input_style, ("theory", "embed"))
        check_choice("input_kind", self.input_kind, ("one_hot", "vector"))
        if self.input_kind == "vector" and self.k != 1:
            raise MiMarginError(f"input_kind='vector' reads one vector, so k must be 1, got k={self.k}")
        if self.input_kind == "vector" and self.input_style == "embed":
            raise MiMarginError("input_style='embed' embeds tokens, but input_kind='vector' (sparse "
                                "parity's ±1 vector) has none: W_in reads the vector directly, so "
                                "use input_style='theory'")
        keep(self, "init_scale", check_float("init_scale", self.init_scale, low=0, low_open=True))

    @property
    def degree(self) -> int | None:
        """Degree of the polynomial activation (2 for quadratic, ``act_degree`` for power)."""
        return polynomial_degree(self.act_fn, self.act_degree)

    @property
    def d_model(self) -> int:
        """Width of the residual-like input space (what ActivationCache calls d_model)."""
        return self.d_embed if self.input_style == "embed" else self.d_mlp

    def _name_parts(self) -> list[str]:
        return [f"k{self.k}", f"mlp{self.d_mlp}", self.act_fn, self.input_style]

    @classmethod
    def for_task(cls, task: Any, **overrides: Any) -> MLPConfig:
        """Vocabulary, classes and number of operands from ``task``.

        The task says how an MLP reads it (``task.mlp_fields()``: one-hot operands, or one vector
        for sparse parity, d_vocab = n, k = 1); ``act_fn="power"`` defaults its degree to the
        task's k (x^k for k-input addition and (n, k)-parity).
        """
        _check_for_task(cls, task)
        return cls(**_with_degree(task, task.mlp_fields(), overrides))


def config_from_dict(d: dict[str, Any]) -> TransformerConfig | MLPConfig:
    """Rebuild either config from its ``to_dict`` output."""
    kinds: dict[str, type[TransformerConfig] | type[MLPConfig]] = {
        "transformer": TransformerConfig, "mlp": MLPConfig}
    if not isinstance(d, dict) or d.get("kind") not in kinds:
        kind = d.get("kind") if isinstance(d, dict) else d
        raise MiMarginError(f"unknown model config kind {kind!r}; expected {list(kinds)}")
    return kinds[d["kind"]].from_dict(d)
