"""A one-layer transformer with TransformerLens hook and weight names (Nanda et al. 2023's model).

Weights follow TransformerLens's legacy layout (``embed.W_E``, ``pos_embed.W_pos``,
``blocks.0.attn.W_Q`` [H, d_model, d_head], ``blocks.0.mlp.W_in`` [d_model, d_mlp], ``unembed.W_U``...)
so that ``transformer_lens``'s ``convert_tl_checkpoint`` turns a checkpoint into a ``TransformerBridge``
(:meth:`HookedOneLayerTransformer.to_bridge`). Disabled biases are zero buffers with the same names.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from mi_margin._tl import CachingRoot, FactoredMatrix, HookPoint
from mi_margin.models import fast_paths
from mi_margin.models.activations import activation
from mi_margin.models.config import TransformerConfig


def _dtype(cfg: TransformerConfig) -> torch.dtype:
    return torch.float64 if cfg.dtype == "float64" else torch.float32


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
        self.W_E = _weight(gen, (cfg.d_vocab, cfg.d_model), cfg.d_model, _dtype(cfg))


class PosEmbed(nn.Module):
    W_pos: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        W_pos = torch.randn((cfg.n_ctx, cfg.d_model), generator=gen, dtype=_dtype(cfg))
        if cfg.use_pos_embed:
            self.W_pos = nn.Parameter(W_pos / math.sqrt(cfg.d_model))
        else:
            self.register_buffer("W_pos", torch.zeros_like(W_pos))


class Unembed(nn.Module):
    b_U: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        self.W_U = _weight(gen, (cfg.d_model, cfg.d_vocab_out), cfg.d_vocab, _dtype(cfg))
        _bias(self, "b_U", (cfg.d_vocab_out,), cfg.use_biases, _dtype(cfg))


class Attention(nn.Module):
    """Multi-head attention with TransformerLens's hooks.

    With ``final_pos_only`` only the last query is computed (the loss reads only the last
    position), so ``hook_q``, ``hook_attn_scores``, ``hook_pattern`` and ``hook_z`` have one query
    position; keys and values keep all positions.
    """

    b_Q: Tensor
    b_K: Tensor
    b_V: Tensor
    b_O: Tensor
    mask: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        self.cfg = cfg
        H, d, e, dt = cfg.n_heads, cfg.d_model, cfg.d_head, _dtype(cfg)
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
        if self.cfg.attention_dir == "causal" and not final_pos_only:
            scores = scores.masked_fill(~self.mask[:n, :n], float("-inf"))
        pattern = self.hook_pattern(self.hook_attn_scores(scores).softmax(dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        H, e, d = self.W_O.shape
        return z.flatten(-2) @ self.W_O.reshape(H * e, d) + self.b_O


class MLP(nn.Module):
    b_in: Tensor
    b_out: Tensor

    def __init__(self, cfg: TransformerConfig, gen: torch.Generator):
        super().__init__()
        dt = _dtype(cfg)
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


class HookedOneLayerTransformer(CachingRoot):
    """One-layer transformer on tokens ``[a1, ..., ak, '=']`` with TransformerLens hooks.

    ``model(tokens)`` returns logits for every position, float [B, pos, d_vocab_out];
    ``model(tokens, final_pos_only=True)`` computes only what the last position needs (the query,
    MLP and unembedding of the last position) and returns [B, 1, d_vocab_out] — the same numbers
    as the last position of the full pass, about twice as fast. ``run_with_cache`` returns a
    TransformerLens ``ActivationCache`` (``cache["pattern", 0]``, ``cache.decompose_resid()``...).

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
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        self.embed = Embed(cfg, gen)
        self.pos_embed = PosEmbed(cfg, gen)
        self.blocks = nn.ModuleList([TransformerBlock(cfg, gen)])
        self.unembed = Unembed(cfg, gen)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.setup()

    model_kind = "transformer"

    def forward(self, tokens: Int[Tensor, "B pos"], final_pos_only: bool = False
                ) -> Float[Tensor, "B q d_vocab_out"]:
        B, n = tokens.shape
        x = self.hook_embed(F.embedding(tokens, self.embed.W_E))
        x = x + self.hook_pos_embed(self.pos_embed.W_pos[:n].expand(B, n, -1))
        x = self.block(x, final_pos_only)
        return x @ self.unembed.W_U + self.unembed.b_U

    def last_logits(self, tokens: Int[Tensor, "B pos"]) -> Float[Tensor, "B d_vocab_out"]:
        """Logits at the last position, [B, d_vocab_out] (what training and evaluation call): from
        per-(position, token) attention tables when every example ends with the same token and no
        hook sits on a point they skip (models.fast_paths), else by ``final_pos_only``."""
        if fast_paths.transformer_applies(self, tokens):
            return fast_paths.transformer_logits(self, tokens)
        return self(tokens, final_pos_only=True)[:, -1]

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
    def tokens_to_residual_directions(self, tokens: Tensor | int) -> Tensor:
        """Unembedding directions of output tokens, [..., d_model]."""
        return self.W_U[:, tokens].T

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
        from mi_margin.models.bridge import to_bridge

        return to_bridge(self)
