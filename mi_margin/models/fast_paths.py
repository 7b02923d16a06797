"""Exact fast paths: each model's first layer as a small per-(position, token) table.

In every model here the first layer's output for an example depends only on which token sits at
which position, and there are few such pairs (k·d_vocab for the MLPs, n_ctx·d_vocab for the
transformer) against thousands of examples. So each training step first computes that small
table from the weights, then every example *gathers* its rows from it. Autograd carries the
gradient back through the gather (an index-add into the table) and through the table's
construction into the weights, so forward values and gradients are those of the ordinary path up
to float rounding (the sums run in another order). docs/performance.md has the measurements.

* Embed-style MLP (Chughtai et al. 2023 §3.2): the hidden pre-activation of (a_1..a_k) is
  ``Σ_i W_E[i, a_i] @ W_in[i] + b_in = Σ_i T[i, a_i]`` with ``T = W_E @ W_in`` [k, d_vocab, d_mlp]
  (the model's ``W_in_eff``) and ``b_in`` added to T[0]'s rows; the theory-style MLP's ``W_in``
  already is that table. For training, a float32 ReLU MLP also fuses its output layer with the
  summed loss (:func:`summed_cross_entropy`): the gradients are formed in the forward pass, a
  cache-sized chunk of examples at a time.
* One-layer transformer (Nanda et al. 2023), when every example ends with the same token ('='):
  the last query is one constant vector per head, and a key, a value and its image under W_O
  depend only on (position, token). Attention of the last position is then
  ``scores[b, j, h] = S[j, t_bj, h]`` with ``S = q_h · K[j, t, h] / sqrt(d_head)``, softmax over j,
  and ``attn_out[b] = Σ_{j,h} pattern[b, j, h] · VO[j, t_bj, h] + b_O``. Only the MLP and the
  unembedding are computed per example.

A fast path skips some hook points and modules. If any hook (forward or backward,
TransformerLens's ``add_hook``/``hooks()``/``run_with_hooks`` or PyTorch's own, also a global
module hook) is attached to one of them, the model takes its ordinary path, so a hook is never
silently skipped; the hook points the fast path still computes (the MLP's ``hook_pre`` and
``hook_post``, the transformer's from ``hook_attn_out`` on) see the tensors the ordinary path gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from mi_margin.models.evaluation import cross_entropy64, row_losses, softmax_off_label, underflowed_losses


def has_hooks(model: nn.Module, called: Sequence[nn.Module] = ()) -> bool:
    """Whether a hook (forward or backward, TransformerLens's or PyTorch's, or a PyTorch global
    module hook) sits on a submodule of ``model`` other than those in ``called`` and their
    submodules, which the fast path still calls.

    Example:
        >>> import mi_margin as mm
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(mm.ModularAddition(p=5), d_mlp=4))
        >>> has_hooks(mlp, [mlp.layer])
        False
        >>> _ = mlp.hook_embed.add_hook(lambda x, hook: x)
        >>> has_hooks(mlp, [mlp.layer])
        True
    """
    global_hooks = (torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks,
                    torch_module._global_backward_hooks, torch_module._global_backward_pre_hooks)
    if any(global_hooks):
        return True
    kept = {id(m) for c in called for m in c.modules()}
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
               or m._backward_pre_hooks for m in model.modules() if id(m) not in kept)


def summed_rows(table: Tensor, inputs: Tensor) -> Tensor:
    """``Σ_i table[i, inputs[:, i]]``: [B, width] from a [k, d_vocab, width] table and [B, k] indices.

    Forward by one ``embedding_bag``; backward by k ``index_add_`` calls into the table's gradient
    (:class:`_SummedRows`), about ten times faster on a CPU than ``embedding_bag``'s own backward,
    which sorts the indices first.

    Example:
        >>> table = torch.arange(12.).reshape(2, 3, 2)     # k=2 operands, 3 tokens, width 2
        >>> summed_rows(table, torch.tensor([[0, 2], [1, 1]])).tolist()
        [[10.0, 12.0], [10.0, 12.0]]
    """
    return _SummedRows.apply(table.flatten(0, 1), flat_rows(table, inputs))


def flat_rows(table: Tensor, inputs: Tensor) -> Tensor:
    """[B, k] indices of the rows ``table[i, inputs[:, i]]`` in ``table.flatten(0, 1)``."""
    k, d_vocab, _ = table.shape
    return inputs.long() + torch.arange(k, device=inputs.device) * d_vocab


def add_rows(grad: Tensor, rows: Tensor, n_rows: int, into: Tensor | None = None) -> Tensor:
    """The gradient of ``flat`` [n_rows, width] for ``out[b] = Σ_i flat[rows[b, i]]`` given
    ``grad`` = ∂/∂out: ``grad[b]`` added at every ``rows[b, i]``, one ``index_add_`` per column,
    into a new zero tensor or, in place, into ``into``."""
    grad_flat = grad.new_zeros(n_rows, grad.shape[1]) if into is None else into
    for column in rows.unbind(1):
        grad_flat.index_add_(0, column, grad)
    return grad_flat


class _SummedRows(torch.autograd.Function):
    """``out[b] = Σ_i flat[rows[b, i]]`` by ``embedding_bag``, backward by :func:`add_rows`."""

    @staticmethod
    def forward(ctx: Any, flat: Tensor, rows: Tensor) -> Tensor:
        ctx.save_for_backward(rows)
        ctx.n_rows = flat.shape[0]
        return F.embedding_bag(rows, flat, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (rows,) = ctx.saved_tensors
        return add_rows(grad, rows, ctx.n_rows), None


class _ReluLayer(torch.autograd.Function):
    """``relu(Σ_i flat[rows[b, i]]) @ W_out + b_out``: the gather, the ReLU and the output layer
    of a ReLU MLP in one function, with the same operations as autograd's (addmm, and its
    backward's two matmuls; ReLU's ``threshold_backward``), but the ReLU applied in place to the
    gathered pre-activations and its backward written into the matmul's output: two [B, d_mlp]
    tensors fewer per step, which on a CPU saves their memory traffic (docs/performance.md §3)."""

    @staticmethod
    def forward(ctx: Any, flat: Tensor, rows: Tensor, W_out: Tensor, b_out: Tensor) -> Tensor:
        post = F.embedding_bag(rows, flat, mode="sum").relu_()
        ctx.save_for_backward(rows, post, W_out)
        ctx.n_rows = flat.shape[0]
        return torch.addmm(b_out, post, W_out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, Tensor, Tensor | None]:
        rows, post, W_out = ctx.saved_tensors
        grad_post = grad @ W_out.t()
        torch.ops.aten.threshold_backward.grad_input(grad_post, post, 0, grad_input=grad_post)
        grad_b = grad.sum(0) if ctx.needs_input_grad[3] else None
        return add_rows(grad_post, rows, ctx.n_rows), None, post.t() @ grad, grad_b


#: the fused head's activations per torch thread: a chunk has ``HEAD_CHUNK_BYTES × threads`` of
#: [rows, d_mlp] and [rows, d_vocab] activations, so each thread's share fits its core's 1 MB L2
#: cache on the machines measured (docs/performance.md §1)
HEAD_CHUNK_BYTES = 2**20


class _ReluCrossEntropy(torch.autograd.Function):
    """``Σ_b cross_entropy64(relu(Σ_i flat[rows[b, i]]) @ W_out + b_out, labels[b])``: a ReLU
    MLP's output layer and its summed training loss in one function, whose gradients are formed
    in the forward pass, ``chunk`` rows at a time (:func:`_relu_head_chunk`), so that each
    chunk's activations, softmax and backward stay in the CPU's cache instead of making a dozen
    passes over [B, d_mlp] and [B, d_vocab] tensors in memory. The loss is a sum, so its
    upstream gradient is one number, and the backward only scales the gradients kept.
    Same operations as :class:`_ReluLayer` followed by :func:`cross_entropy64` (the scaling
    comes after the matmuls instead of before, and the weight gradients are summed over chunks):
    equal to float rounding (tests/models/test_fast_paths.py)."""

    @staticmethod
    def forward(ctx: Any, flat: Tensor, rows: Tensor, W_out: Tensor, b_out: Tensor,
                labels: Tensor, chunk: int) -> Tensor:
        n = len(labels)
        grads = [torch.zeros_like(t) for t in (flat, W_out, b_out)]
        p_label, q = W_out.new_empty(n), W_out.new_empty(n)
        # each label's index in its chunk's flattened [rows, d_vocab] logits
        at_label = (torch.arange(n, device=labels.device) % chunk) * W_out.shape[1] + labels
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            _relu_head_chunk(flat, rows[part], W_out, b_out, at_label[part], p_label[part],
                             q[part], *grads)
        loss = row_losses(p_label, q)
        underflowed = underflowed_losses(p_label, lambda lost: torch.addmm(
            b_out, F.embedding_bag(rows[lost], flat, mode="sum").relu_(), W_out), labels)
        if underflowed is not None:                 # those rows' logits formed again
            loss[underflowed[0]] = underflowed[1]
        ctx.save_for_backward(*grads)
        return loss.sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_flat, grad_W, grad_b = (g * grad.to(g.dtype) for g in ctx.saved_tensors)
        return grad_flat, None, grad_W, grad_b if ctx.needs_input_grad[3] else None, None, None


def _relu_head_chunk(flat: Tensor, rows: Tensor, W_out: Tensor, b_out: Tensor, at_label: Tensor,
                     p_label: Tensor, q: Tensor, grad_flat: Tensor, grad_W: Tensor,
                     grad_b: Tensor) -> None:
    """One chunk of :class:`_ReluCrossEntropy`: writes its rows' p_y and q (the row losses are
    formed once, for all rows, from them) and adds its gradients in place."""
    post = F.embedding_bag(rows, flat, mode="sum").relu_()
    grad = softmax_off_label(torch.addmm(b_out, post, W_out), at_label, p_label, q)[0]
    grad.view(-1).index_copy_(0, at_label, -q)                  # softmax − onehot
    grad_post = grad @ W_out.t()
    torch.ops.aten.threshold_backward.grad_input(grad_post, post, 0, grad_input=grad_post)
    grad_W.addmm_(post.t(), grad)
    grad_b.add_(grad.sum(0))
    add_rows(grad_post, rows, len(grad_flat), into=grad_flat)


# -- the one-hidden-layer MLP ------------------------------------------------------------------------
def mlp_applies(model: Any) -> bool:
    """The table path serves index inputs (not sparse parity's vector) when no hook sits on a point
    or module other than the hidden layer's ``hook_pre`` and ``hook_post`` (``hook_embed``, the
    block's ``hook_resid_pre``, ``hook_mlp_out`` and ``hook_resid_post``, the hidden layer module
    itself, a PyTorch hook on the model)."""
    layer = model.layer
    return model.cfg.input_kind == "one_hot" and not has_hooks(model, [layer.hook_pre,
                                                                       layer.hook_post])


def mlp_logits(model: Any, inputs: Tensor) -> Tensor:
    """The MLP's logits from its effective input table ``W_in_eff`` [k, d_vocab, d_mlp], with the
    hidden bias ``b_in`` added to the first operand's rows, so that the gather gives the
    pre-activation itself (no pass over [B, d_mlp] for the bias, and its gradient sums d_vocab
    rows of the table's gradient instead of B rows). A ReLU MLP with no hook on ``hook_pre``,
    ``hook_post`` or the hidden layer takes :class:`_ReluLayer` from there."""
    layer, table = model.layer, input_table(model)
    if model.cfg.act_fn == "relu" and not has_hooks(layer):     # nothing to call in between
        return _ReluLayer.apply(table.flatten(0, 1), flat_rows(table, inputs), layer.W_out,
                                layer.b_out)
    return layer.from_pre(summed_rows(table, inputs))


def input_table(model: Any) -> Tensor:
    """The MLP's ``W_in_eff`` [k, d_vocab, d_mlp] with ``b_in`` added to the first operand's rows:
    one gathered row per operand sums to the pre-activation itself."""
    table = model.W_in_eff
    if model.cfg.use_biases:
        table = torch.cat([table[:1] + model.layer.b_in, table[1:]])
    return table


def relu_head_applies(model: Any) -> bool:
    """The fused head of :func:`summed_cross_entropy` serves a float32 ReLU MLP on the table path
    with no hook on its hidden layer (float64 runs keep ``F.cross_entropy``'s exact bits)."""
    return (getattr(model, "model_kind", None) == "mlp" and mlp_applies(model)
            and model.cfg.act_fn == "relu" and not has_hooks(model.layer)
            and model.W_out.dtype == torch.float32)


def summed_cross_entropy(model: Any, inputs: Tensor, labels: Tensor) -> Tensor:
    """``cross_entropy64(model.last_logits(inputs), labels, "sum")``, the loss ``train()``
    minimizes (a float64 scalar with gradients into the model's weights). A float32 ReLU MLP
    takes the fused head :class:`_ReluCrossEntropy` (:func:`relu_head_applies`), which is
    about 10% of a step faster on Chughtai et al.'s S5 MLP (docs/performance.md §1, §2).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.GroupComposition("S3")
        >>> model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, d_embed=4, act_fn="relu",
        ...                                            input_style="embed"))
        >>> x, y = task.inputs, task.labels
        >>> loss = summed_cross_entropy(model, x, y)
        >>> relu_head_applies(model), torch.allclose(loss, cross_entropy64(model(x), y, "sum"))
        (True, True)
    """
    if not relu_head_applies(model):
        return cross_entropy64(model.last_logits(inputs), labels, "sum")
    model._check_input(inputs)
    layer, table = model.layer, input_table(model)
    width = layer.W_out.shape[0] + layer.W_out.shape[1]
    chunk = max(1, HEAD_CHUNK_BYTES * torch.get_num_threads() // (table.element_size() * width))
    return _ReluCrossEntropy.apply(table.flatten(0, 1), flat_rows(table, inputs), layer.W_out,
                                   layer.b_out, labels, chunk)


# -- the one-layer transformer ----------------------------------------------------------------------
def transformer_applies(model: Any, tokens: Tensor) -> bool:
    """Every example ends with the same token, no hook sits on a point the tables skip (all before
    ``hook_attn_out``), and per-head results are not asked for (``use_attn_result``)."""
    block = model.block
    called = [block.hook_attn_out, block.hook_resid_mid, block.hook_mlp_out, block.hook_resid_post]
    if not model.cfg.attn_only:
        called.append(block.mlp)
    if (tokens.shape[0] == 0 or model.cfg.use_attn_result
            or has_hooks(model, called)):
        return False
    return bool((tokens[:, -1] == tokens[0, -1]).all())


def attention_tables(model: Any, last_token: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """(residual at the last position [d_model], score table S [R, H], value-output table
    VO [H, R, d_model]) for contexts of length ``n`` ending in ``last_token``. Row ``j·d_vocab + t``
    (j < n − 1) is token t at position j; the last row R − 1 = (n − 1)·d_vocab is ``last_token`` at
    the last position, the only token found there.

    ``X[j, t] = W_E[t] + W_pos[j]`` is the residual of token t at position j; the last query is
    ``q_h = X[n-1, last] @ W_Q[h] + b_Q[h]``; ``S[j, t, h] = q_h · (X[j, t] @ W_K[h] + b_K[h]) /
    sqrt(d_head)``, computed as ``X[j, t] · (W_K[h] q_h) + b_K[h] · q_h`` (scaled) so that no key
    is formed, and ``VO[h, j, t] = (X[j, t] @ W_V[h] + b_V[h]) @ W_O[h]``.
    """
    attn = model.block.attn
    H, d_model, d_head = attn.W_Q.shape
    x_last = model.W_E[last_token] + model.W_pos[n - 1]                           # d
    X = torch.cat([(model.W_E[None] + model.W_pos[:n - 1, None]).flatten(0, 1), x_last[None]])
    q = torch.einsum("d,hde->he", x_last, attn.W_Q) + attn.b_Q                     # H e
    scale = 1 / math.sqrt(d_head)
    key_q = torch.einsum("hde,he->dh", attn.W_K, q) * scale                      # d H
    scores = X @ key_q + (attn.b_K * q).sum(-1) * scale                           # R H
    values = (X @ attn.W_V.permute(1, 0, 2).reshape(d_model, H * d_head) + attn.b_V.flatten())
    value_out = torch.bmm(values.unflatten(1, (H, d_head)).transpose(0, 1), attn.W_O)  # H R d
    return x_last, scores, value_out


def last_pattern(model: Any, tokens: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """The last query's attention pattern [B, n, H] over the positions of ``tokens`` (whose last
    token is shared) from the score table of :func:`attention_tables`, and each operand's row
    per head into a flattened [H·R, ...] table, [B, (n−1)·H]."""
    B, n = tokens.shape
    R, H = scores.shape
    d_vocab = model.W_E.shape[0]
    rows = tokens[:, :-1] + torch.arange(n - 1, device=tokens.device) * d_vocab     # B n-1
    pattern = torch.cat([F.embedding(rows, scores), scores[-1].expand(B, 1, H)], dim=1)
    pattern = pattern.softmax(dim=1)                                                 # B n H
    alpha = model.cfg.attn_rate     # Zhong et al.'s mixture with constant attention (the last
    if alpha != 1:                  # query sees every position, causal or not)
        pattern = alpha * pattern + (1 - alpha)
    heads = (rows[..., None] + torch.arange(H, device=tokens.device) * R).flatten(1)  # B (n-1)H
    return pattern, heads


def attend(pattern: Tensor, heads: Tensor, table: Tensor) -> Tensor:
    """Σ_{h, j} pattern[b, j, h] table[h, row of (j, token b_j)] per example, [B, w], for a
    per-(head, position, token) table [H, R, w] such as VO (:func:`attention_tables`): one
    ``embedding_bag`` over the operand positions, one matmul for the shared last row."""
    out = F.embedding_bag(heads, table.flatten(0, 1), mode="sum",
                          per_sample_weights=pattern[:, :-1].flatten(1))
    return torch.addmm(out, pattern[:, -1], table[:, -1])


def transformer_logits(model: Any, tokens: Tensor) -> Tensor:
    """Last-position logits [B, d_vocab_out] of ``model`` on ``tokens`` whose last token is shared.

    Equal to ``model(tokens, final_pos_only=True)[:, -1]`` to float rounding; the hook points from
    ``hook_attn_out`` on are called with the tensors the ordinary path gives them. The last
    position's score and value are the same for every example: one row of each table.
    """
    x_last, scores, value_out = attention_tables(model, tokens[0, -1], tokens.shape[1])
    pattern, heads = last_pattern(model, tokens, scores)
    attn_out = attend(pattern, heads, value_out)                                      # B d
    block = model.block
    attn_out = block.hook_attn_out((attn_out + block.attn.b_O)[:, None])           # B 1 d
    resid = block.after_attention(x_last + attn_out)
    return model.unembed(resid[:, -1])
