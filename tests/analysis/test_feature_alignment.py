"""NFM, AGOP, tangent kernel and NFA (Beaglehole et al. 2024; Mallinar et al. 2024; docs/mathematics.md §5).

Oracles: closed forms for linear networks, the exact identity G = W^T K W, a per-example autograd
loop through the model's own forward, planted (block-)circulant matrices and the exact AGOP of
the bilinear addition function, whose cross-operand block is circulant by construction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import scipy.linalg
import torch

import mi_margin as mm
from mi_margin.analysis.agop import (
    agop,
    agop_and_kernel,
    layer_function,
    layer_inputs,
    mean_gradient_outer_product,
)
from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.analysis.nfa import (
    circulant_deviation,
    matrix_correlation,
    nfa_correlation,
    psd_power,
)
from mi_margin.analysis.nfa_training import nfa_over_training
from mi_margin.analysis.nfm import layer_weight, nfm

MiMarginError = mm.MiMarginError


def mlp(task, seed=0, **kw):
    kw = {"d_mlp": 12, "dtype": "float64", "seed": seed, **kw}
    return mm.HookedMLP(mm.MLPConfig.for_task(task, **kw))


def transformer(task, **kw):
    kw = {"d_model": 8, "n_heads": 2, "d_head": 4, "d_mlp": 16, "dtype": "float64", **kw}
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, **kw))


def set_weights(model, W_in=None, W_out=None):
    with torch.no_grad():
        if W_in is not None:
            model.blocks[0].mlp.W_in.copy_(W_in)
        if W_out is not None:
            model.blocks[0].mlp.W_out.copy_(W_out)


@pytest.fixture
def task():
    return mm.ModularAddition(p=5, k=2, train_fraction=0.6, seed=1)


# -- per-example oracle: autograd through the model's own forward, one example and class at a time
def loop_agop_mlp(model, task, idx):
    k, V, _ = model.W_in.shape
    total = torch.zeros(k * V, k * V, dtype=torch.float64)
    for i in idx.tolist():
        x = torch.nn.functional.one_hot(task.inputs[i], V).double().reshape(1, k * V)
        x.requires_grad_(True)

        def embed(_, hook, x=x):
            return torch.einsum("bkv,kvm->bkm", x.view(1, k, V), model.W_in)

        logits = model.run_with_hooks(task.inputs[i:i + 1], fwd_hooks=[("hook_embed", embed)])
        for c in range(logits.shape[1]):
            (g,) = torch.autograd.grad(logits[0, c], x, retain_graph=True)
            total += g.T @ g
    return total / len(idx)


def loop_agop_transformer(model, task, idx):
    """Gradient of the MLP's logit contribution: full logits minus the residual path x W_U."""
    d = model.cfg.d_model
    total = torch.zeros(d, d, dtype=torch.float64)
    for i in idx.tolist():
        store = {}

        def swap(resid, hook, store=store):
            x = resid[:, -1].detach().clone().requires_grad_(True)
            store["x"] = x
            return torch.cat([resid[:, :-1], x[:, None]], dim=1)

        logits = model.run_with_hooks(task.tokens[i:i + 1], final_pos_only=True,
                                      fwd_hooks=[("blocks.0.hook_resid_mid", swap)])[:, -1]
        x = store["x"]
        mlp_part = logits - x @ model.W_U
        for c in range(mlp_part.shape[1]):
            (g,) = torch.autograd.grad(mlp_part[0, c], x, retain_graph=True)
            total += g.T @ g
    return total / len(idx)


# -- closed forms ------------------------------------------------------------------------------
@pytest.mark.parametrize("subset", ["train", "all"])
@pytest.mark.parametrize("method", ["jacrev", "factored"])
def test_linear_network_agop_closed_form(task, subset, method):
    """act x^1: f(x) = W_out^T W x, so J = W_out^T W for every x and G = W^T W_out W_out^T W."""
    model = mlp(task, act_fn="power", act_degree=1, use_biases=True)
    with torch.no_grad():
        model.b_in.copy_(torch.randn(12, dtype=torch.float64))
    W, H = layer_weight(model), model.W_out.detach()
    G = agop(model, task, subset=subset, method=method).matrix
    torch.testing.assert_close(G, W.T @ H @ H.T @ W, rtol=1e-12, atol=1e-12)
    K = agop(model, task, wrt="preactivation", subset=subset, method=method).matrix
    torch.testing.assert_close(K, H @ H.T, rtol=1e-12, atol=1e-12)


def test_mean_gradient_outer_product_of_quadratic_form():
    """f(x) = (x^T Q_c x)_c has J_c = x^T (Q_c + Q_c^T); G = mean Σ_c (Q_c+Q_c^T) x x^T (Q_c+Q_c^T)."""
    gen = torch.Generator().manual_seed(0)
    Q = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    X = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    S = Q + Q.transpose(1, 2)
    want = sum(S[c] @ X.T @ X @ S[c] for c in range(3)) / 7
    got = mean_gradient_outer_product(lambda x: torch.einsum("i,cij,j->c", x, Q, x), X, 3, chunk=2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act_fn", ["relu", "gelu", "quadratic"])
def test_agop_equals_w_k_w(task, act_fn):
    """Beaglehole's identity G = W^T K W, each side from its own jacrev gradients."""
    out = agop_and_kernel(mlp(task, act_fn=act_fn, d_mlp=20, use_biases=True), task)
    assert out.max_identity_error() < 1e-12
    torch.testing.assert_close(out.agop.matrix,
                               out.weight.T @ out.kernel.matrix @ out.weight, rtol=1e-12, atol=0)


def test_agop_equals_w_k_w_transformer():
    task = mm.ModularAddition(p=5, train_fraction=0.5, seed=0)
    assert agop_and_kernel(transformer(task, act_fn="gelu"), task).max_identity_error() < 1e-12


@pytest.mark.parametrize("act_fn", ["relu", "quadratic"])
@pytest.mark.parametrize("k", [2, 3])
def test_jacrev_agop_equals_per_example_loop(act_fn, k):
    task = mm.ModularAddition(p=3, k=k, train_fraction=0.7, seed=2)
    model = mlp(task, act_fn=act_fn)
    want = loop_agop_mlp(model, task, task.train_idx)
    for method in ["jacrev", "factored"]:
        got = agop(model, task, method=method).matrix
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_transformer_agop_equals_per_example_loop():
    task = mm.ModularAddition(p=5, train_fraction=0.4, seed=3)
    model = transformer(task)
    want = loop_agop_transformer(model, task, task.train_idx)
    for method in ["jacrev", "factored"]:
        torch.testing.assert_close(agop(model, task, method=method).matrix, want,
                                   rtol=1e-12, atol=1e-12)


def test_chunking_does_not_change_agop(task):
    model = mlp(task, act_fn="gelu")
    torch.testing.assert_close(agop(model, task, chunk=1).matrix, agop(model, task).matrix,
                               rtol=1e-12, atol=1e-14)


# -- the layer function is the model -----------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, {"input_style": "embed", "d_embed": 6},
                                       {"act_fn": "relu", "use_biases": True}])
def test_layer_function_reproduces_mlp_logits(task, overrides):
    model = mlp(task, **overrides)
    if overrides.get("use_biases"):
        with torch.no_grad():
            model.b_in.normal_()
            model.b_out.normal_()
    x = layer_inputs(model, task, torch.arange(len(task.labels)))
    torch.testing.assert_close(layer_function(model)(x), model(task.inputs), rtol=1e-12,
                               atol=1e-12)


def test_layer_function_parity_vector_input():
    task = mm.SparseParity(n=6, k=2)
    model = mlp(task)
    x = layer_inputs(model, task, torch.arange(len(task.labels)))
    torch.testing.assert_close(layer_function(model)(x), model(task.inputs.double()),
                               rtol=1e-12, atol=1e-12)
    assert agop(model, task).matrix.shape == (6, 6)


def test_layer_function_is_transformer_mlp_path():
    """last logits = resid_mid W_U (residual path) + f(resid_mid) (MLP path) + b_U."""
    task = mm.ModularAddition(p=5)
    model = transformer(task, use_biases=True)
    with torch.no_grad():
        for b in [model.blocks[0].mlp.b_in, model.blocks[0].mlp.b_out, model.unembed.b_U]:
            b.normal_()
    idx = torch.arange(len(task.labels))
    x = layer_inputs(model, task, idx)
    want = model.last_logits(task.tokens)
    torch.testing.assert_close(x @ model.W_U + layer_function(model)(x) + model.b_U, want,
                               rtol=1e-10, atol=1e-10)


# -- NFM ---------------------------------------------------------------------------------------
def test_nfm_mlp_shapes_blocks_symmetry():
    task = mm.ModularAddition(p=5, k=3)
    model = mlp(task)
    full = nfm(model)
    M = full.matrix
    assert M.shape == (15, 15) and full.block_size == 5 and full.n_blocks == 3
    torch.testing.assert_close(M, M.T, rtol=0, atol=0)
    assert torch.linalg.eigvalsh(M).min() > -1e-12
    W_in = model.W_in.detach()
    for i in range(3):
        torch.testing.assert_close(nfm(model, operand=i).matrix, W_in[i] @ W_in[i].T)
        for j in range(3):
            torch.testing.assert_close(full.block(i, j), W_in[i] @ W_in[j].T)
    assert full.labels[5] == "x1=0"


def test_nfm_embed_style_uses_effective_map(task):
    model = mlp(task, input_style="embed", d_embed=6)
    W_eff = torch.einsum("kve,kem->kvm", model.W_E.detach(), model.W_in.detach())
    torch.testing.assert_close(nfm(model).block(1, 0), W_eff[1] @ W_eff[0].T)


def test_nfm_transformer_residual_and_token():
    task = mm.ModularAddition(p=5)
    model = transformer(task)
    W_in, W_E = model.blocks[0].mlp.W_in.detach(), model.W_E.detach()
    torch.testing.assert_close(nfm(model).matrix, W_in @ W_in.T)
    tok = nfm(model, space="token")
    torch.testing.assert_close(tok.matrix, W_E @ W_in @ W_in.T @ W_E.T)
    assert tok.matrix.shape == (6, 6) and tok.labels[-1] == "="


# -- circulant deviation -----------------------------------------------------------------------
def circulant(c):
    return torch.stack([c.roll(r) for r in range(len(c))])          # A[r, m] = c[m - r]


def test_circulant_deviation_zero_on_block_circulant():
    """Mallinar's Observation-1 form [[A, C^T], [C, A]], A = c1 I + c2 11^T, C circulant."""
    p, gen = 7, torch.Generator().manual_seed(0)
    C = circulant(torch.rand(p, generator=gen, dtype=torch.float64))
    A = 2.0 * torch.eye(p, dtype=torch.float64) - torch.ones(p, p, dtype=torch.float64) / p
    M = torch.cat([torch.cat([A, C.T], 1), torch.cat([C, A], 1)], 0)
    fm = FeatureMatrix(M, "M", tuple(str(i) for i in range(2 * p)), block_size=p)
    assert circulant_deviation(fm) < 1e-15
    assert circulant_deviation(fm, (0, 1)) < 1e-15
    assert circulant_deviation(C) < 1e-15 and circulant_deviation(A) < 1e-15


def test_circulant_deviation_positive_otherwise():
    p, gen = 7, torch.Generator().manual_seed(1)
    R = torch.rand(p, p, generator=gen, dtype=torch.float64)
    assert circulant_deviation(R) > 0.05
    assert circulant_deviation(3 * R) == pytest.approx(circulant_deviation(R), rel=1e-12)
    hankel = circulant(torch.arange(p, dtype=torch.float64)).flip(1)   # depends on r + m
    assert circulant_deviation(hankel) > 0.05


def test_circulant_deviation_formula_by_hand():
    """D = Σ_j Σ_l (S[l, j] − mean_l S[:, j])² / ||A||_F², S[l, j] = A[l, (j + l) mod p]."""
    A = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0], [4.0, 0.0, 1.0]], dtype=torch.float64)
    S = np.array([[A[r, (j + r) % 3].item() for j in range(3)] for r in range(3)])
    want = ((S - S.mean(0)) ** 2).sum() / (A.numpy() ** 2).sum()
    assert circulant_deviation(A) == pytest.approx(want, rel=1e-14)


def test_agop_of_bilinear_addition_has_circulant_cross_block():
    """f_c(x) = Σ_{i+j≡c} x_a[i] x_b[j]: on any training subset the cross block of the AGOP is
    G[b-part i', a-part i] = #{train (a, b): a − b ≡ i − i'} / n, a circulant; the diagonal
    blocks are multiples of I."""
    p = 7
    task = mm.ModularAddition(p=p, train_fraction=0.4, seed=5)
    P = torch.zeros(p, p, p, dtype=torch.float64)
    for i in range(p):
        for j in range(p):
            P[(i + j) % p, i, j] = 1.0

    def f(x):
        return torch.einsum("i,cij,j->c", x[:p], P, x[p:])

    X = torch.nn.functional.one_hot(task.inputs[task.train_idx], p).double().flatten(1)
    G = mean_gradient_outer_product(f, X, p)
    fm = FeatureMatrix(G, "AGOP", tuple(str(i) for i in range(2 * p)), block_size=p)
    assert circulant_deviation(fm) < 1e-14
    a, b = task.inputs[task.train_idx].T
    counts = torch.bincount((a - b) % p, minlength=p).double() / len(a)
    want = torch.stack([counts[(torch.arange(p) - r) % p] for r in range(p)])   # [i', i]
    torch.testing.assert_close(fm.block(1, 0), want)
    torch.testing.assert_close(fm.block(0, 0), torch.eye(p, dtype=torch.float64))


# -- NFA correlation ---------------------------------------------------------------------------
def orthonormal_rows(m, c, seed):
    q, _ = torch.linalg.qr(torch.randn(c, m, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q.T.contiguous()                                           # [m, c], rows orthonormal


def test_nfa_exact_for_linear_net_with_isotropic_head():
    """Linear net with W_out W_out^T = I: G = W^T W, so ρ(W^T W, G^1) = 1 and G^{1/2} ≠ NFM."""
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    model = mlp(task, act_fn="power", act_degree=1, d_mlp=5)
    set_weights(model, W_out=orthonormal_rows(5, 7, 0))
    res = nfa_correlation(model, task, power=1.0)
    assert res.pearson == pytest.approx(1.0, abs=1e-12)
    assert res.cosine == pytest.approx(1.0, abs=1e-12)
    assert res.off_diagonal_pearson == pytest.approx(1.0, abs=1e-12)
    assert nfa_correlation(model, task, power=0.5).pearson < 1 - 1e-6
    set_weights(model, W_out=torch.randn(5, 7, dtype=torch.float64) * torch.arange(1.0, 8))
    assert nfa_correlation(model, task, power=1.0).pearson < 1 - 1e-3


def test_centered_nfa_planted():
    """Same net, W = W_0 + Δ: centered matrices are Δ^T Δ and Δ^T Δ, so the C-NFA is 1."""
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    model = mlp(task, act_fn="power", act_degree=1, d_mlp=5)
    set_weights(model, W_out=orthonormal_rows(5, 7, 1))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    set_weights(model, W_in=model.W_in.detach() + torch.randn(2, 7, 5, dtype=torch.float64))
    res = nfa_correlation(model, task, power=1.0, centered=True, init_state=init)
    assert res.pearson == pytest.approx(1.0, abs=1e-12) and res.centered
    dW = layer_weight(model) - torch.cat(list(init["blocks.0.mlp.W_in"]), 0).T
    torch.testing.assert_close(res.nfm.matrix, dW.T @ dW)
    assert res.relative_change == pytest.approx(float(dW.norm() / layer_weight(model).norm()))


def test_nfa_with_run_and_result_views():
    task = mm.ModularAddition(p=5, train_fraction=0.6)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16))
    run = mm.train(model, task, mm.TrainConfig(steps=30, lr=1e-2, n_checkpoints=3,
                                               progress=False))
    res = nfa_correlation(model, task, centered=True, init_state=run)
    assert -1 <= res.pearson <= 1 and res.relative_change > 0
    table = res.to_dataframe()
    assert list(table.columns) == ["rank", "nfm_eigenvalue", "agop_power_eigenvalue",
                                   "eigenvector_overlap"]
    assert len(res.top(3)) == 3 and res.summary()["centered"] is True
    assert isinstance(res.plot(), go.Figure)
    G = agop(model, task)
    assert G.top(2)["eigenvalue"].is_monotonic_decreasing
    assert isinstance(G.plot(), go.Figure) and isinstance(G.to_dataframe(), pd.DataFrame)

    traj = nfa_over_training(run)
    frame = traj.to_dataframe()
    assert frame["step"].tolist() == sorted(run.checkpoints)
    assert np.isnan(frame["centered_pearson"].iloc[0]) and frame["relative_change"].iloc[0] == 0
    assert {"nfm_circulant_deviation", "test_acc"} <= set(frame.columns)
    last = run.model_at(frame["step"].iloc[-1])
    for method in ["jacrev", "factored"]:
        direct = nfa_correlation(last, task, method=method)
        assert frame["pearson"].iloc[-1] == pytest.approx(direct.pearson, abs=1e-12)
    centered = nfa_correlation(last, task, centered=True, init_state=run)
    assert frame["centered_pearson"].iloc[-1] == pytest.approx(centered.pearson, abs=1e-12)
    assert isinstance(traj.plot(), go.Figure) and len(traj.top(1)) == 1


def test_psd_power_and_correlation():
    gen = torch.Generator().manual_seed(3)
    B = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    A = B @ B.T
    root = psd_power(A, 0.5)
    torch.testing.assert_close(root @ root, A)
    torch.testing.assert_close(root, torch.from_numpy(np.real(scipy.linalg.sqrtm(A.numpy()))))
    pearson, cosine = matrix_correlation(A, 3 * A + 2)
    assert pearson == pytest.approx(1.0) and cosine < 1
    flat = A.reshape(-1).numpy()
    assert matrix_correlation(A, root)[0] == pytest.approx(
        np.corrcoef(flat, root.reshape(-1).numpy())[0, 1], rel=1e-12)


# -- bad arguments -----------------------------------------------------------------------------
def test_bad_arguments_raise(task):
    model = mlp(task)
    full = mm.ModularAddition(p=5)
    cases = [
        lambda: nfm(model, layer=1),
        lambda: nfm(model, operand=2),
        lambda: nfm(model, space="token"),
        lambda: nfm(transformer(full), space="input"),
        lambda: nfm(transformer(full), operand=0),
        lambda: nfm(torch.nn.Linear(2, 2)),
        lambda: agop(model, task, wrt="output"),
        lambda: agop(model, task, subset="val"),
        lambda: agop(model, full, subset="test"),                  # empty test split
        lambda: agop(model, task, method="loop"),
        lambda: agop(model, task, chunk=0),
        lambda: agop(model, mm.ModularAddition(p=7)),                # task/model mismatch
        lambda: nfa_correlation(model, task, power=0),
        lambda: nfa_correlation(model, task, power=-0.5),
        lambda: nfa_correlation(model, task, centered=True),
        lambda: nfa_correlation(model, task, init_state=[1, 2]),
        lambda: nfa_correlation(model, task, init_state={"W": torch.zeros(1)}),
        lambda: circulant_deviation(torch.zeros(3, 3)),
        lambda: circulant_deviation(torch.zeros(3, 4)),
        lambda: circulant_deviation(nfm(model, operand=0)),        # no operand blocks
        lambda: matrix_correlation(torch.eye(2), torch.eye(3)),
    ]
    for case in cases:
        with pytest.raises(MiMarginError):
            case()
    run = mm.train(mlp(task), task, mm.TrainConfig(steps=2, n_checkpoints=2, progress=False))
    with pytest.raises(MiMarginError, match="missing"):
        nfa_over_training(run, steps=[1234])
