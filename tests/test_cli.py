"""The command line: train writes a run folder, info reads it, demo writes results, errors are clean."""

from __future__ import annotations

import html
import itertools
import json
import subprocess
import sys

import pytest

import mi_margin as mm
from mi_margin.cli import main


def test_train_then_info(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--task", "modular_addition", "--p", "5", "--model", "mlp",
                 "--d-mlp", "16", "--steps", "20", "--eval-every", "10", "--out", str(out)])
    assert code == 0
    assert (out / "run.json").is_file() and (out / "model.safetensors").is_file()
    run = mm.load(out)
    assert run.step == 20 and run.model.cfg.d_mlp == 16
    assert main(["info", str(out)]) == 0
    assert "checkpoints" in capsys.readouterr().out


def test_bad_input_is_a_clean_error(tmp_path, capsys):
    code = main(["train", "--p", "1", "--steps", "5", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "p must be an integer >= 2" in capsys.readouterr().err


def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] > 0 and "analysis" in summary
    assert mm.load(out / "run").step == summary["steps"]
    theory = mm.load(out / "max_margin")
    ratio = theory.history["ratio_to_gamma"].iloc[-1]
    assert summary["max_margin"]["ratio_to_gamma"] == pytest.approx(ratio)
    for report, verdict in [(out / "report.html", summary["verdict"]),
                            (out / "max_margin" / "report.html", summary["max_margin"]["verdict"])]:
        assert "Verdict: " + html.escape(verdict) in report.read_text()


@pytest.mark.slow
def test_full_demo_meets_the_theory(tmp_path):
    """The demo's point: the max-margin run reaches γ*, the grokking run generalizes late."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["max_margin"]["ratio_to_gamma"] >= 0.9
    assert summary["analysis"]["test_accuracy"] == 1.0 and "grokked" in summary["verdict"]


def test_python_dash_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mi_margin", "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and "demo" in proc.stdout


TINY = ["train", "--task", "modular_addition", "--p", "5", "--model", "mlp", "--d-mlp", "8",
        "--eval-every", "5"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mi-margin: error:") and "Traceback" not in err
    return err


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main([*TINY, "--steps", "10", "--out", out]) == 0
    capsys.readouterr()
    assert main([*TINY, "--steps", "10", "--out", out]) == 2
    assert "already holds this run" in one_line_error(capsys)
    assert main([*TINY, "--steps", "20", "--out", out, "--resume"]) == 0
    assert mm.load(out).step == 20
    assert main([*TINY, "--out", out, "--resume"]) == 0      # no --steps: the run's own budget
    assert mm.load(out).step == 20 and mm.load(out).config.steps == 20
    assert main([*TINY, "--steps", "5", "--out", out, "--overwrite"]) == 0
    assert mm.load(out).step == 5


def test_resume_refuses_flags_it_would_ignore(tmp_path, capsys):
    """A resumed run keeps its own settings: a flag saying otherwise is refused, naming the
    run's value; the same flags as the run's own (the starting command with --resume) pass."""
    out = str(tmp_path / "run")
    start = [*TINY, "--lr", "0.01", "--out", out]
    assert main([*start, "--steps", "10"]) == 0
    capsys.readouterr()
    for flags, said in [(["--lr", "0.001"], "--lr 0.001 (the run's lr: 0.01)"),
                        (["--d-mlp", "16"], "--d-mlp 16 (the run's d_mlp: 8)"),
                        (["--task", "group_composition", "--group", "S3"],
                         "--task group_composition (the run's task: modular_addition)"),
                        (["--model", "transformer"], "--model transformer (the run's model: mlp)"),
                        (["--biases"], "--biases True (the run's use_biases: False)"),
                        (["--seed", "1"], "--seed 1 (the run's seed: 0)")]:
        assert main(["train", "--out", out, "--resume", "--steps", "20", *flags]) == 2
        assert said in one_line_error(capsys)
        assert mm.load(out).step == 10
    assert main([*start, "--steps", "20", "--resume"]) == 0       # the run's own flags
    assert "trained 10 steps (to step 20)" in capsys.readouterr().out
    assert main(["train", "--out", out, "--resume", "--steps", "30", "--lr", "1e-2"]) == 0
    assert mm.load(out).step == 30 and mm.load(out).config.lr == 0.01


def test_given_flags_are_the_typed_ones():
    from mi_margin.cli import given_flags

    assert given_flags(["train", "--out", "x"]) == {"out"}
    assert given_flags(["train", "--out", "x", "--resume", "--k", "2", "--biases", "--lr=1"]) \
        == {"out", "resume", "k", "biases", "lr"}


def test_anticipated_failures_are_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([*TINY, "--steps", "2", "--out", str(afile / "run")]) == 2   # OSError
    assert "afile" in one_line_error(capsys)
    assert main([*TINY, "--steps", "2", "--out", str(afile)]) == 2
    assert "afile" in one_line_error(capsys)
    model_file = tmp_path / "m.safetensors"
    mm.save(mm.HookedMLP(mm.MLPConfig(d_vocab=5, d_vocab_out=5, d_mlp=4)), model_file)
    capsys.readouterr()
    assert main(["report", str(model_file)]) == 2
    assert "run folder" in one_line_error(capsys)
    assert main(["info", str(model_file)]) == 2
    one_line_error(capsys)
    spec = tmp_path / "s.toml"
    spec.write_text("[task\n")
    assert main(["sweep", str(spec), "--sequential"]) == 2
    assert "s.toml" in one_line_error(capsys)


@pytest.mark.parametrize(("flags", "message"), [
    (["--task", "group_composition"], "--group is required with --task group_composition"),
    (["--task", "group_composition", "--group", "S9x"], "unknown group name 'S9x'"),
    (["--model", "transformer", "--input-style", "embed"],
     "--input-style embed applies to --model mlp only"),
    (["--model", "mlp", "--n-heads", "2"], "--n-heads 2 applies to --model transformer only"),
    (["--model", "mlp", "--d-embed", "8"], "--d-embed 8 applies to --input-style embed only"),
    (["--task", "modular_addition", "--group", "S4"],
     "--group S4 applies to --task group_composition only"),
    (["--task", "sparse_parity", "--model", "mlp", "--p", "7"],
     "--p 7 applies to --task modular_addition or modular_operation only"),
])
def test_train_refuses_what_it_cannot_honour(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["train", *flags, "--steps", "1", "--out", str(out)]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()                                 # refused before anything was written


def test_train_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:"):]                    # past the usage line
    cfg, model = mm.TrainConfig(), mm.TransformerConfig()
    for option, default in [("--lr", cfg.lr), ("--d-mlp", model.d_mlp),
                            ("--checkpoint-schedule", cfg.checkpoint_schedule),
                            ("--n-checkpoints", cfg.n_checkpoints), ("--p", model.d_vocab_out),
                            ("--d-model", model.d_model), ("--n-heads", model.n_heads)]:
        start = text.index(f"{option} ")
        shown = text[start:start + 300]
        assert f"(default: {default})" in shown, option


def test_train_takes_a_checkpoint_schedule(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "--steps", "30", "--checkpoint-schedule", "linear", "--n-checkpoints", "3",
                 "--out", str(out)]) == 0
    run = mm.load(out)
    assert run.config.checkpoint_schedule == "linear" and run.config.n_checkpoints == 3
    steps = sorted(run.checkpoints)
    assert steps == sorted(mm.training.checkpoint_steps(run.config))
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert len(steps) == 4 and len(gaps) == 1                # evenly spaced, ends included


def test_zoo_lists_names_with_titles(capsys):
    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    titles = mm.zoo.titles()
    assert set(titles) == set(mm.zoo.list()) and all(titles.values())
    for name, title in titles.items():
        assert any(line.startswith(name) and line.endswith(title) for line in lines), name
