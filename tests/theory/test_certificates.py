"""Certificate networks attain the predicted γ* exactly (float64), at the predicted width, with
all wrong-class logits equal where the theory says so; every certificate neuron is a single-neuron
maximizer (Lemma 6: ψ'(ω_i/||ω_i||) = ψ* = γ*)."""

from __future__ import annotations

import pytest
import torch

import mi_margin as mm
from mi_margin import groups
from mi_margin.analysis.margin import margin
from mi_margin.errors import MiMarginError
from mi_margin.theory import certificate, max_margin
from mi_margin.theory.single_neuron import class_weights, psi

RTOL = 1e-9


def _check(task, equal_wrong: bool = True):
    pred = max_margin(task)
    model = certificate(task)
    res = margin(model, task)
    cfg = model.cfg
    assert cfg.dtype == torch.float64 and not cfg.use_biases and cfg.input_style == "theory"
    assert model.W_in.dtype == torch.float64
    assert cfg.d_mlp == pred.width_bound
    assert res.norm_power_sum == pytest.approx(1.0, rel=1e-12)      # ||θ||_{2,ν} = 1
    assert res.normalized == pytest.approx(pred.gamma, rel=RTOL)
    assert res.value == pytest.approx(pred.gamma, rel=RTOL)
    assert bool(res.on_margin.all())                                  # q* uniform: all on margin
    if equal_wrong:
        assert float(res.wrong_spread.max()) <= 1e-9 * pred.gamma
    return model, pred


def _neurons_are_maximizers(task, model, pred, degree):
    """ψ' of every normalized certificate neuron equals γ* (they all lie in Ω'*_{q*})."""
    omegas = model.neuron_vectors().detach()
    omegas = omegas / omegas.norm(dim=1, keepdim=True)
    values = psi(task, omegas, class_weights(task, pred), degree)
    torch.testing.assert_close(values, torch.full_like(values, pred.gamma), rtol=RTOL, atol=0)


@pytest.mark.parametrize("p, k", [(3, 2), (5, 2), (7, 2), (11, 2), (13, 2), (3, 3), (5, 3),
                                  (7, 3), (5, 4)])
def test_modular_certificate(p, k):
    task = mm.ModularAddition(p=p, k=k)
    model, pred = _check(task)
    assert pred.width_bound == 2 ** (2 * k - 2) * (p - 1)
    if p <= 7:
        _neurons_are_maximizers(task, model, pred, k)


@pytest.mark.parametrize("n, k", [(4, 2), (6, 3), (10, 4), (8, 5), (3, 1)])
def test_parity_certificate(n, k):
    task = mm.SparseParity(n=n, k=k)
    model, pred = _check(task)
    assert pred.width_bound == 2 ** (k - 1)
    _neurons_are_maximizers(task, model, pred, k)
    u = model.W_in[0].detach()
    off = [j for j in range(n) if j not in task.support]
    assert float(u[off].abs().sum()) == 0.0


@pytest.mark.parametrize("name", ["S3", "S4", "D4", "D5", "D6", "D7", "C7"])
def test_group_certificate(name):
    task = mm.GroupComposition(name)
    model, pred = _check(task)
    _neurons_are_maximizers(task, model, pred, 2)


def test_s5_certificate():
    _check(mm.GroupComposition("S5"))


def test_a5_lp_certificate():
    """A5 violates the sign condition: the LP certificate attains γ_LP; wrong logits are not all
    equal, but every example sits on the margin and every neuron maximizes ψ' under the LP's
    dual class weights."""
    task = mm.GroupComposition("A5")
    model, pred = _check(task, equal_wrong=False)
    assert pred.extension
    assert model.cfg.d_mlp == sum(pred.neurons_per_irrep.values())
    _neurons_are_maximizers(task, model, pred, 2)


@pytest.mark.parametrize("name", ["A4", "Q8", "C6"])
def test_no_certificate_without_theory(name):
    with pytest.raises(MiMarginError, match="not all irreps are real"):
        certificate(mm.GroupComposition(name))


def test_cyclic_group_certificate_uses_isomorphism():
    """A relabelled C7 (elements permuted) still gets an exact certificate."""
    G = groups.cyclic(7)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3)).numpy()
    inv = perm.argsort()
    table = perm[G.table[inv][:, inv]]
    H = groups.from_cayley_table(table, name="C7_shuffled")
    _check(mm.GroupComposition(H))
