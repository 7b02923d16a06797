"""Save and load models as one safetensors file: weights plus the config JSON in its metadata.

No pickle. A SHA-256 of the tensor bytes is stored too, so truncation and bit rot give a clear
:class:`~mi_margin.errors.CheckpointError` instead of a silently different model. Writes go to a
temporary file in the same folder that is then renamed, so a failed save never corrupts an existing
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mi_margin.errors import CheckpointError
from mi_margin.models.config import TransformerConfig, config_from_dict

FORMAT = "mi_margin.model/1"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``tensors`` (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``tensors`` with JSON ``meta`` and a digest to a safetensors file."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {"meta": json.dumps(meta), "sha256": tensors_digest(tensors)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_tensors`, checking its digest."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file "
                              f"(truncated or corrupted?): {err}") from err
    if "sha256" not in metadata or "meta" not in metadata:
        raise CheckpointError(f"{path} was not written by mi_margin (no metadata)")
    if tensors_digest(tensors) != metadata["sha256"]:
        raise CheckpointError(f"{path} is corrupted: its tensors do not match the stored SHA-256")
    return tensors, json.loads(metadata["meta"])


def save_model(model: Any, path: str | Path) -> None:
    """Save a model's weights and config to ``path`` (a ``.safetensors`` file)."""
    save_tensors(path, dict(model.state_dict()), {"format": FORMAT, "config": model.cfg.to_dict()})


def build_model(cfg_dict: dict[str, Any]) -> Any:
    """A freshly initialised model from a config dict."""
    from mi_margin.models.mlp import HookedMLP
    from mi_margin.models.transformer import HookedOneLayerTransformer

    cfg = config_from_dict(cfg_dict)
    if isinstance(cfg, TransformerConfig):
        return HookedOneLayerTransformer(cfg)
    return HookedMLP(cfg)


def load_model(path: str | Path) -> Any:
    """Load a model saved by :func:`save_model`, bit-exact, in eval mode (TransformerLens's
    patching and analysis tools refuse models in training mode; ours have no dropout, so the mode
    changes nothing they compute)."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} holds {meta.get('format')!r}, not a model ({FORMAT})")
    model = build_model(meta["config"])
    model.load_state_dict(tensors, strict=True)
    return model.eval()
