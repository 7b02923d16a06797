"""Save and load models as one safetensors file: weights plus the config JSON in its metadata.

No pickle. A SHA-256 over the metadata and the tensor bytes is stored too, so truncation, bit rot
or an edited header (``relu`` changed to ``gelu``) give a clear
:class:`~mi_margin.errors.CheckpointError` naming the file instead of a silently different model.
Files written by version 0.1 carry a digest of the tensors only (key ``sha256``); they still load,
with their metadata checked for validity. Writes are atomic and fsync-ed
(:func:`~mi_margin.models.files.atomic_write`), so a failed save never corrupts an existing file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mi_margin.errors import CheckpointError, MiMarginError
from mi_margin.models.compat import refuse_bridge
from mi_margin.models.config import DTYPES, TransformerConfig, config_from_dict
from mi_margin.models.files import atomic_write
from mi_margin.models.mlp import HookedMLP
from mi_margin.models.transformer import HookedOneLayerTransformer

FORMAT = "mi_margin.model/1"

__all__ = ["FORMAT", "atomic_write", "build_model", "load_model", "load_tensors", "save_model",
           "save_tensors", "tensors_digest"]


def tensors_digest(tensors: dict[str, torch.Tensor], meta_text: str | None = None) -> str:
    """SHA-256 over ``meta_text`` (when given) and the names, dtypes, shapes and bytes of
    ``tensors`` (sorted by name)."""
    h = hashlib.sha256()
    if meta_text is not None:
        h.update(f"meta|{len(meta_text)}|".encode())
        h.update(meta_text.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Atomically write ``tensors`` with JSON ``meta`` and their digest; return the digest."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    text = json.dumps(meta)
    digest = tensors_digest(tensors, text)
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp,
                                                   metadata={"meta": text, "digest": digest}))
    return digest


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """(tensors, meta, digest) of a file written by :func:`save_tensors` (or by mi_margin 0.1),
    after checking the digest; every kind of damage is a :class:`CheckpointError` naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file "
                              f"(truncated or corrupted?): {err}") from err
    text = metadata.get("meta")
    if text is None or not ({"digest", "sha256"} & set(metadata)):
        raise CheckpointError(f"{path} was not written by mi_margin (no metadata)")
    if "digest" in metadata:
        digest, expected = tensors_digest(tensors, text), metadata["digest"]
    else:  # written by mi_margin 0.1: the digest covers the tensors only
        digest, expected = tensors_digest(tensors), metadata["sha256"]
    if digest != expected:
        raise CheckpointError(f"{path} is corrupted: its metadata or tensors do not match the "
                              "stored SHA-256")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is corrupted: its metadata is not JSON ({err})") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is corrupted: its metadata is not a JSON object")
    return tensors, meta, digest


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_tensors`, checking its digest."""
    tensors, meta, _ = read_tensors(path)
    return tensors, meta


def save_model(model: Any, path: str | Path, **extra: Any) -> str:
    """Save a model's weights and config to ``path`` (a ``.safetensors`` file); ``extra`` goes into
    the metadata (a run's snapshot stores its ``step``). Returns the file's digest."""
    check_savable(model)
    return save_tensors(path, dict(model.state_dict()),
                        {"format": FORMAT, "config": model.cfg.to_dict(), **extra})


def check_savable(model: Any) -> None:
    """Refuse, saying what to do, what :func:`save_model` cannot write: a ``TransformerBridge``
    (its config is TransformerLens's, and loading builds a mi_margin model from the file's) and
    weights in a dtype a config cannot name (``model.half()``)."""
    refuse_bridge(model, "mm.save", "save that (mm.load gives it back; .to_bridge() converts it "
                  "again)")
    dtype = model.cfg.dtype
    if dtype not in DTYPES.values():
        raise MiMarginError(f"mm.save writes models in {list(DTYPES)}; this model's weights are "
                            f"{dtype}: convert them first (model.float() or model.double())")


def build_model(cfg_dict: dict[str, Any]) -> Any:
    """A freshly initialised model from a config dict."""
    cfg = config_from_dict(cfg_dict)
    if isinstance(cfg, TransformerConfig):
        return HookedOneLayerTransformer(cfg)
    return HookedMLP(cfg)


def load_state(model: Any, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load ``tensors`` into ``model``, or raise :class:`CheckpointError` naming what does not match."""
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    wrong = [f"{k}: {tuple(tensors[k].shape)} {tensors[k].dtype} (expected {tuple(v.shape)} "
             f"{v.dtype})" for k, v in want.items()
             if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)]
    if missing or extra or wrong:
        raise CheckpointError(f"{path} does not hold the weights of its model config: missing "
                              f"{missing}, unexpected {extra}, wrong shape/dtype {wrong}")
    model.load_state_dict(tensors, strict=True)


def model_from_meta(meta: dict[str, Any], path: str | Path) -> Any:
    """A fresh model built from a file's ``meta["config"]`` (bad config: :class:`CheckpointError`)."""
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} holds {meta.get('format')!r}, not a model ({FORMAT})")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has no model config in its metadata")
    try:
        return build_model(config)
    except (MiMarginError, TypeError) as err:
        raise CheckpointError(f"{path} holds an invalid model config: {err}") from err


def read_model(path: str | Path) -> tuple[Any, dict[str, Any], str]:
    """(model, meta, digest) of a file written by :func:`save_model`; the model is in eval mode
    (TransformerLens's patching and analysis tools refuse models in training mode; ours have no
    dropout, so the mode changes nothing they compute)."""
    tensors, meta, digest = read_tensors(path)
    model = model_from_meta(meta, path)
    load_state(model, tensors, path)
    return model.eval(), meta, digest


def load_model(path: str | Path) -> Any:
    """Load a model saved by :func:`save_model`, bit-exact, in eval mode."""
    return read_model(path)[0]
