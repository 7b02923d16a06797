"""Hooked models: a one-layer transformer and a one-hidden-layer MLP, TransformerLens 4 compatible."""

from mi_margin.models.config import MLPConfig, TransformerConfig, config_from_dict
from mi_margin.models.io import build_model, load_model, save_model
from mi_margin.models.legacy import load_tl_checkpoint
from mi_margin.models.mlp import HookedMLP
from mi_margin.models.tl_interface import TLInterface
from mi_margin.models.transformer import HookedOneLayerTransformer

__all__ = ["HookedMLP", "HookedOneLayerTransformer", "MLPConfig", "TLInterface", "TransformerConfig",
           "build_model", "config_from_dict", "load_model", "load_tl_checkpoint", "save_model"]
