"""Every bad input raises MiMarginError (or a subclass) whose message names the offending value.

One table of (what, call, text the message must contain); each row is its own test case. The
rows cover configs (types incl. bool-for-int, finiteness, ranges), tasks, model–task fit and
non-finite weights at training, analyzer and theory entry points, and the sweep spec. A second
table (rows that take a scratch folder) covers the newer features: damaged zoo entries, legacy
TransformerLens checkpoints, ``to_tokens`` and the ``return_type`` options, sizes that cannot fit
in memory and the report's output path. bench/bad_inputs.py runs both tables and counts the
outcomes (refused cleanly, other exception, accepted silently).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mi_margin as mm
from mi_margin.checks import format_bytes
from mi_margin.cli import make_parser
from mi_margin.groups import FiniteGroup
from mi_margin.models.config import config_from_dict
from mi_margin.sweep import SweepSpec
from mi_margin.tasks import from_dict as task_from_dict
from mi_margin.theory import compare_to_theory, prediction_for, reweight_neurons
from mi_margin.viz.report import write_report
from mi_margin.zoo import DATA
from mi_margin.zoo.store import read_entry

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

# -- the newer features: rows that take a scratch folder ----------------------------------------
PARITY_ENTRY, ADDITION_ENTRY = "morwani_parity_n10_k4_quartic", "li_p23_k3_cubic"


def edited_entry(name: str, change: Callable[[Path], None]) -> Callable[[Path], Any]:
    """Load a copy of zoo entry ``name`` after ``change(folder)``."""
    def call(tmp: Path) -> Any:
        root = tmp / name
        shutil.copytree(DATA / name, root)
        change(root)
        return read_entry(root)
    return call


def edit_json(change: Callable[[dict], Any]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        meta = json.loads((root / "entry.json").read_text())
        change(meta)
        (root / "entry.json").write_text(json.dumps(meta, indent=1))
    return edit


def edit_history(change: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        header, *rows = (root / "history.csv").read_text().splitlines()
        (root / "history.csv").write_text("\n".join([header, *change(rows)]) + "\n")
    return edit


def entry(change: Callable[[Path], None], name: str = PARITY_ENTRY) -> Callable[[Path], Any]:
    return edited_entry(name, change)


def write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / name).write_bytes(data)


ZOO = [
    ("zoo: parity n changed so the model no longer fits",
     entry(edit_json(lambda m: m["task"].update(n=12))), "12"),
    ("zoo: task p changed", entry(edit_json(lambda m: m["task"].update(p=29)), ADDITION_ENTRY),
     "29"),
    ("zoo: parity support moved",
     entry(edit_json(lambda m: m["task"].update(support=[4, 5, 6, 7]))), "[4, 5, 6, 7]"),
    ("zoo: status banana", entry(edit_json(lambda m: m.update(status="banana"))), "banana"),
    ("zoo: listed checkpoint not stored",
     entry(edit_json(lambda m: m["checkpoints"].update({"7": "float16"}))), "7"),
    ("zoo: checkpoint dtype float8",
     entry(edit_json(lambda m: m["checkpoints"].update({"3": "float8"}))), "float8"),
    ("zoo: act_degree changed", entry(edit_json(lambda m: m["model"].update(act_degree=3))),
     "act_degree"),
    ("zoo: d_mlp changed", entry(edit_json(lambda m: m["model"].update(d_mlp=41))), "d_mlp"),
    ("zoo: train lr changed", entry(edit_json(lambda m: m["train"].update(lr=0.5))), "lr"),
    ("zoo: step changed", entry(edit_json(lambda m: m.update(step=999))), "999"),
    ("zoo: final says finished", entry(edit_json(lambda m: m.update(final="finished"))),
     "finished"),
    ("zoo: checkpoints missing", entry(edit_json(lambda m: m.pop("checkpoints"))),
     "checkpoints"),
    ("zoo: model config missing", entry(edit_json(lambda m: m.pop("model"))), "model"),
    ("zoo: entry.json a list", entry(write("entry.json", b"[1, 2]")), "entry.json"),
    ("zoo: history shuffled", entry(edit_history(lambda rows: rows[::-1])), "history.csv"),
    ("zoo: history value edited",
     entry(edit_history(lambda rows: [rows[0].replace("0.01", "0.02", 1), *rows[1:]])),
     "history.csv"),
    ("zoo: history.csv missing", entry(lambda r: (r / "history.csv").unlink()), "history.csv"),
    ("zoo: history.csv not CSV", entry(write("history.csv", b"\xff\x00\x01")), "history.csv"),
    ("zoo: weights missing", entry(lambda r: (r / "weights.safetensors").unlink()),
     "weights.safetensors"),
]


def legacy_file(tmp: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    """A legacy TransformerLens state dict (p=7, p + 1 outputs) after ``change``."""
    cfg = mm.TransformerConfig(d_vocab=8, d_vocab_out=8, d_model=8, n_heads=2, d_head=4, d_mlp=8)
    state = dict(mm.HookedOneLayerTransformer(cfg).state_dict())
    change(state)
    torch.save(state, tmp / "legacy.pth")
    return tmp / "legacy.pth"


def legacy(change: Callable[[dict], None] = lambda s: None, **kw: Any) -> Callable[[Path], Any]:
    return lambda tmp: mm.load_tl_checkpoint(legacy_file(tmp, change), **kw)


def checkpoint_of(data: bytes) -> Callable[[Path], Any]:
    """Load a 'checkpoint' file holding ``data`` (e.g. the HTML page of a failed download)."""
    def load(tmp: Path) -> Any:
        (tmp / "model.pth").write_bytes(data)
        return mm.load_tl_checkpoint(tmp / "model.pth")
    return load


def set_weight(name: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], None]:
    return lambda state: state.update({name: make(state[name])})


def nan_in(w: torch.Tensor) -> torch.Tensor:
    w = w.clone()
    w.view(-1)[0] = NAN
    return w


LEGACY = [
    ("load_tl_checkpoint d_vocab_out=-1", legacy(d_vocab_out=-1), "-1"),
    ("load_tl_checkpoint d_vocab_out=0", legacy(d_vocab_out=0), "d_vocab_out=0"),
    ("load_tl_checkpoint d_vocab_out beyond W_U", legacy(d_vocab_out=9), "9"),
    ("load_tl_checkpoint d_vocab_out=True", legacy(d_vocab_out=True), "True"),
    ("load_tl_checkpoint d_vocab_out=7.5", legacy(d_vocab_out=7.5), "7.5"),
    ("load_tl_checkpoint NaN weight", legacy(set_weight("blocks.0.mlp.W_in", nan_in)), "W_in"),
    ("load_tl_checkpoint int64 weights",
     legacy(set_weight("embed.W_E", lambda w: w.long())), "int64"),
    ("load_tl_checkpoint complex weights",
     legacy(set_weight("unembed.W_U", lambda w: w.to(torch.complex64))), "complex64"),
    ("load_tl_checkpoint one-row W_pos",
     legacy(set_weight("pos_embed.W_pos", lambda w: w[:1])), "W_pos"),
    ("load_tl_checkpoint index=True", legacy(index=True), "True"),
    ("load_tl_checkpoint of a text file", checkpoint_of(b"not a checkpoint"), "not a torch checkpoint"),
    ("load_tl_checkpoint of an HTML page", checkpoint_of(b"<!DOCTYPE html>"), "failed download"),
]


def tf_model(task: Any = P7) -> mm.HookedOneLayerTransformer:
    return mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, d_model=8, n_heads=2,
                                                                      d_head=4, d_mlp=8))


PARITY = mm.SparseParity(4, 2)


def forward(model: Any, x: Any, **kw: Any) -> Callable[[Path], Any]:
    return lambda tmp: model(x, **kw)


TOKENS = [
    ("to_tokens '3 * 2 ='", lambda tmp: tf_model().to_tokens("3 * 2 ="), "*"),
    ("to_tokens '3 - 2 ='", lambda tmp: tf_model().to_tokens("3 - 2 ="), "-"),
    ("to_tokens '3 + x ='", lambda tmp: tf_model().to_tokens("3 + x ="), "x"),
    ("to_tokens '3 + 2.5 ='", lambda tmp: tf_model().to_tokens("3 + 2.5 ="), "2.5"),
    ("to_tokens '3 + 2 + 1 =' for k=2", lambda tmp: tf_model().to_tokens("3 + 2 + 1 ="),
     "3 + 2 + 1"),
    ("to_tokens [3, 5.7]", lambda tmp: tf_model().to_tokens([3, 5.7]), "5.7"),
    ("to_tokens [True, 3]", lambda tmp: tf_model().to_tokens([True, 3]), "True"),
    ("to_tokens ['3', 4]", lambda tmp: mlp_for(P7).to_tokens(["3", 4]), "'3'"),
    ("to_tokens a number", lambda tmp: mlp_for(P7).to_tokens(3), "3"),
    ("to_tokens parity [1, -1, 0, 1]", lambda tmp: mlp_for(PARITY).to_tokens([1, -1, 0, 1]),
     "0"),
    ("parity forward with 0.5 entries",
     forward(mlp_for(PARITY), torch.full((2, 4), 0.5)), "0.5"),
    ("transformer forward with bool tokens",
     forward(tf_model(), torch.ones(2, 3, dtype=torch.bool)), "bool"),
    ("MLP forward with complex inputs",
     forward(mlp_for(P7), torch.ones(2, 2, dtype=torch.complex64)), "complex64"),
    ("loss_per_token='yes'",
     forward(mlp_for(P7), P7.inputs[:3], return_type="loss", labels=P7.labels[:3],
             loss_per_token="yes"), "yes"),
    ("loss_per_token=1 on a transformer",
     forward(tf_model(), P7.tokens[:3], return_type="both", labels=P7.labels[:3],
             loss_per_token=1), "1"),
    ("return_type 'Loss'", forward(tf_model(), P7.tokens[:3], return_type="Loss"), "Loss"),
    ("return_type logits with labels",
     forward(mlp_for(P7), P7.inputs[:3], labels=P7.labels[:3]), "labels"),
    ("return_type None with loss_per_token",
     forward(tf_model(), P7.tokens[:3], return_type=None, loss_per_token=True),
     "loss_per_token"),
    ("labels as bools",
     forward(mlp_for(P7), P7.inputs[:2], return_type="loss", labels=[True, False]), "bool"),
]


def config_rows() -> list[tuple[str, Callable[[Path], Any], str]]:
    rows = [(f"TrainConfig({k}={v!r})", (lambda tmp, k=k, v=v: mm.TrainConfig(**{k: v})), repr(v))
            for k, v in [("momentum", 5.0), ("momentum", 1.0), ("lr", 1e308), ("lr", 1e30),
                         ("lr", 1e20), ("weight_decay", 1e30), ("norm_penalty", 1e30),
                         ("norm_penalty_power", 1e308), ("n_checkpoints", 10**9)]]
    return [
        *rows,
        ("TrainConfig peak lr lr_gamma=1e30 at two milestones",
         lambda tmp: mm.TrainConfig(lr_gamma=1e30, lr_milestones=(5, 10)), "1e+30"),
        ("train with n_checkpoints=10**9",
         lambda tmp: mm.train(mlp_for(P7), P7, quick(n_checkpoints=10**9)), "1000000000"),
        ("SparseParity(n=10**6)", lambda tmp: mm.SparseParity(n=10**6, k=2), "n=1000000"),
        ("SparseParity(n=10**5, n_samples=2**20)",
         lambda tmp: mm.SparseParity(n=10**5, k=2, n_samples=2**20), "1,048,576 samples"),
        ("TransformerConfig.from_dict of an MLP config",
         lambda tmp: mm.TransformerConfig.from_dict(mm.MLPConfig().to_dict()), "'mlp'"),
        ("MLPConfig.from_dict of a transformer config",
         lambda tmp: mm.MLPConfig.from_dict(mm.TransformerConfig().to_dict()), "'transformer'"),
        ("TrainConfig.from_dict of a model config",
         lambda tmp: mm.TrainConfig.from_dict(mm.MLPConfig().to_dict()), "kind"),
        ("TrainConfig.from_dict of a list", lambda tmp: mm.TrainConfig.from_dict([1]), "list"),
        ("task from_dict of a model config",
         lambda tmp: task_from_dict(mm.MLPConfig().to_dict()), "mlp"),
        ("TrainConfig(step=10)", lambda tmp: mm.TrainConfig(step=10),
         "no field 'step' (did you mean 'steps'?)"),
        ("TrainConfig().replace(weigth_decay=2)",
         lambda tmp: mm.TrainConfig().replace(weigth_decay=2), "did you mean 'weight_decay'?"),
        ("TransformerConfig(d_modle=8)", lambda tmp: mm.TransformerConfig(d_modle=8),
         "did you mean 'd_model'?"),
        ("MLPConfig.for_task(task, d_mpl=8)",
         lambda tmp: mm.MLPConfig.for_task(P7, d_mpl=8), "did you mean 'd_mlp'?"),
        ("MLPConfig.for_task(a 3-operand task, k=2)",
         lambda tmp: mm.MLPConfig.for_task(mm.ModularAddition(p=7, k=3), k=2), "needs k=3"),
        ("TransformerConfig.for_task(task, n_ctx=4)",
         lambda tmp: mm.TransformerConfig.for_task(P7, n_ctx=4), "needs n_ctx=3"),
    ]


def report_rows() -> list[tuple[str, Callable[[Path], Any], str]]:
    def report_into_missing(tmp: Path) -> Any:
        run = mm.train(mlp_for(P7), P7, quick())
        return write_report(run, tmp / "missing" / "report.html")

    def cli_report_into_missing(tmp: Path) -> Any:
        mm.train(mlp_for(P7), P7, quick(), out_dir=tmp / "run")
        args = make_parser().parse_args(["report", str(tmp / "run"), "--out",
                                         str(tmp / "nowhere" / "r.html")])
        return args.func(args)      # what `mi-margin report` runs (main prints its error)

    def report_onto_a_folder(tmp: Path) -> Any:
        run = mm.train(mlp_for(P7), P7, quick())
        return write_report(run, tmp)

    def study_report_into_missing(tmp: Path) -> Any:
        """Refused before any seed trains: the study folder stays empty."""
        args = make_parser().parse_args(["study", "chughtai_S4_mlp", "--out", str(tmp / "st"),
                                         "--seeds", "1", "--report", str(tmp / "no" / "r.html")])
        try:
            return args.func(args)
        finally:
            assert not (tmp / "st").exists()

    return [("write_report into a missing folder", report_into_missing, "missing"),
            ("mi-margin report --out into a missing folder", cli_report_into_missing, "nowhere"),
            ("write_report onto a folder", report_onto_a_folder, "it is a folder"),
            ("mi-margin study --report into a missing folder", study_report_into_missing, "no")]


def analyzer_at(p: int, analyzer: Callable[[Any, Any], Any] = mm.key_frequencies
                ) -> Callable[[Path], Any]:
    """``analyzer`` of a p-token model: its logits over the p² grid are p³ numbers."""
    return lambda tmp: analyzer(mlp_for(mm.ModularAddition(p=p)), mm.ModularAddition(p=p))


def explained() -> Any:
    return mm.explain(mlp_for(P7), P7)


#: an embed-style MLP has nothing to embed on sparse parity's ±1 vector
EMBED_VECTOR = [("embed-style MLP on sparse parity",
                 lambda tmp: mm.MLPConfig.for_task(PARITY, d_mlp=8, input_style="embed"),
                 "input_style='theory'"),
                ("explain a sparse-parity transformer (it reads bits, one token each)",
                 lambda tmp: mm.explain(mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
                     PARITY, d_model=8, n_heads=2, d_head=4, d_mlp=16)), PARITY), "reads bits")]

#: an explanation's and a run's analyzers given the model, the natural mistake
WRONG_OBJECT = [
    ("certify(model)", lambda tmp: mm.analysis.certify(mlp_for(P7)), "mm.explain(model, task)"),
    ("fidelity(model)", lambda tmp: mm.analysis.fidelity(mlp_for(P7)), "mm.explain(model, task)"),
    ("progress_measures(model)", lambda tmp: mm.progress_measures(mlp_for(P7)), "checkpoints"),
    ("HookedMLP(TransformerConfig)",
     lambda tmp: mm.HookedMLP(mm.TransformerConfig.for_task(P7)), "of type MLPConfig"),
    ("HookedOneLayerTransformer(MLPConfig)",
     lambda tmp: mm.HookedOneLayerTransformer(mm.MLPConfig.for_task(P7)), "of type TransformerConfig"),
    ("MLPConfig.for_task('modular_addition')",
     lambda tmp: mm.MLPConfig.for_task("modular_addition"), "takes a task"),
    ("MLPConfig.for_task(task, dmlp=8)", lambda tmp: mm.MLPConfig.for_task(P7, dmlp=8), "no field 'dmlp'"),
    ("fidelity(draws=2.5)", lambda tmp: mm.analysis.fidelity(explained(), draws=2.5), "2.5"),
    ("fidelity(seed=None)", lambda tmp: mm.analysis.fidelity(explained(), seed=None), "None"),
    ("explain(min_purity='0.5')", lambda tmp: mm.explain(mlp_for(P7), P7, min_purity="0.5"), "'0.5'"),
    ("explain(keep=5)", lambda tmp: mm.explain(mlp_for(P7), P7, keep=5), "keep=5"),
    ("explain(labels_per_neuron=True)",
     lambda tmp: mm.explain(mlp_for(P7), P7, labels_per_neuron=True), "True"),
    ("train(model, None)", lambda tmp: mm.train(mlp_for(P7), None), "a task is needed"),
    ("margin(model, None)", lambda tmp: mm.margin(mlp_for(P7), None), "a task is needed"),
    ("compare_to_theory(model, None)", lambda tmp: mm.compare_to_theory(mlp_for(P7), None),
     "a task is needed"),
    ("theory.max_margin(None)", lambda tmp: mm.theory.max_margin(None), "takes a task"),
    ("resume(model)", lambda tmp: mm.resume(mlp_for(P7)), "resume continues a run"),
    ("load(None)", lambda tmp: mm.load(None), "load takes a run folder"),
    ("train(out_dir='')", lambda tmp: mm.train(mlp_for(P7), P7, quick(), out_dir=""), "out_dir"),
    ("study_grid(settings='57')",
     lambda tmp: mm.studies.study_grid(lambda p, s: None, "57", 1, out=tmp), "'57'"),
    ("grokking_distribution(None)",
     lambda tmp: mm.studies.views.grokking_distribution(None), "NoneType"),
    ("study(on_row=5)", lambda tmp: mm.study("chughtai_S4_mlp", seeds=1, out=tmp, on_row=5), "on_row"),
    ("study(address=6379)", lambda tmp: mm.study("chughtai_S4_mlp", seeds=1, out=tmp, address=6379),
     "6379"),
    ("progress_measures(a folder with no run)", lambda tmp: mm.progress_measures(tmp), "not a run folder"),
]

def tiny_run() -> Any:
    """A run on half of Z_7's table with checkpoints at steps 0, 1 and 2."""
    task = mm.ModularAddition(p=7, train_fraction=0.5)
    return mm.train(mlp_for(task), task, quick())


S3, PARITY6 = mm.GroupComposition("S3"), mm.SparseParity(6, 3)

#: labels as analyzers take them (restricted_loss, progress_measures, explain's keep), and the
#: other arguments the same audit found accepted silently or refused confusingly
LABELS = [
    ("restricted_loss(labels=[])", lambda tmp: mm.restricted_loss(mlp_for(P7), P7, []), "empty"),
    ("restricted_loss(labels=[1, 1])", lambda tmp: mm.restricted_loss(mlp_for(P7), P7, [1, 1]),
     "more than once"),
    ("restricted_loss(labels=['standard', '(2,1)'])",
     lambda tmp: mm.restricted_loss(mlp_for(S3), S3, ["standard", "(2,1)"]), "alias"),
    ("restricted_loss(restricted_on='test') with no test split",
     lambda tmp: mm.restricted_loss(mlp_for(P7), P7, [1], restricted_on="test"), "is empty"),
    ("restricted_loss(labels=[torch.tensor(1.5)])",
     lambda tmp: mm.restricted_loss(mlp_for(P7), P7, torch.tensor([1.5])), "1.5"),
    ("progress_measures(labels=[])", lambda tmp: mm.progress_measures(tiny_run(), labels=[]),
     "labels=[] is empty"),
    ("progress_measures(steps=[])", lambda tmp: mm.progress_measures(tiny_run(), steps=[]),
     "steps=[] is empty"),
    ("progress_measures(steps='2')", lambda tmp: mm.progress_measures(tiny_run(), steps="2"),
     "steps='2'"),
    ("progress_measures(steps=[1.5])", lambda tmp: mm.progress_measures(tiny_run(), steps=[1.5]),
     "steps must be an integer"),
    ("explain(keep=[[0, 1, 2]]) on Z_7", lambda tmp: mm.explain(mlp_for(P7), P7, keep=[[0, 1, 2]]),
     "[[0, 1, 2]]"),
    ("explain(keep=[])", lambda tmp: mm.explain(mlp_for(P7), P7, keep=[]), "keep=[] is empty"),
    ("explain(keep=[(0, 1)]) on (6, 3)-parity",
     lambda tmp: mm.explain(mm.theory.certificate(PARITY6), PARITY6, keep=[(0, 1)]), "order k=3"),
    ("explain(min_purity=0)", lambda tmp: mm.explain(mlp_for(P7), P7, min_purity=0),
     "> 0 and <= 1"),
    ("explain(min_purity=1.5)", lambda tmp: mm.explain(mlp_for(P7), P7, min_purity=1.5),
     "> 0 and <= 1"),
    ("certify(compare='no')",
     lambda tmp: mm.analysis.certify(mm.explain(mm.theory.certificate(P7), P7), compare="no"),
     "compare='no'"),
    ("theory.certificate('S4')", lambda tmp: mm.theory.certificate("S4"),
     "certificate takes a task, got the string 'S4': pass mm.GroupComposition('S4')"),
    ("theory.max_margin(model)", lambda tmp: mm.theory.max_margin(mlp_for(P7)),
     "got a HookedMLP"),
]

NEW_ROWS = (ZOO + LEGACY + TOKENS + WRONG_OBJECT + EMBED_VECTOR + LABELS + config_rows()
            + report_rows())
#: rows too heavy for the suite (building the task alone takes seconds and a GiB): the count only
HEAVY_ROWS = [("key_frequencies at p=4093 (274 GB of logits)", analyzer_at(4093), "GiB"),
              ("margin at p=4093 (float64 logits)", analyzer_at(4093, mm.margin), "GiB")]


@pytest.mark.parametrize(("what", "call", "text"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_refused_naming_the_value(what, call, text):
    with pytest.raises(mm.MiMarginError) as info:
        call()
    assert text in str(info.value), (what, str(info.value))


@pytest.mark.parametrize(("what", "call", "text"), NEW_ROWS, ids=[r[0] for r in NEW_ROWS])
def test_newer_features_refuse_bad_input_naming_the_value(tmp_path, what, call, text):
    with pytest.raises(mm.MiMarginError) as info:
        call(tmp_path)
    assert text in str(info.value), (what, str(info.value))


def test_an_analysis_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    """The grid's logits (p² rows of p classes) are estimated first; a budget below them refuses,
    naming the size (at p=4093 they are 274 GB: bench/bad_inputs.py runs that case); a budget
    above them lets the analyses run."""
    p = 31
    monkeypatch.setenv("MI_MARGIN_MEMORY_GIB", str(p**3 * 4 / 2**30 / 2))
    with pytest.raises(mm.MiMarginError, match="logits") as info:
        mm.key_frequencies(mlp_for(mm.ModularAddition(p=p)), mm.ModularAddition(p=p))
    assert format_bytes(p**3 * 4) in str(info.value)        # float32 logits [p², p]
    with pytest.raises(mm.MiMarginError, match="float64 logits") as info:
        mm.margin(mlp_for(mm.ModularAddition(p=p)), mm.ModularAddition(p=p))
    assert format_bytes(2 * p**3 * 8) in str(info.value)    # chunks and their join, float64
    monkeypatch.setenv("MI_MARGIN_MEMORY_GIB", str(p**3 * 16 / 2**30 * 2))
    mm.key_frequencies(mlp_for(mm.ModularAddition(p=p)), mm.ModularAddition(p=p))
    mm.margin(mlp_for(mm.ModularAddition(p=p)), mm.ModularAddition(p=p))


def test_checkpoints_that_cannot_fit_are_refused_before_training(tmp_path, monkeypatch):
    """The kept weights are counted from the schedule (at most steps + 1 of them) and refused,
    naming the count and size, before the run folder is touched."""
    model, config = mlp_for(P7), quick(steps=30, n_checkpoints=10**5)
    each = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    monkeypatch.setenv("MI_MARGIN_MEMORY_GIB", str(30 * each / 2**30))   # 30 < 31 kept
    with pytest.raises(mm.MiMarginError, match="keeping 31 checkpoints") as info:
        mm.train(model, P7, config, out_dir=tmp_path / "run")
    assert format_bytes(31 * each) in str(info.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(mm.MiMarginError, match="keeping 31 checkpoints"):
        mm.train_batched([model], P7, [config], device="cpu")
    monkeypatch.setenv("MI_MARGIN_MEMORY_GIB", str(31 * each / 2**30))
    assert len(mm.train(model, P7, config).checkpoints) == 31


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
    # with the bar or snapshots set otherwise it is still this run (they change nothing trained)
    with pytest.raises(mm.MiMarginError, match=r"already holds this run"):
        mm.train(mlp_for(P7), P7, quick(progress=True, snapshot_every=1), out_dir=root)
    with pytest.raises(mm.MiMarginError, match=r"another run \(it differs in model\.seed, "
                                               r"train\.steps\)"):
        mm.train(mlp_for(P7, seed=1), P7, quick(steps=3), out_dir=root)
    # only the budget differs (the README's cell after mm.resume): resuming is the way on
    with pytest.raises(mm.MiMarginError, match=r"another step budget \(finished at step 2; "
                       r"this call asks for 5\).*mm\.resume\(.*steps=5\).*discards") as info:
        mm.train(mlp_for(P7), P7, quick(steps=5), out_dir=root)
    assert "--resume --steps 5" in str(info.value)
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


def test_numpy_numbers_are_taken_and_stored_as_python_numbers(tmp_path):
    """``for seed in np.arange(n)`` is the everyday loop over seeds: numpy integers and floats pass
    the checks and are stored as the int or float the check returns, so a run folder's JSON and
    torch's seeding take them (they failed there before)."""
    task = mm.ModularAddition(p=np.int64(5), seed=np.int64(1))
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=np.int64(8), seed=np.int64(0)))
    config = mm.TrainConfig(steps=np.int64(4), lr=np.float32(1e-3), seed=np.int64(0),
                            eval_every=np.int64(2), progress=False)
    rule = mm.studies.StopRule(chunk=np.int64(10), level=np.float64(0.9))
    assert [type(x) for x in (task.p, model.cfg.d_mlp, model.cfg.seed, config.steps, config.lr,
                              config.seed, rule.chunk, rule.level)] == [int] * 3 + [int, float, int,
                                                                                     int, float]
    mm.train(model, task, config, out_dir=tmp_path / "run")
    assert mm.ModularOperation(p=np.int64(7)).p == 7

    def tiny(seed):
        t = mm.ModularAddition(p=5, train_fraction=0.6, seed=seed)
        return (mm.HookedMLP(mm.MLPConfig.for_task(t, d_mlp=8, seed=seed)), t,
                mm.TrainConfig(steps=4, eval_every=2, progress=False))

    st = mm.study(tiny, seeds=np.arange(2), out=tmp_path / "study", rule=rule, progress=False)
    assert st.table["seed"].tolist() == [0, 1]
