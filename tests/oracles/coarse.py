"""A one-layer transformer's last-position logits computed in a coarse floating-point format, every
operation rounded, to test a rounding allowance where rounding is large.

Float32 errors are too small for a test to tell a sound allowance from one that misses a term;
with ``bits`` = 6 fraction bits (unit roundoff 2^-7) they are thousands of times larger. The
forward pass mirrors HookedOneLayerTransformer's at the last position (no LayerNorm), summing in
the order asked for and with every exp off by ``exp_ulps`` − 1 ulps before its own rounding (in a
pseudo-random direction), the most a kernel within ``exp_ulps`` ulps may err.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rnd(x, bits):
    """Round to nearest with ``bits`` fraction bits (unit roundoff 2^-(bits+1)); no exponent limit."""
    mant, exp = torch.frexp(x)
    scale = 2.0 ** (bits + 1)
    return torch.ldexp(torch.round(mant * scale) / scale, exp)


def coarse_sum(terms, bits, reverse):
    """Σ over the last dim of already rounded terms, one at a time, each partial sum rounded."""
    order = range(terms.shape[-1] - 1, -1, -1) if reverse else range(terms.shape[-1])
    acc = None
    for i in order:
        acc = terms[..., i] if acc is None else rnd(acc + terms[..., i], bits)
    return acc


def coarse_matmul(x, W, bits, reverse):
    """x [..., d] @ W [d, m], every product and partial sum rounded."""
    return coarse_sum(rnd(x[..., :, None] * W, bits).transpose(-1, -2), bits, reverse)


def coarse_logits(model, tokens, bits, reverse=False, exp_ulps=4, seed=0):
    """Last-position logits [B, V] (float64 holding coarse values) of ``model`` on ``tokens``."""
    cfg = model.cfg
    w = {k: v.detach().double() for k, v in model.state_dict().items()}
    R = lambda t: rnd(t, bits)                                             # noqa: E731
    mm = lambda x, W: coarse_matmul(x, W, bits, reverse)                   # noqa: E731
    x = R(w["embed.W_E"][tokens] + w["pos_embed.W_pos"][: tokens.shape[1]])     # B n d
    H = cfg.n_heads
    heads = []
    for h in range(H):
        q = R(mm(x[:, -1], w["blocks.0.attn.W_Q"][h]) + w["blocks.0.attn.b_Q"][h])  # B e
        k = R(mm(x, w["blocks.0.attn.W_K"][h]) + w["blocks.0.attn.b_K"][h])         # B n e
        v = R(mm(x, w["blocks.0.attn.W_V"][h]) + w["blocks.0.attn.b_V"][h])
        s = R(coarse_sum(R(q[:, None] * k), bits, reverse) * R(torch.tensor(1 / math.sqrt(cfg.d_head),
                                                                             dtype=torch.float64)))
        z = R(s - s.amax(-1, keepdim=True))
        gen = torch.Generator().manual_seed(seed + h)
        sign = torch.randint(0, 2, z.shape, generator=gen).double() * 2 - 1
        u = 2.0 ** -(bits + 1)
        ex = R(torch.exp(z) * (1 + sign * 2 * (exp_ulps - 1) * u))
        p = R(ex / coarse_sum(ex, bits, reverse)[:, None])                     # B n
        if cfg.attn_rate != 1:
            p = R(R(cfg.attn_rate * p) + (1 - cfg.attn_rate))
        heads.append(coarse_sum(R(p[:, :, None] * v).transpose(1, 2), bits, reverse))  # B e
    zcat = torch.cat(heads, dim=-1)                                            # B (H e)
    W_O = w["blocks.0.attn.W_O"].reshape(-1, cfg.d_model)
    r = R(x[:, -1] + R(mm(zcat, W_O) + w["blocks.0.attn.b_O"]))
    if not cfg.attn_only:
        pre = R(mm(r, w["blocks.0.mlp.W_in"]) + w["blocks.0.mlp.b_in"])
        if cfg.act_fn == "relu":
            act = pre.clamp_min(0)
        elif cfg.act_fn == "gelu":
            act = R(F.gelu(pre))
        else:
            act = pre
            for _ in range(cfg.degree - 1):
                act = R(act * pre)
        r = R(r + R(mm(act, w["blocks.0.mlp.W_out"]) + w["blocks.0.mlp.b_out"]))
    return R(mm(r, w["unembed.W_U"]) + w["unembed.b_U"])
