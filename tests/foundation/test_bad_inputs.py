"""Every bad input raises MiMarginError (or a subclass) whose message names the offending value.

One table of (what, call, text the message must contain); each row is its own test case. The
rows cover configs (types incl. bool-for-int, finiteness, ranges), tasks, model–task fit and
non-finite weights at training, analyzer and theory entry points, and the sweep spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mi_margin as mm
from mi_margin.groups import FiniteGroup
from mi_margin.models.config import config_from_dict
from mi_margin.sweep import SweepSpec
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.theory import compare_to_theory, prediction_for, reweight_neurons

NAN, INF = math.nan, math.inf
P7 = mm.ModularAddition(p=7)


def mlp_for(task: Any, **kw: Any) -> mm.HookedMLP:
    return mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, **kw))


def nan_mlp() -> mm.HookedMLP:
    model = mlp_for(P7)
    with torch.no_grad():
        model.W_in[0, 0, 0] = NAN
    return model


def bad_group() -> FiniteGroup:
    """A square table with entries in range that is not a group (no identity)."""
    return FiniteGroup(np.array([[0, 1], [0, 1]]), "NotAGroup")


def quick(**kw: Any) -> mm.TrainConfig:
    return mm.TrainConfig(**{"steps": 2, "progress": False, **kw})


TRAIN = [(f"TrainConfig({k}={v!r})", (lambda k=k, v=v: mm.TrainConfig(**{k: v})), repr(v))
         for k, v in [
             ("steps", True), ("steps", 2.5), ("steps", 0), ("steps", "10"),
             ("lr", NAN), ("lr", INF), ("lr", -1.0), ("lr", "0.1"), ("lr", True),
             ("weight_decay", NAN), ("weight_decay", -0.5), ("momentum", INF),
             ("norm_penalty", NAN), ("norm_penalty_power", 0.0), ("target_test_acc", NAN),
             ("target_test_acc", 1.5), ("target_train_loss", -1.0), ("seed", 2.5),
             ("seed", True), ("seed", -1), ("lr_milestones", (-5,)), ("lr_milestones", ("a",)),
             ("lr_milestones", "10"), ("betas", (0.9,)), ("betas", (NAN, 0.9)),
             ("betas", (0.9, 1.0)), ("eval_every", 0), ("progress", "yes"),
             ("snapshot_every", 0), ("microbatch", True), ("batch_size", 1.5), ("lr_gamma", 0.0),
             ("warmup_steps", -1), ("n_checkpoints", 1.5), ("optimizer", "adam"),
             ("checkpoint_schedule", "every")]]

MODELS = [(f"MLPConfig({k}={v!r})", (lambda k=k, v=v: mm.MLPConfig(**{k: v})), repr(v))
          for k, v in [("init_scale", INF), ("init_scale", 0.0), ("init_scale", NAN),
                       ("act_fn", "tanh"), ("d_mlp", True), ("d_mlp", 0), ("seed", 1.5),
                       ("use_biases", "no"), ("dtype", "float16"), ("k", 2.0),
                       ("input_style", "conv")]]
MODELS += [(f"TransformerConfig({k}={v!r})", (lambda k=k, v=v: mm.TransformerConfig(**{k: v})),
            repr(v))
           for k, v in [("n_heads", True), ("attn_only", 1), ("d_model", 2.0),
                        ("attention_dir", "sideways"), ("use_pos_embed", None), ("seed", -3)]]
MODELS += [
    ("power activation degree 10**6",
     lambda: mm.MLPConfig(act_fn="power", act_degree=10**6), "1000000"),
    ("power activation without degree", lambda: mm.MLPConfig(act_fn="power"), "None"),
    ("config_from_dict bad kind", lambda: config_from_dict({"kind": "cnn"}), "cnn"),
    ("config_from_dict unknown field", lambda: config_from_dict({"kind": "mlp", "width": 3}),
     "width"),
]

TASKS = [
    ("ModularAddition(p=True)", lambda: mm.ModularAddition(p=True), "True"),
    ("ModularAddition(p=2.5)", lambda: mm.ModularAddition(p=2.5), "2.5"),
    ("ModularAddition(p=1)", lambda: mm.ModularAddition(p=1), "p=1"),
    ("ModularAddition(k=0)", lambda: mm.ModularAddition(p=5, k=0), "k=0"),
    ("train_fraction=0", lambda: mm.ModularAddition(p=5, train_fraction=0), "0"),
    ("train_fraction=nan", lambda: mm.ModularAddition(p=5, train_fraction=NAN), "nan"),
    ("train_fraction=1.5", lambda: mm.ModularAddition(p=5, train_fraction=1.5), "1.5"),
    ("train_fraction=True", lambda: mm.ModularAddition(p=5, train_fraction=True), "True"),
    ("task seed=-1", lambda: mm.ModularAddition(p=5, seed=-1), "-1"),
    ("task seed=1.5", lambda: mm.ModularAddition(p=5, seed=1.5), "1.5"),
    ("parity support 0.5", lambda: mm.SparseParity(4, 2, support=[0.5, 1]), "0.5"),
    ("parity support out of range", lambda: mm.SparseParity(4, 2, support=[0, 9]), "9"),
    ("parity support repeated", lambda: mm.SparseParity(4, 2, support=[0, 0]), "(0, 0)"),
    ("parity n=True", lambda: mm.SparseParity(True, 1), "True"),
    ("parity k > n", lambda: mm.SparseParity(3, 5), "5"),
    ("parity n_samples=0", lambda: mm.SparseParity(20, 2, n_samples=0), "0"),
    ("group table not a group", lambda: mm.GroupComposition(bad_group()), "NotAGroup"),
    ("unknown group name", lambda: mm.GroupComposition("S99"), "S99"),
    ("group given as an int", lambda: mm.GroupComposition(5), "5"),
    ("group k=True", lambda: mm.GroupComposition("S3", k=True), "True"),
    ("task from_dict bad kind", lambda: task_from_dict({"kind": "division"}), "division"),
    ("task from_dict unknown arg", lambda: task_from_dict({"kind": "modular_addition", "q": 3}),
     "q"),
]

FIT = [
    ("train: MLP for p=11 on p=7", lambda: mm.train(mlp_for(mm.ModularAddition(p=11)), P7,
                                                      quick()), "d_vocab=11"),
    ("train_batched: MLP for p=11 on p=7",
     lambda: mm.train_batched([mlp_for(mm.ModularAddition(p=11))], P7, quick(), device="cpu"),
     "d_vocab=11"),
    ("margin: MLP for S4 on p=7", lambda: mm.margin(mlp_for(mm.GroupComposition("S4")), P7),
     "d_vocab=24"),
    ("neuron_clusters: p=11 model on p=7",
     lambda: mm.neuron_clusters(mlp_for(mm.ModularAddition(p=11)), P7), "d_vocab=11"),
    ("compare_to_theory: p=11 model on p=7",
     lambda: compare_to_theory(mlp_for(mm.ModularAddition(p=11)), P7), "d_vocab=11"),
    ("prediction_for: parity model on p=7",
     lambda: prediction_for(mlp_for(mm.SparseParity(4, 2)), P7), "input_kind='vector'"),
    ("reweight_neurons: p=11 model on p=7",
     lambda: reweight_neurons(mlp_for(mm.ModularAddition(p=11)), P7), "d_vocab=11"),
    ("transformer for k=3 on k=2",
     lambda: mm.key_frequencies(mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
         mm.ModularAddition(p=7, k=3), d_model=8, n_heads=1, d_head=8, d_mlp=8)), P7),
     "n_ctx=4"),
    ("key_frequencies: NaN weights", lambda: mm.key_frequencies(nan_mlp(), P7), "W_in"),
    ("margin: NaN weights", lambda: mm.margin(nan_mlp(), P7), "W_in"),
    ("neuron_clusters: NaN weights", lambda: mm.neuron_clusters(nan_mlp(), P7), "W_in"),
    ("compare_to_theory: NaN weights", lambda: compare_to_theory(nan_mlp(), P7), "W_in"),
    ("logit_similarity: NaN weights", lambda: mm.logit_similarity(nan_mlp(), P7), "W_in"),
    ("train: config not a TrainConfig", lambda: mm.train(mlp_for(P7), P7, {"steps": 3}),
     "dict"),
    ("resume before the current step",
     lambda: mm.resume(mm.train(mlp_for(P7), P7, quick()), steps=1), "steps=1"),
    ("save a number", lambda: mm.save(3, "x.safetensors"), "int"),
]


def sweep_rows(tmp: Path) -> list[tuple[str, Callable[[], Any], str]]:
    base = {"task": {"kind": "modular_addition", "p": 5}, "model": {"kind": "mlp"}}
    bad_toml = tmp / "bad.toml"
    bad_toml.write_text("[task\nkind = 'x'")
    bad_json = tmp / "bad.json"
    bad_json.write_text("{'task': 1,}")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("task: [1, 2\nmodel: {")
    list_json = tmp / "list.json"
    list_json.write_text("[1, 2]")
    return [
        ("analysis option name", lambda: SweepSpec(**base, analyses=("margin",),
                                                   analysis_options={"margin": {"subsets": 1}}),
         "subsets"),
        ("analysis options not a table", lambda: SweepSpec(**base, analyses=("margin",),
                                                           analysis_options={"margin": 3}), "3"),
        ("analyses given as a string", lambda: SweepSpec(**base, analyses="margin"), "margin"),
        ("malformed TOML", lambda: SweepSpec.load(bad_toml), "bad.toml"),
        ("malformed JSON", lambda: SweepSpec.load(bad_json), "bad.json"),
        ("malformed YAML", lambda: SweepSpec.load(bad_yaml), "bad.yaml"),
        ("spec that is a list", lambda: SweepSpec.load(list_json), "list.json"),
    ]


ROWS = TRAIN + MODELS + TASKS + FIT


@pytest.mark.parametrize(("what", "call", "text"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_refused_naming_the_value(what, call, text):
    with pytest.raises(mm.MiMarginError) as info:
        call()
    assert text in str(info.value), (what, str(info.value))


def test_bad_sweep_specs(tmp_path):
    for what, call, text in sweep_rows(tmp_path):
        with pytest.raises(mm.MiMarginError) as info:
            call()
        assert text in str(info.value), (what, str(info.value))


def test_out_dir_holding_a_run_is_refused_unless_told(tmp_path):
    root = tmp_path / "run"
    first = mm.train(mlp_for(P7), P7, quick(), out_dir=root)
    # re-running the same cell: the message says how to load the finished run
    with pytest.raises(mm.MiMarginError, match=r"already holds this run \(finished at step 2\)"
                       r".*mm\.load\(") as info:
        mm.train(mlp_for(P7), P7, quick(), out_dir=root)
    assert str(root) in str(info.value)
    with pytest.raises(mm.MiMarginError, match=r"another run \(it differs in model\.seed, "
                                               r"train\.steps\)"):
        mm.train(mlp_for(P7, seed=1), P7, quick(steps=3), out_dir=root)
    assert torch.equal(mm.load(root).model.W_in, first.model.W_in)      # nothing was touched
    (root / "checkpoints" / "stray.safetensors").write_bytes(b"x")
    (root / "notes.txt").write_text("mine")
    second = mm.train(mlp_for(P7, seed=1), P7, quick(steps=3), out_dir=root, overwrite=True)
    loaded = mm.load(root)
    assert loaded.step == 3 and torch.equal(loaded.model.W_in, second.model.W_in)
    assert not (root / "checkpoints" / "stray.safetensors").exists()     # old run's files gone
    assert (root / "notes.txt").read_text() == "mine"                    # other files kept
    with pytest.raises(mm.MiMarginError, match="is a file"):
        mm.train(mlp_for(P7), P7, quick(), out_dir=root / "notes.txt")
