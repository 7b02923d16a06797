"""A one-hidden-layer MLP over k operands, with TransformerLens hooks (the margin theory's network).

Theory style (Morwani et al. 2024 §1.1; Li et al. 2024 eq. 2): ``f(a1..ak) = W_out^T act(Σ_i W_in[i, a_i])``,
i.e. neuron j has input maps u_j = W_in[0, :, j], v_j = W_in[1, :, j], ... and output map
w_j = W_out[j]. Embed style (Chughtai et al. 2023 §3.2): ``W_in_eff[i] = W_E[i] @ W_in[i]``.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from mi_margin._tl import ActivationCache, CachingRoot, HookPoint
from mi_margin.errors import MiMarginError, MissingAttributeError
from mi_margin.models import fast_paths
from mi_margin.models.activations import activation
from mi_margin.models.compat import check_mlp_inputs
from mi_margin.models.config import MLPConfig
from mi_margin.models.tl_interface import TLInterface, check_return_type, finish, operand_names, own_config
from mi_margin.models.tokenizer import OperandTokenizer


class Embed(nn.Module):
    """Per-operand embeddings ``W_E`` [k, d_vocab, d_embed] (embed style only)."""

    def __init__(self, cfg: MLPConfig, gen: torch.Generator):
        super().__init__()
        shape = (cfg.k, cfg.d_vocab, cfg.d_embed)
        scale = cfg.init_scale / math.sqrt(cfg.d_embed)
        self.W_E = nn.Parameter(torch.randn(shape, generator=gen, dtype=cfg.dtype) * scale)


class HiddenLayer(nn.Module):
    """``W_in`` [k, d_in, d_mlp] (d_in = d_vocab or d_embed), ``W_out`` [d_mlp, d_vocab_out]."""

    b_in: Tensor
    b_out: Tensor

    def __init__(self, cfg: MLPConfig, gen: torch.Generator):
        super().__init__()
        dt = cfg.dtype
        d_in = cfg.d_embed if cfg.input_style == "embed" else cfg.d_vocab
        fan_in = cfg.k * d_in
        self.W_in = nn.Parameter(torch.randn((cfg.k, d_in, cfg.d_mlp), generator=gen, dtype=dt)
                                 * (cfg.init_scale / math.sqrt(fan_in)))
        self.W_out = nn.Parameter(torch.randn((cfg.d_mlp, cfg.d_vocab_out), generator=gen, dtype=dt)
                                  * (cfg.init_scale / math.sqrt(cfg.d_mlp)))
        for name, size in [("b_in", cfg.d_mlp), ("b_out", cfg.d_vocab_out)]:
            zeros = torch.zeros(size, dtype=dt)
            if cfg.use_biases:
                self.register_parameter(name, nn.Parameter(zeros))
            else:
                self.register_buffer(name, zeros)
        self.act = activation(cfg.act_fn, cfg.degree)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        return self.from_pre(x + self.b_in)

    def from_pre(self, pre: Tensor) -> Tensor:
        """Logits from the pre-activations ``pre`` (= input + ``b_in``): the hooks, the activation
        and the output layer (the table fast path gathers ``pre`` with ``b_in`` already in it)."""
        # post @ W_out + b_out with the bias added inside the matmul (addmm)
        return F.linear(self.hook_post(self.act(self.hook_pre(pre))), self.W_out.t(), self.b_out)


class MLPBlock(nn.Module):
    """The hidden layer with TransformerLens's block-level hook points around it.

    ``hook_resid_pre`` [B, P, d_model] holds each input position's contribution (P = k operands,
    or the n coordinates of a sparse-parity vector); ``hook_mlp_out`` [B, P, d_vocab_out] holds
    the MLP's output, written at the last position (where the answer is read, as in the
    transformer) with zeros before it; ``hook_resid_post`` is the stream after the MLP. There is no
    skip connection, so ``resid_post = mlp_out`` and the logits are ``resid_post[:, -1]``.
    """

    mlp: HiddenLayer

    def __init__(self, cfg: MLPConfig, gen: torch.Generator):
        super().__init__()
        self.mlp = HiddenLayer(cfg, gen)
        self.hook_resid_pre, self.hook_mlp_out, self.hook_resid_post = (HookPoint(), HookPoint(),
                                                                         HookPoint())

    def output_stream(self, logits: Tensor, n_positions: int) -> Tensor:
        """``logits`` [B, d_vocab_out] through ``hook_mlp_out`` and ``hook_resid_post`` as a
        [B, n_positions, d_vocab_out] stream (zeros, the logits at the last position), read back
        at the last position; skipped (the same logits) when no hook listens to either point."""
        if not (listened(self.hook_mlp_out) or listened(self.hook_resid_post)):
            return logits
        zeros = logits.new_zeros(logits.shape[0], n_positions - 1, logits.shape[1])
        stream = self.hook_mlp_out(torch.cat([zeros, logits[:, None]], dim=1))
        return self.hook_resid_post(stream)[:, -1]


def listened(hook_point: HookPoint) -> bool:
    """Whether a hook (or a PyTorch global module hook) would see ``hook_point``'s tensor: the
    points whose tensor costs extra memory are only built then (an identity nobody observes)."""
    return fast_paths.has_hooks(hook_point)


class MLPActivationCache(ActivationCache):
    """An ``ActivationCache`` that explains, instead of a raw KeyError, why the residual-stream
    helpers (``decompose_resid``, ``stack_head_results``...) do not apply to an MLP."""

    def _no_residual_stream(self, method: str) -> MiMarginError:
        return MiMarginError(
            f"{method} decomposes a transformer's residual stream into attention heads, neurons "
            "and embeddings that add up to it; a HookedMLP's hidden layer reads every position at "
            "once and writes logits with no skip connection, so nothing adds up that way. Read "
            "its activations directly: cache['resid_pre', 0] (each operand's contribution), "
            "cache['pre', 0] and cache['post', 0] (the hidden layer), cache['mlp_out', 0] (the "
            "logits, at the last position), and mi_margin.analysis for neuron-level analyses")

    def decompose_resid(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_residual_stream("decompose_resid")

    def accumulated_resid(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_residual_stream("accumulated_resid")

    def stack_head_results(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_residual_stream("stack_head_results")

    def compute_head_results(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_residual_stream("compute_head_results")

    def get_full_resid_decomposition(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_residual_stream("get_full_resid_decomposition")

    def stack_neuron_results(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_residual_stream("stack_neuron_results")

    def logit_attrs(self, *args: Any, **kwargs: Any) -> Any:
        raise self._no_residual_stream("logit_attrs")


class HookedMLP(TLInterface, CachingRoot):
    """One-hidden-layer MLP on operand indices ``inputs`` [B, k] (one-hot applied inside).

    Hooks, in TransformerLens's names, so that ``transformer_lens.patching``'s
    ``get_act_patch_resid_pre`` and ``get_act_patch_mlp_out`` and the cache shorthands
    (``cache["resid_pre", 0]``, ``cache["mlp_out", 0]``) work, with positions = operands:

    * ``hook_embed`` and ``blocks.0.hook_resid_pre`` (the same tensor): each operand's
      contribution, [B, k, d_mlp] in theory style (``W_in[i, a_i]``) and [B, k, d_embed] in embed
      style (``W_E[i, a_i]``);
    * ``blocks.0.mlp.hook_pre`` = Σ_i resid_pre[:, i] (theory style; ``Σ_i resid_pre[:, i] @
      W_in[i]`` in embed style) + ``b_in``, and ``blocks.0.mlp.hook_post`` = act(pre), [B, d_mlp];
    * ``blocks.0.hook_mlp_out`` and ``blocks.0.hook_resid_post`` (the same tensor: no skip
      connection), [B, k, d_vocab_out]: ``post @ W_out + b_out`` at the last position, zeros
      before it; the logits are ``resid_post[:, -1]``.

    For sparse parity (``input_kind="vector"``) the input is the ±1 float vector [B, n], the
    positions are its n coordinates (``resid_pre[:, j] = x_j · W_in[0, j]``) and ``hook_embed``,
    their sum, is [B, 1, d_mlp]. ``model(inputs)`` returns logits [B, d_vocab_out]
    (``return_type`` as in TransformerLens: "loss"/"both" with ``labels=``). Inputs of the wrong
    shape or range (transformer tokens, another task's operands) raise
    :class:`~mi_margin.MiMarginError`.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> tuple(mlp(task.inputs).shape), tuple(mlp.W_in.shape)
        ((25, 5), (2, 5, 8))
    """

    model_kind = "mlp"
    cache_class = MLPActivationCache
    _offsets: Tensor

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.cfg = cfg = own_config(cfg, MLPConfig, "HookedMLP")
        gen = torch.Generator().manual_seed(cfg.seed)
        if cfg.input_style == "embed":
            self.embed = Embed(cfg, gen)
        self.blocks = nn.ModuleList([MLPBlock(cfg, gen)])
        self.hook_embed = HookPoint()
        self.register_buffer("_offsets", torch.arange(cfg.k) * cfg.d_vocab, persistent=False)
        self.setup()

    def forward(self, inputs: Tensor, return_type: str | None = "logits", *,
                labels: Tensor | None = None, loss_per_token: bool = False) -> Any:
        """Logits [B, d_vocab_out], or what ``return_type`` asks for (see the class docstring)."""
        check_return_type(return_type, labels, loss_per_token)
        self._check_input(inputs)
        logits = self._logits(inputs)
        return logits if return_type == "logits" else finish(logits, logits, return_type, labels,
                                                             loss_per_token)

    def _logits(self, inputs: Tensor) -> Tensor:
        block, layer = self.block, self.layer
        return block.output_stream(layer(self._hidden_input(inputs)), inputs.shape[1])

    def _hidden_input(self, inputs: Tensor) -> Tensor:
        """The hidden layer's input before ``b_in``, [B, d_mlp], through ``hook_embed`` and
        ``blocks.0.hook_resid_pre``."""
        block, layer = self.block, self.layer
        if self.cfg.input_kind == "vector":
            x = inputs.to(layer.W_in.dtype)
            if not listened(block.hook_resid_pre):      # the [B, n, d_mlp] stream only if observed
                return self.hook_embed((x @ layer.W_in[0])[:, None]).sum(1)
            resid = block.hook_resid_pre(x[:, :, None] * layer.W_in[0])             # B n m
            return self.hook_embed(resid.sum(1, keepdim=True)).sum(1)
        idx = inputs.long() + self._offsets
        if self.cfg.input_style == "embed":
            emb = self.hook_embed(F.embedding(idx, self.embed.W_E.flatten(0, 1)))   # B k e
            return torch.einsum("bke,kem->bm", block.hook_resid_pre(emb), layer.W_in)
        parts = self.hook_embed(F.embedding(idx, layer.W_in.flatten(0, 1)))          # B k m
        return block.hook_resid_pre(parts).sum(1)

    def last_logits(self, inputs: Tensor) -> Float[Tensor, "B d_vocab_out"]:
        """Same as ``self(inputs)`` (the name the training loop calls for every model kind), by the
        exact table fast path of models.fast_paths unless a hook sits on a point it skips
        (``hook_embed``, the block's ``hook_resid_pre``, ``hook_mlp_out``, ``hook_resid_post``)."""
        if fast_paths.mlp_applies(self):
            self._check_input(inputs)
            return fast_paths.mlp_logits(self, inputs)
        return self(inputs)

    # -- inputs (see models.tl_interface) ------------------------------------------------------
    @property
    def tokenizer(self) -> OperandTokenizer | None:
        """Ids ↔ strings (``"12"``) for TransformerLens code that decodes tokens; ``None`` for
        sparse parity, whose input is a ±1 vector, not tokens."""
        return OperandTokenizer(self.cfg.d_vocab) if self.cfg.input_kind == "one_hot" else None

    def _check_input(self, x: Tensor) -> None:
        check_mlp_inputs(self.cfg, x)

    def _n_operands(self) -> int:
        return self.cfg.d_vocab if self.cfg.input_kind == "vector" else self.cfg.k

    def _operands_to_input(self, operands: list[int]) -> Tensor:
        dtype = self.W_in.dtype if self.cfg.input_kind == "vector" else torch.long
        return torch.tensor([operands], dtype=dtype, device=self.W_in.device)

    def _token_label(self, position: int, value: float) -> str:
        if self.cfg.input_kind == "vector":
            return f"x{position + 1}={int(value):+d}"
        return f"{operand_names(self.cfg.k)[position]}={int(value)}"

    def __getattr__(self, name: str) -> Any:
        # nn.Module.__getattr__ replaces a property's AttributeError by a bare "no attribute";
        # keep the helpful message of the transformer-only names.
        if name == "W_E" and self.cfg.input_style != "embed":
            raise MissingAttributeError(
                "W_E exists only for input_style='embed' (Chughtai et al.'s embeddings); this "
                "theory-style HookedMLP feeds each operand's one-hot straight into W_in [k, d_vocab, "
                "d_mlp]: use mlp.W_in, or mlp.W_in_eff for every style")
        return super().__getattr__(name)

    @property
    def block(self) -> MLPBlock:
        """The single block (``blocks[0]``): the hidden layer and the residual-stream hooks."""
        return cast(MLPBlock, self.blocks[0])

    @property
    def layer(self) -> HiddenLayer:
        """The hidden layer (``blocks[0].mlp``) holding W_in, W_out and the hooks."""
        return self.block.mlp

    @property
    def W_in(self) -> Tensor:
        return self.layer.W_in

    @property
    def W_out(self) -> Tensor:
        return self.layer.W_out

    @property
    def b_in(self) -> Tensor:
        return self.layer.b_in

    @property
    def b_out(self) -> Tensor:
        return self.layer.b_out

    @property
    def W_E(self) -> Tensor:
        """Per-operand embeddings [k, d_vocab, d_embed] (embed style only)."""
        return self.embed.W_E

    @property
    def W_in_eff(self) -> Float[Tensor, "k d_vocab d_mlp"]:
        """Each operand's effective input map to the hidden pre-activations, [k, d_vocab, d_mlp]."""
        if self.cfg.input_style == "embed":
            return torch.einsum("kve,kem->kvm", self.embed.W_E, self.W_in)
        return self.W_in

    # -- homogeneity (Morwani et al. §1.1) -------------------------------------------------------
    def homogeneity(self) -> tuple[int | None, str]:
        """(ν, reason): the degree ν with f(λθ) = λ^ν f(θ) over per-neuron parameters
        ω_j = (W_in[:, :, j], W_out[j]), or ``None`` with the reason it is not defined."""
        cfg = self.cfg
        if cfg.use_biases:
            return None, "the model has biases, so it is not homogeneous in its neuron parameters"
        if cfg.input_style == "embed":
            return None, ("embed-style input (W_E then W_in) shares embeddings across neurons, so "
                          "neuron parameters ω_i are not separable")
        if cfg.degree is None:
            if cfg.act_fn == "relu":
                return 2, "ReLU is 1-homogeneous, so each neuron is 2-homogeneous in (u, w)"
            return None, f"act_fn={cfg.act_fn!r} is not positively homogeneous"
        return cfg.degree + 1, f"activation x^{cfg.degree} without biases: ν = {cfg.degree} + 1"

    def neuron_vectors(self) -> Float[Tensor, "d_mlp n_params"]:
        """ω_j for every neuron j: its input weights of every operand and its output weights."""
        k, d_in, m = self.W_in.shape
        return torch.cat([self.W_in.permute(2, 0, 1).reshape(m, k * d_in), self.W_out], dim=1)

    def neuron_norms(self) -> Float[Tensor, " d_mlp"]:
        """||ω_j||_2 for every neuron (theory style; see :meth:`homogeneity`)."""
        return self.neuron_vectors().norm(dim=1)
