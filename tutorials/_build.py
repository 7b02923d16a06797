"""Write the tutorial notebooks (without outputs) from the cell sources below.

Run ``python tutorials/_build.py`` after editing; commit this script and the notebooks together.
Every notebook reads ``MI_MARGIN_FAST=1`` (small settings, used by tests/tutorials) and ends by
printing a ``RESULT {json}`` line that the tests check.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import json
import os

import plotly.io as pio
import torch

import mi_margin as mm

# Figures render offline in JupyterLab, Notebook 7 and VS Code (plotly's mimetype) and in classic
# front ends (plotly.js inlined once by the "notebook" renderer): no CDN is needed.
pio.renderers.default = "plotly_mimetype+notebook"

# Fast mode (MI_MARGIN_FAST=1) runs in seconds for the test suite; the default is the full setting.
FAST = os.environ.get("MI_MARGIN_FAST") == "1"
if FAST:
    torch.set_num_threads(1)     # the test suite runs notebooks side by side on few cores
torch.manual_seed(0)
print("fast mode" if FAST else "full settings")"""


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip())


GROKKING = [
    md("""
# 1. Grokking modular addition with a one-layer transformer

Nanda et al. (2023, "Progress measures for grokking") train a one-layer transformer on
`a + b mod 113` from 30% of the table. It first memorizes, then (under weight decay) forms a
circuit that works in the Fourier basis: it embeds `a` and `b` as cos/sin(ω_k a) for a few *key
frequencies* k, multiplies them in the MLP and reads out cos(ω_k(a + b − c)). This notebook trains
that model, finds the key frequencies, the neuron clusters and the attention pattern, and follows
the restricted/excluded loss over training.

Full settings (p = 113, 20k steps) take a while on a CPU; set `MI_MARGIN_FAST=1` for a small run.
"""),
    code(SETUP),
    code("""
P, FRACTION, STEPS, D_MODEL, LR = (17, 0.7, 800, 48, 3e-3) if FAST else (113, 0.3, 20_000, 128, 1e-3)
task = mm.ModularAddition(p=P, k=2, train_fraction=FRACTION, seed=0)
cfg = mm.TransformerConfig.for_task(task, d_model=D_MODEL, n_heads=4, d_head=D_MODEL // 4,
                                    d_mlp=4 * D_MODEL, act_fn="relu", seed=0)
model = mm.HookedOneLayerTransformer(cfg)
run = mm.train(model, task, mm.TrainConfig(steps=STEPS, lr=LR, weight_decay=1.0,
                                           eval_every=max(STEPS // 100, 10), n_checkpoints=12,
                                           progress=not FAST))
run.history.tail(3)"""),
    md("""
## Training curves
Train loss falls first; test loss falls much later (grokking), while weight decay shrinks the
weights.
"""),
    code("""
from mi_margin.viz.training import training_curves

training_curves(run, log_x=True).show()"""),
    md("""
## Fourier spectra and key frequencies
Each component (embedding, neuron inputs, neurons over the (a, b) grid, logits, W_L) is projected
onto the Fourier basis of Z_p. A trained model concentrates on a handful of frequencies.
"""),
    code("""
from mi_margin.analysis import fourier_spectrum, key_frequencies, logit_similarity

spec = fourier_spectrum(model, task)
spec.plot().show()
spec.top(3)"""),
    code("""
key = key_frequencies(model, task)
sim = logit_similarity(model, task)
print("key frequencies:", key, " logit FVE of all frequencies:", round(sim.fve(), 3))
sim.plot().show()"""),
    md("""
## Neuron clusters
Most neurons respond to a single key frequency (Nanda et al.: 85% of the neurons' variance is
explained by one frequency).
"""),
    code("""
from mi_margin.analysis import neuron_clusters

clusters = neuron_clusters(model, task)
print("neurons per frequency:", clusters.counts)
clusters.plot().show()"""),
    md("""
## Attention
The attention from `=` to `a` is itself a periodic function of (a, b). The heatmaps show it over
the whole table; the circuitsvis view shows single inputs (it works offline).
"""),
    code("""
from mi_margin.viz.attention import attention_heatmap, attention_view

attention_heatmap(model, task).show()
attention_view(model, task, [(3, 5), (P - 1, 2)])"""),
    md("""
## Restricted and excluded loss over training
Restricted loss keeps only the key frequencies (falls as the circuit forms); excluded loss removes
them on the training set (rises once the model relies on the circuit, not on memorization).
"""),
    code("""
from mi_margin.analysis.progress import progress_measures
from mi_margin.analysis.restricted import restricted_loss

progress = progress_measures(run, key or None)
progress.plot().show()
final = restricted_loss(model, task, key or None)
final.to_dataframe()"""),
    code("""
last = run.history.iloc[-1]
print("RESULT " + json.dumps({"p": P, "key_frequencies": key, "train_acc": last.train_acc,
                             "test_acc": last.test_acc, "restricted": final.restricted,
                             "excluded": final.excluded}))"""),
]

MARGINS = [
    md("""
# 2. Margins and theory

Morwani et al. (ICLR 2024) prove that a one-hidden-layer network with x² activation that maximizes
the L_{2,3}-normalized margin on the full addition table mod p uses every frequency, each neuron a
single frequency, and attains γ* (docs/mathematics.md §1.3). Here we compute γ*, drive a quadratic MLP toward
it with the max-margin recipe, build the certificate network that attains it exactly, put both
side by side with `compare_to_theory`, and contrast a ReLU network trained with weight decay,
which is outside the theorem.
"""),
    code(SETUP),
    code("""
from mi_margin import theory

P, STEPS = (7, 800) if FAST else (23, 3000)
task = mm.ModularAddition(p=P, k=2)                  # the theorem's dataset: the full table
pred = theory.max_margin(task, act_fn="quadratic")
pred.summary()"""),
    md("""
## Training toward the max margin
Full-batch gradient descent on the L_{2,ν}-penalised loss with a growing learning rate (Morwani et
al. App. B). The normalized margin approaches γ* from below.
"""),
    code("""
import plotly.express as px

# the recipe doubles the learning rate every 20 steps, 10 times (Morwani et al. App. B)
run = theory.train_to_max_margin(task, steps=STEPS, double_every=20, progress=not FAST)
px.line(run.history, x="step", y="ratio_to_gamma",
        title="normalized margin / γ* during training").show()
run.history[["step", "train_acc", "normalized_margin", "ratio_to_gamma"]].tail(3)"""),
    md("""
## The certificate network
`theory.certificate` builds a real `HookedMLP` from the proof's construction; its margin equals
γ* to floating-point precision.
"""),
    code("""
cert = theory.certificate(task)
cert_cmp = theory.compare_to_theory(cert, task)
cert_cmp.scalars()"""),
    md("## Trained vs predicted, side by side"),
    code("""
trained_cmp = theory.compare_to_theory(run.model, task)
trained_cmp.plot().show()
trained_cmp.scalars()"""),
    md("""
## Contrast: ReLU with weight decay
A ReLU network is outside the theorem (not homogeneous of the theorem's degree): the prediction
does not apply and the comparison says why, but the learned neurons are still mostly
single-frequency.
"""),
    code("""
relu_task = mm.ModularAddition(p=P, k=2, train_fraction=0.8, seed=0)
relu = mm.HookedMLP(mm.MLPConfig.for_task(relu_task, d_mlp=64 if FAST else 512, act_fn="relu"))
relu_run = mm.train(relu, relu_task, mm.TrainConfig(steps=STEPS, lr=3e-3, weight_decay=1.0,
                                                    eval_every=100, progress=not FAST))
relu_cmp = theory.compare_to_theory(relu_run.model, relu_task)
print("applies:", relu_cmp.prediction.applies, relu_cmp.prediction.reasons)
relu_cmp.scalars()"""),
    code("""
print("RESULT " + json.dumps({"p": P, "gamma": pred.gamma, "certificate_ratio": cert_cmp.ratio,
                             "trained_ratio": trained_cmp.ratio,
                             "relu_applies": relu_cmp.prediction.applies}))"""),
]

GROUPS = [
    md("""
# 3. Group composition: irreps

Chughtai et al. (ICML 2023) find that networks composing elements of a finite group G learn a few
irreducible representations ρ and compute ρ(a)ρ(b) — the group analogue of Fourier frequencies.
Here a quadratic MLP learns S4 (S5 with full settings); we find its key irreps, ablate them, and
look at A5, where Morwani et al.'s Theorem 9 sign condition fails and our LP extension predicts
the max-margin irreps.
"""),
    code(SETUP),
    code("""
from mi_margin import groups

G = groups.symmetric(4) if FAST else groups.symmetric(5)
STEPS, WIDTH = (1000, 128) if FAST else (10_000, 512)
task = mm.GroupComposition(G, k=2, train_fraction=0.9 if FAST else 0.4, seed=0)
mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=WIDTH, act_fn="quadratic", seed=0))
run = mm.train(mlp, task, mm.TrainConfig(steps=STEPS, lr=3e-3, weight_decay=1.0,
                                         eval_every=max(STEPS // 50, 10), progress=not FAST))
print(G.name, "order", G.order, "irreps:", [(r.name, r.dim) for r in G.irreps()])
run.history.tail(3)"""),
    md("## The group itself: Cayley table and character table"),
    code("""
from mi_margin.viz.irreps import cayley_table_figure, character_table_figure

cayley_table_figure(G).show()
character_table_figure(G).show()"""),
    md("## Irrep spectra, key irreps and neuron clusters"),
    code("""
from mi_margin.analysis import (
    irrep_logit_similarity,
    irrep_spectrum,
    key_irreps,
    neuron_irrep_clusters,
)

irrep_spectrum(mlp, task).plot().show()
irrep_logit_similarity(mlp, task).plot().show()
key = key_irreps(mlp, task)
print("key irreps:", key)
neuron_irrep_clusters(mlp, task).plot().show()"""),
    md("""
## Ablations
Keep only the span of ρ(ab) for the key irreps in the neuron activations (restricted), or remove
it (excluded), with the generic ablation hook `grid_projection_hook` and the task's harmonic basis.
"""),
    code("""
from mi_margin.analysis import basis_for, grid_projection_hook
from mi_margin.training import cross_entropy64


def loss_with(hook=None, idx=None):
    hooks = [("blocks.0.mlp.hook_post", hook)] if hook else []
    logits = mlp.run_with_hooks(task.inputs, fwd_hooks=hooks)
    idx = torch.arange(len(task.labels)) if idx is None else idx
    return float(cross_entropy64(logits[idx], task.labels[idx]))

Q = basis_for(task).term_directions(task, key)     # span of ρ(ab)_ij for the key irreps
losses = {"full": loss_with(),
          "restricted (key irreps only)": loss_with(grid_projection_hook(Q, "keep")),
          "excluded (key irreps removed, train)": loss_with(grid_projection_hook(Q, "remove"),
                                                            task.train_idx)}
losses"""),
    md("""
## A5: the LP prediction
A5's irreps violate Theorem 9's sign condition, so γ* comes from our linear program over class
functions (an extension, flagged as such).
"""),
    code("""
from mi_margin import theory

A5 = groups.alternating(5)
a5 = theory.max_margin(mm.GroupComposition(A5), act_fn="quadratic")
print(a5.summary())
print("hypotheses:", a5.hypotheses)
a5.to_dataframe()"""),
    code("""
print("RESULT " + json.dumps({"group": G.name, "key_irreps": key,
                             "train_acc": run.history.iloc[-1].train_acc, "a5_gamma": a5.gamma,
                             "a5_extension": a5.extension, "a5_irreps": list(a5.irreps or [])}))"""),
]

K_INPUT = [
    md("""
# 4. k-input modular addition and sparse parity

Morwani et al.'s theorems cover `a1 + ... + ak mod p` with an x^k network (Theorem 7; Li et al.
2024) and (n, k)-sparse parity with x^k (Theorem 8). We take k = 3 for both, drive small networks
toward the max margin and compare them with the prediction.
"""),
    code(SETUP),
    code("""
from mi_margin import theory
from mi_margin.analysis import key_frequencies

P, STEPS = (5, 800) if FAST else (11, 3000)
task3 = mm.ModularAddition(p=P, k=3)
pred3 = theory.max_margin(task3)            # the theorem's x^3 network
print(pred3.summary(), "frequencies:", pred3.frequencies)
# the recipe doubles the learning rate every 20 steps, 10 times (Morwani et al. App. B)
run3 = theory.train_to_max_margin(task3, steps=STEPS, double_every=20, progress=not FAST)
cmp3 = theory.compare_to_theory(run3.model, task3)
key3 = key_frequencies(run3.model, task3)
print("key frequencies:", key3)
cmp3.scalars()"""),
    code("cmp3.plot().show()"),
    md("""
## Sparse parity
Labels are the product of k of the n ±1 coordinates. The max-margin x^k network puts all its
weight on the support.
"""),
    code("""
N_BITS = 6 if FAST else 10
parity = mm.SparseParity(n=N_BITS, k=3, seed=0)
pred_par = theory.max_margin(parity)
cert_par = theory.compare_to_theory(theory.certificate(parity), parity)
run_par = theory.train_to_max_margin(parity, steps=STEPS, double_every=20, progress=not FAST)
cmp_par = theory.compare_to_theory(run_par.model, parity)
print("support:", parity.support, "gamma*:", pred_par.gamma)
cmp_par.scalars()"""),
    code("""
print("RESULT " + json.dumps({"p": P, "k3_key_frequencies": key3, "k3_ratio": cmp3.ratio,
                             "parity_certificate_ratio": cert_par.ratio,
                             "parity_ratio": cmp_par.ratio}))"""),
]

ABLATIONS = [
    md("""
# 5. Writing your own ablation experiment

mi_margin's models are TransformerLens `HookedRootModule`s with TransformerLens hook names, so any
hook experiment works on them directly; `model.to_bridge()` gives the same weights as a
TransformerLens 4 `TransformerBridge` with TransformerLens's own tools. This notebook trains a
small transformer and then

1. ablates frequencies with the hook factory `ablation_hook`,
2. writes a hook by hand (zero one attention head),
3. repeats an experiment on the bridge and uses `ActivationCache` tools there.
"""),
    code(SETUP),
    code("""
from mi_margin.training import cross_entropy64

P, FRACTION, STEPS, D_MODEL = (13, 0.8, 600, 32) if FAST else (59, 0.4, 10_000, 128)
task = mm.ModularAddition(p=P, train_fraction=FRACTION, seed=0)
model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
    task, d_model=D_MODEL, n_heads=4, d_head=D_MODEL // 4, d_mlp=4 * D_MODEL, seed=0))
run = mm.train(model, task, mm.TrainConfig(steps=STEPS, lr=3e-3, weight_decay=1.0,
                                           eval_every=100, progress=not FAST))

def loss(logits, idx=None):
    idx = torch.arange(len(task.labels)) if idx is None else idx
    return float(cross_entropy64(logits[idx, -1], task.labels[idx]))

with torch.no_grad():
    base = loss(model(task.tokens))
print("loss on the whole table:", base)"""),
    md("""
## 1. Frequency ablations with the hook factory
`ablation_hook(task, freqs, mode)` keeps or removes the directions cos/sin(ω_f(a+b)) in
every unit's function over the whole (a, b) table, at the last position.
"""),
    code("""
from mi_margin.analysis import ablation_hook, key_frequencies

key = key_frequencies(model, task)
others = [f for f in range(1, P // 2 + 1) if f not in key]
results = {}
with torch.no_grad():
    for name, freqs, mode in [("keep key", key, "keep"), ("remove key", key, "remove"),
                              ("remove others", others, "remove")]:
        hook = ablation_hook(task, freqs, mode=mode)
        logits = model.run_with_hooks(task.tokens, fwd_hooks=[("blocks.0.mlp.hook_post", hook)])
        results[name] = loss(logits)
print("key frequencies:", key)
results"""),
    md("""
## 2. A hand-written hook: zero-ablate each attention head
A hook is any function `(activation, hook) -> activation`. `hook_z` is [batch, pos, head, d_head].
"""),
    code("""
def zero_head(head):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0.0
        return z
    return hook

with torch.no_grad():
    head_losses = {h: loss(model.run_with_hooks(task.tokens,
                                                fwd_hooks=[("blocks.0.attn.hook_z", zero_head(h))]))
                   for h in range(model.cfg.n_heads)}
head_losses"""),
    md("""
## 3. The same weights as a TransformerBridge
The bridge has TransformerLens's canonical names and the legacy aliases we use, and the
`ActivationCache` tools (`decompose_resid`, `stack_head_results`, ...).
"""),
    code("""
bridge = model.to_bridge()
with torch.no_grad():
    bridge_logits, cache = bridge.run_with_cache(task.tokens)
    bridge_diff = float((bridge_logits - model(task.tokens)).abs().max())
    hook = ablation_hook(task, key, mode="remove")
    bridge_removed = loss(bridge.run_with_hooks(task.tokens,
                                                fwd_hooks=[("blocks.0.mlp.hook_post", hook)]))
print("max |bridge − model| logits:", bridge_diff)
print("remove key frequencies on the bridge:", bridge_removed, "(model:", results["remove key"], ")")
resid, labels = cache.decompose_resid(layer=1, pos_slice=-1, return_labels=True)
print("residual stream components at '=':", labels)"""),
    code("""
heads = cache.stack_head_results(layer=1, pos_slice=-1)          # [head, batch, d_model]
correct_dirs = bridge.W_U[:, task.labels].T                         # [batch, d_model]
direct = (heads * correct_dirs).sum(-1).mean(-1)
print("mean direct effect of each head on the correct logit:", direct.tolist())"""),
    code("""
print("RESULT " + json.dumps({"p": P, "key_frequencies": key, "base": base,
                             "keep_key": results["keep key"], "remove_key": results["remove key"],
                             "bridge_diff": bridge_diff, "bridge_remove_key": bridge_removed}))"""),
]

NOTEBOOKS = {
    "01_grokking_modular_addition.ipynb": GROKKING,
    "02_margins_and_theory.ipynb": MARGINS,
    "03_group_composition.ipynb": GROUPS,
    "04_k_input_and_parity.ipynb": K_INPUT,
    "05_ablation_studies.ipynb": ABLATIONS,
}


def build(name: str, cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):           # stable ids: rebuilding gives identical files
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    return nb


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(name, cells), HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
