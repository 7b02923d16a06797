"""HookedOneLayerTransformer.from_bridge, the inverse of to_bridge: exact round trips, the bridge's
logits within a rounding bound derived for this network, bridges booted by hand, and refusals."""

import pytest
import torch
from oracles.rounding import rounding_bound

import mi_margin as mm
from mi_margin._tl import bridge_config, transformer_bridge
from mi_margin.models.bridge import native_config

TASK = mm.ModularAddition(p=5)
SMALL = {"d_model": 8, "n_heads": 2, "d_head": 4, "d_mlp": 6}


def transformer(**overrides):
    cfg = mm.TransformerConfig.for_task(TASK, **{**SMALL, "seed": 3, **overrides})
    model = mm.HookedOneLayerTransformer(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():                    # biases (when the model has them) away from zero
        for value in model.parameters():
            value.add_(0.3 * torch.randn(value.shape, generator=gen, dtype=value.dtype))
    return model


def booted(seed=0, **fields):
    """A bridge a user boots by hand (no mi_margin config recorded on it)."""
    cfg = {"d_model": 8, "d_head": 4, "n_heads": 2, "n_layers": 1, "n_ctx": TASK.n_ctx, "d_mlp": 6,
           "d_vocab": TASK.d_vocab + 1, "d_vocab_out": TASK.d_vocab_out, "act_fn": "relu",
           "normalization_type": None, "default_prepend_bos": False, "seed": seed,
           "device": "cpu", **fields}
    return transformer_bridge().boot_native(bridge_config(**cfg))


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    {}, {"act_fn": "quadratic", "use_biases": True}, {"act_fn": "power", "act_degree": 3},
    {"attn_only": True}, {"use_pos_embed": False, "dtype": "float64"},
    {"act_fn": "gelu", "attention_dir": "bidirectional", "use_biases": True}],
    ids=["relu", "quadratic", "cubic", "attn-only", "no-pos-float64", "gelu"])
def test_round_trip_is_exact(overrides):
    model = transformer(**overrides)
    bridge = model.to_bridge()
    back = mm.HookedOneLayerTransformer.from_bridge(bridge)
    assert back.cfg == model.cfg and not back.training
    ours, theirs = model.state_dict(), back.state_dict()
    assert list(ours) == list(theirs)
    for name, value in ours.items():
        assert torch.equal(theirs[name], value) and theirs[name].dtype == value.dtype, name
    assert torch.equal(back(TASK.tokens), model(TASK.tokens))
    again = back.to_bridge().state_dict()                          # bridge → native → bridge
    for name, value in bridge.state_dict().items():
        assert torch.equal(again[name], value), name


@pytest.mark.parametrize("make", [
    lambda: booted(seed=2),
    lambda: transformer(act_fn="quadratic", use_biases=True, dtype="float64").to_bridge()],
    ids=["booted-relu", "quadratic-float64"])
def test_logits_match_the_bridge_within_the_rounding_bound(make):
    bridge = make()
    native = mm.HookedOneLayerTransformer.from_bridge(bridge)
    with torch.no_grad():
        gap = (native(TASK.tokens).double() - bridge(TASK.tokens).double()).abs()
        bound = rounding_bound(native, TASK.tokens)
        assert bool((gap <= bound).all()), float((gap - bound).max())
        # the bound is tight enough to see a conversion that swapped two heads' outputs
        swapped = native.state_dict()
        swapped["blocks.0.attn.W_O"] = swapped["blocks.0.attn.W_O"].flip(0)
        native.load_state_dict(swapped)
        assert bool((native(TASK.tokens).double() - bridge(TASK.tokens).double()).abs()
                    .gt(bound).any())


# -- bridges not made by to_bridge -----------------------------------------------------------------
def test_a_bridge_booted_by_hand_converts_from_its_config():
    bridge = booted(act_fn="gelu", attention_dir="bidirectional")
    cfg = native_config(bridge)
    assert (cfg.d_vocab, cfg.d_vocab_out, cfg.n_ctx) == (6, 5, 3)
    assert (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (8, 2, 4, 6)
    assert (cfg.act_fn, cfg.attention_dir, cfg.use_biases) == ("gelu", "bidirectional", False)
    state = bridge.state_dict()                                    # biases start at zero
    state["blocks.0.mlp.in.bias"] = torch.linspace(-1, 1, 6)
    bridge.load_state_dict(state)
    back = mm.HookedOneLayerTransformer.from_bridge(bridge)
    assert back.cfg.use_biases and torch.equal(back.b_in[0], torch.linspace(-1, 1, 6))
    assert torch.equal(back.W_in, bridge.W_in)


def test_a_trained_bridge_keeps_what_training_gave_its_zero_biases():
    """A bias-free model's bridge has trainable biases; converting it back keeps them."""
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(TASK, **SMALL))
    bridge = model.to_bridge()
    state = bridge.state_dict()
    state["blocks.0.attn.o.bias"] = torch.full((8,), 0.25)
    bridge.load_state_dict(state)
    back = mm.HookedOneLayerTransformer.from_bridge(bridge)
    assert not model.cfg.use_biases and back.cfg.use_biases
    assert back.cfg == model.cfg.replace(use_biases=True)
    assert torch.equal(back.b_O[0], torch.full((8,), 0.25))


@pytest.mark.parametrize(("make", "match"), [
    (lambda: booted(normalization_type="LN"), r"normalization_type=None \(no LayerNorm\)"),
    (lambda: booted(n_layers=2), "n_layers=1"),
    (lambda: booted(act_fn="silu"), r"act_fn in \('relu', 'gelu'\)"),
    (lambda: booted(positional_embedding_type="rotary"), "positional_embedding_type='standard'"),
], ids=["layernorm", "two-layers", "silu", "rotary"])
def test_bridges_without_a_native_twin_are_refused(make, match):
    with pytest.raises(mm.MiMarginError, match=f"no HookedOneLayerTransformer twin: it needs {match}"):
        mm.HookedOneLayerTransformer.from_bridge(make())


def test_an_activation_swapped_in_by_hand_is_refused():
    bridge = booted()
    bridge.blocks[0].mlp.original_component.act = torch.square
    with pytest.raises(mm.MiMarginError, match=r"runs .*square.*not the act_fn='relu'"):
        mm.HookedOneLayerTransformer.from_bridge(bridge)


@pytest.mark.parametrize("thing", [transformer(), "bridge"], ids=["native", "string"])
def test_only_a_bridge_converts(thing):
    with pytest.raises(mm.MiMarginError, match="expected a TransformerLens TransformerBridge"):
        mm.HookedOneLayerTransformer.from_bridge(thing)
