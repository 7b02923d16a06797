"""Export a :class:`HookedOneLayerTransformer` to TransformerLens 4's own ``TransformerBridge``.

The state dict already uses TransformerLens's legacy names, so ``convert_tl_checkpoint`` maps it to
the bridge layout. Activations the bridge lacks (quadratic, x^d) are swapped in
after booting on the MLP's wrapped component.
"""

from __future__ import annotations

from typing import Any

from mi_margin._tl import bridge_config, convert_tl_checkpoint, transformer_bridge
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import activation


def to_bridge(model: Any) -> Any:
    """A ``TransformerBridge`` with ``model``'s weights; logits and hooks match to float tolerance.

    Example:
        >>> bridge = model.to_bridge()                       # doctest: +SKIP
        >>> torch.allclose(bridge(tokens), model(tokens), atol=1e-5)   # doctest: +SKIP
        True
    """
    cfg = model.cfg
    if getattr(model, "model_kind", "") != "transformer":
        raise MiMarginError("only HookedOneLayerTransformer has a TransformerBridge view")
    if cfg.attn_rate != 1:
        raise MiMarginError(f"TransformerBridge has no attention rate (Zhong et al.'s mixture with "
                            f"constant attention); this model has attn_rate={cfg.attn_rate}, so only "
                            "attn_rate=1 models have a bridge view")
    dtype = model.W_E.dtype
    bcfg = bridge_config(
        d_model=cfg.d_model, d_head=cfg.d_head, n_heads=cfg.n_heads, n_layers=1, n_ctx=cfg.n_ctx,
        d_mlp=cfg.d_mlp, d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab_out,
        act_fn="gelu" if cfg.act_fn == "gelu" else "relu", normalization_type=None,
        attention_dir=cfg.attention_dir, attn_only=cfg.attn_only,
        positional_embedding_type="standard", seed=0, device="cpu")
    bridge = transformer_bridge().boot_native(bcfg, dtype=dtype)
    if cfg.act_fn in ("quadratic", "power") and not cfg.attn_only:
        bridge.blocks[0].mlp.original_component.act = activation(cfg.act_fn, cfg.degree)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bridge.load_state_dict(convert_tl_checkpoint(state, bcfg), strict=True)
    return bridge.to(dtype)
