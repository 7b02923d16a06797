"""The table fast paths (models/fast_paths.py) against each model's ordinary path.

Forward logits, the gradient of every parameter and a few hundred training steps must agree to
float rounding, on every model family and in both dtypes; a hook on a point the fast path skips
must switch it off (and be called), a hook on a point it keeps must see the ordinary tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import mi_margin as mm
from mi_margin.models import fast_paths
from mi_margin.models.evaluation import cross_entropy64, model_inputs

# float32 / float64: (rtol, atol) for one forward or backward pass; after a training run, the largest
# difference relative to the largest entry (300 steps amplify rounding, most in float32).
PASS_TOL = {"float32": (1e-4, 1e-5), "float64": (1e-10, 1e-12)}
RUN_TOL = {"float32": 1e-4, "float64": 1e-9}


def modular(k: int = 2) -> mm.ModularAddition:
    return mm.ModularAddition(p=7 if k == 2 else 5, k=k, train_fraction=0.6, seed=1)


def build(family: str, dtype: str) -> tuple[Any, Any]:
    """(model, task) of one family; biases and weights are perturbed so every term is non-zero."""
    if family == "theory MLP":
        task: Any = modular()
        model: Any = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, dtype=dtype))
    elif family == "theory ReLU MLP":
        task = modular()
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="relu", dtype=dtype))
    elif family == "theory MLP k=3":
        task = modular(k=3)
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, act_fn="power", dtype=dtype))
    elif family == "embed MLP":
        task = mm.GroupComposition("S3", train_fraction=0.6, seed=1)
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, d_embed=12, act_fn="relu",
                                                   input_style="embed", use_biases=True,
                                                   dtype=dtype))
    elif family == "parity MLP":
        task = mm.SparseParity(n=8, k=3, train_fraction=0.6, seed=1)
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=24, dtype=dtype))
    else:
        k = 3 if family.endswith("k=3") else 2
        task = modular(k)
        model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
            task, d_model=16, n_heads=2, d_head=8, d_mlp=32, dtype=dtype,
            use_biases=family.startswith("transformer with biases"),
            attn_rate=0.3 if "attention rate" in family else 1.0,
            attention_dir="bidirectional" if "bidirectional" in family else "causal"))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(2)
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model, task


# b_K adds the same q·b_K to every score of a query, which softmax ignores: its exact gradient is 0.
SHIFT_INVARIANT = "blocks.0.attn.b_K"
FAMILIES = ["theory MLP", "theory ReLU MLP", "theory MLP k=3", "embed MLP", "parity MLP", "transformer",
            "transformer with biases", "transformer with biases k=3",
            "transformer with attention rate", "transformer with attention rate, bidirectional"]
DTYPES = ["float32", "float64"]


def ordinary_logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The path without tables: the full forward (all positions for the transformer)."""
    return model(x)[:, -1] if model.model_kind == "transformer" else model(x)


def close(a: torch.Tensor, b: torch.Tensor, tol: tuple[float, float]) -> None:
    torch.testing.assert_close(a, b, rtol=tol[0], atol=tol[1])


def close_at_scale(a: torch.Tensor, b: torch.Tensor, rel: float, what: str) -> None:
    scale = float(b.abs().max())
    assert float((a - b).abs().max()) <= rel * scale, (what, float((a - b).abs().max()), scale)


def takes_fast_path(model: Any, x: torch.Tensor) -> bool:
    if model.model_kind == "transformer":
        return fast_paths.transformer_applies(model, x)
    return fast_paths.mlp_applies(model)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_logits_match_the_ordinary_path(family, dtype):
    model, task = build(family, dtype)
    x = model_inputs(model, task)
    assert takes_fast_path(model, x) == (family != "parity MLP")
    close(model.last_logits(x), ordinary_logits(model, x), PASS_TOL[dtype])


def gradients(model: Any, task: Any, logits_of: Callable[[Any, torch.Tensor], torch.Tensor] | None,
              idx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The gradient of the mean loss over the pairs ``idx`` (default: all pairs), of the logits
    ``logits_of`` gives, or with ``None`` of the loss train() differentiates
    (:func:`fast_paths.summed_cross_entropy`, which takes the fused ReLU head where it applies)."""
    model.zero_grad(set_to_none=True)
    x, y = model_inputs(model, task), task.labels
    if idx is not None:
        x, y = x[idx], y[idx]
    if logits_of is None:
        (fast_paths.summed_cross_entropy(model, x, y) / len(y)).backward()
    else:
        cross_entropy64(logits_of(model, x), y).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_of_every_parameter_match(family, dtype):
    model, task = build(family, dtype)
    ordinary = gradients(model, task, ordinary_logits)
    for fast in [gradients(model, task, lambda m, x: m.last_logits(x)),
                 gradients(model, task, None)]:         # the training loss (fused ReLU head)
        assert fast.keys() == ordinary.keys() and len(fast) >= 2
        for name in fast:
            if name == SHIFT_INVARIANT:
                close(fast[name], torch.zeros_like(fast[name]), PASS_TOL[dtype])
                continue
            assert ordinary[name].abs().max() > 0, name
            close(fast[name], ordinary[name], PASS_TOL[dtype])


# Twin runs compound two paths' rounding over 300 steps, so they are compared in float32 only for
# the smooth networks (polynomial activations, no attention): there the twins' difference grows
# with the training map's Lipschitz constant, which does not depend on the CPU. Every network with
# a ReLU meets kinks: when a pre-activation sits within the twins' float32 difference of 0, one
# twin's gradient has the neuron and the other's not, and the runs part. Where rounding lands
# depends on the CPU's kernels (measured with MKL_ENABLE_INSTRUCTIONS=SSE4_2
# ATEN_CPU_CAPABILITY=default: the embed MLP's twins part by 1.4e-3 and the transformer's by
# 1.8e-4 of W_E's scale, past RUN_TOL, while on AVX2 kernels they stayed within it; the k=3
# transformer with biases and the theory ReLU MLP part on AVX2 too). Zhong et al.'s attention-rate
# mixture weighs every position by at least 1 − α (row sums α + (1 − α)·n), which amplifies
# float32 rounding past RUN_TOL as well. All of them train as twins in float64, where the twins
# differ by 1e-16 and straddle nothing, and every one of their float32 training steps is checked
# from shared weights below, where rounding cannot compound.
SMOOTH = ["theory MLP", "theory MLP k=3"]
TRAINED = [(f, d) for f in FAMILIES if f != "parity MLP" for d in DTYPES
           if d == "float64" or f in SMOOTH]


@pytest.mark.parametrize(("family", "dtype"), TRAINED)
def test_training_runs_match(family, dtype):
    """300 AdamW steps through train(): one model on the fast path, its twin on the ordinary path
    (a no-op hook on a skipped point switches the table path off).

    b_K is compared through the logits only: its exact gradient is 0, so AdamW turns each path's
    rounding noise in it into steps of size ~lr in float32 (on either path), and no output
    depends on it."""
    config = mm.TrainConfig(steps=300, lr=3e-3, weight_decay=0.5, eval_every=100,
                            checkpoint_schedule="none", progress=False)
    fast_model, task = build(family, dtype)
    slow_model, _ = build(family, dtype)
    calls = []
    slow_model.hook_embed.add_hook(lambda t, hook: calls.append(1))
    x = model_inputs(fast_model, task)
    assert takes_fast_path(fast_model, x) and not takes_fast_path(slow_model, x)
    fast_run = mm.train(fast_model, task, config)
    slow_run = mm.train(slow_model, task, config)
    assert len(calls) > 300
    for name, value in fast_model.state_dict().items():
        if name != SHIFT_INVARIANT and value.abs().max() > 0:
            close_at_scale(value, slow_model.state_dict()[name], RUN_TOL[dtype], name)
    with torch.no_grad():
        close_at_scale(fast_model.last_logits(x), slow_model.last_logits(x), RUN_TOL[dtype], "logits")
    for column in ["train_loss", "test_loss", "train_acc", "test_acc"]:
        close_at_scale(torch.tensor(fast_run.history[column].to_numpy()),
                       torch.tensor(slow_run.history[column].to_numpy()), RUN_TOL[dtype], column)
    assert fast_run.history["train_loss"].iloc[-1] < fast_run.history["train_loss"].iloc[0] / 2


def test_transformer_tables_refuse_a_varying_last_token():
    """The tables assume one shared last token; inputs without '=' last are refused on both paths."""
    model, task = build("transformer with biases", "float64")
    tokens = task.tokens.clone()
    tokens[::2, -1] = 0
    assert not fast_paths.transformer_applies(model, tokens)
    for run in (model.last_logits, model):
        with pytest.raises(mm.MiMarginError, match="last token must be '='"):
            run(tokens)
    assert not fast_paths.transformer_applies(model, tokens[:0])


def hooked_families() -> list[str]:
    return ["embed MLP", "theory MLP", "transformer with biases"]


@pytest.mark.parametrize("family", hooked_families())
@pytest.mark.parametrize("how", ["add_hook", "hooks context", "torch forward hook",
                                 "torch forward pre-hook", "torch global hook"])
def test_a_forward_hook_on_a_skipped_point_is_never_skipped(family, how):
    """A hook that changes a skipped activation changes the logits exactly as on the ordinary path."""
    model, task = build(family, "float64")
    x = model_inputs(model, task)
    calls: list[int] = []

    def halve(tensor: torch.Tensor, hook: Any = None) -> torch.Tensor:
        calls.append(1)
        return tensor / 2

    point = model.hook_embed                       # skipped by every fast path
    if how == "add_hook":
        point.add_hook(halve)
        got = model.last_logits(x)
        want = ordinary_logits(model, x)
        model.reset_hooks()
    elif how == "hooks context":
        with model.hooks(fwd_hooks=[("hook_embed", halve)]):
            got = model.last_logits(x)
            want = ordinary_logits(model, x)
    elif how == "torch forward hook":
        handle = point.register_forward_hook(lambda module, args, out: halve(out))
        got, want = model.last_logits(x), ordinary_logits(model, x)
        handle.remove()
    elif how == "torch forward pre-hook":
        handle = point.register_forward_pre_hook(lambda module, args: (halve(args[0]),))
        got, want = model.last_logits(x), ordinary_logits(model, x)
        handle.remove()
    else:
        handle = torch.nn.modules.module.register_module_forward_hook(
            lambda module, args, out: halve(out) if module is point else None)
        got, want = model.last_logits(x), ordinary_logits(model, x)
        handle.remove()
    assert len(calls) == 2
    close(got, want, PASS_TOL["float64"])
    assert (got - model.last_logits(x)).abs().max() > 1e-3     # the hook mattered
    assert takes_fast_path(model, x)                             # and is gone again


@pytest.mark.parametrize("family", hooked_families())
@pytest.mark.parametrize("where", ["model", "first block", "attention pattern"])
def test_a_torch_hook_on_a_skipped_module_is_never_skipped(family, where):
    """Forward hooks on modules the fast path does not call (the model itself, the transformer's
    block, its attention pattern) switch it off and are called."""
    model, task = build(family, "float64")
    x = model_inputs(model, task)
    if where == "attention pattern" and model.model_kind != "transformer":
        where = "model"
    module = {"model": model, "first block": model.blocks[0],
              "attention pattern": getattr(model.blocks[0], "attn", None) and
              model.blocks[0].attn.hook_pattern}[where]
    calls: list[int] = []
    handle = module.register_forward_hook(lambda m, args, out: calls.append(1))
    assert not takes_fast_path(model, x)
    model.last_logits(x)
    handle.remove()
    assert takes_fast_path(model, x)
    assert calls == ([1] if where != "first block" or model.model_kind == "transformer" else [])


@pytest.mark.parametrize("family", hooked_families())
def test_a_backward_hook_on_a_skipped_point_is_called(family):
    model, task = build(family, "float64")
    x = model_inputs(model, task)
    grads: list[torch.Tensor] = []
    with model.hooks(bwd_hooks=[("hook_embed", lambda g, hook: grads.append(g))]):
        assert not takes_fast_path(model, x)
        cross_entropy64(model.last_logits(x), task.labels).backward()
    assert len(grads) == 1 and grads[0].shape[:2] == x.shape[:2]


@pytest.mark.parametrize("family", hooked_families())
def test_hooks_on_points_the_fast_path_keeps_see_the_ordinary_tensors(family):
    model, task = build(family, "float64")
    x = model_inputs(model, task)
    names = ["blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post"]
    if model.model_kind == "transformer":
        names += ["blocks.0.hook_attn_out", "blocks.0.hook_resid_mid", "blocks.0.hook_mlp_out",
                  "blocks.0.hook_resid_post"]
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    hooks = [(name, lambda t, hook: seen[hook.name].append(t.clone())) for name in names]
    with model.hooks(fwd_hooks=hooks):
        assert takes_fast_path(model, x)
        model.last_logits(x)
        if model.model_kind == "transformer":
            model(x, final_pos_only=True)
        else:
            model(x)
    for name in names:
        fast, ordinary = seen[name]
        assert fast.shape == ordinary.shape, name
        close(fast, ordinary, PASS_TOL["float64"])


def test_summed_rows_forward_and_gradient():
    """summed_rows's own backward (index-adds) against autograd's numerical gradient and against
    embedding_bag's backward, with repeated rows so that contributions must add up."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    inputs = torch.randint(0, 4, (9, 3), generator=gen)
    inputs[:3] = inputs[3]                                     # the same rows several times
    assert torch.autograd.gradcheck(lambda t: fast_paths.summed_rows(t, inputs), (table,))
    want = sum(table[i, inputs[:, i]] for i in range(3))
    got = fast_paths.summed_rows(table, inputs)
    close(got, want, PASS_TOL["float64"])
    weights = torch.randn(got.shape, generator=gen, dtype=torch.float64)
    got_grad, = torch.autograd.grad((got * weights).sum(), table)
    want_grad, = torch.autograd.grad((want * weights).sum(), table)
    close(got_grad, want_grad, PASS_TOL["float64"])


def test_the_fused_relu_layer_passes_gradcheck_and_equals_the_unfused_table_path():
    """_ReluLayer (gather, in-place ReLU, output layer, backward into the matmul's output) against
    autograd's numerical gradient, and a ReLU MLP with biases on it against the same model with a
    no-op hook on ``hook_post`` (which keeps the table path, unfused): logits and every gradient."""
    gen = torch.Generator().manual_seed(0)
    flat = torch.randn(8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    rows = torch.randint(0, 8, (9, 2), generator=gen)
    rows[:3] = rows[3]                                         # the same rows several times
    W_out = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b_out = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f, w, b: fast_paths._ReluLayer.apply(f, rows, w, b), (flat, W_out, b_out))
    for dtype in DTYPES:
        fused, task = build("embed MLP", dtype)
        unfused, _ = build("embed MLP", dtype)
        unfused.layer.hook_post.add_hook(lambda t, hook: None)
        x = model_inputs(fused, task)
        assert fast_paths.mlp_applies(fused) and fast_paths.mlp_applies(unfused)
        close(fused.last_logits(x), unfused.last_logits(x), PASS_TOL[dtype])
        want = gradients(unfused, task, lambda m, x: m.last_logits(x))
        for name, grad in gradients(fused, task, lambda m, x: m.last_logits(x)).items():
            assert want[name].abs().max() > 0, name
            close(grad, want[name], PASS_TOL[dtype])


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "parity MLP"])
def test_every_float32_training_step_matches_from_the_same_weights(family):
    """300 float32 AdamW steps on the fast path (and the fused ReLU head where it applies); at every
    step the ordinary path, started from the same weights, gives the same gradient to float32
    rounding (at each parameter's scale).

    Unlike the twin runs above, rounding cannot compound along two trajectories here, so this
    covers in float32 every family, including those whose twin runs are only compared in
    float64."""
    model, task = build(family, "float32")
    twin, _ = build(family, "float32")
    twin.hook_embed.add_hook(lambda t, hook: t)
    x = model_inputs(model, task)
    assert takes_fast_path(model, x) and not takes_fast_path(twin, x)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.5)
    losses = []
    for step in range(300):
        twin.load_state_dict(model.state_dict())
        fast = gradients(model, task, None, task.train_idx)       # what train() differentiates
        ordinary = gradients(twin, task, ordinary_logits, task.train_idx)
        for name, grad in fast.items():
            if name != SHIFT_INVARIANT and ordinary[name].abs().max() > 0:
                close_at_scale(grad, ordinary[name], PASS_TOL["float32"][0], f"{name}, step {step}")
        optimizer.step()
        with torch.no_grad():
            losses.append(float(cross_entropy64(model.last_logits(x[task.train_idx]),
                                                task.labels[task.train_idx])))
    assert losses[-1] < losses[0] / 2


def test_the_fused_relu_head_passes_gradcheck_over_chunks():
    """_ReluCrossEntropy (the summed loss with its gradients formed in the forward pass, chunk by
    chunk) against autograd's numerical gradient: 9 rows in chunks of 4, 4 and 1, rows repeated,
    with b_out trained and frozen."""
    gen = torch.Generator().manual_seed(0)
    flat = torch.randn(8, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    rows = torch.randint(0, 8, (9, 2), generator=gen)
    rows[:3] = rows[3]
    labels = torch.randint(0, 3, (9,), generator=gen)
    W_out = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b_out = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    head = fast_paths._ReluCrossEntropy.apply
    assert torch.autograd.gradcheck(lambda f, w, b: head(f, rows, w, b, labels, 4),
                                    (flat, W_out, b_out))
    frozen = b_out.detach()
    assert torch.autograd.gradcheck(lambda f, w: head(f, rows, w, frozen, labels, 4), (flat, W_out))


def test_the_fused_relu_head_keeps_losses_whose_label_probability_underflows():
    """Float32 rows whose p_y underflows (losses above ~87) are recomputed from their chunk's
    logits, as cross_entropy64 does, in whichever chunk they fall."""
    gen = torch.Generator().manual_seed(1)
    flat = torch.randn(8, 5, generator=gen)
    rows = torch.randint(0, 8, (9, 2), generator=gen)
    labels = torch.randint(0, 3, (9,), generator=gen)
    W_out, b_out = 60 * torch.randn(5, 3, generator=gen), torch.randn(3, generator=gen)
    want = cross_entropy64(fast_paths._ReluLayer.apply(flat, rows, W_out, b_out), labels, "none")
    assert want.max() > 100 and want.min() < 80               # some rows underflow, some not
    for chunk in [4, 9]:
        got = fast_paths._ReluCrossEntropy.apply(flat, rows, W_out, b_out, labels, chunk)
        torch.testing.assert_close(got, want.sum(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("family", ["theory ReLU MLP", "embed MLP"])
def test_the_fused_relu_head_in_chunks_equals_the_ordinary_loss(family, monkeypatch):
    """Five rows per chunk and torch thread over all pairs (the last chunk shorter): the summed
    loss and every gradient equal the ordinary path's, and every chunk was computed."""
    model, task = build(family, "float32")
    cfg = model.cfg
    monkeypatch.setattr(fast_paths, "HEAD_CHUNK_BYTES", 4 * (cfg.d_mlp + cfg.d_vocab_out) * 5)
    rows = 5 * torch.get_num_threads()
    chunks = []
    chunk_fn = fast_paths._relu_head_chunk
    monkeypatch.setattr(fast_paths, "_relu_head_chunk",
                        lambda *args: chunks.append(len(args[1])) or chunk_fn(*args))
    x, y = model_inputs(model, task), task.labels
    assert fast_paths.relu_head_applies(model) and len(y) % rows != 0 and len(y) > rows
    with torch.no_grad():
        want = cross_entropy64(ordinary_logits(model, x), y, "sum")
        close(fast_paths.summed_cross_entropy(model, x, y), want, PASS_TOL["float32"])
    chunks.clear()
    fast = gradients(model, task, None)
    assert chunks == [rows] * (len(y) // rows) + [len(y) % rows]
    ordinary = gradients(model, task, ordinary_logits)
    for name, grad in fast.items():
        assert ordinary[name].abs().max() > 0, name
        close(grad, ordinary[name], PASS_TOL["float32"])


def test_the_fused_relu_head_serves_only_float32_relu_mlps_without_hooks():
    """Float64 runs keep F.cross_entropy's bits, other activations and the transformer have no
    such head, and a hook on the hidden layer (or one the table path skips) is called, never
    skipped: the loss then comes from ``last_logits``."""
    assert fast_paths.relu_head_applies(build("embed MLP", "float32")[0])
    for family, dtype in [("embed MLP", "float64"), ("theory MLP", "float32"),
                          ("transformer", "float32")]:
        assert not fast_paths.relu_head_applies(build(family, dtype)[0]), (family, dtype)
    for point in ["hook_embed", "layer.hook_pre", "layer.hook_post"]:
        model, task = build("embed MLP", "float32")
        calls: list[str] = []
        model.get_submodule(point).add_hook(lambda t, hook, calls=calls: calls.append(hook.name))
        assert not fast_paths.relu_head_applies(model)
        x, y = model_inputs(model, task), task.labels
        with torch.no_grad():
            want = cross_entropy64(ordinary_logits(model, x), y, "sum")
            close(fast_paths.summed_cross_entropy(model, x, y), want, PASS_TOL["float32"])
        assert calls, point
