"""Measurement (slow): NFA during grokking of modular addition (Mallinar et al. 2024, App. D).

Mallinar's network: one hidden layer, quadratic activation, no biases, AdamW lr 1e-3 and weight
decay 1.0. Here with cross-entropy, full batch, p = 61, width 512, half of the p² pairs for
training. Their claim: the NFM becomes block-circulant and correlates with sqrt(AGOP) (Pearson
> 0.92). Run with ``pytest -m slow tests/analysis/test_feature_alignment_training.py``.
"""

from __future__ import annotations

import pytest

import mi_margin as mm
from mi_margin.analysis.nfa_training import nfa_over_training


@pytest.mark.slow
def test_nfa_rises_and_ends_high_when_quadratic_mlp_groks():
    task = mm.ModularAddition(p=61, k=2, train_fraction=0.5, seed=0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=512, act_fn="quadratic", seed=0))
    run = mm.train(model, task, mm.TrainConfig(steps=2000, lr=1e-3, weight_decay=1.0,
                                               eval_every=100, checkpoint_schedule="linear",
                                               n_checkpoints=10, progress=False))
    frame = nfa_over_training(run, power=0.5).frame
    first, last = frame.iloc[0], frame.iloc[-1]
    assert last["test_acc"] == 1.0                      # it grokked
    assert last["pearson"] > first["pearson"]
    assert last["pearson"] > 0.92                       # Mallinar et al.'s reported level
    assert last["centered_pearson"] > 0.92
    assert last["nfm_circulant_deviation"] < first["nfm_circulant_deviation"]
