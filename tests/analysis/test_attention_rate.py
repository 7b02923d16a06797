"""Zhong et al.'s attention-rate transformer: the option itself, and the clock/pizza metrics on a
planted Clock (Model B, rate 1) and a planted Pizza (Model A, rate 0) with known answers."""

import math

import pytest
import torch
from oracles.planted_clock_pizza import clock_gradients, clock_transformer, pizza_transformer

import mi_margin as mm
from mi_margin.analysis.clock_pizza import clock_pizza


def model_with_rate(task, rate, direction="causal"):
    cfg = mm.TransformerConfig.for_task(task, d_model=16, n_heads=2, d_head=8, d_mlp=32,
                                        attn_rate=rate, attention_dir=direction, dtype="float64")
    return mm.HookedOneLayerTransformer(cfg)


@pytest.mark.parametrize("direction", ["causal", "bidirectional"])
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_pattern_is_the_mixture_and_last_logits_stay_exact(rate, direction):
    task = mm.ModularAddition(p=7)
    model = model_with_rate(task, rate, direction)
    logits, cache = model.run_with_cache(task.tokens)
    scores = cache["attn_scores", 0]
    allowed = torch.isfinite(scores).double()
    softmax = scores.softmax(-1)
    assert torch.allclose(cache["pattern", 0], rate * softmax + (1 - rate) * allowed, atol=1e-12)
    assert torch.allclose(model.last_logits(task.tokens), logits[:, -1], atol=1e-12)


def test_rate_one_is_ordinary_attention_and_rate_zero_ignores_queries_and_keys():
    task = mm.ModularAddition(p=7)
    plain = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=16, n_heads=2, d_head=8, d_mlp=32, dtype="float64"))
    assert torch.equal(model_with_rate(task, 1.0)(task.tokens), plain(task.tokens))
    constant = model_with_rate(task, 0.0, "bidirectional")
    before = constant(task.tokens)
    with torch.no_grad():
        constant.blocks[0].attn.W_Q.normal_()
        constant.blocks[0].attn.W_K.normal_()
    assert torch.allclose(constant(task.tokens), before, atol=1e-12)


def test_rate_zero_reading_at_the_eq_token_is_exactly_gradient_symmetric():
    """At α = 0 the '=' position gets W_OV(E_a + E_b) plus terms free of E_a, E_b (positional
    embeddings included), so ∂Q/∂E_a = ∂Q/∂E_b for any weights: s_g = 1 exactly. At α = 1 a random
    model is not symmetric."""
    task = mm.ModularAddition(p=11)
    res = clock_pizza(model_with_rate(task, 0.0, "bidirectional"), task)
    assert torch.allclose(res.similarities, torch.ones_like(res.similarities), atol=1e-12)
    assert clock_pizza(model_with_rate(task, 1.0, "bidirectional"), task).gradient_symmetricity < 0.99


def test_attn_rate_is_validated_and_saved():
    with pytest.raises(mm.MiMarginError, match="attn_rate"):
        mm.TransformerConfig(attn_rate=1.5)
    cfg = mm.TransformerConfig(attn_rate=0.25)
    assert mm.TransformerConfig.from_dict(cfg.to_dict()).attn_rate == 0.25


@pytest.mark.parametrize("p,frequency", [(7, 1), (11, 3)])
def test_planted_pizza_is_a_pizza(p, frequency):
    task = mm.ModularAddition(p=p)
    model = pizza_transformer(task, frequency)
    assert bool((model.last_logits(task.tokens).argmax(-1) == task.labels).all())
    res = clock_pizza(model, task)
    assert torch.allclose(res.similarities, torch.ones_like(res.similarities), atol=1e-12)
    assert res.distance_irrelevance == pytest.approx(0.0, abs=1e-12)
    assert res.algorithm == "pizza"
    a, b = task.inputs[:, 0].double(), task.inputs[:, 1].double()
    omega = 2 * math.pi * frequency / p
    expected = 4 * torch.cos(omega * (a - b) / 2) ** 2
    assert torch.allclose(res.correct_logits.flatten(), expected, atol=1e-12)


@pytest.mark.parametrize("p,frequency", [(7, 1), (11, 3)])
def test_planted_clock_is_a_clock(p, frequency):
    task = mm.ModularAddition(p=p)
    model = clock_transformer(task, frequency)
    assert bool((model.last_logits(task.tokens).argmax(-1) == task.labels).all())
    res = clock_pizza(model, task)
    grad_a, grad_b = clock_gradients(res.triples, p, frequency)
    expected = torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=-1)
    assert torch.allclose(res.similarities, expected, atol=1e-9)
    assert res.distance_irrelevance == pytest.approx(1.0, abs=1e-9)
    assert res.gradient_symmetricity < 0.5       # far from the pizza's 1
    assert res.algorithm == "clock"


def test_stacked_training_forward_honours_the_rate():
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    models = [model_with_rate(task, 0.3, "bidirectional") for _ in range(2)]
    losses, _ = mm.evaluate_batched(models, task, task.test_idx)
    from mi_margin.models.evaluation import evaluate

    assert losses[0].item() == pytest.approx(evaluate(models[0], task, task.test_idx)[0], rel=1e-12)


def test_bridge_refuses_a_rate_it_cannot_express():
    with pytest.raises(mm.MiMarginError, match="attn_rate"):
        model_with_rate(mm.ModularAddition(p=5), 0.5).to_bridge()
