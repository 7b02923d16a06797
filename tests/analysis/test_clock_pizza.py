"""Zhong et al.'s gradient symmetricity and distance irrelevance on networks with known answers."""

import math

import pytest
import torch
from oracles.planted import cosine_mlp

import mi_margin as mm
from mi_margin.analysis.clock_pizza import ClockPizza, clock_pizza, distance_irrelevance
from mi_margin.errors import MiMarginError


def test_theory_style_mlp_has_exactly_symmetric_gradients():
    """The pre-activation is u(a) + v(b): ∂Q/∂u(a) = ∂Q/∂v(b), so every cosine is 1."""
    task = mm.ModularAddition(p=11)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, act_fn="relu", dtype="float64"))
    res = clock_pizza(model, task)
    assert torch.allclose(res.similarities, torch.ones(100, dtype=torch.float64), atol=1e-12)
    assert res.triples.shape == (100, 3)
    assert torch.equal(clock_pizza(model, task).triples, res.triples)          # seeded


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_embed_style_mlp_symmetricity_follows_the_shared_input_map(sign):
    """Embed style: ∂Q/∂E_i = W_in[i] ∂Q/∂pre; W_in[1] = ±W_in[0] gives cosine ±1."""
    task = mm.ModularAddition(p=7)
    cfg = mm.MLPConfig.for_task(task, d_mlp=12, d_embed=6, input_style="embed", act_fn="relu",
                                dtype="float64")
    model = mm.HookedMLP(cfg)
    with torch.no_grad():
        model.W_in[1].copy_(sign * model.W_in[0])
    res = clock_pizza(model, task, n_triples=30)
    nonzero = res.similarities[~res.similarities.isnan()]
    assert torch.allclose(nonzero, torch.full_like(nonzero, sign), atol=1e-10)


def test_constant_attention_transformer_is_gradient_symmetric():
    """W_Q = 0 and no positional embedding: attention is uniform and the last residual is a
    symmetric function of the two operand embeddings (Zhong et al.'s Model A), so s_g = 1."""
    task = mm.ModularAddition(p=11)
    cfg = mm.TransformerConfig.for_task(task, d_model=16, n_heads=2, d_head=8, d_mlp=32,
                                        use_pos_embed=False, dtype="float64")
    model = mm.HookedOneLayerTransformer(cfg)
    with torch.no_grad():
        model.blocks[0].attn.W_Q.zero_()
    assert clock_pizza(model, task).gradient_symmetricity == pytest.approx(1.0, abs=1e-12)


def test_distance_irrelevance_of_planted_correct_logits():
    """Two neurons (cos a + cos b)² + (sin a + sin b)² = 2 + 2cos(ω(a − b)): the correct logit
    depends on a − b only (q = 0). One neuron cos(ωa)²: it ignores a − b entirely (q = 1)."""
    p = 13
    task = mm.ModularAddition(p=p)
    pizza = cosine_mlp(task, torch.tensor([2, 2]),
                       torch.tensor([[0.0, 0.0], [-math.pi / 2, -math.pi / 2]],
                                    dtype=torch.float64))
    with torch.no_grad():
        pizza.W_out.fill_(1.0)
    assert clock_pizza(pizza, task).distance_irrelevance == pytest.approx(0.0, abs=1e-12)
    one = cosine_mlp(task, torch.tensor([3]), torch.zeros(1, 2, dtype=torch.float64))
    with torch.no_grad():
        one.W_in[1].zero_()
        one.W_out.fill_(1.0)
    assert clock_pizza(one, task).distance_irrelevance == pytest.approx(1.0, abs=1e-12)


def test_distance_irrelevance_matches_its_definition_on_a_random_matrix():
    L = torch.randn(7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    diag = [float(torch.stack([L[i, (i + d) % 7] for i in range(7)]).std(unbiased=False))
            for d in range(7)]
    expected = sum(diag) / 7 / float(L.std(unbiased=False))
    assert distance_irrelevance(L) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(distance_irrelevance(torch.ones(5, 5)))


def test_clock_pizza_needs_two_operands():
    task = mm.ModularAddition(p=5, k=3)
    with pytest.raises(MiMarginError, match="k=2"):
        clock_pizza(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=4)), task)


@pytest.mark.parametrize("s_g,q,expected", [(0.99, 0.59, "pizza"), (0.97, 0.1, "clock"),
                                            (0.99, 0.6, "clock"), (0.3336, 0.85, "clock")])
def test_algorithm_follows_zhongs_phase_rule(s_g, q, expected):
    """Fig. 7 of Zhong et al.: a pizza has s_g > 98% and q < 0.6 (both strict)."""
    z = torch.zeros(1)
    res = ClockPizza(s_g, q, torch.zeros(1, 3, dtype=torch.long), z, torch.zeros(2, 2))
    assert res.algorithm == expected
