"""Export a :class:`HookedOneLayerTransformer` to TransformerLens 4's own ``TransformerBridge``.

The state dict already uses TransformerLens's legacy names, so ``convert_tl_checkpoint`` maps it to
the bridge layout. Activations the bridge lacks (quadratic, x^d) are swapped in
after booting on the MLP's wrapped component.

The bridge comes back in eval mode (as ``mm.load`` and ``mm.train`` return models, so
``transformer_lens.patching`` runs on it), with the model's tokenizer (``bridge.to_str_tokens``
gives ``["12", "5", "="]``), and reads the loss as the model does: TransformerLens's
``return_type="loss"`` is the next-token loss of a text, which here would score the operands and
'=' as targets; the bridge instead takes ``labels=`` (the answers, [B]) and scores the logits of
the last position, and refuses without them.
"""

from __future__ import annotations

import functools
from typing import Any

from mi_margin._tl import bridge_config, convert_tl_checkpoint, transformer_bridge
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import activation
from mi_margin.models.tl_interface import finish


@functools.cache
def answer_bridge_class() -> type:
    """``TransformerBridge`` whose loss is the answer's, read at the last position (built on first
    use: importing the bridge is slow)."""

    class AnswerBridge(transformer_bridge()):  # type: ignore[misc]
        """A ``TransformerBridge`` of a mi_margin model: ``return_type="loss"``/``"both"`` need
        ``labels=`` (the answers [B]) and score the last position, as the model itself does."""

        def forward(self, input: Any, return_type: str | None = "logits", *args: Any,
                    loss_per_token: bool = False, labels: Any = None, **kwargs: Any) -> Any:
            if return_type not in ("loss", "both"):
                return super().forward(input, return_type, *args, loss_per_token=loss_per_token,
                                       labels=labels, **kwargs)
            logits = super().forward(input, "logits", *args, **kwargs)
            return finish(logits, logits[:, -1], return_type, labels, loss_per_token)

    return AnswerBridge


def to_bridge(model: Any) -> Any:
    """A ``TransformerBridge`` with ``model``'s weights, in eval mode; logits and hooks match to
    float tolerance; the loss needs ``labels=`` as the model's does (see the module docstring).

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
        positional_embedding_type="standard", default_prepend_bos=False, seed=0, device="cpu")
    bridge = transformer_bridge().boot_native(bcfg, dtype=dtype)
    bridge.__class__ = answer_bridge_class()
    if cfg.act_fn in ("quadratic", "power") and not cfg.attn_only:
        bridge.blocks[0].mlp.original_component.act = activation(cfg.act_fn, cfg.degree)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bridge.load_state_dict(convert_tl_checkpoint(state, bcfg), strict=True)
    bridge.tokenizer = model.tokenizer
    return bridge.to(dtype).eval()
