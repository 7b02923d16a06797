"""A user's labels are read one way by every analyzer that takes them: ``restricted_loss``,
``progress_measures`` and ``explain(keep=...)`` all go through ``basis.user_labels`` (aliases,
parity subsets in any order, numpy and torch integers; empty, unknown and repeated labels
refused). The refusals' messages are rows of tests/test_checks.py; here, what is taken and that
the analyzers agree."""

import numpy as np
import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.basis import basis_for
from mi_margin.fourier.cyclic import check_frequencies

P7, S3, PARITY = mm.ModularAddition(p=7), mm.GroupComposition("S3"), mm.SparseParity(6, 3)


@pytest.fixture(scope="module")
def certificates():
    return {task: mm.theory.certificate(task) for task in (P7, S3, PARITY)}


#: (task, how a user names labels, the task's labels they mean)
SAME = [
    (S3, ["standard"], ("(2,1)",)),
    (S3, "standard", ("(2,1)",)),
    (S3, ["sign", "standard"], ("(1,1,1)", "(2,1)")),
    (P7, np.array([2, 1]), (1, 2)),
    (P7, torch.tensor([1]), (1,)),
    (P7, [np.int64(3)], (3,)),
    (P7, 2, (2,)),
    (PARITY, [(2, 1, 0)], ((0, 1, 2),)),
    (PARITY, (2, 0, 1), ((0, 1, 2),)),
    (PARITY, np.array([[2, 1, 0]]), ((0, 1, 2),)),
]


@pytest.mark.parametrize(("task", "given", "meant"), SAME, ids=[repr(g) for _, g, _ in SAME])
def test_explain_keeps_the_labels_restricted_loss_keeps(certificates, task, given, meant):
    """Before, explain refused the alias "standard", a parity subset out of order and torch
    integers, and restricted_loss refused numpy integers."""
    model = certificates[task]
    assert basis_for(task).user_labels(given) == meant
    assert mm.restricted_loss(model, task, given).labels == meant
    kept = {lab for lab in mm.explain(model, task, keep=given).label if lab is not None}
    assert kept <= set(meant) and kept
    assert mm.explain(model, task, keep=given).counts == mm.explain(model, task,
                                                                    keep=list(meant)).counts


def test_irrep_restricted_loss_and_explain_agree_on_aliases(certificates):
    model = certificates[S3]
    assert mm.irrep_restricted_loss(model, S3, ["standard"]).labels == ("(2,1)",)
    assert set(mm.explain(model, S3, keep=["standard"]).counts) == {"(2,1)", None}


@pytest.mark.parametrize("keep", [[[0, 1, 2]], [5], ["standard"], [(1, 2)]],
                         ids=["a list in a list", "frequency 5", "an irrep", "a subset"])
def test_labels_of_another_kind_are_refused_clearly(keep):
    """A list inside the list was a raw TypeError (unhashable list)."""
    model = mm.HookedMLP(mm.MLPConfig.for_task(P7, d_mlp=8))
    for call in (lambda: mm.explain(model, P7, keep=keep),
                 lambda: mm.restricted_loss(model, P7, keep)):
        with pytest.raises(mm.MiMarginError, match="frequencies the task does not have"):
            call()


def test_a_subset_of_another_order_is_refused_by_explain_only(certificates):
    """The restricted loss reads any character χ_S; a neuron is labelled by a subset of the
    task's order k, so explain(keep=[(0, 1)]) zeroed every neuron without a word."""
    model = certificates[PARITY]
    assert mm.restricted_loss(model, PARITY, [(1, 0)]).labels == ((0, 1),)
    with pytest.raises(mm.MiMarginError, match=r"subset \(0, 1\) of order 2.*order k=3"):
        mm.explain(model, PARITY, keep=[(1, 0)])


def test_check_frequencies_takes_integers_of_any_library_and_no_floats():
    assert check_frequencies(7, np.array([3, 1])) == [3, 1]
    assert check_frequencies(7, [np.int64(2), torch.tensor(1)]) == [2, 1]
    for bad in ([torch.tensor(1.5)], [True], [1, 1], [4]):
        with pytest.raises(mm.MiMarginError, match=r"distinct integers in 1\.\.3"):
            check_frequencies(7, bad)


def test_restricted_loss_on_the_test_split_of_a_full_table_is_refused():
    """It was NaN; mm.margin refuses the same split with the same check."""
    model = mm.HookedMLP(mm.MLPConfig.for_task(P7, d_mlp=8))
    with pytest.raises(mm.MiMarginError, match=r"subset='test' .* is empty"):
        mm.margin(model, P7, "test")
    with pytest.raises(mm.MiMarginError, match=r"restricted_on='test'.*is empty"):
        mm.restricted_loss(model, P7, [1], restricted_on="test")
    half = mm.ModularAddition(p=7, train_fraction=0.5)
    assert np.isfinite(mm.restricted_loss(model, half, [1], restricted_on="test").restricted)


def test_progress_measures_takes_one_step_as_an_int():
    """steps=5 was a raw TypeError (int is not iterable)."""
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    run = mm.train(mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8)), task,
                   mm.TrainConfig(steps=2, progress=False))
    for steps in (2, np.int64(2), [2], torch.tensor([2])):
        table = mm.progress_measures(run, [1], steps=steps, progress=False).to_dataframe()
        assert table["step"].tolist() == [2]
    with pytest.raises(mm.MiMarginError, match=r"no checkpoints at steps \[5\]"):
        mm.progress_measures(run, [1], steps=5, progress=False)
    with pytest.raises(mm.MiMarginError, match="more than once"):
        mm.progress_measures(run, [1, 1], progress=False)


@pytest.mark.parametrize("labels, text", [([], "is empty"), ([2, 2], "more than once"),
                                          (["standard"], "does not have")])
def test_an_ablation_hook_reads_labels_as_the_analyzers_do(labels, text):
    """ablation_hook, the hook a user patches with, takes labels as restricted_loss does."""
    from mi_margin.analysis.ablation import ablation_hook

    with pytest.raises(mm.MiMarginError, match=text):
        ablation_hook(mm.ModularAddition(p=7), labels, "keep")
    np_keep = ablation_hook(mm.ModularAddition(p=7), np.array([2]), "keep")
    h = torch.randn(49, 5, dtype=torch.float64)
    torch.testing.assert_close(np_keep(h, None), ablation_hook(mm.ModularAddition(p=7), [2],
                                                               "keep")(h, None))
