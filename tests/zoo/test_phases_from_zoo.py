"""The papers' grokking models show Nanda et al.'s three phases from the zoo's files alone
(docs/mathematics.md §3.5): memorization, then circuit formation (the restricted loss falls while
test accuracy is still low), then cleanup (test accuracy reaches 1, the excluded loss rises and the
weight norm falls). Computed on the shipped checkpoints, with the key labels of the final model."""

from __future__ import annotations

import pytest

import mi_margin as mm
from mi_margin.analysis.restricted import default_components, restricted_loss
from mi_margin.models.evaluation import evaluate, weight_norm_sq
from mi_margin.zoo.phases import LEVEL
from mi_margin.zoo.recipes import RECIPES

#: the heavy grokking entries that ship checkpoints across training (n_ship > 2); within the
#: 25 MB budget the S5 transformer ships only its initialisation and final weights
GROKKED_PAPER_MODELS = [n for n in mm.zoo.list() if RECIPES[n].heavy
                        and RECIPES[n].kind == "grokking" and RECIPES[n].n_ship > 2]


def measures(run, step, labels):
    model = run.model_at(step)
    res = restricted_loss(model, run.task, labels)
    return {"train_acc": evaluate(model, run.task, run.task.train_idx)[1],
            "test_acc": evaluate(model, run.task, run.task.test_idx)[1],
            "restricted": res.restricted, "excluded": res.excluded,
            "norm": weight_norm_sq(model)}


def test_the_papers_grokking_models_are_shipped():
    assert "nanda_p113_transformer" in GROKKED_PAPER_MODELS
    assert any("chughtai_S5_mlp" in n for n in GROKKED_PAPER_MODELS)


@pytest.mark.parametrize("name", GROKKED_PAPER_MODELS)
def test_three_phases_from_the_shipped_checkpoints(name):
    run = mm.zoo.load(name)
    labels = default_components(run.model, run.task)
    rows = {s: measures(run, s, labels) for s in sorted(run.checkpoints)}
    memorized = [s for s, r in rows.items() if r["train_acc"] >= LEVEL and r["test_acc"] < LEVEL / 2]
    assert memorized, "no shipped checkpoint shows memorization"
    m = memorized[0]
    forming = [s for s, r in rows.items()
               if s > m and r["test_acc"] < LEVEL / 2 and r["restricted"] < rows[m]["restricted"] / 10]
    assert forming, "no checkpoint where the key circuit works (restricted loss 10x lower) " \
                    "while test accuracy is still low"
    c = forming[0]
    clean = [s for s, r in rows.items() if s > c and r["test_acc"] >= LEVEL
             and r["excluded"] > rows[m]["excluded"] and r["norm"] < rows[c]["norm"]]
    assert clean, "no cleaned-up checkpoint after circuit formation"
