"""The largest rounding error a one-layer transformer's logit gaps can suffer, to first order, in the
standard model of floating-point arithmetic: every operation's result is multiplied by (1 + δ) with
|δ| ≤ u (exp and erf: a few ulps, Higham 2002 §2.2), sums taken one term at a time.

The forward pass (last position, no LayerNorm) is written with one δ tensor per operation; the
gradient of the gap ℓ_y − ℓ_c with respect to every δ at δ = 0 gives the first-order worst case
Σ_op u_op |∂gap/∂δ_op|, which an adversary choosing the signs of the δs attains up to O(u²). A
sound rounding allowance must be at least this for every input and class, so a test comparing the
two can fail when the allowance misses a stage of the computation, unlike a comparison with
rounding that merely happens (which is far below any worst case).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Perturbed:
    """Operations whose results carry a δ each; ``deltas`` lists (δ, its bound)."""

    def __init__(self, u, exp_ulps):
        self.u, self.exp_ulps, self.deltas = u, exp_ulps, []

    def op(self, value, ulps=0.5):
        """``value`` as rounded once: times (1 + δ), |δ| ≤ 2·ulps·u (half an ulp is u)."""
        delta = torch.zeros_like(value, requires_grad=True)
        self.deltas.append((delta, 2 * ulps * self.u))
        return value * (1 + delta)

    def seqsum(self, terms):
        """Σ over the last dim, one term at a time, every partial sum rounded."""
        acc = terms[..., 0]
        for i in range(1, terms.shape[-1]):
            acc = self.op(acc + terms[..., i])
        return acc

    def affine(self, x, W, b):
        """x [..., n] @ W [n, m] + b, every product and partial sum rounded, then the bias."""
        return self.op(self.seqsum(self.op(x[..., :, None] * W).transpose(-1, -2)) + b)

    def worst(self, value):
        """First-order worst case of every entry of ``value`` [B, ...] (inputs independent), the
        same shape."""
        flat, out = value.reshape(len(value), -1), torch.zeros(value.shape, dtype=torch.float64)
        deltas = [d for d, _ in self.deltas]
        for i in range(flat.shape[1]):
            grads = torch.autograd.grad(flat[:, i].sum(), deltas, retain_graph=True,
                                        allow_unused=True)
            total = torch.zeros(len(value), dtype=torch.float64)
            for (_, bound), grad in zip(self.deltas, grads):
                if grad is not None:
                    total = total + bound * grad.abs().reshape(len(value), -1).sum(1)
            out.reshape(len(value), -1)[:, i] = total
        return out


def first_order_worst(model, tokens, labels, u, exp_ulps=4, path="ordinary"):
    """First-order worst-case rounding errors per input of the last query's attention scores
    ("scores" [B, H, n]), resid_mid ("resid_mid" [B, d_model]), the MLP's pre-activations ("pre"
    [B, d_mlp], absent for an attention-only model) and every logit gap ℓ_y − ℓ_c ("gap" [B, V]).

    ``path="ordinary"`` forms q, k, v and z = Σ_j p_j v_j as the model's forward pass does;
    ``"tables"`` computes what the attention tables do (models/fast_paths.py): the scores as
    X·((W_K q)·c) + (b_K·q)·c, each value's image under W_O first, then Σ over keys and heads."""
    cfg = model.cfg
    w = {k: v.detach().double() for k, v in model.state_dict().items()}
    P = Perturbed(u, exp_ulps)
    x = P.op(w["embed.W_E"][tokens] + w["pos_embed.W_pos"][: tokens.shape[1]])      # B n d
    scale = P.op(torch.full((len(tokens), 1), 1 / math.sqrt(cfg.d_head), dtype=torch.float64))
    heads, scores = [], []
    W_O = w["blocks.0.attn.W_O"]
    for h in range(cfg.n_heads):
        q = P.affine(x[:, -1], w["blocks.0.attn.W_Q"][h], w["blocks.0.attn.b_Q"][h])   # B e
        v = P.affine(x, w["blocks.0.attn.W_V"][h], w["blocks.0.attn.b_V"][h])          # B n e
        if path == "ordinary":
            k = P.affine(x, w["blocks.0.attn.W_K"][h], w["blocks.0.attn.b_K"][h])      # B n e
            s = P.op(P.seqsum(P.op(q[:, None] * k)) * scale)                            # B n
        else:
            W_K, b_K = w["blocks.0.attn.W_K"][h], w["blocks.0.attn.b_K"][h]
            key_q = P.op(P.seqsum(P.op(W_K[None] * q[:, None])) * scale)              # B d
            bias = P.op(P.seqsum(P.op(b_K * q)) * scale[:, 0])                          # B
            s = P.op(P.seqsum(P.op(x * key_q[:, None])) + bias[:, None])               # B n
        scores.append(s)
        z = P.op(s - s.detach().amax(-1, keepdim=True))
        ex = P.op(torch.exp(z), ulps=exp_ulps)
        p = P.op(ex / P.seqsum(ex)[:, None])
        if cfg.attn_rate != 1:
            p = P.op(P.op(cfg.attn_rate * p) + (1 - cfg.attn_rate))
        if path == "ordinary":
            heads.append(P.seqsum(P.op(p[:, :, None] * v).transpose(1, 2)))             # B e
        else:
            vo = P.seqsum(P.op(v[..., None] * W_O[h]).transpose(-1, -2))               # B n d
            heads.append(P.op(p[:, :, None] * vo))                                      # B n d
    if path == "ordinary":
        W = W_O.reshape(-1, cfg.d_model)
        attn = P.affine(torch.cat(heads, -1), W, w["blocks.0.attn.b_O"])
    else:
        terms = torch.cat(heads, 1)                                                     # B (H n) d
        attn = P.op(P.seqsum(terms.transpose(1, 2)) + w["blocks.0.attn.b_O"])
    r = P.op(x[:, -1] + attn)
    out = {"scores": P.worst(torch.stack(scores, 1)), "resid_mid": P.worst(r)}
    if not cfg.attn_only:
        pre = P.affine(r, w["blocks.0.mlp.W_in"], w["blocks.0.mlp.b_in"])
        out["pre"] = P.worst(pre)
        if cfg.act_fn == "relu":
            act = F.relu(pre)
        elif cfg.act_fn == "gelu":
            act = P.op(F.gelu(pre), ulps=exp_ulps + 2)
        else:
            act = pre
            for _ in range(cfg.degree - 1):
                act = P.op(act * pre)
        r = P.op(r + P.affine(act, w["blocks.0.mlp.W_out"], w["blocks.0.mlp.b_out"]))
    logits = P.affine(r, w["unembed.W_U"], w["unembed.b_U"])
    out["gap"] = P.worst(logits[torch.arange(len(tokens)), labels][:, None] - logits)
    return out
