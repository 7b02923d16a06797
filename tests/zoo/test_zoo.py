"""The model zoo: entries load offline as Runs, fit the size budget, and their reduced-precision
checkpoints and cards give what the full-precision weights gave."""

from __future__ import annotations

import itertools
import json
import re
import shutil

import pandas as pd
import pytest
import torch

import mi_margin as mm
from mi_margin.errors import CheckpointError, MiMarginError
from mi_margin.models.config import dtype_name
from mi_margin.models.evaluation import evaluate, model_inputs
from mi_margin.zoo import DATA, cards, store
from mi_margin.zoo.build import build_entry, recipe
from mi_margin.zoo.checks import margin_ratio, same_answers, signature
from mi_margin.zoo.phases import phase_bounds, pick_checkpoints
from mi_margin.zoo.recipes import RECIPES

ENTRIES = mm.zoo.list()
MAX_BYTES = 25 * 10**6     # the "at most 25 MB", in decimal megabytes


def test_there_are_entries_and_each_has_its_recipe():
    assert ENTRIES, "no zoo entries installed"
    assert set(ENTRIES) <= set(RECIPES)


def test_all_files_together_fit_the_budget():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total <= MAX_BYTES, f"{total / 1e6:.2f} MB > 25 MB"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(MiMarginError, match="no zoo entry 'nanda'; valid: \\[") as err:
        mm.zoo.load("nanda")
    assert all(name in str(err.value) for name in ENTRIES)
    with pytest.raises(MiMarginError, match="valid"):
        mm.zoo.card("S5")


@pytest.mark.parametrize("name", ENTRIES)
def test_load_gives_a_run(name):
    run = mm.zoo.load(name)
    meta = store.read_meta(DATA / name)
    assert isinstance(run, mm.Run) and not run.model.training
    assert run.step == meta["step"] == int(run.history["step"].iloc[-1])
    assert sorted(run.checkpoints) == sorted(int(s) for s in meta["checkpoints"])
    for key, value in run.model.state_dict().items():     # the model is the trained one, exactly
        assert torch.equal(value, run.checkpoints[run.step][key])
    if recipe(name).finish is not None:   # the LP finish never lowers the margin; none exceeds γ*
        assert meta["final"] == "finished" and mm.zoo.variants(name) == [recipe(name).variant]
        finished = mm.zoo.load(name, variant=recipe(name).variant).model
        trained, final = margin_ratio(run.model, run.task), margin_ratio(finished, run.task)
        assert trained <= final <= 1 + 1e-9
    _, acc = evaluate(run.model, run.task, run.task.train_idx)
    assert acc == pytest.approx(run.history["train_acc"].iloc[-1], abs=1e-12)
    assert run.model_at(0).cfg == run.model.cfg
    assert f"# {name}" in mm.zoo.card(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ENTRIES if recipe(n).finish is not None])
def test_finished_weights_are_the_finish_of_the_last_checkpoint(name):
    """Recompute the recipe's finish (an LP: minutes) on the shipped last checkpoint."""
    run = mm.zoo.load(name, variant=recipe(name).variant)
    expected = recipe(name).finish(run.model_at(run.step), run.task).state_dict()
    for key, value in run.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ENTRIES)
def test_shipped_checkpoints_give_the_full_precision_answers(name):
    """Accuracy, key frequencies/irreps and margin ratio recomputed on the shipped (possibly
    float16) checkpoints equal those the build computed on the full-precision weights."""
    run = mm.zoo.load(name)
    meta = store.read_meta(DATA / name)
    recorded = meta["checks"]["signatures"]
    assert sorted(map(int, recorded)) == sorted(run.checkpoints)
    reduced = [s for s, d in meta["checkpoints"].items() if d != dtype_name(run.model.cfg.dtype)]
    assert reduced, "every intermediate checkpoint kept in full precision: nothing to check"
    for step, full in recorded.items():
        assert same_answers(full, signature(run.model_at(int(step)), run.task)), step


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if recipe(n).heavy else n
                                  for n in ENTRIES])
def test_card_is_regenerated_from_the_shipped_weights(name):
    """The card is computation, not text: rebuilding it from the entry gives the same card."""
    run = mm.zoo.load(name)
    meta = store.read_meta(DATA / name)
    dtypes = {int(s): d for s, d in meta["checkpoints"].items()}
    variants = {v: mm.zoo.load(name, variant=v).model for v in mm.zoo.variants(name)}
    assert_same_card(cards.card(recipe(name), run, meta["build"], dtypes, variants), mm.zoo.card(name),
                     logit_rounding(run))


#: a printed decimal number: integers (steps, counts, labels such as (3,1)) and floats
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]\d+)?(?![\w.])")


def logit_rounding(run: mm.Run) -> float:
    """How far one logit may move between two CPUs: 2·S·γ_n·Z. Each matrix product's entries are
    within γ_n Σ|terms| of the exact ones (Higham 2002, Thm 3.5: n the model's widest reduction,
    u its dtype's unit roundoff, γ_n = n·u/(1 − n·u)); a logit's terms over the output layer sum
    in absolute value to at most Z = max Σ_j |h_j| |W_jc|, and each of the S stages of products
    before it (MLP: input and output layer, plus the embedding; transformer: QK, pattern·V, O,
    MLP in and out, unembed) moves it by at most as much relative to those terms; two CPUs are
    each within S·γ_n·Z of the exact logit."""
    model, task = run.model, run.task
    mlp = model.model_kind == "mlp"
    point = "blocks.0.mlp.hook_post" if mlp else "blocks.0.hook_resid_post"
    with torch.no_grad():
        _, cache = model.run_with_cache(model_inputs(model, task), names_filter=point)
        h = cache[point] if mlp else cache[point][:, -1]
        W = model.blocks[0].mlp.W_out if mlp else model.W_U
        Z = float((h.abs().double() @ W.abs().double()).max())
    cfg = model.cfg
    stages = (3 if cfg.input_style == "embed" else 2) if mlp else 6
    n = max(h.shape[-1], cfg.d_vocab * getattr(cfg, "k", 1), getattr(cfg, "d_mlp", 0))
    u = torch.finfo(h.dtype).eps / 2
    return 2 * stages * (n * u / (1 - n * u)) * Z


def last_digit(printed: str) -> float:
    """The unit of the last digit of a printed number: 1e-9 for "2.464e-06", 0.01 for "19.25"."""
    mantissa, _, exponent = printed.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def assert_same_card(got: str, want: str, dz: float) -> None:
    """Two cards of one entry, computed on two CPUs, are the same text; the same integers (steps,
    counts, labels: outcomes that rounding does not move); and floats that differ by at most the
    printing's rounding (half a unit in the last printed digit of each) plus the computation's:
    a loss L = mean −log p_y changes by at most 2·L·max|δz| when the logits move by δz (its
    gradient in z is p − e_y, whose absolute sum 2(1 − p_y) is at most 2L), so relatively by
    2·dz, the largest such factor among the card's numbers (accuracies, fractions and ratios of
    the weights are better conditioned)."""
    assert NUMBER.sub("#", got) == NUMBER.sub("#", want)
    for a, b in zip(NUMBER.findall(got), NUMBER.findall(want)):
        if a == b:
            continue
        assert any(c in a + b for c in ".e"), (a, b)            # integers: exactly
        tol = (last_digit(a) + last_digit(b)) / 2 + 2 * dz * max(abs(float(a)), abs(float(b)))
        assert abs(float(a) - float(b)) <= tol, (a, b, tol)


def test_corrupted_weights_are_a_clear_error(tmp_path):
    name = ENTRIES[0]
    shutil.copytree(DATA / name, tmp_path / name)
    path = tmp_path / name / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        store.read_entry(tmp_path / name)
    (tmp_path / name / "entry.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a zoo entry"):
        store.read_entry(tmp_path / name)


def test_build_rounds_only_where_answers_agree(tmp_path):
    """Build an entry from a freshly trained tiny run: the final weights come back bit-exact,
    reduced-precision checkpoints are the rounded weights, and every checkpoint's answers are
    recorded."""
    task = mm.ModularAddition(p=7, train_fraction=0.6, seed=1)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=32, act_fn="relu", seed=1))
    run = mm.train(model, task, mm.TrainConfig(steps=300, lr=3e-3, eval_every=20, progress=False,
                                               checkpoint_schedule="linear", n_checkpoints=15))
    root = build_entry("li_p23_k3_cubic", run, tmp_path)       # any grokking recipe's card layout
    shipped = store.read_entry(root)
    meta = store.read_meta(root)
    for key, value in run.model.state_dict().items():
        assert torch.equal(shipped.model.state_dict()[key], value)
    for step, dtype in meta["checkpoints"].items():
        original = run.checkpoints[int(step)]
        for key, value in shipped.checkpoints[int(step)].items():
            stored = original[key] if dtype == store.INIT else original[key].to(store.DTYPES[dtype])
            assert torch.equal(value, stored.to(value.dtype))
        assert same_answers(meta["checks"]["signatures"][step],
                            signature(run.model_at(int(step)), task))
    pd.testing.assert_frame_equal(shipped.history, run.history, check_dtype=False)
    assert (root / "card.md").read_text().startswith("# li_p23_k3_cubic")


def test_phases_and_checkpoint_choice():
    steps = list(range(0, 10_001, 100))
    history = pd.DataFrame({"step": steps,
                            "train_acc": [min(s / 1000, 1.0) for s in steps],
                            "test_acc": [0.0 if s < 6000 else min((s - 6000) / 2000, 1.0) for s in steps]})
    bounds = phase_bounds(history)
    assert bounds == {"memorized": 1000, "cleanup_start": 6500, "grokked": 8000, "end": 10_000}
    picked = pick_checkpoints(steps, history, 12, "grokking")
    assert picked[0] == 0 and picked[-1] == 10_000
    for a, b in [(0, 1000), (1000, 6500), (6500, 8000), (8000, 10_000)]:    # every phase sampled
        assert sum(a < s < b for s in picked) >= 1
    log = pick_checkpoints(steps, history, 6, "max_margin")
    assert log[0] == 0 and log[-1] == 10_000 and len(log) <= 7
    gaps = [b - a for a, b in itertools.pairwise(log[1:])]
    assert gaps == sorted(gaps)                                              # log-spaced


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_are_deterministic(name):
    """Every seed is in the recipe: building it twice gives the same split and initial weights."""
    (m1, t1, c1), (m2, t2, c2) = RECIPES[name].make(), RECIPES[name].make()
    assert c1 == c2 and t1.to_dict() == t2.to_dict() and torch.equal(t1.train_idx, t2.train_idx)
    for key, value in m1.state_dict().items():
        assert torch.equal(value, m2.state_dict()[key])


def test_readme_reproductions_table_is_the_cards_table():
    from pathlib import Path

    from mi_margin.zoo.build import TABLE_END, TABLE_START, reproductions_table

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == reproductions_table()
    assert all(f"`{name}`" in table for name in ENTRIES)


def test_unknown_recipe_and_readme_without_markers(tmp_path):
    from mi_margin.zoo.build import update_readme

    with pytest.raises(MiMarginError, match="no zoo recipe 'nanda_p97'; valid: \\['chughtai_A5"):
        recipe("nanda_p97")
    (tmp_path / "README.md").write_text("# no table here\n")
    with pytest.raises(MiMarginError, match="no <!-- zoo-table -->"):
        update_readme(tmp_path / "README.md")


def test_cli_builds_entries_from_run_folders(tmp_path, capsys):
    from mi_margin.zoo.build import main

    task = mm.ModularAddition(p=5, train_fraction=0.6, seed=2)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, act_fn="relu", seed=2))
    mm.train(model, task, mm.TrainConfig(steps=60, lr=1e-2, eval_every=10, progress=False),
             out_dir=tmp_path / "runs" / "li_p23_k3_cubic" / "run")
    main(["entry", "li_p23_k3_cubic", "--runs-root", str(tmp_path / "runs"), "--dest", str(tmp_path / "zoo")])
    assert "MB of the 25 MB budget" in capsys.readouterr().out
    shipped = store.read_entry(tmp_path / "zoo" / "li_p23_k3_cubic")
    assert shipped.step == 60 and shipped.task.to_dict() == task.to_dict()
    with pytest.raises(SystemExit):
        main(["entry", "a", "b", "--run", str(tmp_path)])


def test_rebuilding_never_touches_the_installed_zoo_nor_replaces_an_entry(tmp_path, monkeypatch):
    """Without --dest the entry goes next to its run folder; an existing entry is replaced only with
    --overwrite (train refuses before training)."""
    from mi_margin.zoo import build

    installed = {p: p.stat().st_mtime_ns for p in DATA.rglob("*") if p.is_file()}
    task = mm.ModularAddition(p=5, train_fraction=0.6, seed=2)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16, act_fn="relu", seed=2))
    run_dir = tmp_path / "li_p23_k3_cubic" / "run"
    mm.train(model, task, mm.TrainConfig(steps=20, lr=1e-2, eval_every=10, progress=False), out_dir=run_dir)
    build.main(["entry", "li_p23_k3_cubic", "--run", str(run_dir)])
    entry = tmp_path / "li_p23_k3_cubic" / "li_p23_k3_cubic"
    assert store.read_entry(entry).step == 20
    with pytest.raises(MiMarginError, match="already holds an entry; pass overwrite=True"):
        build.main(["entry", "li_p23_k3_cubic", "--run", str(run_dir)])
    build.main(["entry", "li_p23_k3_cubic", "--run", str(run_dir), "--overwrite"])
    monkeypatch.setattr(build, "train_recipe", lambda *a: pytest.fail("trained before refusing"))
    with pytest.raises(SystemExit):
        build.main(["train", "li_p23_k3_cubic", "--out", str(tmp_path / "li_p23_k3_cubic")])
    assert installed == {p: p.stat().st_mtime_ns for p in DATA.rglob("*") if p.is_file()}
