"""Models: hook names (public API), shapes, the fast last-position path, the bridge, configs."""

from __future__ import annotations

import pytest
import torch

import mi_margin as mm
from mi_margin.models import config_from_dict

TRANSFORMER_HOOKS = [
    "hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_q",
    "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_attn_scores",
    "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z", "blocks.0.attn.hook_result",
    "blocks.0.hook_attn_out",
    "blocks.0.hook_resid_mid", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post",
    "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post",
]
MLP_HOOKS = ["hook_embed", "blocks.0.hook_resid_pre", "blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post",
             "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]


@pytest.fixture
def task():
    return mm.ModularAddition(p=7, train_fraction=0.5)


def small_transformer(task, **kw):
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=16, n_heads=2, d_head=8, d_mlp=32, **kw))


def test_transformer_hook_names_are_pinned(task):
    model = small_transformer(task)
    assert sorted(model.hook_dict) == sorted(TRANSFORMER_HOOKS)


def test_mlp_hook_names_are_pinned(task):
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
    assert sorted(model.hook_dict) == sorted(MLP_HOOKS)


def test_transformer_defaults_are_nanda():
    cfg = mm.TransformerConfig.for_task(mm.ModularAddition(p=113))
    assert (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (128, 4, 32, 512)
    assert (cfg.act_fn, cfg.attention_dir, cfg.use_biases, cfg.d_vocab, cfg.n_ctx) == (
        "relu", "causal", False, 114, 3)


def test_transformer_cache_and_tl_helpers(task):
    model = small_transformer(task)
    logits, cache = model.run_with_cache(task.tokens)
    assert logits.shape == (49, 3, 7)
    assert cache["pattern", 0].shape == (49, 2, 3, 3)
    assert cache["post", 0].shape == (49, 3, 32)
    resid = cache.decompose_resid()
    assert torch.allclose(resid.sum(0), cache["resid_post", 0], atol=1e-5)
    heads = cache.stack_head_results(layer=-1)
    assert torch.allclose(heads.sum(0), cache["attn_out", 0], atol=1e-5)
    causal = cache["pattern", 0]
    assert torch.all(causal[:, :, 0, 1:] == 0)


def test_final_position_path_matches_full_pass(task):
    model = small_transformer(task, act_fn="quadratic")
    full = model(task.tokens)[:, -1]
    fast = model.last_logits(task.tokens)
    assert torch.allclose(full, fast, atol=1e-5)


def test_weights_have_transformer_lens_names_and_shapes(task):
    model = small_transformer(task)
    keys = set(model.state_dict())
    for key in ["embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_Q", "blocks.0.attn.b_O",
                "blocks.0.mlp.W_in", "blocks.0.mlp.b_out", "unembed.W_U", "unembed.b_U"]:
        assert key in keys
    assert model.W_Q.shape == (1, 2, 16, 8) and model.W_O.shape == (1, 2, 8, 16)
    assert model.W_in.shape == (1, 16, 32) and model.W_U.shape == (16, 7)
    assert model.OV.shape == (1, 2, 16, 16)
    ov = model.OV[0, 0].AB
    assert torch.allclose(ov, model.W_V[0, 0] @ model.W_O[0, 0], atol=1e-6)


def test_biases_off_by_default_and_trainable_when_on(task):
    off = small_transformer(task)
    assert all("b_" not in name for name, _ in off.named_parameters())
    on = small_transformer(task, use_biases=True)
    assert any(name.endswith("b_in") for name, _ in on.named_parameters())


@pytest.mark.parametrize("act", ["relu", "quadratic", "gelu"])
def test_bridge_matches_logits_and_hooks(task, act):
    model = small_transformer(task, act_fn=act, use_biases=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    bridge = model.to_bridge()
    ours, cache = model.run_with_cache(task.tokens)
    theirs, bcache = bridge.run_with_cache(task.tokens)
    assert torch.allclose(ours, theirs, atol=1e-5)
    for name in ["blocks.0.attn.hook_pattern", "blocks.0.mlp.hook_post", "blocks.0.hook_resid_post"]:
        assert torch.allclose(cache[name], bcache[name], atol=1e-5)


def test_mlp_theory_style_is_sum_of_operand_maps():
    task = mm.ModularAddition(p=5, k=3)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=6, act_fn="power"))
    assert model.cfg.degree == 3
    u = model.W_in
    pre = u[0][task.inputs[:, 0]] + u[1][task.inputs[:, 1]] + u[2][task.inputs[:, 2]]
    expected = (pre**3) @ model.W_out
    assert torch.allclose(model(task.inputs), expected, atol=1e-5)


def test_mlp_embed_style_effective_map():
    task = mm.ModularAddition(p=5)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=6, d_embed=4, input_style="embed",
                                               act_fn="relu"))
    eff = model.W_in_eff
    pre = eff[0][task.inputs[:, 0]] + eff[1][task.inputs[:, 1]]
    assert torch.allclose(model(task.inputs), torch.relu(pre) @ model.W_out, atol=1e-5)
    assert model.homogeneity()[0] is None


def test_parity_mlp_reads_the_vector():
    task = mm.SparseParity(n=6, k=3)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4, act_fn="power"))
    assert model.W_in.shape == (1, 6, 4)
    expected = ((task.inputs @ model.W_in[0]) ** 3) @ model.W_out
    assert torch.allclose(model(task.inputs), expected, atol=1e-5)
    assert model.homogeneity()[0] == 4


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (mm.TransformerConfig, {"d_model": 0}, "d_model"),
    (mm.TransformerConfig, {"act_fn": "tanh"}, "act_fn"),
    (mm.TransformerConfig, {"act_fn": "power"}, "act_degree"),
    (mm.MLPConfig, {"input_style": "concat"}, "input_style"),
    (mm.MLPConfig, {"dtype": "float16"}, "dtype"),
])
def test_config_errors(cls, kwargs, match):
    with pytest.raises(mm.MiMarginError, match=match):
        cls(**kwargs)


def test_config_round_trip_and_typos():
    cfg = mm.MLPConfig(d_vocab=5, d_vocab_out=5, d_mlp=3, act_fn="relu")
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(mm.MiMarginError, match="MLPConfig has no field"):
        mm.MLPConfig.from_dict({**cfg.to_dict(), "d_mpl": 4})


def test_same_seed_same_weights(task):
    a, b = small_transformer(task), small_transformer(task)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = small_transformer(task, seed=1)
    assert not torch.equal(a.W_E, c.W_E)


def test_power_activation_takes_the_task_s_degree_when_none_is_given():
    """act_degree=None means 'the default', the task's k, as leaving it out does (it was refused)."""
    task = mm.ModularAddition(p=7, k=3)
    for cls in (mm.MLPConfig, mm.TransformerConfig):
        assert cls.for_task(task, act_fn="power", act_degree=None).act_degree == 3
        assert cls.for_task(task, act_fn="power").act_degree == 3
        assert cls.for_task(task, act_fn="power", act_degree=2).act_degree == 2
