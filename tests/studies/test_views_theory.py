"""The label views compare like with like: key fractions with the max-margin network's key set,
logit shares with its logit shares; seeds stopped at their budget are counted apart; bad paper
counts and tables that mix settings are refused."""

import json

import pandas as pd
import pytest
import torch

import mi_margin as mm
from mi_margin.analysis.spectrum import component_shares
from mi_margin.studies.views import at_budget, key_count_distribution, label_frequency
from mi_margin.theory.certificates import certificate
from mi_margin.theory.predictions import max_margin


def rows(task: dict, similarity: list[dict], shares: list[dict], dims: dict,
         steps: list[int] | None = None) -> pd.DataFrame:
    """A study table of hand-made rows (one per seed) of ``task``."""
    n = len(similarity)
    steps = steps or [100] * n
    return pd.DataFrame({
        "seed": range(n), "label_kind": "irrep", "test_acc": 1.0, "budget": 200, "step": steps,
        "task": [json.dumps({**task, "seed": s}) for s in range(n)],
        "block_dims": json.dumps(dims), "n_delta": 2,
        "similarity": [json.dumps(s) for s in similarity],
        "logit_share": [json.dumps(s) for s in shares]})


S4 = {"kind": "group_composition", "group": "S4", "k": 2, "train_fraction": 0.5}
S4_DIMS = {"(1,1,1,1)": 1, "(2,2)": 4, "(2,1,1)": 9, "(3,1)": 9}


def s4_table(steps=None) -> pd.DataFrame:
    sims = [{"(1,1,1,1)": 0.5, "(2,2)": 0.4, "(2,1,1)": 0.0, "(3,1)": 0.6},
            {"(1,1,1,1)": 0.3, "(2,2)": 0.0, "(2,1,1)": 0.2, "(3,1)": 0.7}]
    shares = [{"(1,1,1,1)": 0.2, "(2,2)": 0.3, "(2,1,1)": 0.0, "(3,1)": 0.5},
              {"(1,1,1,1)": 0.1, "(2,2)": 0.0, "(2,1,1)": 0.3, "(3,1)": 0.6}]
    return rows(S4, sims, shares, S4_DIMS, steps)


def test_theory_columns_are_the_certificates():
    """theory_key is the max-margin network's key set (every irrep its budget reaches);
    theory_logit_share is its certificate's logit-spectrum share, computed here again;
    logit_share is the seeds' mean."""
    view = label_frequency(s4_table()).to_dataframe().set_index("label")
    task = mm.GroupComposition("S4", train_fraction=0.5)
    budget = max_margin(task).budget_share
    cert = component_shares(certificate(task), task, "logits")
    assert view["theory_key"].tolist() == [budget[lab] > 0 for lab in view.index]
    assert view["theory_logit_share"].tolist() == pytest.approx(cert.tolist(), abs=1e-12)
    assert sum(view["theory_logit_share"]) == pytest.approx(1.0)
    assert view.loc["(3,1)", "logit_share"] == pytest.approx(0.55)
    assert view.loc["(2,2)", "logit_share"] == pytest.approx(0.15)


def test_an_irrep_the_lp_leaves_out_is_not_key_in_the_max_margin_network():
    """A5 fails Theorem 9's sign condition; the LP gives (3,2) no budget, so the max-margin
    network neither has it key nor puts any of its logits there (0, not a rounding residue)."""
    table = mm.zoo.population("chughtai_A5_mlp")
    view = label_frequency(table).to_dataframe().set_index("label")
    assert not view.loc["(3,2)", "theory_key"] and view.loc["(3,2)", "theory_logit_share"] == 0
    assert view.drop("(3,2)")["theory_key"].all()


def test_seeds_stopped_at_their_budget_are_counted_apart():
    table = s4_table(steps=[100, 200])
    assert at_budget(table).tolist() == [False, True]
    view = label_frequency(table)
    assert view.n_at_budget == 1
    by = view.to_dataframe().set_index("label")["key_at_budget"]
    assert by.to_dict() == {"(1,1,1,1)": 1, "(2,2)": 0, "(2,1,1)": 1, "(3,1)": 1}


def test_a_table_of_two_settings_is_refused():
    table = pd.concat([s4_table(), s4_table().assign(task=lambda t: t["task"].str.replace(
        '"train_fraction": 0.5', '"train_fraction": 0.7'))], ignore_index=True)
    with pytest.raises(mm.MiMarginError, match=r"one setting.*key_count_by_setting"):
        label_frequency(table)
    with pytest.raises(mm.MiMarginError, match="one setting"):
        key_count_distribution(table)


@pytest.mark.parametrize("paper, seeds, said", [
    ({"standrad": 3}, 4, "standrad"), ({"sign": 3}, None, "paper_seeds"),
    ({"sign": 5}, 4, "paper\\['sign'\\]"), ({"sign": 1.5}, 4, "paper\\['sign'\\]")])
def test_bad_paper_counts_are_refused(paper, seeds, said):
    with pytest.raises(mm.MiMarginError, match=said):
        label_frequency(s4_table(), paper, seeds)


def test_key_counts_come_with_fractions_of_their_own_totals():
    counts = key_count_distribution(s4_table(), {2: 20, 3: 19}, 50).to_dataframe().set_index("n")
    assert counts.loc[3, "paper_fraction"] == pytest.approx(19 / 50)
    assert counts["fraction"].sum() == pytest.approx(1.0)
    with pytest.raises(mm.MiMarginError, match="paper"):
        key_count_distribution(s4_table(), {"two": 3}, 50)


def test_the_figure_compares_shares_with_shares():
    """Left panel: fractions of seeds (ours, the max-margin network's 0/1); right panel: shares
    of the logit spectrum (ours, the max-margin network's); nothing on a shared axis."""
    from mi_margin.viz.population import label_frequency_figure

    view = label_frequency(s4_table())
    fig = label_frequency_figure(view)
    by_axis = {}
    for trace in fig.data:
        by_axis.setdefault(trace.xaxis, []).append([float(y) for y in trace.y])
    table = view.to_dataframe().sort_values(["dim", "label"], kind="stable")
    assert by_axis["x"] == [table["fraction"].tolist(), table["theory_key"].astype(float).tolist()]
    assert by_axis["x2"] == [table["logit_share"].tolist(), table["theory_logit_share"].tolist()]
    assert torch.tensor(by_axis["x2"]).sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_a_population_name_is_pointed_to_the_zoo():
    from mi_margin.studies.views import grokking_distribution

    for view in (label_frequency, key_count_distribution, grokking_distribution):
        with pytest.raises(mm.MiMarginError, match=r"mm\.zoo\.population\('chughtai_S4_mlp'\)"):
            view("chughtai_S4_mlp")
