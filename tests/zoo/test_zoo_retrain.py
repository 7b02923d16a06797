"""Retrain the cheapest zoo entry from its recipe and get the shipped weights back, bit-exact."""

from __future__ import annotations

import torch

import mi_margin as mm
from mi_margin.zoo import store
from mi_margin.zoo.build import train_recipe

CHEAPEST = "morwani_parity_n10_k4_quartic"


def test_retraining_the_recipe_gives_the_shipped_weights_bit_exact():
    """Same recipe, same seeds, one thread, same machine type: the final float64 weights are
    identical bit for bit, and every float16 checkpoint is the retrained one rounded."""
    shipped = mm.zoo.load(CHEAPEST)
    dtypes = store.read_meta(store_root := mm.zoo.DATA / CHEAPEST)["checkpoints"]
    assert store_root.is_dir()
    run = train_recipe(CHEAPEST)
    assert run.step == shipped.step
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, shipped.model.state_dict()[key]), key
    for step, dtype in dtypes.items():
        for key, value in shipped.checkpoints[int(step)].items():
            rounded = run.checkpoints[int(step)][key].to(store.DTYPES[dtype]).to(value.dtype)
            assert torch.equal(value, rounded), (step, key)
    for column in ["train_loss", "ratio_to_gamma"]:
        assert torch.equal(torch.tensor(run.history[column].to_numpy()),
                           torch.tensor(shipped.history[column].to_numpy())), column
