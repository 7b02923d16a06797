"""Frozen, validated configurations of the two model families.

Both configs round-trip through ``to_dict``/``from_dict`` and are filled from a task by
``for_task(task, **overrides)``. They also carry the few attributes TransformerLens's
``ActivationCache`` and ``patching`` read from ``model.cfg`` (``n_layers``, ``n_heads``,
``d_model``, ``d_mlp``, ``attn_only``, ``normalization_type``, ``device``, ``use_attn_result``...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from mi_margin.checks import check_bool, check_choice, check_float, check_int
from mi_margin.errors import MiMarginError

ACT_FNS = ("relu", "gelu", "quadratic", "power")
DTYPES = ("float32", "float64")

C = TypeVar("C", bound="_Config")


def polynomial_degree(act_fn: str, act_degree: int | None) -> int | None:
    """Degree of a polynomial activation (2 for quadratic, ``act_degree`` for power), else None."""
    return 2 if act_fn == "quadratic" else act_degree if act_fn == "power" else None


#: the largest degree of the power activation x^k: beyond it even |x| = 4 overflows float32
#: (4^64 = 2^128 > 3.4e38), so no trained network could use it
MAX_ACT_DEGREE = 64
#: the largest seed ``torch.manual_seed`` takes
MAX_SEED = 2**63 - 1


def _check_common(cfg: Any, *positive: str) -> None:
    """Checks shared by both configs: sizes, activation, seed, dtype and flags."""
    for name in positive:
        check_int(name, getattr(cfg, name), low=1)
    check_choice("act_fn", cfg.act_fn, ACT_FNS)
    check_choice("dtype", cfg.dtype, DTYPES)
    check_int("seed", cfg.seed, low=0, high=MAX_SEED)
    check_bool("use_biases", cfg.use_biases)
    if cfg.act_fn == "power" and cfg.act_degree is None:
        raise MiMarginError("act_fn='power' needs act_degree, an integer in "
                            f"[1, {MAX_ACT_DEGREE}], got act_degree=None")
    if cfg.act_degree is not None:
        check_int("act_degree", cfg.act_degree, low=1, high=MAX_ACT_DEGREE)


@dataclass(frozen=True)
class _Config:
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with a ``kind`` key."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error (no silent typos), and so is
        the ``kind`` of the other config."""
        if not isinstance(d, dict):
            raise MiMarginError(f"a {cls.__name__} dict is needed, got {type(d).__name__}")
        if d.get("kind", cls.kind) != cls.kind:
            raise MiMarginError(f"{cls.__name__}.from_dict needs kind={cls.kind!r}, got "
                                f"kind={d['kind']!r} (use config_from_dict for either kind)")
        d = {k: v for k, v in d.items() if k != "kind"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise MiMarginError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(names)}")
        return cls(**d)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # what ActivationCache and transformer_lens.patching read; the runtime flags (device,
    # use_attn_result...) are not saved fields: each model sets them on its own copy of the config
    # (models.tl_interface)
    n_layers: ClassVar[int] = 1
    normalization_type: ClassVar[None] = None
    n_key_value_heads: ClassVar[None] = None
    positional_embedding_type: ClassVar[str] = "standard"
    default_prepend_bos: ClassVar[bool] = False
    device: ClassVar[str] = "cpu"
    use_attn_result: ClassVar[bool] = False
    use_split_qkv_input: ClassVar[bool] = False
    use_attn_in: ClassVar[bool] = False
    use_hook_mlp_in: ClassVar[bool] = False



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
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_common(self, "d_vocab", "d_vocab_out", "n_ctx", "d_model", "n_heads", "d_head",
                      "d_mlp")
        check_choice("attention_dir", self.attention_dir, ("causal", "bidirectional"))
        check_bool("attn_only", self.attn_only)
        check_bool("use_pos_embed", self.use_pos_embed)
        check_float("attn_rate", self.attn_rate, low=0.0, high=1.0)

    @property
    def degree(self) -> int | None:
        """Degree of the polynomial activation (2 for quadratic, ``act_degree`` for power)."""
        return polynomial_degree(self.act_fn, self.act_degree)

    @classmethod
    def for_task(cls, task: Any, **overrides: Any) -> TransformerConfig:
        """Vocabulary (operands + '='), output classes and context length from ``task``.

        ``act_fn="power"`` defaults its degree to the task's k (Li et al.'s x^k).
        """
        base: dict[str, Any] = {"d_vocab": task.d_vocab + 1, "d_vocab_out": task.d_vocab_out,
                                "n_ctx": task.n_ctx}
        if overrides.get("act_fn") == "power" and overrides.get("act_degree") is None:
            base["act_degree"] = task.k
        return cls(**{**base, **overrides})


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
    dtype: str = "float32"

    n_heads: ClassVar[int] = 0
    attn_only: ClassVar[bool] = False

    def __post_init__(self) -> None:
        _check_common(self, "d_vocab", "d_vocab_out", "k", "d_mlp", "d_embed")
        check_choice("input_style", self.input_style, ("theory", "embed"))
        check_choice("input_kind", self.input_kind, ("one_hot", "vector"))
        if self.input_kind == "vector" and self.k != 1:
            raise MiMarginError(f"input_kind='vector' reads one vector, so k must be 1, got k={self.k}")
        check_float("init_scale", self.init_scale, low=0, low_open=True)

    @property
    def degree(self) -> int | None:
        """Degree of the polynomial activation (2 for quadratic, ``act_degree`` for power)."""
        return polynomial_degree(self.act_fn, self.act_degree)

    @property
    def d_model(self) -> int:
        """Width of the residual-like input space (what ActivationCache calls d_model)."""
        return self.d_embed if self.input_style == "embed" else self.d_mlp

    @classmethod
    def for_task(cls, task: Any, **overrides: Any) -> MLPConfig:
        """Vocabulary, classes and number of operands from ``task``.

        The task says how an MLP reads it (``task.mlp_fields()``: one-hot operands, or one vector
        for sparse parity, d_vocab = n, k = 1); ``act_fn="power"`` defaults its degree to the
        task's k (x^k for k-input addition and (n, k)-parity).
        """
        base = task.mlp_fields()
        if overrides.get("act_fn") == "power" and overrides.get("act_degree") is None:
            base["act_degree"] = task.k
        return cls(**{**base, **overrides})


def config_from_dict(d: dict[str, Any]) -> TransformerConfig | MLPConfig:
    """Rebuild either config from its ``to_dict`` output."""
    kinds: dict[str, type[TransformerConfig] | type[MLPConfig]] = {
        "transformer": TransformerConfig, "mlp": MLPConfig}
    if not isinstance(d, dict) or d.get("kind") not in kinds:
        kind = d.get("kind") if isinstance(d, dict) else d
        raise MiMarginError(f"unknown model config kind {kind!r}; expected {list(kinds)}")
    return kinds[d["kind"]].from_dict(d)
