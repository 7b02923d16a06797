"""The heavy recipes (hours of CPU) run end to end on a few steps: train, pick checkpoints, write
the entry, read it back, write its card."""

from __future__ import annotations

import pytest
import torch

import mi_margin as mm
from mi_margin.zoo import store
from mi_margin.zoo.build import build_entry
from mi_margin.zoo.recipes import RECIPES

HEAVY = sorted(name for name, rec in RECIPES.items() if rec.heavy)


def test_the_papers_heavy_models_have_recipes():
    assert any(n.startswith("nanda_p113_transformer") for n in HEAVY)
    assert any(n.startswith("chughtai_S5_mlp") for n in HEAVY)
    assert any(n.startswith("chughtai_S5_transformer") for n in HEAVY)


# one S5 MLP seed in the default suite; the transformers (p = 113, S5: ~30-50 s for the card's
# analyses on a loaded machine) run with -m slow
CASES = [pytest.param(n, marks=pytest.mark.slow) if "transformer" in n else n
         for n in HEAVY if not n.startswith("chughtai_S5_mlp_seed")] + ["chughtai_S5_mlp_seed1"]


@pytest.mark.parametrize("name", CASES)
def test_heavy_recipe_builds_an_entry_on_a_few_steps(tmp_path, name):
    model, task, config = RECIPES[name].make()
    run = mm.train(model, task, config.replace(steps=2, eval_every=1, n_checkpoints=1))
    root = build_entry(name, run, tmp_path)
    shipped = store.read_entry(root)
    assert shipped.step == 2 and sorted(shipped.checkpoints) == [0, 2]
    for key, value in run.model.state_dict().items():
        assert torch.equal(shipped.model.state_dict()[key], value)
    assert (root / "card.md").read_text().startswith(f"# {name}")
