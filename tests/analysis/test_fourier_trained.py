"""Fourier analyzers on small trained models (k = 2 and 3; MLPs and a transformer).

Trained networks have no planted answer, so these tests assert structure: the main logit frequency
is carried by the embeddings and by W_L; for power MLPs every clock-wave frequency is (by the key
identity); the clock-wave share never exceeds the logit-block share; restricting a generalising
model to its key frequencies beats excluding them; MLP neurons obey the phase relation.
"""

import math

import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.neurons import neuron_clusters
from mi_margin.analysis.restricted import restricted_loss
from mi_margin.analysis.spectrum import component_shares, key_frequencies


def _train(model, task, steps, lr):
    config = mm.TrainConfig(steps=steps, lr=lr, weight_decay=1.0, eval_every=50,
                            target_test_acc=1.0, progress=False)
    run = mm.train(model, task, config)
    assert run.history["test_acc"].iloc[-1] == 1.0          # precondition of the assertions below
    return model, task


@pytest.fixture(scope="module")
def mlp_k2():
    task = mm.ModularAddition(p=23, k=2, train_fraction=0.8, seed=0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=96, act_fn="quadratic"))
    return _train(model, task, 400, 2e-2)


@pytest.fixture(scope="module")
def mlp_k3():
    task = mm.ModularAddition(p=13, k=3, train_fraction=0.8, seed=0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=128, act_fn="power"))
    return _train(model, task, 400, 2e-2)


@pytest.fixture(scope="module")
def transformer():
    task = mm.ModularAddition(p=23, k=2, train_fraction=0.9, seed=0)
    cfg = mm.TransformerConfig.for_task(task, d_model=32, n_heads=2, d_head=16, d_mlp=64)
    return _train(mm.HookedOneLayerTransformer(cfg), task, 600, 1e-2)


MODELS = ["mlp_k2", "mlp_k3", "transformer"]


@pytest.mark.parametrize("name", MODELS)
def test_the_main_logit_frequency_is_key_in_embeddings_and_W_L(name, request):
    model, task = request.getfixturevalue(name)
    shares = component_shares(model, task, "logits")
    main = int(shares.argmax()) + 1
    assert main in key_frequencies(model, task)
    assert main in key_frequencies(model, task, method="embed")
    assert main in key_frequencies(model, task, method="W_L")


@pytest.mark.parametrize("name", ["mlp_k2", "mlp_k3"])
def test_clock_wave_frequencies_of_power_mlps_are_in_embeddings_and_W_L(name, request):
    """For (Σ u_i)^k neurons only the term k!·Π u_i(a_i)·w(c) meets cos(ω_f(Σa − c)) (every other
    term misses an operand and sums to 0), so the wave's weight is Σ_j Π_i û_ij(f) ŵ_j(−f): a
    frequency in the logit similarity must be in every input map and in W_L (Morwani et al.'s key
    identity, docs/mathematics.md §1.3, §2.2)."""
    model, task = request.getfixturevalue(name)
    from_similarity = set(key_frequencies(model, task, method="similarity"))
    assert from_similarity
    assert from_similarity <= set(key_frequencies(model, task, method="embed"))
    assert from_similarity <= set(key_frequencies(model, task, method="W_L"))
    assert from_similarity <= set(key_frequencies(model, task))


@pytest.mark.parametrize("name", MODELS)
def test_similarity_share_never_exceeds_block_share(name, request):
    model, task = request.getfixturevalue(name)
    sim = component_shares(model, task, "similarity")
    block = component_shares(model, task, "logits")
    assert torch.all(sim <= block + 1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_restricted_loss_beats_excluded_loss(name, request):
    model, task = request.getfixturevalue(name)
    res = restricted_loss(model, task)
    assert res.restricted < res.excluded
    assert res.restricted < math.log(task.p) < res.excluded or res.excluded_acc < 1.0


@pytest.mark.parametrize("name", MODELS)
def test_dominant_neuron_frequencies_are_carried_by_the_embeddings(name, request):
    model, task = request.getfixturevalue(name)
    res = neuron_clusters(model, task)
    used = set(res.frequency.tolist()) - {0}
    assert used and used <= set(key_frequencies(model, task, method="embed"))


@pytest.mark.parametrize("name", ["mlp_k2", "mlp_k3"])
def test_trained_mlp_neurons_obey_the_phase_relation(name, request):
    """A neuron's logit contribution at its frequency scales with cos(θ_1+…+θ_k − θ_w)
    (Morwani et al. key identity, docs/mathematics.md §1.3), so useful neurons have small relation error."""
    model, task = request.getfixturevalue(name)
    res = neuron_clusters(model, task)
    assert res.phase_error is not None
    errors = res.phase_error[res.frequency > 0]
    assert float(errors.median()) < math.pi / 4
