"""mm.explain, fidelity and certify on a TransformerBridge: the explanation of a bridge is that of
its native twin (labels, kept shares and weights bit for bit), kept in the bridge's world, and bad
inputs are refused with the reason."""

import copy

import pytest
import torch
from oracles.rounding import rounding_bound

import mi_margin as mm
from mi_margin._tl import bridge_config, transformer_bridge
from mi_margin.analysis.explain import fidelity
from mi_margin.models.compat import is_bridge
from mi_margin.theory.explained import explanation_check

from_bridge = mm.HookedOneLayerTransformer.from_bridge


@pytest.fixture(scope="module")
def clock():
    """The zoo's trained clock transformer (Zhong et al., p = 59), its bridge, and both
    explanations."""
    run = mm.zoo.load("zhong_p59_clock_transformer")
    bridge = run.model.to_bridge()
    return run, bridge, mm.explain(run.model, run.task), mm.explain(bridge, run.task)


def test_a_bridge_is_explained_as_its_native_model(clock):
    run, bridge, ours, theirs = clock
    assert theirs.original is bridge and is_bridge(theirs.model) and theirs.task is run.task
    assert theirs.label == ours.label and theirs.counts == ours.counts and theirs.key == ours.key
    assert len(ours.key) >= 2 and sum(n for lab, n in ours.counts.items() if lab) > 0
    assert torch.equal(theirs.kept, ours.kept)
    assert torch.equal(theirs.clusters.energy, ours.clusters.energy)
    native = from_bridge(theirs.model).state_dict()
    for name, value in ours.model.state_dict().items():
        assert torch.equal(native[name], value), name
    assert theirs.summary() == ours.summary()


def test_the_explanation_bridge_runs_what_the_native_explanation_runs(clock):
    """In float64, where the rounding bound of a 512-neuron network is far below its logits."""
    run, _, ours, theirs = clock
    tokens = run.task.tokens[:64]
    native = mm.HookedOneLayerTransformer(ours.model.cfg.replace(dtype="float64")).eval()
    native.load_state_dict({k: v.double() for k, v in ours.model.state_dict().items()})
    bridge = copy.deepcopy(theirs.model).to(torch.float64, print_details=False)
    with torch.no_grad():
        logits = native(tokens)
        gap = (bridge(tokens) - logits).abs()
    bound = rounding_bound(native, tokens)
    assert bool((gap <= bound).all()) and float(bound.max()) < 1e-6 * float(logits.abs().max())
    _, cache = theirs.model.run_with_cache(tokens)
    assert cache["blocks.0.mlp.hook_post"].shape == (64, 3, run.model.cfg.d_mlp)


@pytest.mark.filterwarnings("ignore::mi_margin.NotGeneralizedWarning")
def test_fidelity_of_a_bridge_explanation_is_the_native_one(clock):
    _, _, ours, theirs = clock
    a, b = fidelity(ours, draws=1), fidelity(theirs, draws=1)
    assert a.rows == b.rows and a.recovered == b.recovered
    assert a.to_dataframe().set_index("measure").loc["explanation", "accuracy"] > 0.99


def test_certify_says_which_bound_a_bridge_takes(clock):
    with pytest.raises(mm.MiMarginError, match=r"bound='per_input'.*bound='low_rank'"):
        mm.analysis.certify(clock[3])


@pytest.mark.filterwarnings("ignore::mi_margin.NotGeneralizedWarning")
def test_the_explanation_check_takes_a_bridge():
    task = mm.ModularAddition(p=5)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=8, n_heads=2, d_head=4, d_mlp=6, act_fn="quadratic"))
    ours, theirs = explanation_check(model, task, draws=1), explanation_check(model.to_bridge(),
                                                                              task, draws=1)
    assert theirs.fidelity.rows == ours.fidelity.rows
    assert set(theirs.refused) == set(ours.refused) == {"uniform", "harmonic"}
    for bound in ("per_input", "low_rank"):
        assert torch.equal(theirs.certificates[bound].margin_bound,
                           ours.certificates[bound].margin_bound)
    assert (theirs.trained_ratio, theirs.certified_ratio) == (ours.trained_ratio,
                                                              ours.certified_ratio)


def test_bad_inputs_are_refused():
    task = mm.ModularAddition(p=5)
    layer_norm = transformer_bridge().boot_native(bridge_config(
        d_model=8, d_head=4, n_heads=2, n_layers=1, n_ctx=3, d_mlp=6, d_vocab=6, d_vocab_out=5,
        act_fn="relu", normalization_type="LN", device="cpu"))
    with pytest.raises(mm.MiMarginError, match="normalization_type=None"):
        mm.explain(layer_norm, task)
    with pytest.raises(mm.MiMarginError, match=r"explain handles .* TransformerBridge, got dict"):
        mm.explain({}, task)
    bridge = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=8, n_heads=2, d_head=4, d_mlp=6)).to_bridge()
    with pytest.raises(mm.MiMarginError, match="source='weights' labels MLP neurons"):
        mm.explain(bridge, task, source="weights")
    with pytest.raises(mm.MiMarginError, match="does not fit"):
        mm.explain(bridge, mm.ModularAddition(p=7))
