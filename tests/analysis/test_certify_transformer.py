"""The one-layer transformer's certificate: exact logits through the attention tables, less a
rounding allowance that holds for any summation order (docs/mathematics.md §6.4).

Sound on every zoo transformer (per input, against the model's own float32 margins by each of its
three paths) and on random models; the allowance covers an emulated coarse format, where rounding is
thousands of times larger than float32's; the softmax step's factor e^{2Δ} is checked tight."""

import math
from types import SimpleNamespace

import mpmath
import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.certify import BOUNDS, certify
from mi_margin.analysis.certify_low_rank import low_rank_margins
from mi_margin.analysis.certify_transformer import (
    EXP_ULPS,
    GELU_ROUNDINGS,
    _activation_error,
    _gamma,
    check_no_layernorm,
    exact_logits,
    last_token,
    rounding_allowance,
    score_errors,
    softmax_error,
    underflow,
)
from tests.oracles.coarse import coarse_logits, rnd
from tests.oracles.first_order import first_order_worst
from tests.oracles.margins import gaps
from tests.oracles.margins import margins_of as margins

TRANSFORMERS = [name for name in mm.zoo.list() if name.endswith("transformer")
                or "_transformer_" in name]
CONFIGS = [{}, {"act_fn": "gelu"}, {"act_fn": "quadratic"}, {"attn_only": True},
           {"attn_rate": 0.5}, {"attn_rate": 0.0}, {"attention_dir": "bidirectional"}]


PATHS = ("fast", "final_pos_only", "full")


def model_margins(model, task, path):
    """The model's own float32 margins by one of its paths: the attention tables
    (``last_logits``), the ordinary pass of the last position only, or of every position."""
    with torch.no_grad():
        if path == "fast":
            logits = model.last_logits(task.tokens)
        else:
            logits = model(task.tokens, final_pos_only=path == "final_pos_only")[:, -1]
    return margins(logits, task.labels)


def random_model(task, seed, **overrides):
    cfg = mm.TransformerConfig.for_task(task, d_model=16, d_mlp=24, n_heads=2, d_head=8,
                                        seed=seed, use_biases=True, **overrides)
    return mm.HookedOneLayerTransformer(cfg)


def certified_soundly(name, bound):
    """The zoo transformer ``name`` certified by ``bound``: sound against the model's float32
    margins by each of its paths, and every input certified."""
    run = mm.zoo.load(name)
    cert = certify(mm.explain(run.model, run.task), bound)
    for path in PATHS:
        assert bool((cert.margin_bound <= model_margins(run.model, run.task, path)).all())
    assert cert.certified_accuracy == cert.accuracy == 1.0
    return run, cert


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_every_zoo_transformer_is_certified_soundly(name):
    run, cert = certified_soundly(name, "per_input")
    exact = margins(exact_logits(run.model, run.task)[0], run.task.labels)
    assert bool((cert.margin_bound < exact).all())       # the allowance is subtracted
    assert cert.flops > cert.brute_force_flops           # the fast path's cost plus the allowance's


def test_layernorm_is_refused():
    """Native models have no LayerNorm (their config's normalization_type is None, and bridges
    with one are refused on conversion); a model that had one is refused by name."""
    check_no_layernorm(mm.zoo.load("zhong_p59_pizza_transformer").model)
    with pytest.raises(mm.MiMarginError, match="without LayerNorm"):
        check_no_layernorm(SimpleNamespace(cfg=SimpleNamespace(normalization_type="LN")))


def scaled(name, **scales):
    """The zoo transformer ``name`` with the named weights times powers of two (W_U with its
    bias), e.g. ``scaled(name, W_U=2.0 ** -147)``."""
    run = mm.zoo.load(name)
    parts = {"W_U": (run.model.unembed.W_U, run.model.unembed.b_U),
             "W_V": (run.model.block.attn.W_V,), "W_O": (run.model.block.attn.W_O,)}
    with torch.no_grad():
        for name_, scale in scales.items():
            for t in parts[name_]:
                t.mul_(scale)
    return run.model, run.task


@pytest.mark.parametrize("bound", ["per_input", "low_rank"])
def test_underflowing_logits_are_covered(bound):
    """W_U scaled by 2^-147 (its entries subnormal) puts the float32 logits among the subnormal
    numbers, where rounding is absolute: each chain's (2N + 1)·η keeps the bound below the
    model's own margins by every path (without it the bound exceeded them on 1,499 of the 3,481
    inputs)."""
    model, task = scaled("zhong_p59_pizza_transformer", W_U=2.0 ** -147)
    cert = certify(mm.explain(model, task), bound)
    for path in PATHS:
        assert bool((cert.margin_bound <= model_margins(model, task, path)).all())


@pytest.mark.parametrize("scales", [{"W_U": 2.0 ** 125}, {"W_V": 2.0 ** 127, "W_O": 2.0 ** -127}],
                         ids=["logits", "values"])
def test_values_that_could_overflow_are_refused(scales):
    """W_U scaled by 2^125 (the logits may overflow), or W_V by 2^127 and W_O back by 2^-127
    (the forward pass's values overflow and its logits are not finite, while resid_mid's
    magnitudes stay as they were): no rounding bound holds, and both certificates refuse."""
    model, task = scaled("zhong_p59_pizza_transformer", **scales)
    expl = mm.explain(model, task)
    for bound in ("per_input", "low_rank"):
        with pytest.raises(mm.MiMarginError, match="overflow"):
            certify(expl, bound)


@pytest.mark.parametrize("overrides", CONFIGS, ids=str)
def test_exact_logits_are_the_float64_forward(overrides):
    task = mm.ModularAddition(p=7)
    model = random_model(task, 0, **overrides)
    logits, reach = exact_logits(model, task)
    with torch.no_grad():
        ref = model.double()(task.tokens)[:, -1]
    assert torch.allclose(logits, ref, rtol=1e-12, atol=1e-12)
    assert bool((reach.resid > 0).all()) and reach.h.shape[0] == (0 if model.cfg.attn_only
                                                                 else model.cfg.d_mlp)


@pytest.mark.parametrize("overrides", CONFIGS, ids=str)
@pytest.mark.parametrize("reverse", [False, True])
def test_allowance_covers_a_coarse_format(overrides, reverse):
    """Weights rounded to 12 fraction bits, every operation of the forward pass rounded to 12 bits
    (and every exp off by 3 ulps): the logit gaps stay within the allowance at u = 2^-13."""
    task, bits = mm.ModularAddition(p=7), 12
    for seed in range(3):
        model = random_model(task, seed, **overrides)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(rnd(p.double() + 0.1 * torch.randn(p.shape, dtype=torch.float64), bits))
        exact, reach = exact_logits(model, task)
        E = rounding_allowance(model, last_token(task), 3, reach, 2.0 ** -(bits + 1)).gap
        coarse = coarse_logits(model, task.tokens, bits, reverse=reverse, seed=seed)
        error = (gaps(coarse, task.labels) - gaps(exact, task.labels)).abs()
        assert bool((error <= E[task.labels]).all())
        assert float(error.max()) > 0                     # the emulation does round


@pytest.mark.parametrize("overrides", CONFIGS, ids=str)
@pytest.mark.parametrize("path", ["ordinary", "tables"])
def test_every_stage_bounds_the_first_order_worst_case(overrides, path):
    """Against the largest error that any choice of rounding errors (|δ| ≤ u per operation, exp
    and erf within a few ulps) gives to first order, input by input, for the forward pass and
    for the attention tables: the attention scores, the residual stream after attention, the
    pre-activations and every logit gap. Each order's score bound is also close to its worst
    case (within a factor 5), so a bound much looser than the computation is caught there."""
    task, u = mm.ModularAddition(p=7), 2.0 ** -24
    model = random_model(task, 1, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    _, reach = exact_logits(model, task)
    bound = rounding_allowance(model, last_token(task), 3, reach, u)
    worst = first_order_worst(model, task.tokens, task.labels, u, path=path)
    score = worst["scores"] / score_errors(model, last_token(task), 3, u)[path][None, :, None]
    assert 0.2 < float(score.max()) <= 1
    assert bool((worst["scores"] <= bound.score[None, :, None]).all())
    assert bool((worst["resid_mid"] <= bound.resid_mid).all())
    if not model.cfg.attn_only:
        assert bool((worst["pre"] <= bound.pre).all())
    assert bool((worst["gap"] <= bound.gap[task.labels]).all())


def attaining_model(task):
    """A model whose scores' rounding reaches the worst case: positive embeddings and weights (no
    cancellation, so |q|·|k| is the absolute chain) decaying by 4 along every sum, so the
    largest term is summed first and meets the most roundings."""
    model = random_model(task, 1)
    attn, gen = model.block.attn, torch.Generator().manual_seed(0)
    decay = 0.25 ** torch.arange(float(model.cfg.d_model))
    with torch.no_grad():
        model.embed.W_E.copy_(1 + torch.rand(model.embed.W_E.shape, generator=gen))
        model.pos_embed.W_pos.zero_()
        for W in (attn.W_Q, attn.W_K, attn.W_V):
            W.copy_((1 + 0.1 * torch.rand(W.shape, generator=gen)) * decay[None, :, None])
        attn.W_Q.mul_(0.25 ** torch.arange(float(model.cfg.d_head)))
        for b in (attn.b_Q, attn.b_K, attn.b_V):
            b.zero_()
    return model


@pytest.mark.parametrize("path", ["ordinary", "tables"])
def test_the_score_bound_is_nearly_attained_where_nothing_cancels(path):
    """Every term of the score bound is needed: on a model built to attain it, the first-order
    worst case of each order's scores comes within 10% of that order's bound."""
    task, u = mm.ModularAddition(p=7), 2.0 ** -24
    model = attaining_model(task)
    worst = first_order_worst(model, task.tokens, task.labels, u, path=path)["scores"]
    ratio = float((worst / score_errors(model, last_token(task), 3, u)[path][None, :, None]).max())
    assert 0.9 < ratio <= 1


@pytest.mark.parametrize("scale", [0.1, 1, 5, 20, 80])
def test_torch_softmax_kernel_stays_within_the_softmax_bound(scale):
    """The float32 softmax of this machine's kernels (the suite runs again with restricted
    kernels) against the exact softmax of the same scores: within ρ·α for scores without error,
    the kernel's own subtraction of the max, exp and normalisation; and ρ is not far above what
    the kernel does (the subtraction's rounding dominates at large scores)."""
    gen = torch.Generator().manual_seed(0)
    scores = (torch.randn(200_000, 3, generator=gen) * scale).float()
    computed, exact = scores.softmax(-1).double(), scores.double().softmax(-1)
    rho = softmax_error(torch.zeros(1, dtype=torch.float64), scores.double().abs().amax(-1), 3,
                        torch.finfo(torch.float32).eps / 2)
    ratio = ((computed - exact).abs() / (rho[:, None] * exact))[exact > 1e-37]
    assert float(ratio.max()) <= 1
    if scale >= 20:
        assert float(ratio.max()) > 0.1


def test_underflowing_softmax_weights_are_covered_absolutely():
    """Scores more than ~87 apart: float32's exp underflows (to a denormal or 0), so the relative
    bound ρ·α fails for the smallest weights, and ρ·α + η (what the pattern's shift adds
    per key) holds for every weight."""
    gen = torch.Generator().manual_seed(0)
    scores = (torch.randn(200_000, 3, generator=gen) * 60).float()
    computed, exact = scores.softmax(-1).double(), scores.double().softmax(-1)
    rho = softmax_error(torch.zeros(1, dtype=torch.float64), scores.double().abs().amax(-1), 3,
                        torch.finfo(torch.float32).eps / 2)[:, None]
    error = (computed - exact).abs()
    assert bool((error <= rho * exact + underflow(2.0 ** -24)).all())
    assert bool((error > rho * exact).any())


def test_this_cpus_float32_exp_is_within_the_assumed_ulps():
    """The allowance assumes exp within EXP_ULPS ulps; checked on the kernels the suite runs on
    (normal and restricted), over softmax's range of arguments."""
    z = -(torch.rand(1_000_000, generator=torch.Generator().manual_seed(0)) * 87)
    computed = torch.exp(z)
    ulp = torch.nextafter(computed, torch.tensor(float("inf"))) - computed
    error = (computed.double() - torch.exp(z.double())).abs() / ulp.double()
    assert float(error.max()) <= EXP_ULPS


def gelu_exact(x):
    """GELU in float64 through erfc, which does not cancel where erf(x/√2) is near −1."""
    return 0.5 * x * torch.special.erfc(-x / math.sqrt(2))


def gelu_arguments(n, seed=0):
    """Float64 arguments over GELU's range: a grid through both tails, normals of scale 4, and
    magnitudes log-uniform from 1e-38 to 1e2 of either sign."""
    gen = torch.Generator().manual_seed(seed)
    sign = torch.randn(n, generator=gen, dtype=torch.float64).sign()
    tiny = sign * 10 ** (torch.rand(n, generator=gen, dtype=torch.float64) * 40 - 38)
    return torch.cat([torch.linspace(-40, 40, n, dtype=torch.float64),
                      torch.randn(n, generator=gen, dtype=torch.float64) * 4, tiny])


def test_this_cpus_float32_gelu_errs_by_a_few_u_times_x_not_u_times_gelu():
    """The allowance assumes float32 GELU within γ_{GELU_ROUNDINGS}·|x| of the exact value; checked
    on the kernels the suite runs on (normal and restricted). Relative to |GELU(x)| no such bound
    holds: in the negative tail 1 + erf(x/√2) cancels (why the allowance reads |pre|, not |h|)."""
    x = gelu_arguments(1_000_000).float()
    exact = gelu_exact(x.double())
    error = (torch.nn.functional.gelu(x).double() - exact).abs()
    u32, u64 = torch.finfo(torch.float32).eps / 2, torch.finfo(torch.float64).eps / 2
    allowed = (_gamma(GELU_ROUNDINGS, u32) + 4 * u64) * x.double().abs()   # + the reference's
    assert bool((error <= allowed).all())
    tail = x < -5.5
    assert bool((error[tail] > 0.5 * exact[tail].abs()).any())


def test_this_cpus_float64_gelu_errs_by_a_few_u_times_x():
    """The same for float64 GELU (the low-rank certificate's float64 twin), against mpmath at 40
    digits."""
    mpmath.mp.dps = 40
    x = gelu_arguments(1_000, seed=1)
    computed = torch.nn.functional.gelu(x).tolist()
    u64 = torch.finfo(torch.float64).eps / 2
    allowed = _gamma(GELU_ROUNDINGS, u64)
    for xi, ci in zip(x.tolist(), computed):
        exact = mpmath.mpf(xi) / 2 * mpmath.erfc(-mpmath.mpf(xi) / mpmath.sqrt(2))
        assert abs(mpmath.mpf(ci) - exact) <= allowed * abs(xi)


def test_gelu_activation_error_covers_neurons_in_erfs_tail():
    """Neurons whose pre-activations sit in GELU's negative tail (tiny activations, computed with
    a large relative error), around 0, and on the positive side: float32 GELU stays within
    ``_activation_error`` of the exact GELU, both of exact pre-activations (err = 0; there an
    allowance relative to |h| would fail by a factor of ~90) and of rounded ones."""
    gen = torch.Generator().manual_seed(0)
    low = torch.tensor([-6.0, -1.0, 2.0], dtype=torch.float64)
    pre = low + torch.rand(20_000, 3, generator=gen, dtype=torch.float64) * 3   # [N, neuron]
    u32 = torch.finfo(torch.float32).eps / 2
    for exact_pre in (pre.float().double(), pre):
        rounded = exact_pre.float()
        exact = gelu_exact(exact_pre)
        reach = SimpleNamespace(pre=exact_pre.abs().amax(0), h=exact.abs().amax(0))
        err = (rounded.double() - exact_pre).abs().amax(0)
        bound = _activation_error(SimpleNamespace(act_fn="gelu"), reach, err, u32)
        error = (torch.nn.functional.gelu(rounded).double() - exact).abs().amax(0)
        assert bool((error <= bound).all())
        # the tail neuron (column 0): far beyond an allowance relative to its activations
        assert float(error[0]) > 50 * _gamma(GELU_ROUNDINGS, u32) * float(reach.h[0])


def test_softmax_moves_by_at_most_e_to_the_2_delta_and_that_is_reached():
    """For scores moved by at most Δ (exact arithmetic otherwise), softmax_error's ρ bounds
    |softmax(s + d) − softmax(s)| / softmax(s), and a key of small weight pushed up by Δ, the
    others down by Δ, comes within 1% of it."""
    gen = torch.Generator().manual_seed(0)
    delta = 0.05
    rho = float(softmax_error(torch.tensor(delta, dtype=torch.float64),
                              torch.tensor(0.0, dtype=torch.float64), 5, 1e-30))
    for _ in range(200):
        s = torch.randn(5, generator=gen, dtype=torch.float64) * 3
        d = (torch.rand(5, generator=gen, dtype=torch.float64) * 2 - 1) * delta
        a, b = s.softmax(0), (s + d).softmax(0)
        assert bool(((b - a).abs() <= rho * a).all())
    s = torch.tensor([-20.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    push = torch.tensor([delta, -delta, -delta, -delta, -delta], dtype=torch.float64)
    ratio = float((s + push).softmax(0)[0] / s.softmax(0)[0])
    assert ratio - 1 >= 0.99 * rho


@pytest.mark.parametrize("seed", range(4))
def test_sound_on_random_models_with_small_margins(seed):
    task = mm.ModularAddition(p=11)
    model = random_model(task, seed)
    cert = certify(mm.explain(model, task), "per_input")
    for path in PATHS:
        assert bool((cert.margin_bound <= model_margins(model, task, path)).all())
    assert cert.certified_accuracy <= cert.accuracy < 1


def test_bridge_gets_the_native_certificate_and_it_holds_for_the_bridge_too():
    """TransformerLens's bridge is another implementation of the same function (its own attention
    and sums): the certificate, made for any summation order, holds for its float32 margins."""
    run = mm.zoo.load("zhong_p59_clock_transformer")
    native = certify(mm.explain(run.model, run.task), "per_input")
    bridge = run.model.to_bridge()
    bridged = certify(mm.explain(bridge, run.task), "per_input")
    assert torch.equal(native.margin_bound, bridged.margin_bound)
    with torch.no_grad():
        logits = bridge(run.task.tokens)[:, -1]
    assert bool((bridged.margin_bound <= margins(logits, run.task.labels)).all())


def test_refusals_name_what_is_missing():
    task = mm.ModularAddition(p=7)
    expl = mm.explain(random_model(task, 0), task)
    for bound in BOUNDS:
        if bound not in ("per_input", "low_rank"):
            with pytest.raises(mm.MiMarginError, match="bound='per_input'"):
                certify(expl, bound)
    only_attention = random_model(task, 0, attn_only=True)
    with pytest.raises(mm.MiMarginError, match="attention-only"):
        low_rank_margins(only_attention, task)
    with pytest.raises(mm.MiMarginError, match="attention-only"):
        mm.explain(only_attention, task)
    tokens = torch.tensor([[0, 1, 7], [1, 0, 2]])
    with pytest.raises(mm.MiMarginError, match="end with the same token"):
        last_token(SimpleNamespace(tokens=tokens))
    with pytest.raises(mm.MiMarginError, match="n·u < 1"):
        _gamma(300, 2.0 ** -8)


def test_explanation_check_names_every_refusal_when_no_bound_applies(monkeypatch):
    """Cards and reports print the certificates' table; a model that no bound covers is an
    error naming why each bound refused, never an empty table."""
    from mi_margin.theory import explained

    def refuse(expl, bound, compare=True):
        raise mm.MiMarginError(f"{bound} refused here")

    monkeypatch.setattr(explained, "certify", refuse)
    task = mm.ModularAddition(p=7)
    with pytest.raises(mm.MiMarginError, match="uniform refused here"):
        explained.explanation_check(random_model(task, 0), task, draws=1)


def test_a_grid_too_large_for_memory_is_refused_before_it_is_evaluated(monkeypatch):
    monkeypatch.setenv("MI_MARGIN_MEMORY_GIB", "0.0001")
    task = mm.ModularAddition(p=23)
    with pytest.raises(mm.MiMarginError, match="certificate's float64 logits"):
        exact_logits(random_model(task, 0), task)
