"""A one-layer transformer with TransformerLens hook and weight names (Nanda et al. 2023's model).

Weights follow TransformerLens's legacy layout (``embed.W_E``, ``pos_embed.W_pos``,
``blocks.0.attn.W_Q`` [H, d_model, d_head], ``blocks.0.mlp.W_in`` [d_model, d_mlp], ``unembed.W_U``...)
so that ``transformer_lens``'s ``convert_tl_checkpoint`` turns a checkpoint into a ``TransformerBridge``
(:meth:`HookedOneLayerTransformer.to_bridge`). Disabled biases are zero buffers with the same names.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from mi_margin._tl import CachingRoot, FactoredMatrix, HookPoint
from mi_margin.errors import MiMarginError
from mi_margin.models import fast_paths
from mi_margin.models.activations import activation
from mi_margin.models.bridge import native_config, native_state, tl_weights, to_bridge
from mi_margin.models.compat import check_answer_tokens, is_bridge
from mi_margin.models.config import TransformerConfig
from mi_margin.models.tl_interface import (
    TLInterface,
    TransformerInput,
    check_return_type,
    finish,
    operand_names,
    own_config,
)
from mi_margin.models.tokenizer import OperandTokenizer


def _weight(gen: torch.Generator, shape: tuple[int, ...], fan: int, dtype: torch.dtype) -> nn.Parameter:
    """Nanda et al.'s init: N(0, 1) / sqrt(fan)."""
    return nn.Parameter(torch.randn(shape, generator=gen, dtype=dtype) / math.sqrt(fan))


def _bias(module: nn.Module, name: str, shape: tuple[int, ...], trainable: bool,
          dtype: torch.dtype) -> None:
    """A zero bias: a parameter when biases are on, else a persistent zero buffer (same key)."""
    zeros = torch.zeros(shape, dtype=dtype)
    if trainable:
        module.register_parameter(name, nn.Parameter(zeros))
    else:
        module.register_buffer(name, zeros)


class Embed(nn.Module):
    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        self.W_E = _weight(gen, (cfg.d_vocab, cfg.d_model), cfg.d_model, cfg.dtype)

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.W_E)


class PosEmbed(nn.Module):
    W_pos: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        W_pos = torch.randn((cfg.n_ctx, cfg.d_model), generator=gen, dtype=cfg.dtype)
        if cfg.use_pos_embed:
            self.W_pos = nn.Parameter(W_pos / math.sqrt(cfg.d_model))
        else:
            self.register_buffer("W_pos", torch.zeros_like(W_pos))

    def forward(self, tokens: Tensor) -> Tensor:
        B, n = tokens.shape
        return self.W_pos[:n].expand(B, n, -1)


class Unembed(nn.Module):
    b_U: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        self.W_U = _weight(gen, (cfg.d_model, cfg.d_vocab_out), cfg.d_vocab, cfg.dtype)
        _bias(self, "b_U", (cfg.d_vocab_out,), cfg.use_biases, cfg.dtype)

    def forward(self, resid: Tensor) -> Tensor:
        return resid @ self.W_U + self.b_U


class Attention(nn.Module):
    """Multi-head attention with TransformerLens's hooks.

    With ``final_pos_only`` only the last query is computed (the loss reads only the last
    position), so ``hook_q``, ``hook_attn_scores``, ``hook_pattern`` and ``hook_z`` have one query
    position; keys and values keep all positions. ``hook_pattern`` holds the attention actually
    applied (with ``cfg.attn_rate`` < 1, Zhong et al.'s mixture with constant attention).
    ``hook_result`` (per-head outputs [B, q, H, d_model]) runs only after
    ``model.set_use_attn_result(True)``, as in TransformerLens.
    """

    b_Q: Tensor
    b_K: Tensor
    b_V: Tensor
    b_O: Tensor
    mask: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        self.cfg = cfg
        H, d, e, dt = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.dtype
        self.W_Q = _weight(gen, (H, d, e), d, dt)
        self.W_K = _weight(gen, (H, d, e), d, dt)
        self.W_V = _weight(gen, (H, d, e), d, dt)
        self.W_O = _weight(gen, (H, e, d), d, dt)
        for name, shape in [("b_Q", (H, e)), ("b_K", (H, e)), ("b_V", (H, e)), ("b_O", (d,))]:
            _bias(self, name, shape, cfg.use_biases, dt)
        mask = torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()
        self.hook_result = HookPoint()

    def _project(self, x: Tensor, W: Tensor, b: Tensor) -> Tensor:
        """x [..., d_model] → [..., H, d_head] as one matmul."""
        H, d, e = W.shape
        return (x @ W.permute(1, 0, 2).reshape(d, H * e)).unflatten(-1, (H, e)) + b

    def forward(self, x: Float[Tensor, "B pos d_model"], final_pos_only: bool = False
                ) -> Float[Tensor, "B q d_model"]:
        n = x.shape[1]
        xq = x[:, -1:] if final_pos_only else x
        q = self.hook_q(self._project(xq, self.W_Q, self.b_Q))          # B q H e
        k = self.hook_k(self._project(x, self.W_K, self.b_K))           # B k H e
        v = self.hook_v(self._project(x, self.W_V, self.b_V))
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.cfg.d_head)
        causal = self.cfg.attention_dir == "causal" and not final_pos_only
        if causal:
            scores = scores.masked_fill(~self.mask[:n, :n], float("-inf"))
        pattern = self.hook_attn_scores(scores).softmax(dim=-1)
        if self.cfg.attn_rate != 1:
            pattern = self._mix_constant(pattern, n, causal)
        pattern = self.hook_pattern(pattern)
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        if self.cfg.use_attn_result:
            result = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))
            return result.sum(-2) + self.b_O
        H, e, d = self.W_O.shape
        return z.flatten(-2) @ self.W_O.reshape(H * e, d) + self.b_O

    def _mix_constant(self, pattern: Tensor, n: int, causal: bool) -> Tensor:
        """Zhong et al.'s ``α·M + (1 − α)·J``, J = 1 on every key the query may attend to."""
        alpha = self.cfg.attn_rate
        allowed = self.mask[:n, :n] if causal else torch.ones_like(pattern[0, 0], dtype=torch.bool)
        return alpha * pattern + (1 - alpha) * allowed.to(pattern.dtype)

    @property
    def QK(self) -> FactoredMatrix:
        """Per-head QK circuit W_Q W_K^T, FactoredMatrix [H, d_model, d_model]."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """Per-head OV circuit W_V W_O, FactoredMatrix [H, d_model, d_model]."""
        return FactoredMatrix(self.W_V, self.W_O)


class MLP(nn.Module):
    b_in: Tensor
    b_out: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        dt = cfg.dtype
        self.W_in = _weight(gen, (cfg.d_model, cfg.d_mlp), cfg.d_model, dt)
        self.W_out = _weight(gen, (cfg.d_mlp, cfg.d_model), cfg.d_model, dt)
        _bias(self, "b_in", (cfg.d_mlp,), cfg.use_biases, dt)
        _bias(self, "b_out", (cfg.d_model,), cfg.use_biases, dt)
        self.act = activation(cfg.act_fn, cfg.act_degree)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        return self.hook_post(self.act(pre)) @ self.W_out + self.b_out


class TransformerBlock(nn.Module):
    mlp: MLP
    #: the block writes one residual stream (TransformerLens's logit lens checks this)
    hook_out_is_single_residual_stream = True
    hook_resid_pre: HookPoint
    hook_attn_out: HookPoint
    hook_resid_mid: HookPoint
    hook_mlp_out: HookPoint
    hook_resid_post: HookPoint

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        self.cfg = cfg
        self.attn = Attention(cfg, gen)
        if not cfg.attn_only:
            self.mlp = MLP(cfg, gen)
        for name in ["hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out",
                     "hook_resid_post"]:
            setattr(self, name, HookPoint())

    def forward(self, x: Tensor, final_pos_only: bool = False) -> Tensor:
        x = self.hook_resid_pre(x)
        attn_out = self.hook_attn_out(self.attn(x, final_pos_only))
        return self.after_attention((x[:, -1:] if final_pos_only else x) + attn_out)

    def after_attention(self, resid: Tensor) -> Tensor:
        """The rest of the block, from the residual stream after attention (resid_mid)."""
        if self.cfg.attn_only:
            return self.hook_resid_post(resid)
        resid = self.hook_resid_mid(resid)
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(resid)))


class HookedOneLayerTransformer(TransformerInput, TLInterface, CachingRoot):
    """One-layer transformer on tokens ``[a1, ..., ak, '=']`` with TransformerLens hooks.

    ``model(tokens)`` returns logits for every position, float [B, pos, d_vocab_out];
    ``model(tokens, final_pos_only=True)`` computes only what the last position needs (the query,
    MLP and unembedding of the last position) and returns [B, 1, d_vocab_out] — the same numbers
    as the last position of the full pass, about twice as fast. ``run_with_cache`` returns a
    TransformerLens ``ActivationCache`` (``cache["pattern", 0]``, ``cache.decompose_resid()``...).
    As in TransformerLens, ``model(tokens, return_type="loss", labels=...)`` returns the loss
    (of the answer at the last position), ``"both"`` (logits, loss) and ``None`` nothing, and
    ``transformer_lens.patching`` runs on the model once it is in eval mode (``mm.load`` returns it
    so). Tokens that are not ``[a1, ..., ak, '=']`` raise :class:`~mi_margin.MiMarginError`.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=16))
        >>> logits, cache = model.run_with_cache(task.tokens[:5])
        >>> tuple(cache["pattern", 0].shape)
        (5, 4, 3, 3)
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg = own_config(cfg, TransformerConfig, "HookedOneLayerTransformer")
        gen = torch.Generator().manual_seed(cfg.seed)
        self.embed = Embed(cfg, gen)
        self.pos_embed = PosEmbed(cfg, gen)
        self.blocks = nn.ModuleList([TransformerBlock(cfg, gen)])
        self.unembed = Unembed(cfg, gen)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.setup()

    model_kind = "transformer"

    def forward(self, tokens: Int[Tensor, "B pos"], return_type: str | None = "logits", *,
                labels: Tensor | None = None, loss_per_token: bool = False,
                final_pos_only: bool = False) -> Any:
        """Logits [B, q, d_vocab_out] (q = pos, or 1 with ``final_pos_only``), or what
        ``return_type`` asks for ("loss"/"both" need ``labels``, the answers [B])."""
        check_return_type(return_type, labels, loss_per_token)
        self._check_input(tokens)
        x = self.hook_embed(self.embed(tokens))
        x = x + self.hook_pos_embed(self.pos_embed(tokens))
        logits = self.unembed(self.block(x, final_pos_only))
        if return_type == "logits":
            return logits
        return finish(logits, logits[:, -1], return_type, labels, loss_per_token)

    def last_logits(self, tokens: Int[Tensor, "B pos"]) -> Float[Tensor, "B d_vocab_out"]:
        """Logits at the last position, [B, d_vocab_out] (what training and evaluation call): from
        per-(position, token) attention tables when every example ends with the same token and no
        hook sits on a point they skip (models.fast_paths), else by ``final_pos_only``."""
        if fast_paths.transformer_applies(self, tokens):
            self._check_input(tokens)
            return fast_paths.transformer_logits(self, tokens)
        return self(tokens, final_pos_only=True)[:, -1]

    # -- inputs (see models.tl_interface: TransformerInput reads and checks them) --------------
    @property
    def tokenizer(self) -> OperandTokenizer:
        """Ids ↔ strings (``"12"``, ``"="``) for TransformerLens code that decodes tokens."""
        return OperandTokenizer(self.eq_token, self.eq_token)

    def _token_label(self, position: int, value: float) -> str:
        if position == self.cfg.n_ctx - 1:
            return "="
        return f"{operand_names(self.cfg.n_ctx - 1)[position]}={int(value)}"

    # -- TransformerLens switches -----------------------------------------------------------------
    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Compute per-head outputs at ``blocks.0.attn.hook_result`` [B, pos, H, d_model]."""
        self.cfg.use_attn_result = use_attn_result

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Not offered: per-head Q/K/V inputs exist to patch paths from one layer's heads into a
        later layer's, and a one-layer model has no later layer."""
        raise MiMarginError("a one-layer transformer has no head-to-head paths, so split Q/K/V "
                            "inputs (direct path patching) do not apply; patch hook_z, hook_q/k/v "
                            "or hook_pattern with transformer_lens.patching instead")

    set_use_attn_in = set_use_split_qkv_input

    def all_head_labels(self) -> list[str]:
        """``["L0H0", "L0H1", ...]``, TransformerLens's names of the heads."""
        return [f"L0H{h}" for h in range(self.cfg.n_heads)]

    @property
    def block(self) -> TransformerBlock:
        """The single transformer block (``blocks[0]``)."""
        return cast(TransformerBlock, self.blocks[0])

    # -- TransformerLens-style weight access (stacked over the single layer) --------------------
    @property
    def W_E(self) -> Tensor:
        return self.embed.W_E

    @property
    def W_pos(self) -> Tensor:
        return self.pos_embed.W_pos

    @property
    def W_U(self) -> Tensor:
        return self.unembed.W_U

    @property
    def b_U(self) -> Tensor:
        return self.unembed.b_U

    def _stack(self, module: str, name: str) -> Tensor:
        return getattr(getattr(self.block, module), name)[None]

    W_Q = property(lambda self: self._stack("attn", "W_Q"))
    W_K = property(lambda self: self._stack("attn", "W_K"))
    W_V = property(lambda self: self._stack("attn", "W_V"))
    W_O = property(lambda self: self._stack("attn", "W_O"))
    b_Q = property(lambda self: self._stack("attn", "b_Q"))
    b_K = property(lambda self: self._stack("attn", "b_K"))
    b_V = property(lambda self: self._stack("attn", "b_V"))
    b_O = property(lambda self: self._stack("attn", "b_O"))
    W_in = property(lambda self: self._stack("mlp", "W_in"))
    W_out = property(lambda self: self._stack("mlp", "W_out"))
    b_in = property(lambda self: self._stack("mlp", "b_in"))
    b_out = property(lambda self: self._stack("mlp", "b_out"))

    @property
    def QK(self) -> FactoredMatrix:
        """Per-head QK circuit, FactoredMatrix [1, H, d_model, d_model]."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """Per-head OV circuit, FactoredMatrix [1, H, d_model, d_model]."""
        return FactoredMatrix(self.W_V, self.W_O)

    # -- what ActivationCache.logit_attrs / get_full_resid_decomposition call ------------------
    def tokens_to_residual_directions(self, tokens: Tensor | int | str) -> Tensor:
        """Unembedding directions of output tokens (answers; a string such as ``"12"`` too),
        [..., d_model], as TransformerLens's ``W_U[:, tokens]``; a token without an unembedding
        column ('=' when ``d_vocab_out`` is the task's p answers) is refused by name."""
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        check_answer_tokens(self.cfg, tokens)
        return self.W_U[:, tokens].movedim(0, -1)

    def accumulated_bias(self, layer: int, mlp_input: bool = False,
                         include_mlp_biases: bool = True) -> Tensor:
        """Sum of the output biases written to the residual stream before ``layer``."""
        bias = torch.zeros(self.cfg.d_model, dtype=self.W_E.dtype)
        if layer >= 1 or mlp_input:
            bias = bias + self.block.attn.b_O
        if layer >= 1 and include_mlp_biases and not self.cfg.attn_only:
            bias = bias + self.block.mlp.b_out
        return bias

    def to_bridge(self):
        """The same weights as a TransformerLens 4 ``TransformerBridge`` (see models.bridge)."""
        return to_bridge(self)

    @classmethod
    def from_bridge(cls, bridge: Any) -> HookedOneLayerTransformer:
        """The inverse of :meth:`to_bridge`: a model with ``bridge``'s weights, in eval mode.

        The weights come from TransformerLens's own export (``bridge.tl_parameters()``), the
        config from :func:`~mi_margin.models.bridge.native_config`: a bridge made by
        :meth:`to_bridge` round-trips exactly (state dicts equal bit for bit, activation
        included); another bridge (``TransformerBridge.boot_native``) converts when its config
        describes such a model, and a LayerNorm, several layers or an activation without a
        twin here are refused with a :class:`MiMarginError` naming them.

        Example:
            >>> import torch, mi_margin as mm
            >>> model = mm.HookedOneLayerTransformer(mm.TransformerConfig(d_model=8, d_head=2))
            >>> back = mm.HookedOneLayerTransformer.from_bridge(model.to_bridge())
            >>> all(torch.equal(a, b) for a, b in zip(back.state_dict().values(),
            ...                                       model.state_dict().values()))
            True
        """
        weights = tl_weights(bridge)                 # exported once, read by both
        model = cls(native_config(bridge, weights))
        model.load_state_dict(native_state(weights, model.state_dict()))
        return model.eval()


def native(model: Any) -> Any:
    """A ``TransformerBridge`` as its HookedOneLayerTransformer twin (same weights, converted by
    :meth:`HookedOneLayerTransformer.from_bridge`); anything else as it is. What reads the native
    weight layout or methods (``last_logits``, ``cfg.degree``) calls this once on its way in, so
    that it accepts a bridge in the model's place."""
    return HookedOneLayerTransformer.from_bridge(model) if is_bridge(model) else model
