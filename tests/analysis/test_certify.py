"""certify: sound (never above the brute-force accuracy, and the certified margin never above the
true one) on random, perturbed, trained and zoo models; tight (1.0) on certificate networks."""

import dataclasses

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.certify import BOUNDS, certify
from mi_margin.analysis.closed_form import cyclic_margin
from mi_margin.analysis.explain import build, operand_tables
from tests.oracles.margins import margins_of, true_margins


def bounds_for(model, task):
    """Every bound that applies: the harmonic one needs x^d neurons on modular addition or
    sparse parity, or x² neurons on two-operand group composition."""
    power = model.cfg.act_fn in ("quadratic", "power")
    group = isinstance(task, mm.GroupComposition) and task.k == 2 and model.cfg.degree == 2
    harmonic = power and (group or isinstance(task, (mm.ModularAddition, mm.SparseParity)))
    return BOUNDS if harmonic else tuple(b for b in BOUNDS if b != "harmonic")


def own_margins(model, task):
    """The model's own margins in its dtype, by its forward pass and by its fast path, [2, N]."""
    with torch.no_grad():
        return torch.stack([margins_of(logits, task.labels)
                            for logits in (model(task.inputs), model.last_logits(task.inputs))])


def assert_sound(model, task):
    """Every bound below the exact margins of the model's tables (float64) and below the model's
    own margins as it computes them, by both of its paths."""
    expl = mm.explain(model, task)
    truth = true_margins(model, task)
    own = own_margins(model, task)
    certs = {}
    for bound in bounds_for(model, task):
        cert = certs[bound] = certify(expl, bound)
        assert cert.certified_accuracy <= cert.accuracy
        assert bool((cert.margin_bound <= truth + 1e-9 * truth.abs().max()).all())
        assert bool((cert.margin_bound <= own).all())
        assert cert.min_certified_margin == float(cert.margin_bound.min())
    # the per-input ranges lie inside the uniform ones, input by input
    slack = 1e-9 * certs["uniform"].margin_bound.abs().max()
    assert bool((certs["per_input"].margin_bound >= certs["uniform"].margin_bound - slack).all())
    return cert


@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.ModularAddition(p=5, k=4), mm.GroupComposition("S3"),
                                  mm.SparseParity(n=6, k=4)],
                         ids=str)
@pytest.mark.parametrize("bound", BOUNDS)
def test_tight_on_certificate_networks(task, bound):
    model = mm.theory.certificate(task)
    if bound not in bounds_for(model, task):
        with pytest.raises(mm.MiMarginError, match="harmonic certificate covers"):
            certify(mm.explain(model, task), bound)
        return
    cert = certify(mm.explain(model, task), bound)
    assert cert.certified_accuracy == 1.0 == cert.accuracy
    assert cert.min_certified_margin > 0


@pytest.mark.parametrize("scale", [1e-3, 1e-2, 1e-1, 1.0])
@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.GroupComposition("S3"),
                                  mm.SparseParity(n=6, k=4)], ids=str)
def test_sound_on_noisy_certificate_networks(task, scale):
    model = mm.theory.certificate(task)
    gen = torch.Generator().manual_seed(0)
    T = operand_tables(model)
    W = model.W_out.detach().double()
    noisy_T = T + scale * T.abs().max() * torch.randn(T.shape, generator=gen, dtype=T.dtype)
    if model.cfg.input_kind == "vector":            # a ±1 bit's table is (−w, +w)
        noisy_T[:, 0] = -noisy_T[:, 1]
    noisy_W = W + scale * W.abs().max() * torch.randn(W.shape, generator=gen, dtype=W.dtype)
    assert_sound(build(model, noisy_T, noisy_W), task)


def test_sound_with_a_planted_off_label_neuron():
    task = mm.ModularAddition(p=7)
    model = mm.theory.certificate(task)
    T, W = operand_tables(model).clone(), model.W_out.detach().double().clone()
    x = torch.arange(7.0, dtype=torch.float64)
    f = mm.neuron_clusters(model, task).label[0]
    g = next(h for h in range(1, 4) if h != f)
    wave = torch.cos(2 * torch.pi * g * x / 7)
    T[:, :, 0] += 0.4 * T[:, :, 0].norm(dim=1, keepdim=True) * wave
    W[0] += 2.0 * W[0].norm() * wave
    planted = build(model, T, W)
    cert = assert_sound(planted, task)
    assert cert.error.max() > 0


@pytest.mark.parametrize("style,act", [("theory", "relu"), ("theory", "quadratic"),
                                       ("theory", "gelu"), ("embed", "relu")])
def test_sound_on_random_models(style, act):
    task = mm.GroupComposition("S3")
    extra = {"d_embed": 8} if style == "embed" else {}
    for seed in range(3):
        cfg = mm.MLPConfig.for_task(task, d_mlp=24, input_style=style, act_fn=act, seed=seed,
                                    **extra)
        assert_sound(mm.HookedMLP(cfg), task)


@pytest.mark.parametrize("p,d_mlp,act", [(7, 32, "relu"), (11, 48, "quadratic")])
def test_sound_on_a_trained_model(p, d_mlp, act):
    """Every bound that applies (the harmonic one too, for the quadratic MLP) is sound after
    training."""
    task = mm.ModularAddition(p=p)
    torch.manual_seed(0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=d_mlp, act_fn=act))
    mm.train(model, task, mm.TrainConfig(steps=300, lr=1e-2, weight_decay=1e-3, progress=False,
                                          n_checkpoints=1))
    assert_sound(model, task)


@pytest.mark.parametrize("name", mm.zoo.list())
def test_sound_on_every_zoo_entry(name):
    """Every bound that applies is sound on every MLP of the zoo (the transformers:
    tests/analysis/test_certify_transformer.py)."""
    run = mm.zoo.load(name)
    if isinstance(run.model, mm.HookedMLP):
        assert_sound(run.model, run.task)


def cancelling_embed_network(width=300, big=2.0 ** 12):
    """Z_7's certificate network rebuilt embed-style: one-hot embeddings reproduce its tables,
    and two extra embedding columns of size ``big`` meet input rows of +big and −big, which
    cancel in W_E W_in but not in the forward pass's float32 sum over d_embed (on this
    machine's kernels the pass errs by 0.2 on pre-activations of 0.1; on others it may be
    exact). Returns (model, task)."""
    task = mm.ModularAddition(p=7)
    ref = mm.theory.certificate(task)
    T = ref.W_in_eff.detach()
    k, p, m = T.shape
    cfg = mm.MLPConfig.for_task(task, d_mlp=m, act_fn=ref.cfg.act_fn,
                                act_degree=ref.cfg.act_degree, input_style="embed",
                                d_embed=width, use_biases=ref.cfg.use_biases)
    model = mm.HookedMLP(cfg)
    W_E, W_in = torch.zeros(k, p, width), torch.zeros(k, width, m)
    W_E[:, :, :p] = torch.eye(p)
    W_E[:, :, width // 2] = W_E[:, :, width - 1] = big
    W_in[:, :p] = T
    W_in[:, width // 2], W_in[:, width - 1] = big, -big
    with torch.no_grad():
        model.embed.W_E.copy_(W_E)
        model.blocks[0].mlp.W_in.copy_(W_in)
        model.blocks[0].mlp.W_out.copy_(ref.W_out.detach())
    return model, task


def test_embed_models_forward_pass_is_covered_where_embeddings_cancel():
    """The allowance reads |W_E||W_in|, not |W_E W_in|: on a network whose embeddings cancel,
    every bound stays below the model's own margins by its forward pass, which may get inputs
    wrong that the table path gets right."""
    model, task = cancelling_embed_network()
    own = own_margins(model, task)
    for bound in bounds_for(model, task):
        cert = certify(mm.explain(model, task, source="weights"), bound)
        assert bool((cert.margin_bound <= own).all()), bound
        assert cert.certified_accuracy <= float((own[0] > 0).double().mean())


def scaled_float32_certificate(task, scale):
    """The certificate network of ``task`` in float32 with its input map times ``scale`` (a
    power of two: exact)."""
    ref = mm.theory.certificate(task)
    model = mm.HookedMLP(dataclasses.replace(ref.cfg, dtype=torch.float32))
    model.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    with torch.no_grad():
        model.blocks[0].mlp.W_in.mul_(scale)
    return model


@pytest.mark.parametrize("w_in,w_out", [(68, 0), (68, -116)])
def test_values_that_could_overflow_are_refused(w_in, w_out):
    """Scaled by 2^68, the certificate network's float32 logits overflow (its accuracy drops to
    1 in 7), and with W_out scaled by 2^-116 its hidden activations do while the logits stay
    small: no rounding bound holds, and every bound refuses to certify it."""
    task = mm.ModularAddition(p=7)
    model = scaled_float32_certificate(task, 2.0 ** w_in)
    with torch.no_grad():
        model.blocks[0].mlp.W_out.mul_(2.0 ** w_out)
    expl = mm.explain(model, task, source="weights")
    for bound in bounds_for(model, task):
        with pytest.raises(mm.MiMarginError, match="overflow"):
            certify(expl, bound)


@pytest.mark.parametrize("shift", [60, 64, 72])
def test_underflowing_values_are_covered(shift):
    """Scaled by 2^-shift, the certificate network's hidden values underflow float32 (at 2^-72
    every logit is 0 and the model is right on 1 input in 7; some weights are subnormal): the
    absolute underflow term keeps every bound below the model's own margins."""
    task = mm.ModularAddition(p=7)
    model = scaled_float32_certificate(task, 2.0 ** -shift)
    own = own_margins(model, task)
    for bound in bounds_for(model, task):
        cert = certify(mm.explain(model, task, source="weights"), bound)
        assert bool((cert.margin_bound <= own).all()), bound


def test_flushing_subnormals_is_refused():
    """The allowance assumes gradual underflow: while this process flushes subnormal numbers to
    zero, certify refuses (where the CPU cannot flush, it certifies as usual)."""
    task = mm.ModularAddition(p=7)
    expl = mm.explain(scaled_float32_certificate(task, 1.0), task, source="weights")
    flushing = torch.set_flush_denormal(True)
    try:
        if flushing:
            with pytest.raises(mm.MiMarginError, match="flushes subnormal"):
                certify(expl, "uniform")
        else:
            assert certify(expl, "uniform").certified_accuracy == 1
    finally:
        torch.set_flush_denormal(False)
    assert certify(expl, "uniform").certified_accuracy == 1


@pytest.mark.parametrize("setting", ["legacy", "onednn"])
def test_reduced_precision_matmuls_are_refused(setting):
    """The allowance assumes IEEE float32 products; a process set to bf16/tf32 matmuls (by the
    legacy call or oneDNN's fp32_precision) is refused, and restoring the default certifies."""
    task = mm.ModularAddition(p=7)
    expl = mm.explain(scaled_float32_certificate(task, 1.0), task, source="weights")
    if setting == "legacy":
        torch.set_float32_matmul_precision("medium")
    else:
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        with pytest.raises(mm.MiMarginError, match="reduced precision"):
            certify(expl, "uniform")
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = "none"
        torch.set_float32_matmul_precision("highest")
    assert certify(expl, "uniform").certified_accuracy == 1


def test_per_input_bound_costs_more_and_is_refused_when_unknown():
    task = mm.GroupComposition("S3")
    expl = mm.explain(mm.theory.certificate(task), task)
    assert certify(expl, "uniform").flops < certify(expl, "per_input").flops
    with pytest.raises(mm.MiMarginError, match="bound="):
        certify(expl, "loose")


@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.SparseParity(n=6, k=4)], ids=str)
@pytest.mark.parametrize("act", [("quadratic", None), ("power", 3)])
def test_harmonic_sound_on_random_models(task, act):
    for seed in range(3):
        cfg = mm.MLPConfig.for_task(task, d_mlp=16, act_fn=act[0], act_degree=act[1], seed=seed,
                                    use_biases=seed == 1)
        assert_sound(mm.HookedMLP(cfg), task)


def test_harmonic_sound_with_labels_from_the_weights():
    task = mm.ModularAddition(p=7, k=3)
    model = mm.theory.certificate(task)
    gen = torch.Generator().manual_seed(1)
    for scale in (1e-3, 1e-1):
        T = operand_tables(model)
        noisy = T + scale * T.abs().max() * torch.randn(T.shape, generator=gen, dtype=T.dtype)
        planted = build(model, noisy, model.W_out.detach().double())
        cert = certify(mm.explain(planted, task, source="weights"), "harmonic")
        assert cert.certified_accuracy <= cert.accuracy
        assert cert.min_certified_margin <= float(true_margins(planted, task).min())



def idealized_gaps(expl):
    """Brute force on the idealized circuit the closed form expands: per Δ = c − y, the minimum
    over inputs of logit̂_y − logit̂_c (modular addition), in float64."""
    model, task = expl.original, expl.task
    ex = cyclic_margin(operand_tables(model), model.W_out.detach().double(),
                       model.b_in.detach().double(), expl.label, model)
    net = build(model, ex.tables, ex.W_out).double()
    with torch.no_grad():
        logits = net(task.inputs)
    y, p = task.labels, logits.shape[1]
    rows = torch.arange(len(y))
    gaps = torch.stack([logits[rows, y] - logits[rows, (y + d) % p] for d in range(1, p)])
    return ex.margin[1:], gaps.amin(1)


@pytest.mark.parametrize("task", [mm.ModularAddition(p=7), mm.ModularAddition(p=5, k=3),
                                  mm.ModularAddition(p=5, k=4)], ids=str)
def test_closed_form_is_exact_on_certificate_networks(task):
    bound, truth = idealized_gaps(mm.explain(mm.theory.certificate(task), task))
    torch.testing.assert_close(bound, truth, rtol=1e-9, atol=1e-9 * float(truth.abs().max()))


def test_closed_form_is_a_lower_bound_on_random_models():
    task = mm.ModularAddition(p=7, k=3)
    for seed in range(3):
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=12, act_fn="power", act_degree=3,
                                                   seed=seed))
        bound, truth = idealized_gaps(mm.explain(model, task, min_purity=0.2))
        assert bool((bound <= truth + 1e-9 * truth.abs().max()).all())
        assert bool((bound < truth - 1e-6 * truth.abs().max()).any())     # noise is bounded


def test_harmonic_is_refused_where_no_closed_form_is_known():
    for task, act, match in [(mm.GroupComposition("S3"), ("power", 3), "degree 3"),
                             (mm.GroupComposition("S3", k=3), ("quadratic", None), "k=3")]:
        cfg = mm.MLPConfig.for_task(task, d_mlp=12, act_fn=act[0], act_degree=act[1])
        with pytest.raises(mm.MiMarginError, match=match):
            certify(mm.explain(mm.HookedMLP(cfg), task), "harmonic")
    relu = mm.HookedMLP(mm.MLPConfig.for_task(mm.ModularAddition(p=7), d_mlp=8, act_fn="relu"))
    with pytest.raises(mm.MiMarginError, match="act_fn='relu'"):
        certify(mm.explain(relu, mm.ModularAddition(p=7)), "harmonic")


def test_harmonic_cost_grows_slower_than_the_inputs():
    """Same network shape on Z_7 and Z_13 with 3 operands: brute force's cost grows with p^4
    (inputs times classes), the harmonic bound's about linearly in p."""
    costs = {}
    for p in (7, 13):
        task = mm.ModularAddition(p=p, k=3)
        model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, act_fn="power", act_degree=3))
        cert = certify(mm.explain(model, task, min_purity=0.2), "harmonic", compare=False)
        assert cert.accuracy != cert.accuracy                                   # NaN: not run
        costs[p] = cert
    brute = costs[13].brute_force_flops / costs[7].brute_force_flops
    assert brute > (13 / 7) ** 3                                            # inputs alone
    assert costs[13].flops / costs[7].flops < brute / 4


def test_a_planted_wrong_answer_is_never_certified():
    """Z_7's certificate network plus one unexplained neuron (its maps are spikes, which hold
    every frequency) that fires on a = 2 or b = 3, four times as strongly on (2, 3), and votes
    for class 0: the model is wrong there, and no bound may certify every input."""
    task = mm.ModularAddition(p=7)
    model = mm.theory.certificate(task)
    T, W = operand_tables(model), model.W_out.detach().double()
    spike = torch.zeros((2, 7, 1), dtype=torch.float64)
    spike[0, 2, 0] = spike[1, 3, 0] = 1.0
    vote = torch.zeros((1, 7), dtype=torch.float64)
    vote[0, 0] = 4 * float(true_margins(model, task).max())   # x²: 4 at (2, 3), 1 on its lines
    wide = mm.HookedMLP(dataclasses.replace(model.cfg, d_mlp=model.cfg.d_mlp + 1))
    planted = build(wide, torch.cat([T, spike], 2), torch.cat([W, vote]))
    truth = true_margins(planted, task)
    assert bool((truth < 0).any())                                # the model is wrong there
    cert = assert_sound(planted, task)
    assert mm.explain(planted, task).label[-1] is None
    assert cert.certified_accuracy < 1.0
