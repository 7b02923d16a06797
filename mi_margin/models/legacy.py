"""Load a published grokking checkpoint (Nanda et al.'s or ``HookedTransformer``'s layout) safely.

Grokking runs shared by Nanda et al. and the ARENA course are ``torch.save``'d state dicts of a
one-layer, LayerNorm-free transformer, either in the layout of Nanda's own code (converted by
:func:`from_original_layout`) or in that of TransformerLens's ``HookedTransformer``: ``embed.W_E``
[d_vocab, d_model], ``pos_embed.W_pos`` [n_ctx, d_model], ``blocks.0.attn.W_Q/W_K/W_V`` [H, d_model,
d_head], ``blocks.0.attn.W_O`` [H, d_head, d_model], ``blocks.0.mlp.W_in`` [d_model, d_mlp],
``blocks.0.mlp.W_out`` [d_mlp, d_model], ``unembed.W_U`` [d_model, d_vocab_out], their biases and
the buffers ``blocks.0.attn.mask`` / ``blocks.0.attn.IGNORE``. They come bare, nested as ``{"model":
state_dict, "config": {...}}`` (or ``"state_dict"``), or as a list of checkpoints ``{"state_dicts":
[...], ...}``. :func:`load_tl_checkpoint` reads the file with ``torch.load(..., weights_only=True)``
(tensors and plain containers only: a file that needs arbitrary pickled objects is refused), infers
the :class:`TransformerConfig` from the shapes, checks it against a stored config, and returns a
:class:`HookedOneLayerTransformer`. A stored config whose fields change what the network computes
(``parallel_attn_mlp=True``, rotary positions, another attention scale, ...) is refused, naming the
field: the weights alone would load as a different function.

Example:
    >>> import mi_margin as mm
    >>> model = mm.load_tl_checkpoint("grokking/full_run_data.pth", index=-1)   # doctest: +SKIP
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from mi_margin.checks import check_int
from mi_margin.errors import CheckpointError
from mi_margin.models.bridge import unmet_needs
from mi_margin.models.config import TransformerConfig
from mi_margin.models.transformer import HookedOneLayerTransformer

#: buffers of TransformerLens's attention that our model rebuilds from the config
BUFFERS = ("blocks.0.attn.mask", "blocks.0.attn.IGNORE")
NESTED = ("model", "state_dict")
LISTS = ("state_dicts", "checkpoints")

#: TransformerLens's defaults of the fields :func:`check_stored_config` reads, for a stored config
#: that leaves them out
TL_DEFAULTS: dict[str, Any] = {
    "final_rms": False, "positional_embedding_type": "standard", "gated_mlp": False,
    "parallel_attn_mlp": False, "n_key_value_heads": None, "use_attn_scale": True,
    "attn_scale": -1.0, "attn_scores_soft_cap": -1.0, "output_logits_soft_cap": -1.0,
    "original_architecture": None}
#: the entries of models.bridge.NATIVE_NEEDS not checked on a stored config: the bridge's own
#: ``architecture`` (a HookedTransformer config names ``original_architecture``, see
#: :data:`LEGACY_NEEDS`), LayerNorm and layers (refused first, with their own messages) and
#: ``act_fn`` (the TransformerConfig names the valid ones, and ``overrides`` may set it)
NOT_STORED = ("architecture", "n_layers", "normalization_type", "act_fn")
#: what a HookedTransformer config needs beyond NATIVE_NEEDS: (field, what is needed, test).
#: Legacy attention divides the scores by ``attn_scale`` only when ``use_attn_scale`` is set
#: (TransformerLens 4's native bridge always scales, so NATIVE_NEEDS does not ask).
LEGACY_NEEDS: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    ("original_architecture", "original_architecture=None (a model built from a config, not "
     "a converted pretrained one)", lambda c: c.original_architecture in (None, "None")),
    ("use_attn_scale", "use_attn_scale=True (scores divided by sqrt(d_head))",
     lambda c: bool(c.use_attn_scale)),
)


def from_original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` in TransformerLens's layout, if it is in the layout of Nanda et al.'s own
    grokking code (the paper's ``Transformer``, whose runs ARENA's ``full_run_data.pth`` ships):
    the same names, but ``W_E`` [d_model, d_vocab], ``W_Q``/``W_K``/``W_V`` [H, d_head, d_model],
    ``W_O`` [d_model, H·d_head] (heads major), ``W_in`` [d_mlp, d_model] and ``W_out``
    [d_model, d_mlp]; ``W_pos``, ``W_U`` and the MLP biases as TransformerLens has them, and no
    attention or unembedding biases (zero here). A two-dimensional ``W_O`` tells the layouts apart
    (TransformerLens's is [H, d_head, d_model]); any other state is returned as it is."""
    W_O, W_Q = state.get("blocks.0.attn.W_O"), state.get("blocks.0.attn.W_Q")
    if W_O is None or W_O.ndim != 2 or W_Q is None or W_Q.ndim != 3:
        return state
    transposed = {"embed.W_E", "blocks.0.mlp.W_in", "blocks.0.mlp.W_out"}
    out = {k: v.T if k in transposed and v.ndim == 2 else v for k, v in state.items()}
    for name in ("W_Q", "W_K", "W_V"):
        if f"blocks.0.attn.{name}" in state:
            out[f"blocks.0.attn.{name}"] = state[f"blocks.0.attn.{name}"].transpose(1, 2)
    out["blocks.0.attn.W_O"] = W_O.reshape(W_O.shape[0], W_Q.shape[0], -1).permute(1, 2, 0)
    return {k: v.contiguous() for k, v in out.items()}


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):   # zip, or a pickle
        raise CheckpointError(f"{path} is not a torch checkpoint (it starts with {head!r}, not a "
                              "zip archive or a pickle: a failed download or a text file?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors and plain "
            f"containers, and unpickling them could run arbitrary code ({err}). Re-save its state "
            "dict (torch.save(model.state_dict(), ...)) or convert it with a trusted script.") from err
    except (RuntimeError, OSError, EOFError) as err:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err


def unwrap(obj: Any, index: int = -1) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, stored config or {}) from any of the layouts in the module docstring."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a state dict or a dict holding one, got {type(obj).__name__}")
    config: dict[str, Any] = obj["config"] if isinstance(obj.get("config"), dict) else {}
    for key in NESTED:
        if isinstance(obj.get(key), dict):
            return unwrap(obj[key])[0], config
    for key in LISTS:
        if isinstance(obj.get(key), (list, tuple)):
            states = obj[key]
            if not -len(states) <= index < len(states):
                raise CheckpointError(f"index={index} is out of range for {len(states)} {key!r}")
            return unwrap(states[index])[0], config
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"no state dict found; top-level keys: {sorted(map(str, obj))[:12]}; "
                              f"expected tensors, or one of {[*NESTED, *LISTS]}")
    return obj, config


def check_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights that are not finite real floating-point tensors (int, complex, NaN/inf)."""
    for name, value in state.items():
        if not value.is_floating_point():
            raise CheckpointError(f"{path}: {name} holds {value.dtype} values; the weights must "
                                  "be real floating-point numbers")
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values")


def check_stored_config(stored: dict[str, Any], n_heads: int, d_head: int) -> None:
    """Refuse a stored TransformerLens config whose fields make the network compute something a
    HookedOneLayerTransformer does not (models.bridge.NATIVE_NEEDS, the table ``from_bridge``
    checks, plus :data:`LEGACY_NEEDS`), naming each field and its value; ``n_heads`` and
    ``d_head`` come from the weights."""
    fields = {name: stored.get(name, default) for name, default in TL_DEFAULTS.items()}
    view = SimpleNamespace(**fields, n_heads=n_heads, d_head=d_head)
    wrong = unmet_needs(view, skip=NOT_STORED)
    wrong += [(field, need) for field, need, holds in LEGACY_NEEDS if not holds(view)]
    if wrong:
        what = "; ".join(f"{field}={getattr(view, field)!r}, where it needs {need}"
                         for field, need in wrong)
        raise CheckpointError(f"the stored config describes a network HookedOneLayerTransformer "
                              f"does not compute, so its weights would load as another function: "
                              f"{what}. Run it with TransformerLens instead")


def infer_config(state: dict[str, torch.Tensor], stored: dict[str, Any] | None = None,
                 **overrides: Any) -> TransformerConfig:
    """The :class:`TransformerConfig` of a legacy one-layer state dict, checked against ``stored``.

    Raises :class:`CheckpointError` for LayerNorm weights, more than one layer, missing or extra
    keys, inconsistent shapes, a stored config that disagrees with the weights, or one whose
    fields change the computation (:func:`check_stored_config`).
    """
    stored = stored or {}
    norms = sorted(k for k in state if ".ln" in k or k.startswith("ln_final"))
    if norms or stored.get("normalization_type") not in (None, "None"):
        raise CheckpointError(f"the checkpoint has LayerNorm ({norms or stored['normalization_type']}); "
                              "HookedOneLayerTransformer has none (Nanda et al.'s model)")
    layers = sorted({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if layers != ["0"] or stored.get("n_layers", 1) != 1:
        raise CheckpointError(f"expected one layer (blocks.0), got blocks {layers}")
    need = ["embed.W_E", "blocks.0.attn.W_Q", "blocks.0.mlp.W_in", "unembed.W_U"]
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(f"missing keys {missing}; present: {sorted(state)}")
    (H, d_model, d_head), (d_vocab, _) = state["blocks.0.attn.W_Q"].shape, state["embed.W_E"].shape
    uses_pos = "pos_embed.W_pos" in state
    fields: dict[str, Any] = {
        "d_vocab": d_vocab, "d_model": d_model, "n_heads": H, "d_head": d_head,
        "d_mlp": state["blocks.0.mlp.W_in"].shape[1], "d_vocab_out": state["unembed.W_U"].shape[1],
        "n_ctx": state["pos_embed.W_pos"].shape[0] if uses_pos else stored.get("n_ctx", 3),
        "use_pos_embed": uses_pos, "act_fn": stored.get("act_fn", "relu"),
        "use_biases": any(bool(v.abs().sum()) for k, v in state.items() if ".b_" in k),
        "attention_dir": stored.get("attention_dir", "causal")}
    if fields["n_ctx"] < 2:
        raise CheckpointError(f"pos_embed.W_pos has {fields['n_ctx']} row(s): the model reads "
                              "at least one operand and '=' (n_ctx >= 2)")
    for name, value in stored.items():
        if name in fields and value != fields[name]:
            raise CheckpointError(f"the stored config says {name}={value!r} but the weights give "
                                  f"{name}={fields[name]!r}")
    if stored.get("attn_only"):
        raise CheckpointError("attention-only checkpoints are not supported (attn_only=True)")
    check_stored_config(stored, H, d_head)
    if "dtype" not in overrides:
        overrides["dtype"] = "float64" if state["embed.W_E"].dtype == torch.float64 else "float32"
    return TransformerConfig(**{**fields, **overrides})


def load_tl_checkpoint(path: str | Path, *, index: int = -1, d_vocab_out: int | None = None,
                       **overrides: Any) -> HookedOneLayerTransformer:
    """A :class:`HookedOneLayerTransformer` with the weights of a legacy TransformerLens file.

    Args:
        path: a file written by ``torch.save`` (see the module docstring for the layouts).
        index: which checkpoint of a ``"state_dicts"`` list (default the last).
        d_vocab_out: keep only the first ``d_vocab_out`` output columns of ``W_U``/``b_U``
            (Nanda et al. trained with p + 1 = 114 outputs, '=' included; the analyses use 113).
        overrides: config fields the weights cannot tell (``act_fn``, ``attention_dir``, ``seed``).

    Raises:
        CheckpointError: the file needs unpickling of arbitrary objects, has no state dict, or its
            weights do not fit a LayerNorm-free one-layer transformer (the message says why).
    """
    if isinstance(index, bool) or not isinstance(index, int):
        raise CheckpointError(f"index must be an integer, got index={index!r}")
    state, stored = unwrap(read_checkpoint(path), index)
    state = from_original_layout({k: v for k, v in state.items() if k not in BUFFERS})
    if stored.get("use_ln"):
        raise CheckpointError("the stored config has use_ln=True (LayerNorm); "
                              "HookedOneLayerTransformer has none (Nanda et al.'s model)")
    check_weights(state, path)
    if d_vocab_out is not None:
        columns = state["unembed.W_U"].shape[-1] if "unembed.W_U" in state else None
        check_int("d_vocab_out", d_vocab_out, low=1, high=columns)
        state = dict(state)
        state["unembed.W_U"] = state["unembed.W_U"][:, :d_vocab_out]
        if "unembed.b_U" in state:
            state["unembed.b_U"] = state["unembed.b_U"][:d_vocab_out]
        stored = {k: v for k, v in stored.items() if k != "d_vocab_out"}
    model = HookedOneLayerTransformer(infer_config(state, stored, **overrides))
    expected = model.state_dict()
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"unexpected keys {extra} for a one-layer transformer; "
                              f"expected {sorted(expected)}")
    full = {k: state.get(k, torch.zeros_like(v)) for k, v in expected.items()}
    bad = [f"{k}: {tuple(full[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
           if full[k].shape != v.shape]
    if bad:
        raise CheckpointError("shapes do not match the inferred config (file vs model): "
                              + "; ".join(bad))
    missing = sorted(k for k in expected if k not in state and ".b_" not in k and k != "pos_embed.W_pos")
    if missing:
        raise CheckpointError(f"missing weights {missing}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in full.items()})
    return model.eval()
