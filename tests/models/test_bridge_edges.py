"""Edges of the TransformerBridge view and of model conversion: the analyzers read a bridge as its
native twin, the bridge reads and refuses inputs as the model does, a model's dtype conversions
survive save and load, stored TransformerLens configs that change the computation are refused,
and the one hook TransformerLens 4's bridge fires with other values is pinned."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import mi_margin as mm
from mi_margin._tl import bridge_config, transformer_bridge
from mi_margin.errors import CheckpointError, MiMarginError

TASK = mm.ModularAddition(p=5, train_fraction=0.6)
SMALL = {"d_model": 8, "n_heads": 2, "d_head": 4, "d_mlp": 16}


def transformer(**overrides):
    """A small random transformer for TASK (float64, so that hooks compare tightly)."""
    cfg = mm.TransformerConfig.for_task(TASK, **{**SMALL, "dtype": "float64", "seed": 2,
                                                 **overrides})
    return mm.HookedOneLayerTransformer(cfg).eval()


def same(a, b):
    """Equal results: tensors bit for bit, floats with NaN equal to NaN, containers item-wise."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# -- 1. the analyzers take a bridge in the model's place ------------------------------------------
ANALYZERS = {
    "margin": lambda model: mm.margin(model, TASK),
    "compare_to_theory": lambda model: mm.compare_to_theory(model, TASK),
    "nfa_correlation": lambda model: mm.analysis.nfa_correlation(model, TASK),
    "agop": lambda model: mm.analysis.agop(model, TASK),
    "agop_and_kernel": lambda model: mm.analysis.agop_and_kernel(model, TASK),
}


def fields(result):
    """What a result says: its summary and the tensors it holds."""
    if isinstance(result, mm.analysis.AGOPAndKernel):
        return {"agop": result.agop.matrix, "kernel": result.kernel.matrix,
                "weight": result.weight}
    if hasattr(result, "matrix"):
        return {"matrix": result.matrix, "labels": result.labels}
    out = {"summary": result.summary()}
    for name in ("per_example", "runner_up", "nfm", "agop_power"):
        if hasattr(result, name):
            value = getattr(result, name)
            out[name] = getattr(value, "matrix", value)
    if hasattr(result, "margins"):                   # compare_to_theory
        out["per_example"] = result.margins.per_example
        out["energy"], out["weight"] = result.structure.energy, result.structure.weight
    return out


@pytest.mark.parametrize("name", sorted(ANALYZERS))
def test_analyzers_give_the_native_result_on_the_bridge(name):
    model = transformer()
    on_native, on_bridge = ANALYZERS[name](model), ANALYZERS[name](model.to_bridge())
    want, got = fields(on_native), fields(on_bridge)
    assert want.keys() == got.keys()
    for key in want:
        assert same(want[key], got[key]), key


def test_train_and_save_refuse_a_bridge_saying_to_convert_it(tmp_path):
    bridge = transformer().to_bridge()
    with pytest.raises(MiMarginError, match=r"mm.train .*from_bridge\(bridge\)"):
        mm.train(bridge, TASK, mm.TrainConfig(steps=1, progress=False))
    with pytest.raises(MiMarginError, match=r"mm.save .*from_bridge\(bridge\)"):
        mm.save(bridge, tmp_path / "bridge.safetensors")
    assert not (tmp_path / "bridge.safetensors").exists()


# -- 2. dtype conversions follow into the config, and through save and load --------------------
def mlp64():
    return mm.HookedMLP(mm.MLPConfig.for_task(TASK, d_mlp=8, dtype="float64", seed=1))


@pytest.mark.parametrize(("make", "convert", "dtype"), [
    (lambda: transformer(dtype="float32"), lambda m: m.double(), torch.float64),
    (lambda: transformer(dtype="float32"), lambda m: m.to(torch.float64), torch.float64),
    (transformer, lambda m: m.float(), torch.float32),
    (transformer, lambda m: m.to(dtype=torch.float32), torch.float32),
    (mlp64, lambda m: m.float(), torch.float32),
    (lambda: mlp64().float(), lambda m: m.double(), torch.float64),
], ids=["tf-double", "tf-to64", "tf-float", "tf-to32", "mlp-float", "mlp-double"])
def test_converted_model_saves_and_loads_with_its_dtype(tmp_path, make, convert, dtype):
    model = convert(make())
    assert model.cfg.dtype == dtype == next(model.parameters()).dtype
    mm.save(model, tmp_path / "m.safetensors")
    back = mm.load(tmp_path / "m.safetensors")
    assert back.cfg == model.cfg
    x = TASK.tokens if isinstance(model, mm.HookedOneLayerTransformer) else TASK.inputs
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_half_model_names_its_dtype_and_is_refused_by_save(tmp_path):
    model = transformer().half()
    assert model.cfg.dtype == torch.float16
    with pytest.raises(MiMarginError, match=r"float16.*model.float\(\)"):
        mm.save(model, tmp_path / "half.safetensors")


# -- 3. the bridge reads and refuses inputs as the model does --------------------------------------
def error_of(call):
    with pytest.raises(MiMarginError) as err:
        call()
    return str(err.value)


LOSS = {"return_type": "loss", "labels": TASK.labels}


@pytest.mark.parametrize(("x", "kwargs"), [
    (TASK.inputs, LOSS), (TASK.tokens[:, [0, 1, 0]], LOSS), (TASK.tokens[:, [0, 1, 0]], {}),
    (TASK.tokens.double(), {}), (TASK.tokens + 7, {})],
    ids=["operands-only", "no-equals-loss", "no-equals-logits", "float", "out-of-range"])
def test_bridge_refuses_what_the_model_refuses_with_its_message(x, kwargs):
    model = transformer()
    bridge = model.to_bridge()
    assert error_of(lambda: bridge(x, **kwargs)) == error_of(lambda: model(x, **kwargs))


@pytest.mark.parametrize("text", ["3 + 4", "3 + 4 =", [3, 4]])
def test_bridge_tokenizes_as_the_model(text):
    model = transformer()
    bridge = model.to_bridge()
    tokens = model.to_tokens(text)
    assert torch.equal(bridge.to_tokens(text), tokens)
    if isinstance(text, str):                   # TransformerLens reads a list as a batch
        assert bridge.to_str_tokens(text) == ["3", "4", "="]
    assert torch.equal(bridge(text), bridge(tokens))
    with torch.no_grad():
        torch.testing.assert_close(bridge(text), model(tokens), rtol=0, atol=1e-12)
    assert bridge.to_single_token("=") == model.to_single_token("=") == model.eq_token


def test_bridge_refuses_a_wrong_count_of_operands_as_the_model():
    model = transformer()
    bridge = model.to_bridge()
    assert error_of(lambda: bridge.to_tokens("3 + 4 + 1")) == \
        error_of(lambda: model.to_tokens("3 + 4 + 1"))


# -- 4. stored TransformerLens configs that change the computation --------------------------------
def tl_file(tmp_path, **config):
    """A TransformerLens-layout checkpoint {"model": state, "config": {...}} of a small model."""
    model = transformer(dtype="float32")
    stored = {"n_layers": 1, "d_model": 8, "d_head": 4, "n_heads": 2, "d_mlp": 16,
              "d_vocab": TASK.d_vocab + 1, "d_vocab_out": TASK.d_vocab_out, "n_ctx": 3,
              "act_fn": "relu", "normalization_type": None, **config}
    path = tmp_path / "tl.pth"
    torch.save({"model": dict(model.state_dict()), "config": stored}, path)
    return path, model


@pytest.mark.parametrize("field", [
    {"use_attn_scale": False}, {"attn_scale": 4.0}, {"parallel_attn_mlp": True},
    {"positional_embedding_type": "rotary"}, {"positional_embedding_type": "shortformer"},
    {"final_rms": True}, {"original_architecture": "GPT2"}, {"gated_mlp": True},
    {"n_key_value_heads": 1}, {"attn_scores_soft_cap": 30.0}, {"output_logits_soft_cap": 30.0}],
    ids=lambda f: next(iter(f)) + "=" + str(next(iter(f.values()))))
def test_stored_config_that_changes_the_computation_is_refused_by_name(tmp_path, field):
    path, _ = tl_file(tmp_path, **field)
    name, value = next(iter(field.items()))
    with pytest.raises(CheckpointError, match=f"{name}={value!r}"):
        mm.load_tl_checkpoint(path)


@pytest.mark.parametrize("field", [
    {}, {"use_attn_scale": True, "attn_scale": 2.0}, {"attn_scale": -1.0},
    {"original_architecture": None, "positional_embedding_type": "standard", "final_rms": False,
     "parallel_attn_mlp": False, "n_key_value_heads": None, "attn_scores_soft_cap": -1.0}],
    ids=["bare", "sqrt-d_head", "default-scale", "all-standard"])
def test_stored_config_of_the_same_computation_loads(tmp_path, field):
    path, model = tl_file(tmp_path, **field)       # attn_scale 2.0 = sqrt(d_head=4)
    loaded = mm.load_tl_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(loaded(TASK.tokens), model(TASK.tokens))


# -- 5. hooks: all match but hook_attn_scores, which TransformerLens 4 fires post-softmax -------
def test_bridge_hooks_match_the_model_except_attn_scores():
    """Pins TransformerLens 4's behaviour stated in ``to_bridge``'s docstring: if this fails
    because hook_attn_scores now holds the scores, update that docstring (and this test)."""
    model = transformer()
    bridge = model.to_bridge()
    _, native = model.run_with_cache(TASK.tokens)
    _, bridged = bridge.run_with_cache(TASK.tokens)
    for name in native.keys():
        if name != "blocks.0.attn.hook_attn_scores":
            torch.testing.assert_close(bridged[name], native[name], rtol=0, atol=1e-12)
    scores = "blocks.0.attn.hook_attn_scores"
    assert torch.equal(bridged[scores], bridged["blocks.0.attn.hook_pattern"])
    assert not torch.allclose(bridged[scores], native[scores])
    torch.testing.assert_close(native[scores].softmax(-1), bridged[scores], rtol=0, atol=1e-12)


def test_editing_attn_scores_on_the_bridge_changes_nothing():
    bridge = transformer().to_bridge()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # TransformerLens warns the edit is discarded
        edited = bridge.run_with_hooks(TASK.tokens, fwd_hooks=[
            ("blocks.0.attn.hook_attn_scores", lambda x, hook: torch.zeros_like(x))])
    assert torch.equal(edited, bridge(TASK.tokens))


def test_a_plain_boot_native_bridge_fires_the_pattern_at_attn_scores():
    cfg = bridge_config(d_model=8, d_head=4, n_heads=2, n_layers=1, n_ctx=3, d_mlp=16,
                        d_vocab=TASK.d_vocab + 1, d_vocab_out=TASK.d_vocab_out, act_fn="relu",
                        normalization_type=None, default_prepend_bos=False, seed=0, device="cpu")
    bridge = transformer_bridge().boot_native(cfg)
    _, cache = bridge.run_with_cache(TASK.tokens)
    assert torch.equal(cache["blocks.0.attn.hook_attn_scores"], cache["blocks.0.attn.hook_pattern"])


# -- 6. tokens without an unembedding column --------------------------------------------------------
def test_residual_directions_refuse_equals_when_it_has_no_column():
    model = transformer()
    bridge = model.to_bridge()
    for what in (model, bridge):
        for token in ("=", model.eq_token, torch.tensor([1, model.eq_token])):
            with pytest.raises(MiMarginError, match=r"token.*'='.*no unembedding column"):
                what.tokens_to_residual_directions(token)
    for token in ("3", 3, torch.tensor([[0, 4], [2, 1]])):
        want = model.W_U[:, torch.as_tensor(3 if token == "3" else token)].movedim(0, -1)
        assert torch.equal(model.tokens_to_residual_directions(token), want)
        torch.testing.assert_close(bridge.tokens_to_residual_directions(token), want,
                                   rtol=0, atol=0)


def test_residual_direction_of_equals_when_the_model_has_its_column():
    """Nanda et al.'s model has p + 1 outputs, '=' included: then '=' has a direction, W_U's
    column, as in TransformerLens."""
    cfg = mm.TransformerConfig(d_vocab=TASK.d_vocab + 1, d_vocab_out=TASK.d_vocab + 1, **SMALL)
    model = mm.HookedOneLayerTransformer(cfg)
    assert torch.equal(model.tokens_to_residual_directions("="), model.W_U[:, model.eq_token])
