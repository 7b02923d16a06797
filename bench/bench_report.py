"""Benchmark: size and opening time of the HTML report of a Nanda-sized run.

The run: Nanda et al.'s p = 113 one-layer transformer (d_model 128, 4 heads of 32, d_mlp 512) with
``--checkpoints`` checkpoints. Its weights are random (one seed per checkpoint; sizes and times do
not depend on training), and its history is the real loss and accuracy of each checkpoint. We
write the report (timing its generation), then open it in headless Chromium and time from
navigation until every plotly figure is drawn. The baseline, measured in the same run, is an
empty page with the same inlined bundles (plotly.js and circuitsvis): the ratio says what the
report's own content costs on top of the scripts every report carries.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/bench_report.py [--checkpoints 40]``
→ prints sizes and times, writes ``bench/results/report.json`` (the report is kept in a temp dir).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import mi_margin as mm
from mi_margin.models.evaluation import evaluate, weight_norm_sq
from mi_margin.viz import _html
from mi_margin.viz.report import write_report

ROOT = Path(__file__).resolve().parents[1]
FIGURES_DRAWN = ("[...document.querySelectorAll('.mm-figure .js-plotly-plot')]"
                 ".filter(d => d.querySelector('svg.main-svg')).length")


def nanda_run(n_checkpoints: int, steps: int = 10_000) -> mm.Run:
    """A p = 113 transformer run with random weights at ``n_checkpoints`` evenly spaced steps."""
    task = mm.ModularAddition(p=113, train_fraction=0.3, seed=0)
    at = torch.linspace(0, steps, n_checkpoints).round().long().tolist()
    checkpoints, rows = {}, []
    for seed, step in enumerate(at):
        model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, seed=seed))
        checkpoints[step] = {k: v.clone() for k, v in model.state_dict().items()}
        train_loss, train_acc = evaluate(model, task, task.train_idx)
        test_loss, test_acc = evaluate(model, task, task.test_idx)
        rows.append({"step": step, "lr": 1e-3, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc,
                     "weight_norm_sq": weight_norm_sq(model)})
    return mm.Run(model=model, task=task, config=mm.TrainConfig(steps=steps),
                  history=pd.DataFrame(rows), checkpoints=checkpoints, step=steps,
                  status="finished")


def load_browser() -> Any:
    """The headless-Chromium driver of the browser tests (tests/viz/conftest.py)."""
    spec = importlib.util.spec_from_file_location("viz_conftest", ROOT / "tests/viz/conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    binary = module.find_chromium()
    if binary is None:
        raise SystemExit("no chromium binary; install it with `apt-get install -y chromium`")
    return module.Browser(binary)


def open_time(browser: Any, path: Path, n_figures: int, repeat: int) -> float:
    """Best time from navigation until ``n_figures`` plotly figures are drawn."""
    best = float("inf")
    for _ in range(repeat):
        browser.call("Page.navigate", session=True, url="about:blank")
        browser.events.clear()
        start = time.perf_counter()
        browser.open(path)
        if not browser.wait_until(f"{FIGURES_DRAWN} === {n_figures}", polls=2000, every=0.005):
            raise RuntimeError(f"only {browser.evaluate(FIGURES_DRAWN)} of {n_figures} drawn")
        best = min(best, time.perf_counter() - start)
        if browser.errors():
            raise RuntimeError(f"script errors: {browser.errors()}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out_dir = Path(tempfile.mkdtemp(prefix="mm-bench-report-"))
    run = nanda_run(args.checkpoints)
    start = time.perf_counter()
    report = write_report(run, out_dir / "report.html")
    t_write = time.perf_counter() - start
    html = report.read_text()
    baseline = out_dir / "bundles.html"
    baseline.write_text(_html.page("bundles only", "",
                                   [_html.plotly_script(), _html.circuitsvis_script()]))
    n_figures = html.count('class="mm-figure"')
    with load_browser() as browser:
        t_base = open_time(browser, baseline, 0, args.repeat)
        t_open = open_time(browser, report, n_figures, args.repeat)
        remote = [u for u in browser.requests() if not u.startswith(("file:", "data:", "about:"))]
    size, base_size = report.stat().st_size, baseline.stat().st_size
    row = {"checkpoints": len(run.checkpoints), "report_bytes": size,
           "bundles_bytes": base_size, "figures": n_figures, "write_s": t_write,
           "open_s": t_open, "bundles_open_s": t_base, "open_ratio": t_open / t_base,
           "remote_requests": remote, "report": str(report), "machine": platform.platform()}
    print(f"report of a p=113 transformer run with {len(run.checkpoints)} checkpoints: "
          f"{size / 1e6:.2f} MB ({base_size / 1e6:.2f} MB of it the inlined bundles), "
          f"{n_figures} figures, written in {t_write:.1f} s")
    print(f"opens in {t_open:.2f} s in headless Chromium (all figures drawn); the bundles alone "
          f"{t_base:.2f} s → {t_open / t_base:.1f}×; remote requests: {remote}")
    (ROOT / "bench/results").mkdir(exist_ok=True)
    (ROOT / "bench/results/report.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
