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

The way back, ``HookedOneLayerTransformer.from_bridge(bridge)``, reads the weights through
TransformerLens's own export of TransformerLens-layout weights (``bridge.tl_parameters()``) and
the config from :func:`native_config`: a bridge made by :func:`to_bridge` carries the model's
config (:data:`RECORD`), so activations the bridge cannot name (quadratic, x^d) come back; any
other bridge (``TransformerBridge.boot_native``, a TransformerLens checkpoint) converts when its
own config describes a model of this package, and is refused with the reason otherwise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor

from mi_margin._tl import bridge_config, convert_tl_checkpoint, transformer_bridge
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import activation
from mi_margin.models.compat import check_answer_tokens, is_bridge
from mi_margin.models.config import TransformerConfig
from mi_margin.models.tl_interface import TransformerInput, finish

#: the attribute in which :func:`to_bridge` records the model's config on the bridge
RECORD = "mi_margin_cfg"
#: the activations a bridge names that a HookedOneLayerTransformer has under the same name
BRIDGE_ACTS = ("relu", "gelu")
#: what the config of a bridge not made by :func:`to_bridge` must say for a
#: HookedOneLayerTransformer to compute the same function: (the field a message names, what is
#: needed, test of the config). ``models.legacy`` checks a stored TransformerLens config with it.
NATIVE_NEEDS: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    ("architecture", "architecture='TransformerLensNative' (TransformerBridge.boot_native)",
     lambda c: c.architecture == "TransformerLensNative"),
    ("n_layers", "n_layers=1", lambda c: c.n_layers == 1),
    ("normalization_type", "normalization_type=None (no LayerNorm)",
     lambda c: c.normalization_type is None),
    ("final_rms", "final_rms=False", lambda c: not c.final_rms),
    ("positional_embedding_type", "positional_embedding_type='standard'",
     lambda c: c.positional_embedding_type == "standard"),
    ("act_fn", f"act_fn in {BRIDGE_ACTS}", lambda c: c.act_fn in BRIDGE_ACTS),
    ("gated_mlp", "gated_mlp=False", lambda c: not c.gated_mlp),
    ("parallel_attn_mlp", "parallel_attn_mlp=False", lambda c: not c.parallel_attn_mlp),
    ("n_key_value_heads", "n_key_value_heads=None or n_heads",
     lambda c: c.n_key_value_heads in (None, c.n_heads)),
    ("attn_scale", "attention scaled by sqrt(d_head) (attn_scale=-1)",
     lambda c: not (c.use_attn_scale and c.attn_scale > 0)
     or math.isclose(c.attn_scale, math.sqrt(c.d_head))),
    ("attn_scores_soft_cap", "no soft cap (attn_scores_soft_cap <= 0)",
     lambda c: c.attn_scores_soft_cap <= 0),
    ("output_logits_soft_cap", "no soft cap (output_logits_soft_cap <= 0)",
     lambda c: c.output_logits_soft_cap <= 0),
)


def unmet_needs(cfg: Any, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(field, what is needed) of every :data:`NATIVE_NEEDS` entry ``cfg`` fails, except the
    entries of the fields in ``skip``."""
    skip = set(skip)
    return [(field, need) for field, need, holds in NATIVE_NEEDS
            if field not in skip and not holds(cfg)]


@functools.cache
def answer_bridge_class() -> type:
    """``TransformerBridge`` whose loss is the answer's, read at the last position (built on first
    use: importing the bridge is slow)."""

    class AnswerBridge(TransformerInput, transformer_bridge()):  # type: ignore[misc]
        """A ``TransformerBridge`` of a mi_margin model that reads its inputs as the model does:
        ``to_tokens`` and the input checks are the model's (:class:`TransformerInput`: tokens
        [a1, ..., ak, '='], "3 + 5" gets its '='), ``return_type="loss"``/``"both"`` need
        ``labels=`` (the answers [B]) and score the last position, and
        ``tokens_to_residual_directions`` refuses tokens without an unembedding column."""

        def to_tokens(self, input: Any, prepend_bos: bool | None = None, *_: Any,
                      **__: Any) -> Tensor:
            """The model's tokens of ``input`` (a string "12 + 5", a list of operands or a
            tensor, checked); TransformerLens's padding and truncation options change nothing
            on one row of fixed length, and there is no BOS token to prepend."""
            if prepend_bos:
                raise MiMarginError("this model has no BOS token: its inputs are [a1, ..., ak, "
                                    "'='] (pass prepend_bos=False or leave it unset)")
            return super().to_tokens(input)

        def forward(self, input: Any, return_type: str | None = "logits", *args: Any,
                    loss_per_token: bool = False, labels: Any = None, **kwargs: Any) -> Any:
            if kwargs.get("start_at_layer") is None:    # else input is the residual stream
                input = self.to_tokens(input)
            if return_type not in ("loss", "both"):
                return super().forward(input, return_type, *args, loss_per_token=loss_per_token,
                                       labels=labels, **kwargs)
            logits = super().forward(input, "logits", *args, **kwargs)
            return finish(logits, logits[:, -1], return_type, labels, loss_per_token)

        def tokens_to_residual_directions(self, tokens: Any) -> Tensor:
            """TransformerLens's ``W_U[:, tokens]``, refusing '=' and other tokens without an
            unembedding column by name, as the model does."""
            ids = self.to_single_token(tokens) if isinstance(tokens, str) else tokens
            check_answer_tokens(self.cfg, ids)
            return super().tokens_to_residual_directions(tokens)

    return AnswerBridge


def to_bridge(model: Any) -> Any:
    """A ``TransformerBridge`` with ``model``'s weights, in eval mode; the loss needs ``labels=``
    as the model's does (see the module docstring).

    The logits and the hooks the model has match to float tolerance, except
    ``blocks.0.attn.hook_attn_scores``: TransformerLens 4's ``boot_native`` bridge fires it with
    the post-softmax pattern (the values of ``hook_pattern``), not the pre-softmax scores, and
    discards an edit made there (with a warning). Read or patch the scores on the model itself
    (``HookedOneLayerTransformer.from_bridge(bridge)``). tests/models/test_bridge_edges.py pins
    this, so a TransformerLens release that changes it fails a test.

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
    setattr(bridge, RECORD, cfg)
    if cfg.act_fn in ("quadratic", "power") and not cfg.attn_only:
        bridge.blocks[0].mlp.original_component.act = activation(cfg.act_fn, cfg.degree)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    bridge.load_state_dict(convert_tl_checkpoint(state, bcfg), strict=True)
    bridge.tokenizer = model.tokenizer
    return bridge.to(dtype, print_details=False).eval()


# -- the way back: HookedOneLayerTransformer.from_bridge --------------------------------------------
def tl_weights(bridge: Any) -> dict[str, Tensor]:
    """``bridge``'s weights under TransformerLens's names and layout (``embed.W_E``,
    ``blocks.0.attn.W_Q`` [H, d_model, d_head], ...), detached copies; a :class:`MiMarginError`
    for anything but a ``TransformerBridge``."""
    if not is_bridge(bridge):
        raise MiMarginError(f"expected a TransformerLens TransformerBridge (e.g. model.to_bridge()), "
                            f"got {type(bridge).__name__}")
    return {name: value.detach().clone() for name, value in bridge.tl_parameters().items()}


def native_config(bridge: Any, weights: dict[str, Tensor] | None = None) -> TransformerConfig:
    """The config of the HookedOneLayerTransformer that computes what ``bridge`` computes.

    A bridge made by :func:`to_bridge` gives back the model's config (with the dtype of its
    weights now, and biases or positional embeddings turned on if training the bridge made the
    model's zero ones non-zero). Any other bridge needs a config meeting :data:`NATIVE_NEEDS`
    and the activation its config names; its biases are kept as parameters when any is non-zero
    (the seed, which only names an initialization, is 0: the weights are the bridge's).
    ``weights``: the bridge's :func:`tl_weights`, when the caller has exported them already.

    Example:
        >>> import mi_margin as mm
        >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig(d_model=8, d_head=2,
        ...                                                           act_fn="quadratic"))
        >>> native_config(model.to_bridge()) == model.cfg
        True
    """
    weights = tl_weights(bridge) if weights is None else weights
    dtype = weights["embed.W_E"].dtype
    biased = any(bool(value.any()) for name, value in weights.items()
                 if name.rsplit(".", 1)[-1].startswith("b_"))
    recorded = getattr(bridge, RECORD, None)
    if recorded is not None:
        return recorded.replace(dtype=dtype, use_biases=recorded.use_biases or biased,
                                use_pos_embed=recorded.use_pos_embed
                                or bool(weights["pos_embed.W_pos"].any()))
    cfg = bridge.cfg
    wrong = [need for _, need in unmet_needs(cfg)]
    if wrong:
        raise MiMarginError(f"this TransformerBridge has no HookedOneLayerTransformer twin: it needs "
                            f"{'; '.join(wrong)} (its config: n_layers={cfg.n_layers}, "
                            f"normalization_type={cfg.normalization_type!r}, "
                            f"act_fn={cfg.act_fn!r}, architecture={cfg.architecture!r})")
    _check_activation(bridge)
    return TransformerConfig(
        d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab_out if cfg.d_vocab_out > 0 else cfg.d_vocab,
        n_ctx=cfg.n_ctx, d_model=cfg.d_model, n_heads=cfg.n_heads, d_head=cfg.d_head,
        d_mlp=cfg.d_mlp, act_fn=cfg.act_fn, attention_dir=cfg.attention_dir,
        attn_only=cfg.attn_only, use_biases=biased, dtype=dtype)


def _check_activation(bridge: Any) -> None:
    """Refuse a bridge whose MLP runs another function than its config's ``act_fn`` names (an
    activation swapped in by hand, which only :func:`to_bridge` records)."""
    if bridge.cfg.attn_only:
        return
    act = bridge.blocks[0].mlp.original_component.act
    if act is not activation(bridge.cfg.act_fn):
        raise MiMarginError(f"this TransformerBridge's MLP runs {act!r}, not the "
                            f"act_fn={bridge.cfg.act_fn!r} of its config; an activation swapped "
                            "into a bridge converts back only on bridges made by model.to_bridge() "
                            "(which record the model's config)")


def native_state(weights: dict[str, Tensor], names: Iterable[str]) -> dict[str, Tensor]:
    """A bridge's TransformerLens-layout ``weights`` (:func:`tl_weights`) under ``names`` (a
    native model's state-dict keys; an attention-only bridge's zero MLP weights are left out)."""
    missing = [name for name in names if name not in weights]
    if missing:
        raise MiMarginError(f"the TransformerBridge exports no {missing} (its weights: "
                            f"{sorted(weights)})")
    return {name: weights[name] for name in names}
