"""The command line: train writes a run folder, info reads it, demo writes results, errors are clean."""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_python_dash_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mi_margin", "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and "demo" in proc.stdout
