"""certify(..., "low_rank"): the readout through its top singular directions plus a
Cauchy–Schwarz bound on the rest, proved by cases over growing ranks. Sound on every zoo model
(against the float32 model by every path) and on random ones with small margins, exact at full
rank, and cheaper than brute force on the zoo's transformers."""

from itertools import pairwise

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.certify import certify
from mi_margin.analysis.certify_low_rank import FIRST_RANK, _residual_distance, low_rank_margins
from tests.analysis.test_certify_transformer import (
    CONFIGS,
    PATHS,
    TRANSFORMERS,
    certified_soundly,
    model_margins,
    random_model,
)
from tests.oracles.margins import true_margins


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_every_zoo_transformer_is_certified_soundly_and_cheaply(name):
    _, cert = certified_soundly(name, "low_rank")
    assert cert.flops < 0.6 * cert.brute_force_flops         # measured 0.39–0.56


@pytest.mark.parametrize("name", [n for n in mm.zoo.list() if n not in TRANSFORMERS])
def test_every_zoo_mlp_is_certified_soundly(name):
    run = mm.zoo.load(name)
    cert = certify(mm.explain(run.model, run.task), "low_rank")
    truth = true_margins(run.model, run.task)
    assert bool((cert.margin_bound <= truth + 1e-9 * truth.abs().max()).all())
    assert cert.certified_accuracy <= cert.accuracy


@pytest.mark.parametrize("overrides", [c for c in CONFIGS if not c.get("attn_only")], ids=str)
@pytest.mark.parametrize("seed", range(2))
def test_sound_on_random_transformers_with_small_margins(overrides, seed):
    """Random weights: the readout is not low-rank, most inputs go up to the full rank, and
    the Cauchy–Schwarz term is what keeps the low ranks' bounds below the truth."""
    task = mm.ModularAddition(p=11)
    model = random_model(task, seed, **overrides)
    lr = low_rank_margins(model, task)
    for path in PATHS:
        assert bool((lr.margins <= model_margins(model, task, path)).all())
    assert set(lr.rank.unique().tolist()) <= {8, 11}                     # 8, then full rank


@pytest.mark.parametrize("name", ["nanda_p113_transformer", "zhong_p59_clock_transformer"])
def test_at_full_rank_the_bound_is_the_exact_certificate(name):
    """With every singular direction kept the residual is zero: the bound is the exact float64
    gap less the allowances. Its allowance is the per-input certificate's plus what it adds
    (resid_post's magnitude bounded from r and h, the VO·W_in association, its own roundings),
    so it sits below the per-input bound by at most that difference."""
    run = mm.zoo.load(name)
    V = run.model.W_U.shape[1]
    lr = low_rank_margins(run.model, run.task, first_rank=V)
    exact = certify(mm.explain(run.model, run.task), "per_input", compare=False)
    assert bool((lr.rank == V).all())
    assert bool((lr.E >= exact.error).all())
    below = exact.margin_bound - lr.margins
    scale = float(exact.margin_bound.abs().max())
    assert float(below.min()) >= -1e-9 * scale
    assert float(below.max()) <= float((lr.E - exact.error).max()) + 1e-9 * scale


def test_cases_stop_at_the_first_rank_that_certifies():
    run = mm.zoo.load("nanda_p113_transformer")
    lr = low_rank_margins(run.model, run.task)
    ranks = lr.rank.unique().tolist()
    assert ranks[0] == FIRST_RANK and all(b == 2 * a for a, b in pairwise(ranks))
    assert bool((lr.margins > 0).all())
    # a larger first rank certifies the same inputs with a larger margin where it starts
    wide = low_rank_margins(run.model, run.task, first_rank=32)
    assert bool((wide.margins[lr.rank == FIRST_RANK] > lr.margins[lr.rank == FIRST_RANK]).all())


def test_residual_distance_bounds_the_exact_one():
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(40, 13, generator=gen, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    for k in (1, 4, 13):
        A, B = U[:, :k] * S[:k], Vh[:k]
        Res = (M.to(torch.float64) - A @ B)
        exact = (Res[:, :, None] - Res[:, None, :]).norm(dim=0)
        assert bool((_residual_distance(M, A, B) >= exact).all())
