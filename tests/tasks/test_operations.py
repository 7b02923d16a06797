"""Power et al.'s operations mod p (tasks/operations.py): exhaustive checks of the encodings, and a
planted multiplication network whose frequencies are found in the discrete-log basis."""


import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.basis import CyclicBasis, EncodedBasis, basis_for
from mi_margin.errors import MiMarginError
from mi_margin.fourier.cyclic import cosine_neurons, exact_cosine_rows
from mi_margin.tasks import ModularOperation, from_dict
from mi_margin.tasks.operations import discrete_log, primitive_root

PRIMES = (3, 5, 7, 11, 13, 17)
OPS = {"subtract": lambda a, b, p: (a - b) % p, "multiply": lambda a, b, p: a * b % p,
       "divide": lambda a, b, p: a * pow(b, -1, p) % p}


@pytest.mark.parametrize("p", PRIMES)
def test_primitive_root_generates_every_nonzero_residue(p):
    g = primitive_root(p)
    assert sorted(pow(g, i, p) for i in range(p - 1)) == list(range(1, p))
    assert all(len({pow(h, i, p) for i in range(p - 1)}) < p - 1 for h in range(1, g))
    log = discrete_log(p)
    assert all(pow(g, int(log[a]), p) == a for a in range(1, p))


@pytest.mark.parametrize("p", PRIMES)
def test_multiplication_is_addition_of_discrete_logs(p):
    """a·b = g^(log a + log b) and a/b = g^(log a − log b) for every pair of nonzero residues."""
    g, log = primitive_root(p), discrete_log(p)
    for a in range(1, p):
        for b in range(1, p):
            assert pow(g, int(log[a] + log[b]) % (p - 1), p) == a * b % p
            assert pow(g, int(log[a] - log[b]) % (p - 1), p) == a * pow(b, -1, p) % p


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("p", PRIMES)
def test_labels_and_elements_exhaustive(op, p):
    """Every label is ``a op b`` mod p, and the operands' elements compose to the label's element."""
    task = ModularOperation(p=p, op=op)
    sym = torch.tensor(task.symbols)
    a, b = sym[task.inputs[:, 0]], sym[task.inputs[:, 1]]
    want = torch.tensor([OPS[op](int(x), int(y), p) for x, y in zip(a, b)])
    assert torch.equal(sym[task.labels], want)
    assert len(task) == len(task.symbols) ** 2 and len(set(map(tuple, task.inputs.tolist()))) == len(task)
    alg = task.algebra
    n = alg.order
    assert n == (p - 1 if op != "subtract" else p)
    elements = alg.elements(task)
    assert torch.equal(elements.sum(1) % n, alg.product(task))
    assert from_dict(task.to_dict()).to_dict() == task.to_dict()


def test_bad_arguments_are_named():
    with pytest.raises(MiMarginError, match="op"):
        ModularOperation(p=7, op="power")
    with pytest.raises(MiMarginError, match="prime"):
        ModularOperation(p=9)


def _planted(task, frequencies):
    """The exact cosine construction (docs/mathematics.md §1.3) on the task's group Z_n, written
    over the task's tokens: operand i of token t reads u_i(element_i(t)), class c is w(element(c))."""
    n = task.algebra.order
    u, w = cosine_neurons(n, *exact_cosine_rows(2, frequencies))       # [2, n, m], [m, n]
    enc = task.algebra.encoding
    tok = enc.elements
    per_operand = [(-tok) % n if inv else tok for inv in enc.inverted]
    cfg = mm.MLPConfig.for_task(task, d_mlp=u.shape[2], act_fn="quadratic", dtype="float64")
    model = mm.HookedMLP(cfg)
    with torch.no_grad():
        model.W_in.copy_(torch.stack([u[i][per_operand[i]] for i in range(2)]))
        model.W_out.copy_(w[:, tok])
    return model


@pytest.mark.parametrize("op", sorted(OPS))
def test_planted_network_frequencies_in_the_encoded_basis(op):
    """A network planted on frequencies {1, 4} of log a (or of a, for subtraction) computes the
    operation, and every analyzer reads those frequencies through the task's encoding."""
    task = ModularOperation(p=13, op=op)
    planted = [1, 4]
    model = _planted(task, planted)
    logits = model(task.inputs)
    assert torch.equal(logits.argmax(1), task.labels)
    basis = basis_for(task)
    assert isinstance(basis, EncodedBasis) and basis.labels == tuple(range(task.algebra.order // 2 + 1))
    for method in ("logits", "similarity", "embed", "W_L"):
        assert mm.analysis.key_components(model, task, method=method) == planted, method
    clusters = mm.analysis.neuron_clusters(model, task)
    assert set(clusters.label) == set(planted)
    assert float(clusters.phase_error.max()) < 1e-9
    assert mm.key_frequencies(model, task) == planted


def test_multiplication_is_not_sparse_in_residue_order():
    """The oracle can fail: read in the residues' own order (no discrete log), the planted
    multiplication network's embedding is spread over many frequencies."""
    task = ModularOperation(p=13, op="multiply")
    model = _planted(task, [1, 4])
    plain = CyclicBasis(task.algebra.order, 2)
    energy = plain.weight_energy(model.W_in[0].detach())[1:].sum(1)
    share = energy / energy.sum()
    assert int((share > 0.05).sum()) > 2
    encoded = basis_for(task).weight_energy(model.W_in[0].detach())[1:].sum(1)
    assert set(torch.nonzero(encoded / encoded.sum() > 1e-9).flatten().add(1).tolist()) == {1, 4}


def test_trained_multiplication_model_uses_discrete_log_frequencies():
    """A tiny MLP trained on multiplication mod 11 fits the table, and nearly all of its logits'
    variance lies in the single-frequency blocks of the discrete-log basis it is analysed in."""
    torch.manual_seed(0)
    task = ModularOperation(p=11, op="multiply", train_fraction=1.0)
    cfg = mm.MLPConfig.for_task(task, d_mlp=64, act_fn="quadratic")
    model = mm.HookedMLP(cfg)
    mm.train(model, task, mm.TrainConfig(steps=400, lr=0.01, weight_decay=1e-3, progress=False,
                                         checkpoint_schedule="none"))
    assert torch.equal(model(task.inputs).argmax(1), task.labels)
    basis = basis_for(task)
    logits = model(task.inputs).detach().double()
    logits = logits - logits.mean(1, keepdim=True)
    energy = basis.grid_energy(logits)
    in_blocks = float(energy.blocks.sum() / energy.total.sum())
    plain = CyclicBasis(10, 2).grid_energy(logits)        # residue order: a different function
    assert in_blocks > 0.9 > float(plain.blocks.sum() / plain.total.sum())
    assert mm.analysis.key_components(model, task)


@pytest.mark.parametrize("p", [5, 7])
def test_subtraction_certificate_attains_the_predicted_margin(p):
    """Z_p's theorem applies through the encoding: the certificate, moved to the subtraction task's
    tokens (second operand negated), reaches γ* of addition mod p, and compare_to_theory reads it
    as perfect through neuron_clusters."""
    task = ModularOperation(p=p, op="subtract")
    pred = mm.theory.predictions.max_margin(task)
    assert pred.applies and pred.gamma == mm.theory.predictions.max_margin(mm.ModularAddition(p)).gamma
    model = mm.theory.certificate(task)
    assert mm.margin(model, task).value == pytest.approx(pred.gamma, rel=1e-9)
    report = mm.compare_to_theory(model, task)
    assert report.ratio == pytest.approx(1.0, rel=1e-9) and report.fraction_pure == 1.0
    assert report.summary()["phase_error"] < 1e-9


def test_multiplication_theory_says_why_it_does_not_apply():
    """Z_p* has even order p − 1, outside the odd-prime theorem: no γ*, and the reason is given."""
    pred = mm.theory.predictions.max_margin(ModularOperation(p=7, op="multiply"))
    assert not pred.applies and pred.gamma is None and "odd prime" in pred.reasons[0]
