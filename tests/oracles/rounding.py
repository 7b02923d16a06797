"""A bound on how far two implementations of the same one-layer transformer may differ by rounding
alone (a HookedOneLayerTransformer and its TransformerBridge sum in different orders)."""

from __future__ import annotations

import math

import torch


def rounding_bound(model, tokens):
    """Twice a first-order bound on |computed − exact| logits for either implementation of
    ``model``'s function (ReLU or quadratic MLP), whatever the order of its sums.

    Higham's bound for a sum of n products, |fl(x·W + b) − (x·W + b)| ≤ γ (|x||W| + |b|) with
    γ = n u/(1 − n u) (u the unit roundoff, n the longest sum here), is carried through the
    network with magnitudes M (|value| bounds) and errors E: E(xW + b) = E(x)|W| + γ M(xW + b);
    scores q·k/√d: (E_q M_k + M_q E_k + γ M_q M_k)/√d; the softmax moves the pattern by at most
    2 max|Δscores| in l1 (its Jacobian diag(p) − ppᵀ) plus its own γ, which enters z = Σ p v as
    ‖Δp‖₁ max M_v; ReLU passes errors unchanged, x² doubles them times M.
    """
    cfg, u = model.cfg, torch.finfo(model.W_E.dtype).eps / 2
    assert cfg.act_fn in ("relu", "quadratic")
    n = max(cfg.d_model, cfg.n_heads * cfg.d_head, cfg.d_mlp) + cfg.n_ctx + 3
    gamma = n * u / (1 - n * u)
    W = {k: v.detach().double().abs() for k, v in model.state_dict().items()}
    M_e = W["embed.W_E"][tokens] + W["pos_embed.W_pos"]            # [B, pos, d_model]
    E_e = u * M_e

    def linear(M, E, w, b, eq):
        M_y = torch.einsum(eq, M, w) + b
        return M_y, torch.einsum(eq, E, w) + gamma * M_y

    qkv = {c: linear(M_e, E_e, W[f"blocks.0.attn.W_{c}"], W[f"blocks.0.attn.b_{c}"],
                     "bpd,hde->bphe") for c in "QKV"}
    (M_q, E_q), (M_k, E_k), (M_v, E_v) = qkv["Q"], qkv["K"], qkv["V"]
    root = math.sqrt(cfg.d_head)
    E_s = (torch.einsum("bqhe,bkhe->bhqk", E_q, M_k) + torch.einsum("bqhe,bkhe->bhqk", M_q, E_k)
           + gamma * torch.einsum("bqhe,bkhe->bhqk", M_q, M_k)) / root
    dp = 2 * E_s.amax(-1) + gamma                                   # [B, H, q]: ‖Δp‖₁
    M_z = M_v.amax(1, keepdim=True).expand_as(M_v)                  # [B, pos, H, e]
    E_z = dp.transpose(1, 2)[..., None] * M_z + E_v.amax(1, keepdim=True) + gamma * M_z
    M_a, E_a = linear(M_z, E_z, W["blocks.0.attn.W_O"], W["blocks.0.attn.b_O"], "bphe,hed->bpd")
    M_r, E_r = M_e + M_a, E_e + E_a + u * (M_e + M_a)
    if not cfg.attn_only:
        M_p, E_p = linear(M_r, E_r, W["blocks.0.mlp.W_in"], W["blocks.0.mlp.b_in"], "bpd,dm->bpm")
        M_h, E_h = (M_p, E_p) if cfg.act_fn == "relu" else (M_p**2, 2 * M_p * E_p + u * M_p**2)
        M_m, E_m = linear(M_h, E_h, W["blocks.0.mlp.W_out"], W["blocks.0.mlp.b_out"],
                          "bpm,md->bpd")
        M_r, E_r = M_r + M_m, E_r + E_m + u * (M_r + M_m)
    return 2 * linear(M_r, E_r, W["unembed.W_U"], W["unembed.b_U"], "bpd,dv->bpv")[1]
