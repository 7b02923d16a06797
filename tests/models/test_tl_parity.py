"""TransformerLens parity at the edges, checked with TransformerLens's own utilities: the MLP's
residual-stream hooks under TL's patching, models back from train() and to_bridge() in eval mode,
TL's runtime cfg flags and fields, and the regressions TL users were bitten by (state-dict round
trips, W_in/W_out orientation, the residual-stream identities of the hooks)."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
import transformer_lens.patching as tl_patching
from transformer_lens.tools.analysis.logit_lens import logit_lens

import mi_margin as mm
from mi_margin.models.evaluation import cross_entropy64

P7 = mm.ModularAddition(p=7, train_fraction=0.5)


def perturbed(model, seed=0):
    """``model`` (in eval mode) with every parameter moved off its initialisation, so that zero
    biases cannot hide a wrong identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.add_(torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype) * 0.3)
    return model.eval()


def transformer(**kw):
    cfg = mm.TransformerConfig.for_task(P7, d_model=16, n_heads=2, d_head=8, d_mlp=32, **kw)
    return mm.HookedOneLayerTransformer(cfg).eval()


MLPS = {
    "theory": lambda: (mm.HookedMLP(mm.MLPConfig.for_task(P7, d_mlp=8, use_biases=True)), P7),
    "embed": lambda: (mm.HookedMLP(mm.MLPConfig.for_task(P7, d_mlp=8, d_embed=5, act_fn="relu",
                                                          input_style="embed", use_biases=True)), P7),
    "parity": lambda: (mm.HookedMLP(mm.MLPConfig.for_task(mm.SparseParity(n=5, k=2), d_mlp=8,
                                                           act_fn="relu", use_biases=True)),
                       mm.SparseParity(n=5, k=2)),
}


def metric(logits):
    """A weighted sum over the batch of logit 0 (weighted: a corrupted batch that permutes the
    clean one must not give the same value), read at the last position of the transformer."""
    first = logits[..., 0] if logits.ndim == 2 else logits[:, -1, 0]
    return (first * torch.arange(1, len(first) + 1)).sum()


# -- the MLP's residual-stream hooks -----------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(MLPS))
def test_mlp_stream_hooks_hold_their_documented_identities(kind):
    model, task = MLPS[kind]()
    model = perturbed(model)
    x = task.inputs[:9]
    logits, cache = model.run_with_cache(x)
    torch.testing.assert_close(model(x), logits)           # caching changes nothing (the
    #                                                        parity stream sums in another order)
    resid_pre, pre, post = cache["resid_pre", 0], cache["pre", 0], cache["post", 0]
    layer = model.layer
    assert resid_pre.shape == (9, x.shape[1], model.cfg.d_model)
    if model.cfg.input_style == "embed":
        hidden = torch.einsum("bke,kem->bm", resid_pre, model.W_in)
    else:
        hidden = resid_pre.sum(1)
    torch.testing.assert_close(pre, hidden + layer.b_in)
    torch.testing.assert_close(post, layer.act(pre))
    mlp_out = cache["mlp_out", 0]
    assert mlp_out.shape == (9, x.shape[1], model.cfg.d_vocab_out)
    torch.testing.assert_close(mlp_out[:, -1], post @ model.W_out + model.b_out)
    assert not mlp_out[:, :-1].any()                        # written at the last position only
    assert torch.equal(cache["resid_post", 0], mlp_out)     # no skip connection
    assert torch.equal(mlp_out[:, -1], logits)
    if model.cfg.input_kind == "one_hot":
        assert torch.equal(cache["hook_embed"], resid_pre)
        if model.cfg.input_style == "theory":               # W_in[i, a_i] at position i
            torch.testing.assert_close(resid_pre, model.W_in[torch.arange(2), x])
    else:                                                   # x_j · W_in[0, j] at coordinate j
        torch.testing.assert_close(resid_pre, x[:, :, None] * model.W_in[0])
        torch.testing.assert_close(cache["hook_embed"][:, 0], resid_pre.sum(1))


@pytest.mark.parametrize("kind", sorted(MLPS))
def test_tl_patching_runs_on_the_mlp_with_the_causal_answers(kind):
    """Patching one position of resid_pre from a clean run into a corrupted run that differs only
    there restores the clean metric; patching a position that does not differ changes nothing;
    patching mlp_out restores the clean metric exactly at the last position, nowhere else."""
    model, task = MLPS[kind]()
    model = perturbed(model)
    clean = task.inputs[:6]
    corrupted = clean.clone()
    if model.cfg.input_kind == "vector":
        corrupted[:, 0] = -clean[:, 0]                      # flip coordinate 0
    else:
        corrupted[:, 0] = (clean[:, 0] + 3) % task.d_vocab  # change operand a
    clean_logits, cache = model.run_with_cache(clean)
    clean_m, corrupted_m = metric(clean_logits), metric(model(corrupted))
    assert not torch.allclose(clean_m, corrupted_m)        # the test can see a patch
    resid = tl_patching.get_act_patch_resid_pre(model, corrupted, cache, metric)
    assert resid.shape == (1, clean.shape[1])
    torch.testing.assert_close(resid[0, 0], clean_m.detach())
    torch.testing.assert_close(resid[0, 1:], corrupted_m.detach().expand(clean.shape[1] - 1))
    out = tl_patching.get_act_patch_mlp_out(model, corrupted, cache, metric)
    torch.testing.assert_close(out[0, -1], clean_m.detach())
    torch.testing.assert_close(out[0, :-1], corrupted_m.detach().expand(clean.shape[1] - 1))


def test_mlp_training_is_unchanged_by_the_stream_hooks():
    """The stream tensors are only built when a hook listens: a no-op hook on every point gives
    the same trained weights as none (the ordinary path's arithmetic, to float rounding)."""
    model, task = MLPS["embed"]()
    hooked, _ = MLPS["embed"]()
    for name in ["blocks.0.hook_resid_pre", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]:
        hooked.add_perma_hook(name, lambda x, hook: x)
    cfg = mm.TrainConfig(steps=5, eval_every=5, progress=False)
    mm.train(model, task, cfg)
    mm.train(hooked, task, cfg)
    for (name, a), b in zip(model.state_dict().items(), hooked.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


# -- the transformer's residual-stream identities ----------------------------------------------------
def test_transformer_stream_identities():
    model = perturbed(transformer(use_biases=True))
    model.cfg.use_attn_result = True
    x = P7.tokens[:9]
    logits, cache = model.run_with_cache(x)
    block = model.block
    torch.testing.assert_close(cache["resid_pre", 0], cache["hook_embed"] + cache["hook_pos_embed"])
    torch.testing.assert_close(cache["hook_embed"], model.W_E[x])
    torch.testing.assert_close(cache["attn_out", 0], cache["result", 0].sum(-2) + model.b_O[0])
    torch.testing.assert_close(cache["resid_mid", 0], cache["resid_pre", 0] + cache["attn_out", 0])
    torch.testing.assert_close(cache["resid_post", 0], cache["resid_pre", 0] + cache["attn_out", 0]
                               + cache["mlp_out", 0])
    torch.testing.assert_close(logits, cache["resid_post", 0] @ model.W_U + model.b_U)
    # W_in [d_model, d_mlp] reads the residual stream; W_out [d_mlp, d_model] writes it
    assert model.W_in.shape == (1, 16, 32) and model.W_out.shape == (1, 32, 16)
    torch.testing.assert_close(cache["pre", 0], cache["resid_mid", 0] @ model.W_in[0] + model.b_in[0])
    torch.testing.assert_close(cache["mlp_out", 0], cache["post", 0] @ model.W_out[0]
                               + model.b_out[0])
    torch.testing.assert_close(cache["post", 0], block.mlp.act(cache["pre", 0]))
    # TL's own decomposition adds up to the same stream
    torch.testing.assert_close(cache.decompose_resid(return_labels=False).sum(0),
                               cache["resid_post", 0])


def test_w_in_w_out_orientation_matches_the_bridge():
    """The bridge (TransformerLens's own layout) has the same W_in, W_out and head weights."""
    model = perturbed(transformer(use_biases=True))
    bridge = model.to_bridge()
    for name in ["W_in", "W_out", "W_Q", "W_K", "W_V", "W_O", "W_E", "W_U"]:
        torch.testing.assert_close(getattr(bridge, name), getattr(model, name), msg=name)


def test_mlp_w_in_w_out_orientation():
    """W_in [k, d_vocab, d_mlp]: neuron j's pre-activation on (a, b) is W_in[0, a, j] + W_in[1, b, j];
    W_out [d_mlp, d_vocab_out]: logit c is Σ_j post_j W_out[j, c]."""
    model = perturbed(mm.HookedMLP(mm.MLPConfig.for_task(P7, d_mlp=4, act_fn="quadratic")))
    a, b = 3, 5
    x = torch.tensor([[a, b]])
    pre = model.W_in[0, a] + model.W_in[1, b]
    torch.testing.assert_close(model(x)[0], (pre**2) @ model.W_out)


@pytest.mark.parametrize("make", [lambda: perturbed(transformer(use_biases=True)),
                                  lambda: perturbed(MLPS["embed"]()[0])])
def test_state_dict_round_trip_restores_the_weights(make, tmp_path):
    model = make()
    other = type(model)(model.cfg.replace(seed=model.cfg.seed + 1)).eval()
    x = (P7.tokens if model.model_kind == "transformer" else P7.inputs)[:10]
    assert not torch.allclose(other(x), model(x))           # a round trip that failed would show
    other.load_state_dict(model.state_dict())
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(other(x), model(x))
    mm.save(model, tmp_path / "m.safetensors")
    loaded = mm.load(tmp_path / "m.safetensors")
    assert torch.equal(loaded(x), model(x)) and not loaded.training
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


# -- eval mode, the bridge ---------------------------------------------------------------------------
def test_train_returns_eval_mode_and_patching_runs_straight_after():
    model = transformer().train()
    mm.train(model, P7, mm.TrainConfig(steps=2, eval_every=1, progress=False))
    assert not any(m.training for m in model.modules())
    _, cache = model.run_with_cache(P7.tokens[:4])
    tl_patching.get_act_patch_resid_pre(model, P7.tokens[4:8], cache, metric)
    runs = mm.train_batched([transformer().train(), transformer(seed=1).train()], P7,
                            mm.TrainConfig(steps=2, eval_every=1, progress=False))
    assert not any(m.training for run in runs for m in run.model.modules())


def test_bridge_is_in_eval_mode_with_tokens_and_the_answer_loss():
    model = perturbed(transformer())
    bridge = model.to_bridge()
    assert not any(m.training for m in bridge.modules())
    x, y = P7.tokens[:5], P7.labels[:5]
    assert bridge.to_str_tokens(x[3]) == ["0", "3", "="]
    assert torch.equal(bridge.to_tokens("1 + 5 ="), model.to_tokens("1 + 5 ="))
    loss = bridge(x, return_type="loss", labels=y)
    torch.testing.assert_close(loss, cross_entropy64(model(x)[:, -1], y))
    logits, both_loss = bridge(x, return_type="both", labels=y)
    torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-5)  # float32, another order
    torch.testing.assert_close(both_loss, loss)
    with pytest.raises(mm.MiMarginError, match="needs labels"):
        bridge(x, return_type="loss")
    _, cache = bridge.run_with_cache(x)
    tl_patching.get_act_patch_resid_pre(bridge, P7.tokens[5:10], cache, metric)


# -- cfg: TL's runtime flags and fields --------------------------------------------------------------
def test_cfg_takes_tl_runtime_flags_on_the_models_own_copy():
    model = transformer()
    shared = model.cfg.replace()
    model.cfg.use_attn_result = True                        # the TL idiom
    _, cache = model.run_with_cache(P7.tokens[:3])
    assert cache["result", 0].shape == (3, 3, 2, 16)
    assert not shared.use_attn_result and not transformer().cfg.use_attn_result
    with pytest.raises(mm.MiMarginError, match="use_split_qkv_input=True: split Q/K/V"):
        model.cfg.use_split_qkv_input = True
    model.cfg.use_split_qkv_input = False                   # what TL's code restores is fine
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(P7, d_mlp=4))
    with pytest.raises(mm.MiMarginError, match="no attention"):
        mlp.cfg.use_attn_result = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.cfg.d_model = 3                               # saved fields stay frozen
    with pytest.raises(mm.MiMarginError, match="use_attn_result must be"):
        model.cfg.use_attn_result = "yes"


def test_cfg_dtype_is_a_torch_dtype_saved_by_name(tmp_path):
    cfg = mm.MLPConfig.for_task(P7, d_mlp=4, dtype="float64")
    assert cfg.dtype is torch.float64 and torch.zeros(2, dtype=cfg.dtype).dtype == torch.float64
    assert cfg.to_dict()["dtype"] == "float64"
    assert mm.MLPConfig.from_dict(cfg.to_dict()) == cfg == cfg.replace(dtype=torch.float64)
    assert mm.TransformerConfig(dtype=torch.float32).dtype is torch.float32
    with pytest.raises(mm.MiMarginError, match="dtype must be one of"):
        mm.MLPConfig(dtype=torch.float16)
    model = mm.HookedMLP(cfg)
    assert model.W_in.dtype == torch.float64
    run = mm.train(model, P7, mm.TrainConfig(steps=1, eval_every=1, progress=False),
                   out_dir=tmp_path / "r")
    assert '"dtype": "float64"' in (tmp_path / "r" / "run.json").read_text()
    assert mm.load(tmp_path / "r").model.cfg.dtype is torch.float64 and run.step == 1


def test_cfg_has_the_fields_tl_code_reads():
    model = transformer()
    cfg = model.cfg
    assert cfg.model_name == "mi_margin-transformer-d16-h2-mlp32-relu"
    assert cfg.original_architecture == "HookedOneLayerTransformer" and cfg.eps > 0
    assert cfg.n_layers == 1 and cfg.normalization_type is None and cfg.device == "cpu"
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(P7, d_mlp=4))
    assert mlp.cfg.original_architecture == "HookedMLP" and "mlp4" in mlp.cfg.model_name
    # TL's logit lens decodes its top answers with model.tokenizer
    lens = logit_lens(model, P7.tokens[:2], top_k=2)
    decoded = lens.top_tokens(model.tokenizer)
    top = model(P7.tokens[:2])[:, -1].topk(2).indices
    assert decoded[lens.labels[-1]] == [[str(int(t)) for t in row] for row in top]
    assert mlp.tokenizer.batch_decode([[6], [0]]) == ["6", "0"]
    assert MLPS["parity"]()[0].tokenizer is None
    with pytest.raises(mm.MiMarginError, match="no token 9"):
        model.tokenizer.decode([9])


def test_tl_utils_import_points_to_utilities():
    with pytest.raises(ModuleNotFoundError, match=r"transformer_lens\.utilities"):
        importlib.import_module("transformer_lens.utils")
