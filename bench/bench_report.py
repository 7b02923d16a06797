"""Benchmark: size and opening time of the HTML report of a Nanda-sized run.

The run: Nanda et al.'s p = 113 one-layer transformer (d_model 128, 4 heads of 32, d_mlp 512) with
``--checkpoints`` checkpoints. Its weights are random (one seed per checkpoint; sizes and times do
not depend on training), and its history is the real loss and accuracy of each checkpoint. We
write the report (timing its generation), then open it in headless Chromium and time from
navigation until every plotly figure is drawn. Two baselines are opened in the same browser
session, alternating with the report: the same report without the training-timeline and
neuron-inspector sections (what those two cost), and an empty page with the same inlined bundles
(plotly.js and circuitsvis; what every report pays). Opening times depend on the machine's load,
so compare the ratios.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/bench_report.py [--checkpoints 40]``
(``--report PATH`` re-measures a report written before; ``--zoo nanda_p113_transformer`` writes and
measures the report of a zoo entry) → prints sizes and times, writes ``bench/results/report.json``
(or ``report_<name>.json``; the report itself is kept in a temp dir).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
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
NEW_SECTIONS = ("training-timeline", "neuron-inspector")
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


def without_new_sections(html: str) -> str:
    """The report without its training-timeline and neuron-inspector sections."""
    for name in NEW_SECTIONS:
        html = re.sub(rf'<section id="{name}">.*?</section>', "", html, flags=re.DOTALL)
    return html


def open_once(browser: Any, path: Path) -> float:
    """Time from navigation until every plotly figure of ``path`` is drawn."""
    n_figures = path.read_text().count('class="mm-figure"')
    browser.call("Page.navigate", session=True, url="about:blank")
    browser.events.clear()
    start = time.perf_counter()
    browser.open(path)
    if not browser.wait_until(f"{FIGURES_DRAWN} === {n_figures}", polls=4000, every=0.005):
        raise RuntimeError(f"only {browser.evaluate(FIGURES_DRAWN)} of {n_figures} drawn")
    elapsed = time.perf_counter() - start
    if browser.errors():
        raise RuntimeError(f"script errors: {browser.errors()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoints", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--report", type=Path, default=None, help="measure this report instead")
    parser.add_argument("--zoo", default=None, help="write and measure the report of this zoo entry "
                                                    "(e.g. nanda_p113_transformer) instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out_dir = Path(tempfile.mkdtemp(prefix="mm-bench-report-"))
    t_write = cpu_write = None
    what = f"a random p=113 transformer run with {args.checkpoints} checkpoints"
    if args.report is None:
        run = nanda_run(args.checkpoints) if args.zoo is None else mm.zoo.load(args.zoo)
        if args.zoo is not None:
            what = f"zoo entry {args.zoo} ({len(run.checkpoints)} checkpoints)"
        start, cpu = time.perf_counter(), time.process_time()
        report = write_report(run, out_dir / "report.html")
        t_write, cpu_write = time.perf_counter() - start, time.process_time() - cpu
    else:
        report, what = args.report, str(args.report)
    html = report.read_text()
    pages = {"report": report, "without": out_dir / "without_new_sections.html",
             "bundles": out_dir / "bundles.html"}
    pages["without"].write_text(without_new_sections(html))
    pages["bundles"].write_text(_html.page("bundles only", "", [_html.plotly_script(),
                                                                _html.circuitsvis_script()]))
    times: dict[str, list[float]] = {name: [] for name in pages}
    with load_browser() as browser:
        for _ in range(args.repeat):
            for name, path in pages.items():
                times[name].append(open_once(browser, path))
        browser.open(report)
        remote = [u for u in browser.requests() if not u.startswith(("file:", "data:", "about:"))]
    best = {name: min(t) for name, t in times.items()}
    size = {name: path.stat().st_size for name, path in pages.items()}
    row = {"what": what, "checkpoints": args.checkpoints, "bytes": size, "write_s": t_write,
           "write_cpu_s": cpu_write,
           "open_s_best": best, "open_s_all": times, "remote_requests": remote,
           "load_average": os.getloadavg(), "report": str(report), "machine": platform.platform()}
    print(f"report of {what}: "
          f"{size['report'] / 1e6:.2f} MB; without the timeline and inspector "
          f"{size['without'] / 1e6:.2f} MB; the inlined bundles {size['bundles'] / 1e6:.2f} MB"
          + (f"; written in {t_write:.1f} s ({cpu_write:.1f} s of CPU)" if t_write is not None
             else ""))
    print(f"opens in {best['report']:.2f} s in headless Chromium (best of {args.repeat}; all "
          f"figures drawn); without the two sections {best['without']:.2f} s "
          f"(→ {best['report'] / best['without']:.2f}×); the bundles alone "
          f"{best['bundles']:.2f} s; load average {os.getloadavg()[0]:.1f}; "
          f"remote requests: {remote}")
    (ROOT / "bench/results").mkdir(exist_ok=True)
    name = "report.json" if args.zoo is None else f"report_{args.zoo}.json"
    (ROOT / "bench/results" / name).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
