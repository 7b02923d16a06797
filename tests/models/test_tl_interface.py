"""The native models behave as TransformerLens models: TL's own utilities run on them and agree
with the forward pass; inputs a model cannot read raise MiMarginError."""

from __future__ import annotations

import pytest
import torch
import transformer_lens.patching as tl_patching
from transformer_lens.tools.analysis import direct_logit_attribution
from transformer_lens.tools.analysis.logit_lens import logit_lens

import mi_margin as mm
from mi_margin.models.evaluation import cross_entropy64

PATCHERS = sorted(name for name in dir(tl_patching)
                  if name.startswith("get_act_patch") and "direct_path" not in name)


@pytest.fixture
def task():
    return mm.ModularAddition(p=7, train_fraction=0.5)


def transformer(task, **kw):
    cfg = mm.TransformerConfig.for_task(task, d_model=16, n_heads=2, d_head=8, d_mlp=32, **kw)
    return mm.HookedOneLayerTransformer(cfg).eval()


def metric(logits):
    return logits[:, -1, 0].mean()


@pytest.mark.parametrize("name", PATCHERS)
def test_every_tl_activation_patcher_runs(task, name):
    model = transformer(task)
    clean, corrupted = task.tokens[:6], task.tokens[6:12]
    _, cache = model.run_with_cache(clean)
    out = getattr(tl_patching, name)(model, corrupted, cache, metric)
    assert torch.isfinite(out).all()


def test_patching_resid_pre_has_the_causal_answers(task):
    """Patching position p of resid_pre restores the clean run exactly when p carries everything
    that differs, and changes nothing at the '=' position, which is the same in both runs."""
    model = transformer(task)
    clean = task.tokens[task.tokens[:, 1] == 3][:5]       # b = 3, a varies
    corrupted = clean.clone()
    corrupted[:, 0] = (clean[:, 0] + 2) % task.p            # only a differs
    clean_logits, cache = model.run_with_cache(clean)
    out = tl_patching.get_act_patch_resid_pre(model, corrupted, cache, metric)
    assert out.shape == (1, 3)
    assert torch.allclose(out[0, 0], metric(clean_logits), atol=1e-6)
    assert torch.allclose(out[0, 2], metric(model(corrupted)), atol=1e-6)


def test_patching_refuses_training_mode_and_load_returns_eval(task, tmp_path):
    model = transformer(task).train()
    _, cache = model.run_with_cache(task.tokens[:4])
    with pytest.raises(ValueError, match="evaluation"):
        tl_patching.get_act_patch_resid_pre(model, task.tokens[4:8], cache, metric)
    mm.models.save_model(model, tmp_path / "m.safetensors")
    loaded = mm.models.load_model(tmp_path / "m.safetensors")
    assert not any(m.training for m in loaded.modules())
    tl_patching.get_act_patch_resid_pre(loaded, task.tokens[4:8], cache, metric)


def test_return_types_match_tl(task):
    model = transformer(task)
    x, y = task.tokens[:10], task.labels[:10]
    logits = model(x)
    assert torch.equal(model(x, return_type="logits"), logits)
    assert model(x, return_type=None) is None
    loss = model(x, return_type="loss", labels=y)
    assert torch.allclose(loss, cross_entropy64(logits[:, -1], y))
    per = model(x, return_type="loss", labels=y, loss_per_token=True)
    assert per.shape == (10,) and torch.allclose(per.mean(), loss)
    both_logits, both_loss = model(x, return_type="both", labels=y)
    assert torch.equal(both_logits, logits) and torch.equal(both_loss, loss)
    with pytest.raises(mm.MiMarginError, match="labels"):
        model(x, return_type="loss")
    with pytest.raises(mm.MiMarginError, match="return_type"):
        model(x, return_type="probs")
    with pytest.raises(mm.MiMarginError, match=r"\[0, 7\)"):
        model(x, return_type="loss", labels=y + 7)


def test_mlp_return_types(task):
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
    x, y = task.inputs[:10], task.labels[:10]
    assert torch.allclose(mlp(x, return_type="loss", labels=y), cross_entropy64(mlp(x), y))


def test_weights_and_circuits_are_tl_shaped(task):
    model = transformer(task, use_biases=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    attn = model.blocks[0].attn
    for name in ["b_Q", "b_K", "b_V", "b_O"]:
        assert torch.equal(getattr(model, name)[0], getattr(attn, name))
    assert model.b_Q.shape == (1, 2, 8) and model.b_O.shape == (1, 16)
    assert torch.allclose(attn.OV.AB, attn.W_V @ attn.W_O)
    assert torch.allclose(attn.QK.AB, attn.W_Q @ attn.W_K.transpose(-1, -2))
    assert torch.allclose(model.OV.AB[0], attn.OV.AB)
    assert model.all_head_labels() == ["L0H0", "L0H1"]


def test_attn_result_hook_adds_up_and_leaves_logits_unchanged(task):
    model = transformer(task, use_biases=True)
    with torch.no_grad():
        model.blocks[0].attn.b_O.normal_()
    x = task.tokens[:9]
    before, plain_cache = model.run_with_cache(x)
    assert "blocks.0.attn.hook_result" not in plain_cache.cache_dict
    model.set_use_attn_result(True)
    after, cache = model.run_with_cache(x)
    assert torch.allclose(before, after, atol=1e-6)
    result = cache["result", 0]
    assert result.shape == (9, 3, 2, 16)
    assert torch.allclose(result.sum(-2) + model.b_O[0], cache["attn_out", 0], atol=1e-6)
    assert torch.allclose(plain_cache.stack_head_results(), cache.stack_head_results(), atol=1e-6)
    other = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=16, n_heads=2,
                                                                        d_head=8, d_mlp=32))
    assert not other.cfg.use_attn_result          # flags live on each model's own config copy


def test_str_tokens_and_tokens(task):
    model = transformer(task)
    assert model.to_str_tokens(task.tokens[12]) == ["a=1", "b=5", "="]
    assert model.to_str_tokens(task.tokens[:2]) == [["a=0", "b=0", "="], ["a=0", "b=1", "="]]
    assert torch.equal(model.to_tokens("1 + 5 ="), task.tokens[12:13])
    assert torch.equal(model.to_tokens([1, 5]), task.tokens[12:13])
    assert model.to_single_token("=") == 7 and model.to_single_token("4") == 4
    three = mm.ModularAddition(p=5, k=3)
    model3 = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(three, d_model=8))
    assert model3.to_str_tokens(three.tokens[7]) == ["a1=0", "a2=1", "a3=2", "="]
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4))
    assert mlp.to_str_tokens(task.inputs[12]) == ["a=1", "b=5"]


def test_cfg_device_follows_the_model(task):
    model = transformer(task)
    assert model.cfg.device == "cpu"
    model.to("meta")
    assert model.cfg.device == "meta"


def test_dla_and_logit_lens_agree_with_the_logits(task):
    model = transformer(task)
    x, y = task.tokens[:5], task.labels[:5]
    logits = model(x)[:, -1]
    dla = direct_logit_attribution(model, x, answer_tokens=y)
    assert torch.allclose(dla.attribution.sum(0), logits.gather(1, y[:, None])[:, 0], atol=1e-5)
    lens = logit_lens(model, x)
    assert lens is not None


def test_mlp_cache_explains_missing_residual_stream(task):
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4))
    _, cache = mlp.run_with_cache(task.inputs[:3])
    for method in ["decompose_resid", "stack_head_results", "accumulated_resid"]:
        with pytest.raises(mm.MiMarginError, match="residual stream"):
            getattr(cache, method)()
    assert cache["post", 0].shape == (3, 4)


# -- inputs a model cannot read ----------------------------------------------------------------------
def test_transformer_refuses_operands_without_eq(task):
    model = transformer(task)
    with pytest.raises(mm.MiMarginError, match=r"task\.inputs are for HookedMLP"):
        model(task.inputs)
    no_eq = task.tokens[:3].clone()
    no_eq[:, -1] = 2
    with pytest.raises(mm.MiMarginError, match="'='"):
        model(no_eq)
    big = mm.ModularAddition(p=11)
    with pytest.raises(mm.MiMarginError, match="for_task"):
        model(torch.cat([big.inputs[-3:], torch.full((3, 1), 7)], dim=1))


def test_mlp_refuses_tokens_and_other_tasks(task):
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4))
    with pytest.raises(mm.MiMarginError, match=r"task\.tokens"):
        mlp(task.tokens)
    with pytest.raises(mm.MiMarginError, match="for_task"):
        mlp(mm.ModularAddition(p=11).inputs)
    parity = mm.SparseParity(n=6, k=2)
    with pytest.raises(mm.MiMarginError, match="sparse-parity"):
        mlp(parity.inputs)
    parity_mlp = mm.HookedMLP(mm.MLPConfig.for_task(parity, d_mlp=4))
    with pytest.raises(mm.MiMarginError, match="sparse parity"):
        parity_mlp(task.inputs)


def test_theory_mlp_w_e_message_survives_module_getattr(task):
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4))
    with pytest.raises(mm.MiMarginError, match="input_style='embed'"):
        _ = mlp.W_E
    assert not hasattr(mlp, "W_E")
    embed = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4, input_style="embed", d_embed=3))
    assert embed.W_E.shape == (2, 7, 3)


def test_runs_load_in_eval_mode(task, tmp_path):
    model = transformer(task).train()
    mm.train(model, task, mm.TrainConfig(steps=2, eval_every=1, progress=False), out_dir=tmp_path / "r")
    run = mm.load(tmp_path / "r")
    loaded = run.model
    assert not loaded.training and not run.model_at(0).training
    _, cache = loaded.run_with_cache(task.tokens[:4])
    tl_patching.get_act_patch_resid_pre(loaded, task.tokens[4:8], cache, metric)


@pytest.mark.parametrize("make_task", [lambda: mm.ModularAddition(p=5, k=3),
                                       lambda: mm.GroupComposition("S3"),
                                       lambda: mm.SparseParity(n=5, k=2)])
def test_models_built_for_a_task_fit_it(make_task):
    from mi_margin.models.compat import check_fits

    t = make_task()
    check_fits(mm.HookedMLP(mm.MLPConfig.for_task(t, d_mlp=4)), t)
    if t.kind == "sparse_parity":         # a ±1 vector has no tokens to embed
        with pytest.raises(mm.MiMarginError, match="input_style='theory'"):
            mm.MLPConfig.for_task(t, d_mlp=4, input_style="embed", d_embed=3)
        return
    check_fits(mm.HookedMLP(mm.MLPConfig.for_task(t, d_mlp=4, input_style="embed", d_embed=3)), t)
    check_fits(mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(t, d_model=8)), t)


def test_training_and_theory_refuse_a_model_of_another_task(task):
    mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4))
    s3 = mm.GroupComposition("S3")
    with pytest.raises(mm.MiMarginError, match="does not fit GroupComposition"):
        mm.train(mlp, s3, mm.TrainConfig(steps=1, progress=False))
    with pytest.raises(mm.MiMarginError, match="does not fit GroupComposition"):
        mm.compare_to_theory(mlp, s3)
