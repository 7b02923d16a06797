"""Write the tutorial notebooks (without outputs) from the cell sources below.

Run ``python tutorials/_build.py`` after editing; commit this script and the notebooks together.
Every notebook reads ``MI_MARGIN_FAST=1`` (small settings, used by tests/tutorials); notebooks 1–5
and 7 end by printing a ``RESULT {json}`` line that the tests check, tutorial 6 asserts its results in
its own cells (the tests read its variables). Tutorial 6's exercise cells hold stubs; the tests
and the renderer fill in the solutions (tutorials/_exercises.py). The notebooks load the model zoo's trained
models (``mm.zoo``); where an entry is not installed they say so and train a short run instead.
``python tutorials/_render.py`` executes them and writes the rendered pages under docs/tutorials/.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import nbformat
import walkthrough_solutions  # tutorial 6's solutions, shown folded after each check
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

# Fast mode (MI_MARGIN_FAST=1) keeps any fallback training tiny, for the test suite.
FAST = os.environ.get("MI_MARGIN_FAST") == "1"
if FAST:
    torch.set_num_threads(1)     # the test suite runs notebooks side by side on few cores
torch.manual_seed(0)
print("fast mode" if FAST else "full settings")


def from_zoo(name, fallback, variant=None):
    \"\"\"The zoo entry ``name`` (its trained weights, or the named ``variant``) as a Run, or, when
    it is not installed, ``fallback()`` (a short training run with the public API), saying so.
    Returns (run, loaded_from_zoo).\"\"\"
    if name in mm.zoo.list():
        print(f"loaded zoo entry {name!r}" + (f", variant {variant!r}" if variant else "")
              + f" (its card: mm.zoo.card({name!r}))")
        return mm.zoo.load(name, variant=variant), True
    print(f"NOTE: zoo entry {name!r} is not installed here; training a SHORT substitute run "
          "instead (smaller than the paper's model: expect rougher pictures).")
    return fallback(), False"""


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip())


GROKKING = [
    md(r"""
# 1. Grokking modular addition: how a transformer adds with waves

Nanda, Chan, Lieberum, Smith & Steinhardt ("Progress measures for grokking via mechanistic
interpretability", ICLR 2023) trained a one-layer transformer on

$$ (a, b) \mapsto a + b \bmod p, \qquad p = 113, $$

showing it only 30% of the $p^2 = 12\,769$ pairs. The model first **memorizes** the training pairs
(train loss near zero, test loss high), and thousands of steps later, with nothing changed in the
training, suddenly **generalizes**: *grokking*. They then reverse-engineered the trained network
completely. It does not add numbers the way we do: it represents each number as a point on a few
circles and adds *angles*, using trigonometric identities. Knowing the algorithm, they built
**progress measures** that show the generalizing circuit forming long before the test loss moves.

This notebook retells that story on the zoo's reproduction of their model
(`nanda_p113_transformer`: the paper's architecture and recipe, checkpoints kept linearly and densely
across the three phases of training). The mathematics is in `docs/mathematics.md` §4.
"""),
    code(SETUP),
    md(r"""
## The model and its training

Inputs are three tokens `[a, b, =]`; the logits for the answer $c \in \mathbb{Z}_p$ are read at the
`=` position. The architecture: embedding of width 128, one attention layer with 4 heads, an MLP of
512 ReLU neurons, no LayerNorm. Training: full-batch AdamW, learning rate $10^{-3}$, **weight decay
1** (without it the model never groks), a random 30% of the table.
"""),
    code("""
def short_grokking_run():
    # a smaller cousin of Nanda et al.'s run that groks in seconds (fast mode) or minutes
    p, fraction, steps, width = (17, 0.7, 1000, 48) if FAST else (53, 0.4, 6000, 128)
    task = mm.ModularAddition(p=p, train_fraction=fraction, seed=0)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=width, n_heads=4, d_head=width // 4, d_mlp=4 * width, seed=0))
    config = mm.TrainConfig(steps=steps, lr=3e-3 if FAST else 1e-3, weight_decay=1.0,
                            eval_every=steps // 100, checkpoint_schedule="linear",
                            n_checkpoints=40 if FAST else 100, progress=not FAST)
    return mm.train(model, task, config)


run, FROM_ZOO = from_zoo("nanda_p113_transformer", short_grokking_run)
model, task = run.model.eval(), run.task
P = task.p
print(task, "| checkpoints kept:", len(run.checkpoints))
run.history[["step", "train_loss", "train_acc", "test_loss", "test_acc"]].tail(3)"""),
    md(r"""
On a logarithmic step axis the three phases are easy to see: the train loss falls first
(memorization), the test loss stays high for a long time, then drops by orders of magnitude
(grokking), while the squared weight norm rises during memorization and then, pushed down by
weight decay, falls.
"""),
    code("""
from mi_margin.viz import training_curves
from mi_margin.zoo.phases import phase_bounds

bounds = phase_bounds(run.history)
print("phase boundaries read from the accuracies:", bounds)
training_curves(run, log_x=True).show()"""),
    md(r"""
## Numbers as waves: the embedding in the Fourier basis

A function $f$ on $\mathbb{Z}_p$ (for instance one coordinate of the embedding, $a \mapsto W_E[a, j]$)
can be written in the real Fourier basis of $\mathbb{Z}_p$ (docs/mathematics.md §0):

$$ f(a) = c_0 \tfrac{1}{\sqrt p} + \sum_{k=1}^{(p-1)/2} \Big( c_{k}^{\cos}\sqrt{\tfrac2p}\cos(\omega_k a)
   + c_{k}^{\sin}\sqrt{\tfrac2p}\sin(\omega_k a) \Big), \qquad \omega_k = \frac{2\pi k}{p}. $$

The basis is orthonormal, so the squared coefficients add up to $\|f\|^2$. Apply it to every column
of the embedding matrix, i.e. compute $F W_E$ with $F$ the $p \times p$ matrix of basis vectors. A
random embedding spreads its norm evenly over all $p$ basis vectors. The trained one puts almost all
of it on the cosine and sine of a handful of **key frequencies** $k$: the model represents $a$ by
$\big(\cos \omega_k a, \sin \omega_k a\big)$, a point on a circle, for each key $k$.
"""),
    code("""
import plotly.express as px

from mi_margin.fourier.cyclic import basis_labels, fourier_basis

F = fourier_basis(P)                                    # rows: const, cos 1, sin 1, cos 2, ...
W_E = model.W_E[:P].detach().double()                   # the embeddings of the numbers 0..p-1
coef = F @ W_E                                          # [basis vector, d_model]
norms = coef.norm(dim=1)
px.bar(x=basis_labels(P), y=norms.tolist(), labels={"x": "Fourier basis vector", "y": "norm"},
       title="W_E in the Fourier basis: norm of each row of F·W_E").show()"""),
    md(r"""
## The algorithm: adding angles with the product formulas

Suppose the network holds $\cos\omega a, \sin\omega a$ and $\cos\omega b, \sin\omega b$. It needs
something that peaks at $c = a + b$. The angle-addition formulas give the wave of the sum from
*products* of the waves of the operands:

$$ \cos(\omega(a+b)) = \cos\omega a \,\cos\omega b - \sin\omega a\,\sin\omega b, $$
$$ \sin(\omega(a+b)) = \sin\omega a \,\cos\omega b + \cos\omega a\,\sin\omega b . $$

Products are what the attention and the MLP's ReLU neurons can compute (a ReLU of a sum of waves
contains their product terms). The unembedding then scores each candidate $c$ with one more
identity,

$$ \cos(\omega(a+b-c)) = \cos(\omega(a+b))\cos\omega c + \sin(\omega(a+b))\sin\omega c , $$

which is a *linear* function of the neurons' $\cos(\omega(a+b))$, $\sin(\omega(a+b))$: exactly what
$W_U$ can do. The logit $\cos(\omega(a+b-c))$ equals 1 at $c = a+b$, but one frequency alone has
near-ties (some $c \ne a+b$ get a value close to 1). Summing over a few key frequencies makes the
waves interfere constructively only at the right answer:

$$ \text{logit}(c) \approx \sum_{k \in K} \alpha_k \cos(\omega_k(a+b-c)). $$

Below: the key frequencies $K$ of our model (found from its logits, next section) and the sum of
their waves as a function of $c$ for $a + b = 0$: each wave alone has near-ties, the sum has a
single clear peak.
"""),
    code("""
import math

import plotly.graph_objects as go

from mi_margin.analysis import key_frequencies

key = key_frequencies(model, task)
c = torch.arange(P, dtype=torch.float64)
waves = {k: torch.cos(2 * math.pi * k * (0 - c) / P) for k in key}
total = sum(waves.values())
fig = go.Figure([go.Scatter(x=c.tolist(), y=w.tolist(), name=f"cos(ω_{k}(a+b−c))", opacity=0.5)
                 for k, w in waves.items()])
fig.add_scatter(x=c.tolist(), y=(total / len(key)).tolist(), name="mean over key frequencies",
                line={"width": 4, "color": "black"})
fig.update_layout(title="constructive interference at c = a + b = 0", xaxis_title="c").show()
best_wrong = float((total / len(key))[1:].max())
print("key frequencies:", key, "| largest wrong value of the mean wave:", round(best_wrong, 3))

# the product formula, checked on the whole table for the first key frequency
a, b = task.inputs[:, 0].double(), task.inputs[:, 1].double()
w = 2 * math.pi * key[0] / P
identity_error = float((torch.cos(w * (a + b)) - (torch.cos(w * a) * torch.cos(w * b)
                                                  - torch.sin(w * a) * torch.sin(w * b))).abs().max())
print("max |cos ω(a+b) − (cos ωa cos ωb − sin ωa sin ωb)| over the table:", identity_error)"""),
    md(r"""
## Key frequencies from the logits

The logits over the whole table form, for each answer $c$, a function of $(a, b)$. Centre them over
the answers and project onto the Fourier blocks of $\mathbb{Z}_p^2$ (docs/mathematics.md §4.2): a
frequency is **key** when its share of the logits' variance is at least `min_share` (default ½) times
the share every frequency would have if all were equal. Chughtai's **logit similarity** asks the
same question more directly: the cosine between the centred logits and $\cos(\omega_k(a+b-c))$.
The sum of the squared similarities is the fraction of the logits' variance that the waves explain.
"""),
    code("""
from mi_margin.analysis import fourier_spectrum, logit_similarity

spec = fourier_spectrum(model, task)
spec.plot().show()
sim = logit_similarity(model, task)
print("logit variance explained by the key frequencies:", round(sim.fve(key), 4))
sim.plot().show()"""),
    md(r"""
## Neurons: each one lives on one frequency

A neuron reads the attention output at `=`, which is (up to the softmax's small variation) a sum of
waves in $a$ and in $b$. Its activation over the $(a, b)$ table is then a function of
$\cos\omega_k a, \sin\omega_k a, \cos\omega_k b, \sin\omega_k b$ for one $k$: a degree-2 polynomial
in those waves (before the ReLU), so its picture over the table repeats with period $p/k$ along
both axes. The heatmaps show the four purest neurons; a neuron's **purity** is the share of its
(centred) activation variance in its dominant frequency block. Nanda et al. find that most neurons
are pure, and that the neurons of one frequency form a **cluster** that jointly computes
$\cos(\omega_k(a+b))$ and $\sin(\omega_k(a+b))$.
"""),
    code("""
from mi_margin.analysis import neuron_clusters
from mi_margin.viz import neuron_heatmaps

neuron_heatmaps(model, task, n=4).show()
clusters = neuron_clusters(model, task)
print("neurons per frequency (None: no dominant frequency):", clusters.counts)
clusters.plot().show()"""),
    md(r"""
## Restricted and excluded loss

If the story is right, the key frequencies alone should carry the answer. Write the logits over the
whole table as a function of $(a, b)$ for each $c$ and split it into the directions
$\cos(\omega_k(a+b))$, $\sin(\omega_k(a+b))$ for $k \in K$ (plus each answer's mean) and the rest
(docs/mathematics.md §4.3):

* **restricted loss**: keep only the key directions, compute the loss on *all* pairs. Low means the
  circuit alone solves the task, including the pairs never seen in training.
* **excluded loss**: remove the key directions, compute the loss on the *training* pairs. High means
  the model can no longer fit even the data it was trained on without the circuit, i.e. it no longer
  relies on memorization.
"""),
    code("""
from mi_margin.analysis import restricted_loss

final = restricted_loss(model, task, key)
final.to_dataframe()"""),
    md(r"""
## Progress measures over training

The same two losses, the Gini coefficients of the Fourier norms of $W_E$ and of
$W_L = W_{out} W_U$ (how concentrated they are on few frequencies) and the squared weight norm,
computed at every kept checkpoint. The checkpoints are spaced **linearly** within each phase, so
the slow middle phase, where all the action is invisible in the accuracies, is sampled densely.
Reading the curves:

1. **memorization** (up to the first dashed line): train loss falls, the excluded loss falls with it:
   the model fits the training pairs without the circuit;
2. **circuit formation** (to the second line, where test accuracy first reaches a quarter:
   `phase_bounds`' `cleanup_start`): train accuracy stays at 1 and test accuracy creeps up slowly,
   yet the restricted loss falls and the excluded loss rises: the Fourier circuit grows and takes
   over from memorization;
3. **cleanup** (after it): weight decay removes the memorizing components, test accuracy jumps to
   1 and the test loss collapses, the Gini coefficients rise and the weight norm falls.
"""),
    code("""
from mi_margin.analysis import progress_measures

progress = progress_measures(run, key)
fig = progress.plot()
for name in ("memorized", "cleanup_start"):
    if bounds[name] is not None:
        fig.add_vline(x=bounds[name], line_dash="dash", line_color="grey")
fig.show()
table = progress.to_dataframe()
table[["step", "train_loss", "test_loss", "restricted_loss", "excluded_loss", "gini_embed",
       "weight_norm_sq"]].round(4)"""),
    md(r"""
What to take away: the accuracy curves say "nothing happens, then everything happens"; the
progress measures, built from understanding the mechanism, show the circuit forming gradually all
along. Grokking is a slow, continuous change that the test accuracy reveals suddenly. Where the
zoo's card gives the paper's numbers next to ours (`mm.zoo.card("nanda_p113_transformer")`), the
key frequencies and phase boundaries differ by seed but the shape of the story does not.

## From a description to a runnable explanation

Everything above *describes* the model. `mm.explain` turns the description into a network one can
run: a transformer of the same shape whose weights are the circuit we found (docs/mathematics.md
§6.4). The embedding rows of the numbers and the columns of the unembedding are projected onto the
key frequencies (and the constant); attention is kept, since it only carries the waves to `=`;
every neuron of a frequency cluster keeps its weights, and the others (no dominant frequency, or
dead) write nothing. The summary names the frequencies, how many neurons each, and the algorithm
in a sentence; the figure shows the neurons per frequency and how much of each neuron's weights
(its map from the numbers and its map to the logits) the explanation keeps.
"""),
    code("""
explanation = mm.explain(model, task)
print(explanation.summary())
explanation.plot().show()"""),
    md(r"""
**Fidelity.** `mm.analysis.fidelity` runs the explanation and networks made from it on all $p^2$
inputs and reports them in one table:

* `explanation`: the explanation's own loss and accuracy;
* `embedding replaced`, `MLP replaced`, `unembedding replaced`: the model with one component
  swapped for the explanation's and the others its own, so that one sees which simplification
  costs what;
* resampling tests in the sense of causal scrubbing (Chan et al. 2022). In `scrub: rest from any
  input` every input keeps what the explanation keeps of its own embedding, and takes what the
  explanation leaves out (the embedding's other directions, the output of the unclustered
  neurons, the unembedding's other directions) from a **random other input**. If the left-out
  parts do not matter, the swap costs nothing. `scrub: key from any input` is the control, the
  other way round. `resample same answer` takes all hidden activations from a random input with
  the same answer (a weak check: any model that is right everywhere passes it), and
  `resample any (baseline)` from any random input.

A resampling row is scored by the loss **recovered**,
$(L_{\text{baseline}} - L)/(L_{\text{baseline}} - L_{\text{model}})$: 1 when the swap costs
nothing, 0 when it is as bad as reading a random input. A faithful explanation recovers nearly 1
in the scrub and nearly 0 in the control. Each draw of random inputs runs the model on the whole
table twice; one draw is enough here.
"""),
    code("""
fid = mm.analysis.fidelity(explanation, draws=1)
fid.plot().show()
scores = fid.to_dataframe().set_index("measure")
print(f"scrub: recovered {fid.recovered:.3f}, accuracy {scores.accuracy['scrub: rest from any input']:.4f}"
      f" | control: recovered {scores.recovered['scrub: key from any input']:.3f}")
scores"""),
    md(r"""
The scrub's loss is recovered almost entirely, yet its accuracy is lower than the explanation's:
what the explanation drops is small, but taken from another input it still tips the closest
answers. The explanation is a faithful account of the loss, a slightly rougher one of
every single answer.

**A certificate for the transformer.** Tutorials 2 and 3 turn an MLP's explanation into a proof,
`mm.analysis.certify`: a lower bound on the model's accuracy and margin over every input. A
transformer is certified per input, another way. Every input ends with `=`, so the last query is
one fixed vector per head and attention reads each operand through one row of a table (the same
tables the model's own fast path uses). The certificate evaluates every input's logits exactly
(float64) through them, and subtracts an allowance for rounding that holds for this float32 model
on any CPU, whatever order its sums run in: softmax, sums and exp within a few ulps, stage by stage
(docs/mathematics.md §6.4). An input counts as certified when its margin beats that allowance.

This certificate costs what the model's fast path costs, and the MLP-style bounds refuse
transformers (bounding the readout the explanation leaves out, instead of computing it, certifies
at most a quarter of the inputs on this model: the left-out part is a sum over all neurons whose
terms cancel):
"""),
    code("""
cert = mm.analysis.certify(explanation, "per_input")
MIN_MARGIN = mm.margin(run.model, run.task).value      # the model's own smallest margin, h(θ)
print(f"certified accuracy {cert.certified_accuracy:.4f} (brute force {cert.accuracy:.4f}); "
      f"certified min margin {cert.min_certified_margin:.3f} against the model's {MIN_MARGIN:.3f}; "
      f"cost {cert.flops / cert.brute_force_flops:.2f}x brute force through the tables")
CERTIFY_REFUSAL = None
try:
    mm.analysis.certify(explanation, "uniform")
except mm.MiMarginError as err:
    CERTIFY_REFUSAL = str(err)
    print("uniform refused:", err)"""),
    md(r"""
**A cheaper proof: the low-rank readout.** The logits are affine in the last position's
$X = [r, h]$ (resid_mid and the hidden activations): $\ell = X M + \text{const}$ with
$M = [W_U;\ W_{out} W_U]$. The key frequencies live in a few directions of $M$: its singular
values (printed below) fall from about 28 to 13 over seven of them, then drop. So each gap is read
through the top $k$ singular directions, and the rest is bounded by Cauchy–Schwarz,
$\|X\|\,\|\text{Res}_k[:, y] - \text{Res}_k[:, c]\|$. Inputs this does not certify at $k = 8$
are tried at 16, 32, ..., up to the full rank, where the bound is exact (docs/mathematics.md §6.4,
"The low-rank readout"). The margin it proves is looser (the first rank that certifies stops the
search); the certified accuracy is the point, at a fraction of brute force's operations:
"""),
    code("""
mlp = run.model.block.mlp
M = torch.cat([run.model.W_U, mlp.W_out @ run.model.W_U]).detach().double()
print("singular values of M:", [round(float(s), 2) for s in torch.linalg.svdvals(M)[:12]])
low_rank = mm.analysis.certify(explanation, "low_rank")
print(f"low rank: certified accuracy {low_rank.certified_accuracy:.4f}, "
      f"cost {low_rank.flops / low_rank.brute_force_flops:.2f}x brute force")"""),
    code("""
steps = sorted(run.checkpoints)
last = run.history.iloc[-1]
key_share = float(sum(norms[2 * k - 1] ** 2 + norms[2 * k] ** 2 for k in key) / (norms[1:] ** 2).sum())
print("RESULT " + json.dumps({
    "p": P, "from_zoo": FROM_ZOO, "key_frequencies": key, "train_acc": float(last.train_acc),
    "test_acc": float(last.test_acc), "train_loss": float(last.train_loss),
    "restricted": final.restricted, "excluded": final.excluded, "embed_key_share": key_share,
    "identity_error": identity_error, "best_wrong_wave": best_wrong,
    "checkpoint_steps": steps, "progress_excluded": table["excluded_loss"].tolist(),
    "progress_restricted": table["restricted_loss"].tolist(), "bounds": bounds,
    "explanation_labels": [f for f in explanation.counts if f is not None],
    "explanation_key": list(explanation.key), "fidelity": fid.to_dataframe().to_dict("list"),
    "scrub_recovered": fid.recovered, "certify_refusal": CERTIFY_REFUSAL,
    "certified_accuracy": cert.certified_accuracy, "accuracy": cert.accuracy,
    "min_certified_margin": cert.min_certified_margin, "min_margin": MIN_MARGIN,
    "low_rank_certified": low_rank.certified_accuracy,
    "low_rank_flops_ratio": low_rank.flops / low_rank.brute_force_flops,
    "low_rank_min_margin": low_rank.min_certified_margin}))"""),
]


MARGINS = [
    md(r"""
# 2. Margins: why networks choose Fourier features

Tutorial 1 *found* the Fourier algorithm inside a trained network. Morwani, Edelman, Oncescu, Zhao
& Kakade ("Feature emergence via margin maximization", ICLR 2024) explain *why* such features appear,
without looking at training dynamics: among all networks of a simple family that classify the
whole table, the ones with the **largest normalized margin** are exactly Fourier networks, and the
theorem says which ones. This notebook goes through the argument on modular addition with
$p = 71$ and checks it on the zoo's `morwani_p71_quadratic` model, a quadratic network of the
paper's width (500 neurons) trained towards the max margin (docs/mathematics.md §1).
"""),
    code(SETUP),
    md(r"""
## The network family and homogeneity

The theorem is about one-hidden-layer networks without biases and with activation $x^2$:

$$ f(\theta; a, b)[c] = \sum_{i=1}^m \big(u_i(a) + v_i(b)\big)^2\, w_i(c), $$

where neuron $i$ has input weights $u_i, v_i \in \mathbb{R}^p$ (one per operand) and output weights
$w_i \in \mathbb{R}^p$. Scaling a neuron's parameters $\omega_i = (u_i, v_i, w_i)$ by $\lambda > 0$
scales its output by $\lambda^3$: the network is **homogeneous** of degree $\nu = 3$. So any margin
can be made larger by inflating the weights, and margins are only comparable after normalizing by
the matching norm $\|\theta\|_{2,\nu}^\nu = \sum_i \|\omega_i\|_2^\nu$.

The **margin** of an example is the correct logit minus the best wrong one,
$g(\theta; a, b) = f[a+b] - \max_{c \ne a+b} f[c]$; the network's margin $h(\theta)$ is its minimum
over the table, and the **normalized margin** is

$$ \bar h(\theta) = \frac{h(\theta)}{\sum_i \|\omega_i\|_2^{3}}, \qquad
   \gamma^* = \max_\theta \bar h(\theta). $$

Why this matters: for homogeneous networks, minimizing cross-entropy with a vanishing norm penalty
drives the normalized margin to $\gamma^*$ (Wei et al. 2019), so max-margin networks model what
weakly regularized training finds.
"""),
    code("""
import math

import plotly.express as px

from mi_margin import theory


def short_max_margin_run():
    # the same recipe (full table, L_{2,3} penalty) on a smaller p, for a few hundred steps
    small = mm.ModularAddition(p=11 if FAST else 23)
    return theory.train_to_max_margin(small, steps=600 if FAST else 3000, progress=not FAST)


run, FROM_ZOO = from_zoo("morwani_p71_quadratic", short_max_margin_run)
model, task = run.model.eval(), run.task
P = task.p
print(task, "| neurons:", model.cfg.d_mlp, "| activation:", model.cfg.act_fn)

# homogeneity, measured: scale every weight by λ and the margin grows by λ^ν
LAMBDA = 2.0
scaled = mm.models.io.build_model(model.cfg.to_dict()).eval()
scaled.load_state_dict({k: LAMBDA * v for k, v in model.state_dict().items()})
m1, m2 = mm.margin(model, task), mm.margin(scaled, task)
print(f"h(θ) = {m1.value:.6g},  h(2θ) = {m2.value:.6g},  ratio = {m2.value / m1.value:.6f} = 2^{m1.nu}")
print(f"normalized margins: {m1.normalized:.6g} and {m2.normalized:.6g} (unchanged)")"""),
    md(r"""
## Theorem 7: the max margin of modular addition

**Theorem 7** (Morwani et al.). For the quadratic network on all $p^2$ pairs with at least
$4(p-1)$ neurons,

$$ \gamma^* = \frac{\sqrt{2/27}}{\sqrt p\,(p-1)}, $$

and in *every* max-margin network (1) each neuron is a single-frequency cosine with matched phases,
$u(a) = \lambda\cos(\theta_u + \omega_\zeta a)$, $v(b) = \lambda\cos(\theta_v + \omega_\zeta b)$,
$w(c) = \lambda\cos(\theta_w + \omega_\zeta c)$ with $\theta_u + \theta_v = \theta_w$; (2) every
frequency $\zeta = 1, \dots, (p-1)/2$ is used.

*Why a single frequency.* Weight the examples uniformly and the wrong answers uniformly. Expanding
$(u + v)^2 = u^2 + v^2 + 2uv$, only the cross term $2u(a)v(b)$ can correlate with the answer, and
in Fourier space the expected margin of one neuron becomes
$\sum_\zeta |\hat u(\zeta)||\hat v(\zeta)||\hat w(\zeta)|\cos(\theta_u + \theta_v - \theta_w)$ (up
to a constant). Under a norm budget (Plancherel), this product of three magnitudes is largest when
all the mass sits at *one* frequency, split equally, with the phases matched (AM–GM).

*Why all frequencies.* A single frequency has near-ties, but

$$ \sum_{\zeta=1}^{(p-1)/2} \cos\big(\omega_\zeta (a + b - c)\big) = \frac{p\,\mathbf 1[c = a+b] - 1}{2}: $$

with every frequency used equally, **all wrong answers get the same logit**, which is what a
maximal *minimum* margin needs.
"""),
    code("""
pred = theory.max_margin(task, act_fn="quadratic", width=model.cfg.d_mlp)
print(pred.summary())
closed_form = math.sqrt(2 / 27) / (math.sqrt(P) * (P - 1))
print("γ* from the closed form:", closed_form, "| from mm.theory:", pred.gamma)"""),
    md(r"""
## The certificate network

The theorem's proof can be turned into a network that attains $\gamma^*$ exactly. For every
frequency $\zeta$ and phase pair $(\theta_u, \theta_v) \in \{0, \pi/2\}^2$ take the two neurons
$(u, v, w)$ and $(u, -v, -w)$ with $\theta_w = \theta_u + \theta_v$: the pair sums to $4uvw$ (the
squares cancel), and summing the four phase pairs leaves only $\cos(\omega_\zeta(a+b-c))$. That is
8 neurons per frequency, $4(p-1)$ in all, and its logits are
$\kappa\,(p\,\mathbf 1[c=a+b]-1)/2$. `theory.certificate` builds it as a real `HookedMLP`; below,
its logits for one input (every wrong answer gets the same value) and its comparison with the
theory.
"""),
    code("""
cert = theory.certificate(task)
cert_cmp = theory.compare_to_theory(cert, task)
with torch.no_grad():
    logits = cert(task.inputs[:1]).double()[0]
px.bar(x=list(range(P)), y=logits.tolist(), labels={"x": "answer c", "y": "logit"},
       title=f"certificate logits for (a, b) = {tuple(task.inputs[0].tolist())}").show()
cert_cmp.scalars()"""),
    md(r"""
## The trained network approaches γ*

The zoo model was trained as in Morwani et al.'s experiments (App. B): the full table, a small
$L_{2,3}$ penalty ($\lambda = 10^{-4}$), and a step size that keeps up with the shrinking gradient
(here Adam with the learning rate halved late in training; docs/mathematics.md §1.6). Its
normalized margin, recorded during training, climbs towards $\gamma^*$ from below and never above
it (the theorem is an upper bound for *every* network of the family).
"""),
    code("""
px.line(run.history, x="step", y="ratio_to_gamma", log_x=True,
        title="normalized margin / γ* during training").add_hline(y=1, line_dash="dash").show()
run.history[["step", "train_acc", "normalized_margin", "ratio_to_gamma"]].tail(3)"""),
    md(r"""
## `compare_to_theory`: the prediction, item by item

`compare_to_theory` measures each of the theorem's predictions on the trained weights: the ratio
of the normalized margin to $\gamma^*$; each neuron's **purity** (the share of its input and output
weights' energy in its dominant frequency; 1 for a theorem neuron); how many frequencies dominate
some neuron (the theorem: all $(p-1)/2$); the spread of the wrong logits (0 at the max margin); and
the phase error $|\theta_u + \theta_v - \theta_w|$.
"""),
    code("""
trained_cmp = theory.compare_to_theory(model, task)
trained_cmp.plot().show()
trained_cmp.scalars()"""),
    md(r"""
The margin histogram shows the other half of the saddle-point argument (docs/mathematics.md §1.2):
at the max margin, a large set of examples sits *exactly* on the minimum margin (the support of
the optimal example weighting $q^*$). A trained network close to $\gamma^*$ has its margins piled
up against the minimum.
"""),
    code("""
m1.plot().show()
print("fraction of examples within 1% of the minimum margin:",
      round(float((m1.per_example <= m1.value * 1.01).double().mean()), 3))"""),
    md(r"""
## From a description to a guarantee: explanation, fidelity and certificate

Everything above *describes* the trained network. `mm.explain` turns the description into a network
one can run: the **idealized circuit**, a `HookedMLP` of the same shape in which every neuron keeps
only its dominant frequency (its input maps and its output map projected onto
$\{\text{constant}, \cos \omega_f \cdot, \sin \omega_f \cdot\}$) and every other neuron is
zeroed. `mm.analysis.fidelity` scores it on every input: the explanation's own loss, the model
with one layer replaced by the explanation's, and a causal-scrubbing test (Chan et al. 2022) in
which the part of each pre-activation the explanation leaves out is taken from a random other
input; "recovered" is the share of the loss gap between the model and a random-input baseline that
survives (1: what the explanation leaves out does not matter).
"""),
    code("""
explanation = mm.explain(model, task)
counts = {f: n for f, n in explanation.counts.items() if f is not None}
print(f"{sum(counts.values())} of {model.cfg.d_mlp} neurons kept in {len(counts)} frequencies "
      f"(fewest {min(counts.values())}, most {max(counts.values())} neurons per frequency); "
      f"{explanation.counts.get(None, 0)} zeroed")
fid = mm.analysis.fidelity(explanation, draws=2)
fid.to_dataframe().round(4)"""),
    md(r"""
A good fidelity is still a measurement on samples of inputs and draws. A **certificate** is a
proof: `mm.analysis.certify` bounds the original model's margin on *every* input from below
(docs/mathematics.md §6.4). What the explanation leaves out is bounded from the weights alone
(each neuron's pre-activation moves by at most $\varepsilon_i$, so each logit by at most $E_c$),
and the `"harmonic"` bound does not even run the explanation on the inputs: with $x^2$ neurons
the idealized circuit expands once into characters $e^{i\omega(g a + h b - g_c c)}$, and the
coefficients of those characters bound every input's logit gap at once. The cost does not grow
with the number of inputs, and with `source="weights"` the neurons' frequencies too are read from
the weights: the certificate never runs the model on the table (brute force does, below, for
comparison). The certified margin, normalized by the same $\sum_i \|\omega_i\|_2^3$ as the trained
one, is a lower bound on $\bar h(\theta)$ and so on its ratio to $\gamma^*$.
"""),
    code("""
import time

by_weights = mm.explain(model, task, source="weights")     # labels from the weights alone
print("same frequencies as from the activations:", by_weights.label == explanation.label)
start = time.perf_counter()
harmonic = mm.analysis.certify(by_weights, "harmonic", compare=False)
certificate_seconds = time.perf_counter() - start
start = time.perf_counter()
brute = mm.margin(model, task)                              # brute force: every input through the model
brute_seconds = time.perf_counter() - start

certified_ratio = harmonic.min_certified_margin / brute.norm_power_sum / pred.gamma   # Σ‖ω_i‖³
print(f"certified accuracy: {harmonic.certified_accuracy:.0%} of the {P}² inputs")
print(f"certified margin h ≥ {harmonic.min_certified_margin:.6g}; true h(θ) = {brute.value:.6g}")
print(f"certified margin / γ* = {certified_ratio:.4f}; trained margin / γ* = {trained_cmp.ratio:.4f}")
print(f"cost: {harmonic.flops:.3g} operations against {harmonic.brute_force_flops:.3g} for brute force "
      f"({harmonic.flops / harmonic.brute_force_flops:.2%}); here {certificate_seconds * 1e3:.0f} ms "
      f"against {brute_seconds * 1e3:.0f} ms")"""),
    md(r"""
## Where the theorem stops

The predictions are about *this* family: power activation, no biases, the whole table, the
$L_{2,\nu}$ norm. A ReLU network, a network with biases or one trained on a train/test split is
outside it; `theory.max_margin` still returns the formula but says the theorem does not apply, and
why (docs/mathematics.md §7). Nanda's transformer of tutorial 1 is such a case: it uses a few key
frequencies, not all of them.
"""),
    code("""
relu_pred = theory.max_margin(task, act_fn="relu", biases=True)
print("applies:", relu_pred.applies)
for reason in relu_pred.reasons:
    print(" -", reason)"""),
    code("""
scal = trained_cmp.scalars().set_index("metric")["observed"]
print("RESULT " + json.dumps({
    "p": P, "from_zoo": FROM_ZOO, "d_mlp": model.cfg.d_mlp, "gamma": pred.gamma,
    "nu": m1.nu, "homogeneity_ratio": m2.value / m1.value, "lambda": LAMBDA,
    "normalized_unchanged": abs(m2.normalized - m1.normalized) / abs(m1.normalized),
    "certificate_ratio": cert_cmp.ratio, "certificate_correct": float(logits[0]),
    "certificate_wrong": [float(logits[1:].min()), float(logits[1:].max())],
    "trained_ratio": trained_cmp.ratio, "labels_used": float(scal["labels_used"]),
    "fraction_pure": float(scal["fraction_pure"]), "relu_applies": relu_pred.applies,
    "explanation_accuracy": float(fid.to_dataframe().set_index("measure").loc["explanation", "accuracy"]),
    "scrub_recovered": fid.recovered, "same_labels": by_weights.label == explanation.label,
    "certified_accuracy": harmonic.certified_accuracy, "certified_margin": harmonic.min_certified_margin,
    "margin": brute.value, "certified_ratio": certified_ratio, "certificate_flops": harmonic.flops,
    "brute_force_flops": harmonic.brute_force_flops}))"""),
]


GROUPS = [
    md(r"""
# 3. Universality: one algorithm, different representations

Chughtai, Chan & Nanda ("A toy model of universality", ICML 2023) asked whether networks trained on
the same task learn the same thing. They trained many small networks to compose elements of finite
groups, $(a, b) \mapsto ab$, found that all of them run one algorithm, **group composition via
representations** (GCR), and that *which* representations a network uses changes from seed to
seed. The algorithm is universal; its ingredients are not.

This notebook follows their argument with Chughtai et al.'s own model family (an MLP with separate
embeddings for the two operands and ReLU neurons) from the zoo, on several seeds, and puts it beside
the max-margin quadratic network of Morwani et al., whose Theorem 9 predicts something different:
*every* non-trivial irrep (docs/mathematics.md §1.5 and §3).
"""),
    code(SETUP),
    md(r"""
## Representations and characters

A **representation** of $G$ assigns to every element an orthogonal matrix, $g \mapsto \rho(g)$, so
that composition becomes matrix multiplication: $\rho(ab) = \rho(a)\rho(b)$. Every representation
splits into **irreducible** ones (irreps); a finite group has as many irreps as conjugacy classes,
and their dimensions satisfy $\sum_\rho d_\rho^2 = |G|$. The **character** $\chi_\rho(g) =
\operatorname{tr}\rho(g)$ depends only on the conjugacy class of $g$, and

$$ |\chi_\rho(g)| \le d_\rho = \chi_\rho(e), $$

with equality at $g = e$ (and, for a *faithful* $\rho$, only there). For the cyclic group
$\mathbb{Z}_p$ the 2-dimensional rotation irreps are exactly tutorial 1's frequencies:
$\chi(g) = 2\cos(\omega g)$. The group we use is the symmetric group $S_5$ (the paper's mainline)
when its zoo entries are installed, otherwise $S_4$. Below: its Cayley table (the task itself:
the colour of cell $(a, b)$ is $ab$) and its character table.
"""),
    code("""
from mi_margin import groups
from mi_margin.viz import cayley_table_figure, character_table_figure

S5_SEEDS = [f"chughtai_S5_mlp_seed{s}" for s in (1, 2, 3)]
S4_SEEDS = [f"chughtai_S4_mlp_seed{s}" for s in (0, 1, 2)]
installed = set(mm.zoo.list())
ENTRIES = S5_SEEDS if set(S5_SEEDS) <= installed else S4_SEEDS
G = groups.symmetric(5 if ENTRIES is S5_SEEDS else 4)
print(G.name, "order", G.order, "| irreps:", [(r.name, r.dim) for r in G.irreps()])
print("Σ d² =", sum(r.dim ** 2 for r in G.irreps()))
cayley_table_figure(G).show()
character_table_figure(G).show()"""),
    md(r"""
## The GCR algorithm

To compute $ab$, embed $a$ and $b$ as matrices $\rho(a), \rho(b)$, multiply them (the MLP's
neurons compute the entries of the product, as in tutorial 1 they computed products of waves), and
score each candidate answer $c$ by

$$ \operatorname{tr}\big(\rho(a)\rho(b)\rho(c)^{-1}\big) = \operatorname{tr}\rho(abc^{-1})
   = \chi_\rho(abc^{-1}), $$

which is largest exactly at $c = ab$ when $\rho$ is faithful. For an unfaithful irrep (the sign
representation, say) several answers tie, and a network combines irreps so that their characters
add up constructively only at $c = ab$, the analogue of summing key frequencies. Characters of
different irreps are orthogonal, so the logits of a GCR network are a sum
$\sum_\rho \alpha_\rho \chi_\rho(abc^{-1})$ whose terms can be measured one by one.

Below we run the algorithm by hand with each irrep and check the claim over the whole Cayley table.
"""),
    code("""
import numpy as np

table = np.asarray(G.table)                    # table[a, b] = ab
gcr_correct = {}
for rho in G.irreps():
    M = rho.matrices                             # [|G|, d, d]
    prod = np.einsum("aij,bjk->abik", M, M)      # ρ(a)ρ(b)
    scores = np.einsum("abik,cik->abc", prod, M) # tr(ρ(a)ρ(b)ρ(c)ᵀ) = χ(a b c⁻¹)
    gcr_correct[rho.name] = float((scores.argmax(-1) == table).mean())
print("fraction of the table the GCR algorithm answers correctly with one irrep:")
gcr_correct"""),
    md(r"""
## Chughtai et al.'s networks, one per seed

The MLP embeds $a$ and $b$ separately (width 256 each), concatenates, applies 128 ReLU neurons and
unembeds; it is trained with full-batch AdamW (weight decay 1) on part of the table
(docs/mathematics.md §3.2–3.3). The zoo holds several seeds of the same recipe. To find what each
learned, we use their **logit similarity**: centre the logits over the answers and take the cosine
with the character $\chi_\rho(abc^{-1})$ over all $(a, b, c)$. An irrep is **key** when its
similarity exceeds 0.005 (their rule; `key_irreps(model, task, 0.005)`: the default raises it on
small groups to four times an untrained model's chance similarity, docs/mathematics.md §3.4).
"""),
    code("""
import pandas as pd

from mi_margin.analysis import irrep_logit_similarity, key_components, key_irreps
from mi_margin.zoo.recipes import RECIPES


def short_chughtai_run(name):
    # the recipe's model with a larger step and more data, so that it groks in seconds
    model, task, config = RECIPES[name].make()
    task = mm.GroupComposition(task.group, train_fraction=0.9, seed=task.seed)
    return mm.train(model, task, mm.TrainConfig(steps=1500, lr=3e-3, betas=(0.9, 0.98),
                                                weight_decay=1.0, warmup_steps=10, eval_every=100,
                                                seed=config.seed, progress=False))


runs, from_zoo_flags = {}, {}
for name in ENTRIES:
    if FAST and name not in installed and not all(from_zoo_flags.values()):
        print(f"NOTE: {name!r} is not installed; fast mode trains one substitute seed only")
        continue
    runs[name], from_zoo_flags[name] = from_zoo(name, lambda n=name: short_chughtai_run(n))

rows, seed_keys, seed_dominant = {}, {}, {}
for name, r in runs.items():
    sim = irrep_logit_similarity(r.model, r.task)
    rows[name] = dict(zip(sim.labels, sim.similarity.tolist()))
    seed_keys[name] = key_irreps(r.model, r.task, 0.005)     # Chughtai's rule as is (the default
                                                             # raises it on small groups)
    seed_dominant[name] = key_components(r.model, r.task)    # share ≥ ½ of the uniform share
similarities = pd.DataFrame(rows).T
print("key irreps (similarity > 0.005):", seed_keys)
print("dominant irreps (relative rule):", seed_dominant)
similarities.round(3)"""),
    md(r"""
Every seed reaches (near) perfect test accuracy with the same algorithm: the logits are mostly a
sum of characters (the squared similarities add up to most of the variance). What differs is how
much each irrep contributes. On $S_5$, Chughtai et al. report over 50 seeds that even the **set** of
key irreps varies: the sign and standard irreps are each used 49 times, the others less often, and
the 6-dimensional irrep never; low-dimensional irreps are preferred, though not strictly. $S_4$ is
small, and with their absolute threshold (0.005) a seed can count all four non-trivial irreps as
key; the differences between seeds then show in the similarity profile, and in which irreps pass
the stricter relative rule (`key_components`: at least half the share every irrep would have if
all were equal).

Below, for the first seed: the similarity bars, and its neurons clustered by the irrep that
dominates their activations over the table (a neuron computing entries of $\rho(a)\rho(b)$ has its
variance in the span of $\rho$'s matrix coefficients).
"""),
    code("""
from mi_margin.analysis import irrep_restricted_loss, neuron_irrep_clusters

first = next(iter(runs.values()))
irrep_logit_similarity(first.model, first.task).plot().show()
neuron_irrep_clusters(first.model, first.task).plot().show()
restricted = {name: irrep_restricted_loss(r.model, r.task, seed_keys[name]) for name, r in runs.items()}
pd.DataFrame({name: {"restricted (all data)": res.restricted, "excluded (train)": res.excluded}
              for name, res in restricted.items()}).T"""),
    md(r"""
The restricted loss (keep only the key irreps' $\rho(ab)$ directions in the neurons) stays low: the
key irreps alone solve the task. The excluded loss (remove them, measured on the training data) is
high: the networks rely on them.

## Beside the max-margin network: Theorem 9

Morwani et al.'s **Theorem 9** says what a *max-margin* quadratic network on a group does. If every
irrep of $G$ is real and the sign condition
$\sum_{\rho \ne 1} d_\rho^{1.5}\chi_\rho(C) < 0$ holds for every non-trivial conjugacy class $C$,
then with at least $2\sum_{\rho\ne1} d_\rho^3$ neurons

$$ \gamma^* = \frac{2}{3\sqrt{3|G|}\,\sum_{\rho \ne 1} d_\rho^{2.5}}, $$

every neuron lives in a single non-trivial irrep, and **every non-trivial irrep is used**. Wrong
answers are weighted by a class function $\propto d_\rho^{1.5}$ so that each irrep gives the same
single-neuron value; the certificate's logits are
$\propto \sum_\rho d_\rho \chi_\rho(abc^{-1}) = |G|\mathbf 1[c = ab] - 1$: all wrong answers equal.

The zoo's `morwani_S4_quadratic` is trained towards that max margin on $S_4$ (the full table, an
$L_{2,3}$ penalty). Training plateaus below $\gamma^*$ (its card gives the ratio); the entry's
variant `reweighted` is the best non-negative rescaling of the trained neurons, an LP
(docs/mathematics.md §1.6), which reaches it. We load that variant: it uses all four non-trivial
irreps of $S_4$, with the theorem's weights.
"""),
    code("""
from mi_margin import theory


def short_quadratic_run():
    return theory.train_to_max_margin(mm.GroupComposition("S4"), steps=800 if FAST else 10_000,
                                      progress=not FAST)


quad_run, QUAD_FROM_ZOO = from_zoo("morwani_S4_quadratic", short_quadratic_run, variant="reweighted")
quad_task = quad_run.task
quad_pred = theory.max_margin(quad_task, act_fn="quadratic")
quad_cmp = theory.compare_to_theory(quad_run.model, quad_task)
quad_keys = key_irreps(quad_run.model, quad_task)
print(quad_pred.summary())
print("sign condition:", quad_pred.hypotheses, "| key irreps of the quadratic network:", quad_keys)
quad_cmp.scalars()"""),
    code("""
import plotly.graph_objects as go

quad_sim = irrep_logit_similarity(quad_run.model, quad_task)
fig = go.Figure(go.Bar(x=list(quad_sim.labels), y=quad_sim.similarity.tolist(),
                       name="max-margin quadratic (morwani_S4_quadratic)"))
if G.name == "S4":
    for name in runs:
        fig.add_bar(x=list(similarities.columns), y=similarities.loc[name].tolist(), name=name)
fig.update_layout(barmode="group", title="logit similarity with χ_ρ(abc⁻¹): ReLU seeds vs max margin",
                  yaxis_title="cosine similarity").show()"""),
    md(r"""
Two different pictures of the same task: weight-decayed ReLU networks (Chughtai's setting) weight
the irreps unequally, and differently per seed (on $S_5$ they drop some entirely); the
margin-maximizing quadratic network uses *all* of them, in the proportions the theorem fixes.
Both run the GCR algorithm. The difference comes from
what is being optimized (docs/mathematics.md §7.1): the theorem is about the max-margin solution
of its network family, and the ReLU networks are outside that family.

## When Theorem 9 does not apply: $A_5$

For $A_5$ the sign condition fails, so Theorem 9 says nothing. Our **LP extension** (an extension
of the package, not a theorem; docs/mathematics.md §1.5) maximizes the margin over networks of
single-irrep neurons whose logits are class functions, and predicts which irreps a max-margin
network uses.
"""),
    code("""
A5 = groups.alternating(5)
a5 = theory.max_margin(mm.GroupComposition(A5), act_fn="quadratic")
print(a5.summary())
print("hypotheses:", a5.hypotheses)
a5.to_dataframe()"""),
    md(r"""
## From a description to a proof: explanation, fidelity and certificate on $S_5$

Everything above *describes* networks. For Chughtai et al.'s mainline $S_5$ MLP
(`chughtai_S5_mlp_seed1`) we now write the description as a network one can run, score it, and
turn it into a proof about the model (docs/mathematics.md §6.4). `mm.explain` builds an MLP of
the same shape in which each neuron keeps only the part of its input maps (one per operand) and
of its output map that lies in its own irrep's block $\{\text{trivial}, \rho\}$, which is all
GCR with $\rho$ can use; neurons without a dominant irrep are zeroed.
"""),
    code("""
s5_run, S5_FROM_ZOO = from_zoo("chughtai_S5_mlp_seed1",
                               lambda: short_chughtai_run("chughtai_S5_mlp_seed1"))
s5_model, s5_task = s5_run.model.eval(), s5_run.task
s5_expl = mm.explain(s5_model, s5_task)
print(s5_expl.summary())
s5_expl.plot().show()
largest = s5_model.W_out.detach().abs().amax(1)             # each neuron's largest output weight
dead = s5_expl.clusters.dead
print(f"dead neurons: {int(dead.sum())}; their largest output weight "
      f"{float(largest[dead].max()) if dead.any() else 0:.2g}, the smallest of a live one "
      f"{float(largest[~dead].min()):.2g}")
print("key irreps (logit similarity > 0.005):", key_irreps(s5_model, s5_task, 0.005))"""),
    md(r"""
Weight decay shrinks the neurons the network does not use towards zero without reaching it. A
neuron counts as dead when its activation varies over the whole table by no more than the model's
float precision relative to the largest activation (`mm.analysis.neurons.constant_neurons`): its
label would be the shape of rounding noise, so it gets none and the explanation zeroes it.
`mm.explain(..., keep=labels)` states a narrower hypothesis (only these labels matter), to be
scored the same way.

**Fidelity.** The rows are those of tutorial 1, for an MLP: the explanation's own loss and
accuracy, the model with its input maps or its output map replaced by the explanation's, and the
resampling tests of causal scrubbing (Chan et al. 2022). Every pre-activation is a sum over the
operands, $\mathrm{pre}(a, b) = T_1[a] + T_2[b]$, so the scrub can split it exactly: each input
keeps the part $\hat T$ the explanation keeps and takes the rest, $T - \hat T$, from a random other
input (and the left-out part of the output map reads that input's activations). **Recovered**
$= (L_{\text{baseline}} - L)/(L_{\text{baseline}} - L_{\text{model}})$, the baseline taking all
hidden activations from a random input: 1 when what the explanation leaves out does not matter, 0
when the swap is as bad as a random input (the control, `scrub: key from any input`, should be
near 0).
"""),
    code("""
s5_fid = mm.analysis.fidelity(s5_expl, draws=2)
s5_fid.plot().show()
s5_fid.to_dataframe()"""),
    md(r"""
**A certificate.** Fidelity is measured on random draws; `mm.analysis.certify` proves something
about *every* input. It runs the explanation's hidden layer $\hat h$ on every input and reads it
out through the model's own output layer, $\tilde\ell = \hat h\, W_{out} + b_{out}$; what is left
to bound is what the explanation leaves out of the input maps, $\delta T = T - \hat T$, and that is
bounded from the weights. Neuron $i$'s pre-activation differs from the explanation's by at most
$\varepsilon_i = \sum_j \max_v |\delta T[j, v, i]|$, a ReLU passes at most that on, so every logit
differs from $\tilde\ell$ by at most

$$ E_c = \sum_i \varepsilon_i\,|W_{out}[i, c]| $$

(plus a floating-point allowance). Where $\tilde\ell_y - \tilde\ell_c > E_y + E_c$ for every wrong
answer $c$, the model is right too, whatever the left-out parts do, and the difference is a lower
bound on its margin there. Two bounds apply to this network:

* `uniform`: one $E_c$ for every input, each neuron at its worst case at once; it costs the
  explanation's hidden layer on every input (live neurons only) and its readout;
* `per_input`: each input's own shifts $\delta_i(x) = \sum_j |\delta T[j, x_j, i]|$ give the
  exact range of the ReLU's change (none when the explanation keeps it off by more than
  $\delta_i(x)$), paired with $W_{out}[i, y] - W_{out}[i, c]$ for each wrong answer; never looser,
  input by input, at the cost of a few forward passes.

Brute force, running the model on all $|G|^2$ inputs, gives the true accuracy and smallest margin
beside them; each certified margin must stay below the true one.
"""),
    code("""
s5_true = mm.margin(s5_model, s5_task)                      # brute force: every input
s5_certs = {bound: mm.analysis.certify(s5_expl, bound) for bound in ("uniform", "per_input")}
pd.DataFrame({bound: {"certified accuracy": c.certified_accuracy,
                      "accuracy (brute force)": c.accuracy,
                      "certified min margin": c.min_certified_margin,
                      "true min margin": s5_true.value,
                      "operations / brute force's": c.flops / c.brute_force_flops}
              for bound, c in s5_certs.items()}).T"""),
    md(r"""
What the explanation leaves out of the live neurons' input maps is small (the figure of the
explanation: nearly all of their weights kept), so $E_c$ is small, and where both bounds certify
every input (the zoo's model), the certified smallest margin comes close to the true one, the
per-input bound closer. Every certified input is one on which nothing the explanation leaves out
can change the model's answer: with every input certified (the figure: every bound right of 0),
the explanation accounts for the whole table, not only for the sampled draws of the fidelity
test. Neither bound is much cheaper than brute force here (last row: the uniform bound costs a
little less, the per-input bound more): both run the explanation's hidden layer on every input,
and $S_5$ has few inputs (printed below) for brute force to run.
Tutorial 2's harmonic bound is the one whose cost does not grow with the inputs.
"""),
    code("""
print(f"{len(s5_task.inputs):,} inputs; operations of brute force: "
      f"{s5_certs['per_input'].brute_force_flops:.3g}")
s5_certs["per_input"].plot().show()"""),
    md(r"""
**Neurons that read two irreps.** Chughtai et al. describe each neuron by one irrep, and on $S_5$
that is enough. The zoo's $A_5$ MLP (`chughtai_A5_mlp_seed1`) is different: a typical neuron puts
about 93% of its weights' energy in its largest irrep and 99% in its two largest. Cut to one irrep,
the 7% each neuron loses adds up over 128 neurons, and the per-input bound proves under a third of
the inputs correct. `labels_per_neuron=2` lets each neuron keep its two largest irreps (a
`LabelSet`, printed $\rho+\sigma$); the pairs it finds are few, and the bound then proves nearly
every input:
"""),
    code("""
a5_run, A5_FROM_ZOO = from_zoo("chughtai_A5_mlp_seed1",
                               lambda: short_chughtai_run("chughtai_A5_mlp_seed1"))
a5_model, a5_task = a5_run.model.eval(), a5_run.task
a5_certs = {}
for m in (1, 2):
    expl_m = mm.explain(a5_model, a5_task, labels_per_neuron=m)
    a5_certs[m] = mm.analysis.certify(expl_m, "per_input")
    print(f"{m} label(s) per neuron: {a5_certs[m].certified_accuracy:.4f} of the inputs certified")
pairs = sorted(expl_m.counts.items(), key=lambda item: -item[1])
print("neurons per pair of irreps:", {str(lab): n for lab, n in pairs if lab is not None})"""),
    md(r"""
**The harmonic bound, and why not here.** Tutorial 2 certified a quadratic network on
$\mathbb{Z}_p$ without running anything per input: with $x^2$ neurons the explanation is a
polynomial in the waves $e^{i\omega a}, e^{i\omega b}$ that expands once into characters, whose
coefficients bound the logit gap of every input at once. The $S_5$ network's ReLU has no finite
expansion, so `certify` refuses, and says why:
"""),
    code("""
S5_HARMONIC_REFUSAL = None
try:
    mm.analysis.certify(s5_expl, "harmonic")
except mm.MiMarginError as err:
    S5_HARMONIC_REFUSAL = str(err)
    print("certify refused:", err)"""),
    md(r"""
The quadratic network on $S_4$ from the Theorem 9 section has one. $S_4$ is not abelian: a neuron
reads matrix entries $\rho(a)_{kl}$ of its irrep, and products of those are not matrix entries
again. The closed form (docs/mathematics.md §6.4, "Non-abelian groups") avoids splitting them:
$\hat h_i = (s_i + A_i(a) + B_i(b))^2$ has terms in $a$ alone and $b$ alone, computed exactly on
the $|G| \times |G|$ grid, and the product $2A_i(a)B_i(b)$ read out through $W'_i(c)$, whose part
$\operatorname{tr}(M_\rho\, \rho(a b c^{-1}))$ gives every gap exactly as a function of
$y c^{-1}$ (the max-margin circuit's form); the rest is bounded by its coefficients. One bound holds
for every input; its cost grows with $|G|^2$ against brute force's $|G|^3$:
"""),
    code("""
quad_expl = mm.explain(quad_run.model, quad_task, source="weights")
quad_certs = {bound: mm.analysis.certify(quad_expl, bound) for bound in ("uniform", "harmonic")}
quad_margin = mm.margin(quad_run.model, quad_task).value
print(f"smallest margin of the quadratic S4 network, brute force: {quad_margin:.6f}")
pd.DataFrame({bound: {"certified accuracy": c.certified_accuracy,
                      "certified smallest margin": c.min_certified_margin,
                      "operations / brute force's": c.flops / c.brute_force_flops}
              for bound, c in quad_certs.items()}).T"""),
    code("""
print("RESULT " + json.dumps({
    "group": G.name, "seed_key_irreps": seed_keys, "seed_dominant": seed_dominant,
    "seed_similarity": rows, "from_zoo": from_zoo_flags,
    "seed_test_acc": {n: float(r.history["test_acc"].iloc[-1]) for n, r in runs.items()},
    "seed_restricted": {n: res.restricted for n, res in restricted.items()},
    "seed_excluded": {n: res.excluded for n, res in restricted.items()},
    "gcr_correct": gcr_correct, "quad_from_zoo": QUAD_FROM_ZOO, "quad_key_irreps": quad_keys,
    "quad_gamma": quad_pred.gamma, "quad_ratio": quad_cmp.ratio,
    "quad_labels_used": float(quad_cmp.scalars().set_index("metric")["observed"]["labels_used"]),
    "a5_gamma": a5.gamma, "a5_extension": a5.extension, "a5_irreps": list(a5.irreps or []),
    "quad_margin": quad_margin,
    "quad_certificates": {bound: {"certified_accuracy": c.certified_accuracy,
                                  "min_certified_margin": c.min_certified_margin,
                                  "flops_ratio": c.flops / c.brute_force_flops}
                          for bound, c in quad_certs.items()},
    "a5_from_zoo": A5_FROM_ZOO,
    "a5_certified": {m: c.certified_accuracy for m, c in a5_certs.items()},
    "a5_accuracy": a5_certs[2].accuracy,
    "s5_from_zoo": S5_FROM_ZOO, "s5_group": s5_task.group.name, "s5_labels": s5_expl.label,
    "s5_fidelity": s5_fid.to_dataframe().to_dict("list"), "s5_recovered": s5_fid.recovered,
    "s5_certificates": {bound: {"certified_accuracy": c.certified_accuracy, "accuracy": c.accuracy,
                                "min_certified_margin": c.min_certified_margin, "flops": c.flops,
                                "brute_force_flops": c.brute_force_flops,
                                # true margin − certified bound, per input: ≥ 0 where sound
                                "min_slack": float((s5_true.per_example - c.margin_bound).min())}
                        for bound, c in s5_certs.items()},
    "s5_margin": s5_true.value,
    "s5_harmonic_refusal": S5_HARMONIC_REFUSAL}))"""),
]


K_INPUT = [
    md(r"""
# 4. More operands, and sparse parity

Two tasks push the margin story of tutorial 2 further. Li, Liang, Shi, Song & Zhou ("Fourier
circuits in neural networks and transformers", 2024) add **k operands**,
$a_1 + \dots + a_k \bmod p$, and prove the max-margin network is again made of single-frequency
neurons (their Theorem 4.1). Morwani et al.'s **Theorem 8** does the same for **sparse parity**,
where the "Fourier basis" is the set of parity functions. This notebook derives both from the
same mechanism, a polarization identity that turns products into powers, and compares them with
the zoo's trained models (docs/mathematics.md §1.4, §2).
"""),
    code(SETUP),
    md(r"""
## k operands: the network and the theorem

With $k$ operands the network is $f(\theta; a_1, \dots, a_k)[c] = \sum_i \big(\sum_j u_{i,j}(a_j)
\big)^k w_i(c)$, activation $x^k$, homogeneous of degree $\nu = k+1$, normalized by
$\sum_i\|\omega_i\|_2^{k+1}$. **Theorem 4.1** (Li et al.): with at least $2^{2k-2}(p-1)$ neurons,

$$ \gamma^* = \frac{2\,k!}{(2k+2)^{(k+1)/2}\,(p-1)\,p^{(k-1)/2}}, $$

(Theorem 7's value at $k = 2$), every neuron is a cosine at one frequency in every operand and in the
output with phases adding up, $\theta_{u_1} + \dots + \theta_{u_k} = \theta_w$, and every frequency
is used.

*Why a power of a sum.* The circuit needs $\cos(\omega(a_1 + \dots + a_k - c))$. Expanding the angle
sum gives $2^k$ products such as $\cos\omega a_1 \cos\omega a_2 \cos\omega a_3$, and one neuron
computes a $k$-th power of a *sum*. The bridge is the **polarization identity**: for $k = 3$,

$$ x\,y\,z = \frac{1}{48}\sum_{s \in \{\pm1\}^3} s_1 s_2 s_3\,(s_1x + s_2y + s_3z)^3 , $$

the coefficient of $xyz$ in each cube is $6 s_1 s_2 s_3$, so the signed sum collects
$8 \cdot 6 = 2^k k!$ copies of it, and every other monomial (such as $3 s_1^2 s_2\, x^2 y$) is odd in
some sign and cancels. Each product term therefore costs a handful
of neurons, $2^{2k-1}$ per frequency in the construction. We check the identity numerically:
"""),
    code("""
import itertools

import plotly.express as px

from mi_margin import theory

x, y, z = torch.randn(3, 1000, dtype=torch.float64)
signs = list(itertools.product((1, -1), repeat=3))
polarized = sum(s1 * s2 * s3 * (s1 * x + s2 * y + s3 * z) ** 3 for s1, s2, s3 in signs) / 48
polarization_error = float((polarized - x * y * z).abs().max())
print("max |polarization − xyz| over 1000 random triples:", polarization_error)"""),
    md(r"""
## The zoo's k = 3 model

`li_p23_k3_cubic` is Li et al.'s experiment: $(a+b+c) \bmod 23$, an $x^3$ network of their width
$2^{2k-2}(p-1) = 352$, trained with AdamW on minibatches of half of the $23^3 = 12\,167$ triples
(their App. J.1 settings).
This is *not* the theorem's setting (a train/test split and weight decay instead of the whole table
and the $L_{2,4}$ penalty), so we compare its structure, not its margin, with the theorem: which
frequencies it uses and how pure its neurons are. Its card states honestly how far it got.
"""),
    code("""
from mi_margin.analysis import fourier_spectrum, key_frequencies, neuron_clusters


def short_k3_run():
    # the theorem's own setting on a smaller p: whole table, L_{2,4} penalty, a few hundred steps
    return theory.train_to_max_margin(mm.ModularAddition(p=5 if FAST else 11, k=3),
                                      steps=600 if FAST else 3000, progress=not FAST)


run3, K3_FROM_ZOO = from_zoo("li_p23_k3_cubic", short_k3_run)
task3, model3 = run3.task, run3.model.eval()
P = task3.p
last3 = run3.history.iloc[-1]
print(task3, f"| train acc {last3.train_acc:.4f}, test acc {last3.test_acc:.4f}")
key3 = key_frequencies(model3, task3)
print("key frequencies:", key3, f"(of {P // 2})")
fourier_spectrum(model3, task3).plot().show()"""),
    md(r"""
Li et al. measure each neuron's *maximum normalized power*: the share of its Fourier power in its
best frequency, ≈ 1 after training. Our purity is the same quantity over the whole
$\mathbb{Z}_p^3$ input grid, and `compare_to_theory` reports it for the weights. The heatmaps show
activations over $(a_1, a_2)$ with $a_3 = 0$: a neuron computes the cube of a sum of waves, one per
operand, so a pure neuron's picture repeats with its frequency along both axes.
"""),
    code("""
from mi_margin.viz import neuron_heatmaps

clusters3 = neuron_clusters(model3, task3)
print("neurons per frequency:", clusters3.counts)
clusters3.plot().show()
neuron_heatmaps(model3, task3, n=4).show()"""),
    md(r"""
The theorem's numbers for this task, and the certificate network that attains them exactly
(`theory.certificate`, built from the polarization construction):
"""),
    code("""
pred3 = theory.max_margin(task3)
cert3 = theory.compare_to_theory(theory.certificate(task3), task3)
cmp3 = theory.compare_to_theory(model3, task3)
print(pred3.summary())
print("certificate: normalized margin / γ* =", cert3.ratio, "with", theory.certificate(task3).cfg.d_mlp,
      "neurons")
cmp3.scalars()"""),
    md(r"""
Read the two columns against each other. The certificate sits exactly at $\gamma^*$ with every
neuron pure. A model trained with weight decay on half the triples is a different object: its
normalized margin over the *whole* table can be far below $\gamma^*$ (negative as soon as one
unseen triple is answered wrongly), while it may already use most frequencies with neurons only
partly concentrated on one (compare `mean_purity` and `labels_used` with the certificate's). How
far a trained model is from the theorem's network, in each respect separately, is what these rows
measure; `mm.zoo.card("li_p23_k3_cubic")` lists the paper's numbers next to ours.

## Sparse parity: Theorem 8

$(n, k)$-sparse parity: inputs $x \in \{\pm1\}^n$, label $\chi_S(x) = \prod_{j \in S} x_j$ for a
hidden support $|S| = k$. The parity functions $\chi_T$ are the characters of $\mathbb{Z}_2^n$ —
the Fourier basis of this group. The network is $\sum_i (u_i^\top x)^k\, w_i$ with
$w_i \in \mathbb{R}^2$ (one logit per class). Averaging one neuron's margin over all $x$ kills every
monomial of $(u^\top x)^k$ except the full product of the support, so its expected margin is

$$ k!\,\prod_{j\in S} u_j\,(w_+ - w_-), $$

largest with $|u_j| = 1/\sqrt{k+1}$ on $S$ and zero elsewhere. **Theorem 8** (Morwani et al.): with
at least $2^{k-1}$ neurons,

$$ \gamma^* = k!\,\sqrt{2\,(k+1)^{-(k+1)}}, $$

and every neuron of a max-margin network reads only the support, with equal magnitudes. The same
polarization identity builds the certificate: one neuron per sign pattern of the support.

The zoo's `morwani_parity_n10_k4_quartic` is the paper's Fig. 5 setting: $n = 10$, $k = 4$, an $x^4$
network of 40 neurons trained towards the max margin. Its input weights should vanish outside the
support:
"""),
    code("""
def short_parity_run():
    return theory.train_to_max_margin(mm.SparseParity(n=6, k=3, seed=0), steps=600,
                                      progress=not FAST)


run_par, PAR_FROM_ZOO = from_zoo("morwani_parity_n10_k4_quartic", short_parity_run)
parity, model_par = run_par.task, run_par.model.eval()
W = model_par.W_in.detach().double().reshape(parity.n, -1).abs()   # [input coordinate, neuron]
px.imshow(W.T.tolist(), labels={"x": "input coordinate j", "y": "neuron"}, aspect="auto",
          title=f"|input weights|; the support is {parity.support}").show()
support_share = float((W[list(parity.support)] ** 2).sum() / (W ** 2).sum())
print("share of the input weights' squared norm on the support:", round(support_share, 4))"""),
    code("""
pred_par = theory.max_margin(parity)
cert_par = theory.compare_to_theory(theory.certificate(parity), parity)
cmp_par = theory.compare_to_theory(model_par, parity)
px.line(run_par.history, x="step", y="ratio_to_gamma", log_x=True,
        title="parity: normalized margin / γ* during training").show()
print(pred_par.summary())
cmp_par.scalars()"""),
    md(r"""
In both tasks the same mechanism decides the features: the margin is a sum over neurons of a
single-neuron quantity, the norm budget rewards concentrating each neuron on one "frequency"
(one Fourier block of $\mathbb{Z}_p^k$, or the one parity $\chi_S$), and the worst-case margin
rewards spreading neurons over all the blocks that are needed.
"""),
    code("""
print("RESULT " + json.dumps({
    "p": P, "k": task3.k, "k3_from_zoo": K3_FROM_ZOO, "k3_key_frequencies": key3,
    "k3_gamma": pred3.gamma, "k3_certificate_ratio": cert3.ratio, "k3_ratio": cmp3.ratio,
    "k3_train_acc": float(last3.train_acc), "polarization_error": polarization_error,
    "parity_n": parity.n, "parity_k": parity.k, "parity_from_zoo": PAR_FROM_ZOO,
    "parity_gamma": pred_par.gamma, "parity_certificate_ratio": cert_par.ratio,
    "parity_ratio": cmp_par.ratio, "support_share": support_share}))"""),
]


ABLATIONS = [
    md(r"""
# 5. Ablations and activation patching with TransformerLens's tools

Tutorials 1–4 *read* structure off the weights and activations. Causal experiments test it: change
an activation during the forward pass and watch the output. mi_margin's transformer is a
TransformerLens `HookedRootModule` with TransformerLens's hook names, so the field's standard tools
(`run_with_hooks`, `run_with_cache`, `transformer_lens.patching`) run on it unchanged. This notebook
takes the zoo's grokked transformer and does

1. **zero, mean and resample ablation** of each attention head and of each neuron cluster,
2. **Fourier ablation** of the key frequencies with the package's hook factory,
3. **activation patching** with `transformer_lens.patching`,

and explains what each one measures.
"""),
    code(SETUP),
    code("""
def short_grokking_run():
    p, fraction, steps, width = (17, 0.7, 800, 48) if FAST else (53, 0.4, 6000, 128)
    task = mm.ModularAddition(p=p, train_fraction=fraction, seed=0)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=width, n_heads=4, d_head=width // 4, d_mlp=4 * width, seed=0))
    return mm.train(model, task, mm.TrainConfig(steps=steps, lr=3e-3 if FAST else 1e-3,
                                                weight_decay=1.0, eval_every=steps // 20,
                                                progress=not FAST))


run, FROM_ZOO = from_zoo("nanda_p113_transformer", short_grokking_run)
model, task = run.model.eval(), run.task       # TL's patching requires eval mode
P, tokens, labels = task.p, task.tokens, task.labels
print(task, "| tokens", tuple(tokens.shape), "e.g.", model.to_str_tokens(tokens[5]))"""),
    md(r"""
## The metric

All experiments use the cross-entropy loss on the whole table at the `=` position (computed in
float64), and, for patching, the mean **logit difference** between two answers. A lower loss after
an intervention means the intervened part was not needed.
"""),
    code("""
from mi_margin.models.evaluation import cross_entropy64


def loss(logits):
    return float(cross_entropy64(logits[:, -1], labels))


with torch.no_grad():
    base, cache = model.run_with_cache(tokens)
BASE = loss(base)
print("loss on the whole table:", BASE)"""),
    md(r"""
## 1. Zero, mean and resample ablation

An ablation replaces an activation $x(\text{input})$ by something that carries no information about
the current input:

* **zero** ablation: $x \mapsto 0$. Simple, but 0 may be far from any value the model ever sees, so
  the damage can overstate the component's role;
* **mean** ablation: $x \mapsto \mathbb{E}_{\text{inputs}}[x]$. Keeps the typical value, removes the
  input-dependence;
* **resample** ablation: $x(\text{input}) \mapsto x(\text{input}')$ for a random other input.
  Keeps the distribution of values, breaks the link with the current input (Chan et al.'s causal
  scrubbing uses this).

A hook is a function `(activation, hook) -> activation`. `hook_z` holds the heads' outputs before
$W_O$, of shape [batch, position, head, d_head].
"""),
    code("""
import pandas as pd

generator = torch.Generator().manual_seed(0)
PERM = torch.randperm(len(tokens), generator=generator)     # input -> the input it is resampled from


def ablate(kind, index):
    \"\"\"A hook replacing ``act[..., index, :]`` (a head of hook_z) zero/mean/resample-wise.\"\"\"
    def hook(act, hook):
        act = act.clone()
        part = act[:, :, index]
        if kind == "zero":
            act[:, :, index] = 0.0
        elif kind == "mean":
            act[:, :, index] = part.mean(0, keepdim=True)
        else:
            act[:, :, index] = part[PERM]
        return act
    return hook


head_table = {}
with torch.no_grad():
    for h in range(model.cfg.n_heads):
        head_table[f"head {h}"] = {
            kind: loss(model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", ablate(kind, h))]))
            for kind in ("zero", "mean", "resample")}
heads = pd.DataFrame(head_table).T
heads"""),
    md(r"""
How to read the three columns. Zero and mean ablation usually agree when a head's output is
centred near 0; when zero ablation hurts much more than mean ablation, part of the damage comes from
pushing the residual stream off its usual range, not from the lost information. Resample ablation
is typically the most damaging of the three for a head that carries information: it does not just
remove the information about this input, it inserts confidently wrong information about another
one (here: the head reports the operands of a different pair). In the zoo model every head matters
to the loss (ablating any one takes it from its base value to at least about 1 nat), heads 1 and 3
ten times more than heads 0 and 2. Which head carries the information about one operand is a
sharper question, which activation patching answers in section 3.

The same three ablations on the MLP's neurons, one **frequency cluster** at a time (the neurons whose
activation is dominated by one frequency, tutorial 1). `hook_post` is [batch, position, neuron]; the
neuron index can be a list.
"""),
    code("""
import plotly.express as px

from mi_margin.analysis import key_frequencies, neuron_clusters


def ablate_neurons(kind, neurons):
    idx = torch.tensor(neurons)

    def hook(act, hook):
        act = act.clone()
        part = act[..., idx]
        act[..., idx] = 0.0 if kind == "zero" else (
            part.mean(0, keepdim=True).expand_as(part) if kind == "mean" else part[PERM])
        return act
    return hook


key = key_frequencies(model, task)
clusters = {f: ns for f, ns in neuron_clusters(model, task).clusters.items() if f is not None}
cluster_table = {}
with torch.no_grad():
    for f, neurons in sorted(clusters.items()):
        cluster_table[f"freq {f} ({len(neurons)} neurons)"] = {
            kind: loss(model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post",
                                                                 ablate_neurons(kind, neurons))]))
            for kind in ("zero", "mean", "resample")}
cluster_losses = pd.DataFrame(cluster_table).T
px.bar(cluster_losses, barmode="group", log_y=True,
       title=f"loss after ablating one neuron cluster (unablated: {BASE:.2g})").show()
cluster_losses"""),
    md(r"""
Compare each cluster's losses with the unablated loss and with chance ($\log p$). Removing one
frequency's neurons brings back the near-ties of the remaining waves (tutorial 1's interference
picture), so the loss rises; as long as the other frequencies still peak at the right answer for
most pairs, zero and mean ablation stay below chance, while resampling, which injects another
pair's waves, can push it above.
"""),
    md(r"""
## 2. Fourier ablation with the package's hook factory

`ablation_hook(task, freqs, mode)` works in the *input* space instead of on units: over the whole
table, it keeps (or removes) the components $\cos(\omega_f(a+b))$, $\sin(\omega_f(a+b))$ of every
neuron's activation, the directions the algorithm of tutorial 1 needs. Removing the key frequencies
should destroy the model; keeping only them should not.
"""),
    code("""
import math

from mi_margin.analysis import ablation_hook

others = [f for f in range(1, P // 2 + 1) if f not in key]
fourier = {}
with torch.no_grad():
    for name, freqs, mode in [("keep key", key, "keep"), ("remove key", key, "remove"),
                              ("remove all others", others, "remove")]:
        hook = ablation_hook(task, freqs, mode=mode)
        fourier[name] = loss(model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", hook)]))
print("key frequencies:", key, "| chance level log p =", round(math.log(P), 3))
fourier"""),
    md(r"""
Keeping only the key frequencies' $a+b$ directions leaves the loss as low as (or lower than) the
full model's: everything else in the neurons is noise the model has not yet fully cleaned up.
Removing them leaves the model at or beyond chance. Unlike unit ablations, this intervention
follows the *algorithm*, not the architecture: it cuts across neurons and heads.
"""),
    md(r"""
## 3. Activation patching with `transformer_lens.patching`

Patching asks *where* the information that distinguishes two inputs lives. Take a **clean** input
$(a, b)$ and a **corrupted** one $(a', b)$ that differs only in $a$. Run the corrupted input, but
paste in one activation from the clean run, and measure how much of the clean behaviour comes back:

$$ \text{metric} = \text{logit}[a+b] - \text{logit}[a'+b] \quad\text{(mean over the batch)}. $$

If the patched activation carries everything that depends on $a$, the metric returns to its clean
value; if it carries nothing of $a$, it stays at the corrupted value. TransformerLens's
`get_act_patch_resid_pre` patches the residual stream before the layer at every position:
position 0 (the `a` token) must restore the clean run exactly, position 1 (`b`, equal in both) and
position 2 (`=`) change nothing. The per-head version shows which heads move the information about
$a$ to the `=` position.
"""),
    code("""
import transformer_lens.patching as tl_patching

b_fixed, shift = 3, 5
clean = tokens[tokens[:, 1] == b_fixed][:16]
corrupted = clean.clone()
corrupted[:, 0] = (clean[:, 0] + shift) % P
right, wrong = (clean[:, 0] + b_fixed) % P, (corrupted[:, 0] + b_fixed) % P
rows = torch.arange(len(clean))


def logit_diff(logits):
    return (logits[rows, -1, right] - logits[rows, -1, wrong]).mean()


with torch.no_grad():
    clean_logits, clean_cache = model.run_with_cache(clean)
    CLEAN, CORRUPTED = float(logit_diff(clean_logits)), float(logit_diff(model(corrupted)))
    resid = tl_patching.get_act_patch_resid_pre(model, corrupted, clean_cache, logit_diff)
    per_head = tl_patching.get_act_patch_attn_head_out_by_pos(model, corrupted, clean_cache, logit_diff)
print(f"clean metric {CLEAN:.3f}, corrupted {CORRUPTED:.3f}")
restored = (per_head[0][2] - CORRUPTED) / (CLEAN - CORRUPTED)     # share of the gap, per head at '='
print("share of the clean metric restored by patching each head at '=':",
      [f"head {h}: {float(r):.1%}" for h, r in enumerate(restored)])
signed = {"color_continuous_scale": "RdBu", "color_continuous_midpoint": 0.0}   # 0 = white
px.imshow(resid.tolist(), x=["a", "b", "="], y=[f"layer {i}" for i in range(len(resid))],
          labels={"x": "position", "y": "layer"},
          title="patching resid_pre (metric after patching)", **signed).show()
px.imshow(per_head[0].T.tolist(), x=["a", "b", "="], labels={"x": "position", "y": "head"},
          title="patching each head's output at each position", **signed).show()"""),
    md(r"""
Only the heads' outputs at `=` matter: the logits are read there, and attention is the only way
information about $a$ reaches that position. And there one head does most of the moving: in the zoo
model, patching head 3's output at `=` alone brings the metric from the corrupted −77 back to about
+60 (some 90% of the way to the clean +76), head 1 about a tenth of the way, heads 0 and 2 under 1%
each (the shares printed above). So while every head matters to the loss, the information about
$a$ travels mostly through head 3. Every one of TransformerLens's `get_act_patch_*`
functions runs on these models the same way, as does the rest of its toolbox (`decompose_resid`,
`stack_head_results`, `logit_attrs` on the cache), and `model.to_bridge()` gives the same weights as
a `TransformerBridge` with identical logits:
"""),
    code("""
bridge = model.to_bridge()
with torch.no_grad():
    bridge_diff = float((bridge(tokens) - base).abs().max())
resid_parts, part_labels = cache.decompose_resid(layer=1, pos_slice=-1, return_labels=True)
print("max |bridge − model| logits:", bridge_diff, "| residual stream parts at '=':", part_labels)"""),
    code("""
print("RESULT " + json.dumps({
    "p": P, "from_zoo": FROM_ZOO, "key_frequencies": key, "base": BASE,
    "heads": heads.to_dict(orient="index"), "clusters": cluster_losses.to_dict(orient="index"),
    "fourier": fourier, "clean": CLEAN, "corrupted": CORRUPTED, "resid_patch": resid[0].tolist(),
    "bridge_diff": bridge_diff}))"""),
]

def exercise(name: str, text: str) -> nbformat.NotebookNode:
    """An exercise cell: the stub a reader completes (tests fill in the solution, tutorials/_exercises.py)."""
    cell = code(text)
    cell.metadata.update({"tags": ["exercise"], "exercise": name})
    return cell


def solution(name: str) -> nbformat.NotebookNode:
    """The solution of an exercise, folded, from tutorials/walkthrough_solutions.py."""
    source = inspect.getsource(getattr(walkthrough_solutions, name)).strip()
    return md(f"<details><summary>Solution</summary>\n\n```python\n{source}\n```\n\n</details>")


WALKTHROUGH = [
    md(r"""
# 6. Nanda et al.'s circuit, the TransformerLens way

Tutorials 1 and 5 told the story of the grokked modular-addition transformer with one-line
analyzers (`mm.fourier_spectrum`, `mm.restricted_loss`, ...). This notebook does the same analysis
by hand, the way a TransformerLens user would, as in Nanda et al.'s own notebooks and ARENA's
grokking chapter: `run_with_cache` on all $p^2$ inputs → activation grids over the table → their
2D Fourier transform → the effective circuits as `FactoredMatrix` products → direct logit
attribution and the logit lens → circuitsvis. It ends where the one-line analyzers begin, and
checks that they compute what we computed by hand.

**Exercises.** Five cells ask you to write a function. Replace `raise NotImplementedError(...)`
with your code and run the cell, then the check cell below it: it compares your answer with an
independent computation (`tutorials/walkthrough_checks.py`) and raises an `AssertionError` saying
what differs. The solution follows each check, folded (and in `tutorials/walkthrough_solutions.py`).

The mathematics is in docs/mathematics.md: §0 (the Fourier basis) and §4 (Nanda et al.).
"""),
    code(SETUP.replace("import json\n", "")),       # no RESULT line: the tests read variables
    md(r"""
## TransformerLens 4: what moved

Nanda's grokking notebook and ARENA's chapters start with `import transformer_lens.utils as
utils` and `HookedTransformer`. TransformerLens 4 removed both:

- `HookedTransformer`, `HookedTransformerConfig` → `TransformerBridge`, or any
  `HookedRootModule` with TL's hook and weight names, which is what mi_margin's models are
  (`model.to_bridge()` gives the bridge, with identical logits);
- `import transformer_lens.utils as utils` → `import transformer_lens.utilities as utils`
  (`get_act_name`, `to_numpy`, ...; `test_prompt` is there too, but it scores a prompt's next
  token, and these models read their answer at `=`: use `return_type="loss"` with `labels=`);
- `from transformer_lens.hook_points import HookedRootModule` →
  `from transformer_lens import HookedRootModule` (`HookPoint` stays in `transformer_lens.hook_points`);
- `model.cfg.use_attn_result = True`, then `cache["result", 0]`: still works on mi_margin's
  transformer; `cache.stack_head_results(...)` gives the same per-head outputs without it,
  computed from `hook_z` and `W_O`;
- Nanda's `fourier_basis` (his helpers) → `mi_margin.fourier.cyclic.fourier_basis`, the same basis
  in the same order.

Everything else used below (`run_with_cache`, `ActivationCache` and its helpers, `FactoredMatrix`,
hooks, `transformer_lens.patching`) is unchanged.
"""),
    code("""
import transformer_lens.utilities as utils  # TL 4's home of what was transformer_lens.utils

try:
    import transformer_lens.utils  # noqa: F401  (TL <= 3)
except ModuleNotFoundError as error:
    print("TL 4:", error)
try:
    from transformer_lens import HookedTransformer  # noqa: F401
except ImportError as error:
    print("TL 4:", error)
print("utils.get_act_name('post', 0) =", utils.get_act_name("post", 0))"""),
    md(r"""
## The model and its cache

The zoo's reproduction of Nanda et al.'s model: tokens `[a, b, =]` with $a, b \in \mathbb{Z}_p$,
$p = 113$; embedding width 128, 4 attention heads, 512 ReLU neurons, no LayerNorm; the answer
$a + b \bmod p$ is read from the logits at `=` (docs/mathematics.md §4.1). The task's `tokens`
hold the whole table in lexicographic order, row $a p + b$ for the pair $(a, b)$, so one
`run_with_cache` call caches every activation on every input. TL's shorthand works:
`cache["post", 0]` is `cache["blocks.0.mlp.hook_post"]`.
"""),
    code("""
import einops
import torch.nn.functional as F_nn


def short_grokking_run():
    p, fraction, steps, width = (17, 0.7, 800, 48) if FAST else (53, 0.4, 6000, 128)
    task = mm.ModularAddition(p=p, train_fraction=fraction, seed=0)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, d_model=width, n_heads=4, d_head=width // 4, d_mlp=4 * width, seed=0))
    return mm.train(model, task, mm.TrainConfig(steps=steps, lr=3e-3 if FAST else 1e-3,
                                                weight_decay=1.0, eval_every=steps // 20,
                                                progress=not FAST))


run, FROM_ZOO = from_zoo("nanda_p113_transformer", short_grokking_run)
model, task = run.model.eval(), run.task
P, H, D_MLP = task.p, model.cfg.n_heads, model.cfg.d_mlp
tokens, labels = task.tokens, task.labels
assert torch.equal(tokens[:, 0] * P + tokens[:, 1], torch.arange(P * P))   # row a·p + b is (a, b)

with torch.no_grad():
    logits, cache = model.run_with_cache(tokens)
final = logits[:, -1]                                   # the logits at '=' [p², p]
print("tokens", tuple(tokens.shape), "e.g.", model.to_str_tokens(tokens[P + 2]))
for name in ("hook_embed", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z",
             "blocks.0.mlp.hook_post", "blocks.0.hook_resid_post"):
    print(f"  {name:28s} {tuple(cache[name].shape)}")
assert torch.equal(cache["post", 0], cache["blocks.0.mlp.hook_post"])
print("loss on the whole table:", float(F_nn.cross_entropy(final.double(), labels)),
      "| accuracy:", float((final.argmax(-1) == labels).double().mean()))"""),
    md(r"""
## Activation grids

Anything computed once per input is a function on the table $\mathbb{Z}_p \times \mathbb{Z}_p$:
reshape the batch axis `(a b)` into two axes `a, b`. Nanda et al. look at the neurons at the `=`
position, the only position whose output is read.

**Exercise 1.** Write `neuron_grids(cache, p)`: the MLP activations at `=` as a tensor
`[d_mlp, p, p]` with `grids[n, a, b]` the activation of neuron `n` on the input $(a, b)$.
`einops.rearrange` does it in one line.
"""),
    exercise("neuron_grids", """
def neuron_grids(cache, p):
    # cache["post", 0] is [p*p, 3, d_mlp]: inputs in (a, b) order, then position, then neuron
    raise NotImplementedError("exercise 1: return the [d_mlp, p, p] grids")"""),
    code("""
from walkthrough_checks import check_neuron_grids

check_neuron_grids(neuron_grids, model, task, cache)"""),
    solution("neuron_grids"),
    md(r"""
With the grids, the pictures of Nanda et al. are one reshape away: neurons over the table (waves
along $a$, along $b$ and along the diagonals $a + b$ = const), and, from `hook_pattern`
([batch, head, query, key]), each head's attention from `=` to `a`.
"""),
    code("""
import plotly.express as px

grids = neuron_grids(cache, P)                                       # [d_mlp, p, p]
pattern = cache["pattern", 0][:, :, -1, :]                           # [p², head, key]: query '='
attn_grids = einops.rearrange(pattern[..., 0], "(a b) h -> h a b", a=P)   # attention '=' → a
px.imshow(grids[:4].numpy(), facet_col=0, labels={"x": "b", "y": "a", "facet_col": "neuron"},
          title="neurons 0–3 at '=' over the table").show()
px.imshow(attn_grids.numpy(), facet_col=0, labels={"x": "b", "y": "a", "facet_col": "head"},
          title="attention from '=' to a, per head").show()"""),
    md(r"""
## The 2D Fourier transform

The real Fourier basis of $\mathbb{Z}_p$ (docs/mathematics.md §0) is the orthonormal matrix $F$
whose rows are the constant $1/\sqrt p$ and, for every frequency $f = 1, \dots, (p-1)/2$,
$\sqrt{2/p}\cos(\omega_f x)$ and $\sqrt{2/p}\sin(\omega_f x)$ with $\omega_f = 2\pi f/p$. A grid
$g(a, b)$ has the 2D coefficients

$$ \hat g = F\, g\, F^\top, \qquad \sum_{a,b} g(a,b)^2 = \sum_{i,j} \hat g_{ij}^2 \quad\text{(Plancherel)}. $$

For real data the cos/sin coefficients of frequency $f$ are $\sqrt{2/p}$ times the real part and
minus the imaginary part of the complex DFT at $f$, so the power of a *pair of frequencies*
$(f_a, f_b)$, pooled over cos/sin, equals $\frac{1}{p^2}\sum_{\pm f_a, \pm f_b} |\mathrm{DFT}(g)|^2$.
Below: the basis product, the package's FFT-based `to_fourier` and a plain `torch.fft.fft2` give
the same numbers.
"""),
    code("""
from mi_margin.fourier.cyclic import basis_labels, fourier_basis, pool_frequencies, to_fourier

F = fourier_basis(P)                                    # [p, p]; rows: const, cos 1, sin 1, ...
assert torch.allclose(F @ F.T, torch.eye(P, dtype=torch.float64))
g = grids.double()
coef = F @ g @ F.T                                      # [d_mlp, p, p]: 2D Fourier coefficients
sample = slice(0, 32)                                   # the comparisons on the first 32 neurons
print("F·g·Fᵀ equals to_fourier(g, dims=(-2, -1)):",
      torch.allclose(coef[sample], to_fourier(g[sample], dims=(-2, -1))))

# the power per frequency pair from a complex FFT: bins j and p − j are frequency min(j, p − j)
n_f = P // 2 + 1
fold = torch.minimum(torch.arange(P), P - torch.arange(P))
pair = (fold[:, None] * n_f + fold[None, :]).flatten()
fft_power = torch.fft.fft2(g[sample]).abs().square().flatten(1) / P**2
fft_pooled = torch.zeros(len(fft_power), n_f * n_f, dtype=torch.float64).index_add_(1, pair, fft_power)
basis_pooled = pool_frequencies(coef[sample].square(), dims=(-2, -1)).flatten(1)
FFT_ERROR = float((fft_pooled - basis_pooled).abs().max() / basis_pooled.max())
print("power per frequency pair, basis vs torch.fft.fft2, max relative difference:", FFT_ERROR)
names = basis_labels(P)
component_norms = coef.square().sum(0).sqrt()
component_norms[0, 0] = 0.0                             # the mean: not part of any frequency
px.imshow(component_norms.numpy(), x=names, y=names, color_continuous_scale="Blues",
          labels={"x": "b component", "y": "a component"},
          title="norm over all neurons of each 2D Fourier component (mean removed)").show()"""),
    md(r"""
Almost all of the neurons' activation lies in a few rows and columns: the constant and the
cos/sin of a few **key frequencies**, and the products of cos/sin of the *same* frequency. Those
products are what the product formulas
$\cos(\omega(a+b)) = \cos\omega a \cos\omega b - \sin\omega a \sin\omega b$ (and the same for sin)
need (docs/mathematics.md §4.2). So a neuron is, before its ReLU, close to a degree-2 polynomial
in $\cos\omega_f a, \sin\omega_f a, \cos\omega_f b, \sin\omega_f b$ of **one** frequency $f$: its
variance lies in the block spanned by $\{\text{const}, \cos f, \sin f\}^{\otimes 2}$ minus the
constant.

**Exercise 2.** Write `frequency_shares(grids)`: for `grids` `[m, p, p]`, the share of each grid's
*centred* variance in the block of each frequency $f = 1, \dots, p//2$, as `[m, p//2]`. Use
`F @ grids @ F.T`, drop the constant coefficient, pool squares with `pool_frequencies`, and add
the three parts of the block: (const, $f$), ($f$, const) and ($f$, $f$). A constant grid has no
variance: give it shares 0.
"""),
    exercise("frequency_shares", """
def frequency_shares(grids):
    # coefficients F @ grids @ F.T; power pooled per (f_a, f_b); block f = (0, f) + (f, 0) + (f, f)
    raise NotImplementedError("exercise 2: return the [m, p // 2] shares")"""),
    code("""
from walkthrough_checks import check_frequency_shares

check_frequency_shares(frequency_shares, grids)"""),
    solution("frequency_shares"),
    md(r"""
A neuron's **frequency** is its best block and its **purity** that block's share. Most neurons
are pure, and they come in clusters, one per key frequency of the embedding (the zoo's model
also has the key frequency 42 in its logits, a harmonic of the embedded ones with no neurons of
its own):
"""),
    code("""
shares = frequency_shares(grids)                        # [d_mlp, p // 2]
purity, best = shares.max(1)
neuron_freq = best + 1
clustered = (grids.flatten(1).var(1) > 0) & (purity >= 0.5)
counts = torch.bincount(neuron_freq[clustered], minlength=n_f).tolist()
print("neurons with at least half their variance in one frequency:",
      {f: c for f, c in enumerate(counts) if c}, f"({int(clustered.sum())} of {D_MLP})")
px.histogram(x=purity.numpy(), nbins=40, labels={"x": "purity"},
             title="share of each neuron's variance in its best frequency").show()"""),
    md(r"""
## Effective circuits with `FactoredMatrix`

Without LayerNorm every path from a token to the logits is a product of weight matrices, and
TransformerLens keeps such products **factored**: a `FactoredMatrix` $AB$ stores $A$ and $B$,
multiplies lazily and gives the SVD of the product cheaply. A head's **OV circuit** is
`model.OV` $= W_V^h W_O^h$ (`[d_model, d_model]`, rank at most `d_head`): when head $h$ attends
to a token with weight $A$, it adds $A\, x_{\text{token}} W_V^h W_O^h$ to the residual stream at
`=`. The paths of this model:

- $W_E \cdot OV^h \cdot W_U$ (`[p, p]`): how a token the head attends to moves each logit directly;
- $W_E \cdot OV^h \cdot W_{in}$ (`[p, d_mlp]`): what a token sends to each neuron through head
  $h$ (Nanda et al.'s $W_{neur}$);
- $W_{logit} = W_{out} W_U$ (`[d_mlp, p]`): each neuron's effect on the logits (docs/mathematics.md §4.3).

In the Fourier basis (multiply the token axes by $F$, the answer axis by $F^\top$) each of them
is sparse: only the key frequencies carry weight. A few singular values carry each map (about 2
per key frequency: a cos and a sin).
"""),
    code("""
from transformer_lens import FactoredMatrix

W_E = model.W_E[:P]                                     # the numbers' embeddings (no '=')
OV = model.OV[0]                                        # FactoredMatrix [head, d_model, d_model]
circuits = {"W_E·OV·W_U": W_E @ OV @ model.W_U,         # [head, p, p], never multiplied out
            "W_E·OV·W_in": W_E @ OV @ model.W_in[0],    # [head, p, d_mlp]
            "W_out·W_U": FactoredMatrix(model.W_out[0], model.W_U)}   # [d_mlp, p]
with torch.no_grad():
    for name, M in circuits.items():
        S, which = (M.S, "") if M.S.ndim == 1 else (M.S[0], " (head 0)")
        print(f"{name:12s} {tuple(M.shape)!s:16s} inner dim {M.mdim:3d}; largest singular "
              f"values{which}: {[round(float(s), 1) for s in S[:10]]}")
    Ff = F.float()
    norms = {"W_E (tokens)": (Ff @ W_E).norm(dim=1),
             "W_E·OV·W_in (tokens)": (Ff @ circuits["W_E·OV·W_in"]).AB.norm(dim=(0, 2)),
             "W_out·W_U (answers)": (circuits["W_out·W_U"] @ Ff.T).AB.norm(dim=0)}
fig = px.line(title="norm of each Fourier component of the effective circuits (normalized)",
              labels={"index": "Fourier component", "value": "norm / max"})
for name, v in norms.items():
    fig.add_scatter(x=names, y=(v / v.max()).tolist(), name=name, mode="lines")
fig.show()
with torch.no_grad():
    ov_fourier = (Ff @ circuits["W_E·OV·W_U"] @ Ff.T).AB.double()    # [head, token, answer]
ov_pairs = pool_frequencies(ov_fourier.square(), dims=(-2, -1)).sqrt()   # per frequency pair
px.imshow(ov_pairs.numpy(), facet_col=0, color_continuous_scale="Blues",
          labels={"x": "answer frequency", "y": "token frequency", "facet_col": "head"},
          title="W_E·OV·W_U in the Fourier basis: norm per (token, answer) frequency pair").show()"""),
    md(r"""
**Neuron-to-logit maps.** Row $n$ of $W_{logit}$ is what neuron $n$ adds to the logits per unit of
activation. If a neuron of frequency $f$ helps compute $\cos(\omega_f(a+b-c))$, its row should be a
wave of the same frequency in $c$. It is, for nearly every clustered neuron:
"""),
    code("""
with torch.no_grad():
    row_coef = (circuits["W_out·W_U"] @ Ff.T).AB.double()        # [d_mlp, p]: rows in Fourier
row_power = pool_frequencies(row_coef.square())[:, 1:]          # [d_mlp, p // 2]
writes_to = row_power.argmax(1) + 1
AGREE = float((writes_to[clustered] == neuron_freq[clustered]).double().mean())
print(f"clustered neurons whose W_logit row is mostly their own frequency: {AGREE:.1%}")"""),
    md(r"""
**Exercise 3.** Write `logit_map_shares(model, p)`: the share of $W_{logit} = W_{out} W_U$'s
squared (Frobenius) norm in each frequency of the *answer* axis, as `[p//2 + 1]` with frequency 0
(the constant) first. Build $W_{logit}$ as a `FactoredMatrix`, multiply by $F^\top$ on the right,
and pool.
"""),
    exercise("logit_map_shares", """
def logit_map_shares(model, p):
    # FactoredMatrix(model.W_out[0], model.W_U) @ F.T, then .AB; square, sum over neurons, pool
    raise NotImplementedError("exercise 3: return the [p // 2 + 1] shares")"""),
    code("""
from walkthrough_checks import check_logit_map_shares

check_logit_map_shares(logit_map_shares, model, task)"""),
    solution("logit_map_shares"),
    md(r"""
## Direct logit attribution and the logit lens

With no LayerNorm the residual stream at `=` is a plain sum,
$$ x_{\text{post}} = \underbrace{W_E[t] + W_{pos}}_{\text{embed, pos\_embed}}
   + \underbrace{\textstyle\sum_h z^h W_O^h}_{\text{attn\_out}}
   + \underbrace{\mathrm{ReLU}(x_{\text{mid}} W_{in})\, W_{out}}_{\text{mlp\_out}}, $$
and the logits are linear in it: $\ell_c = x_{\text{post}} \cdot W_U[:, c] + b_U[c]$. A
component's **direct logit attribution** is its dot product with the unembedding of the correct
answer; the attributions add up to the correct logit. TransformerLens's `cache.decompose_resid`
splits the stream into these components, `cache.logit_attrs` takes the dot products (applying the
final LayerNorm's scale, the identity here). The direct effect of the attention is small: the
heads move the waves of $a$ and $b$ to `=`, the MLP multiplies them and writes the answer.
"""),
    code("""
parts, part_names = cache.decompose_resid(layer=1, pos_slice=-1, return_labels=True)
with torch.no_grad():
    attrs = cache.logit_attrs(parts, tokens=labels, pos_slice=-1)      # [component, p²]
correct = final[torch.arange(len(labels)), labels]
DLA_ERROR = float((attrs.sum(0) + model.b_U[labels] - correct).abs().max())
DLA_SCALE = float(correct.abs().max())
print(f"Σ attributions − correct logit: max {DLA_ERROR:.2g} (logits up to {DLA_SCALE:.3g})")
px.bar(x=part_names, y=attrs.mean(1).tolist(), labels={"x": "component", "y": "mean attribution"},
       title="direct attribution to the correct logit (mean over the table)").show()"""),
    md(r"""
**Exercise 4.** Write `head_logit_attribution(cache, labels)`: each head's direct contribution to
the correct logit at `=`, `[n_heads, p²]`. `cache.stack_head_results` gives each head's output
$z^h W_O^h$ (no `use_attn_result` needed).
"""),
    exercise("head_logit_attribution", """
def head_logit_attribution(cache, labels):
    # cache.stack_head_results(layer=1, pos_slice=-1), then cache.logit_attrs(..., tokens=labels)
    raise NotImplementedError("exercise 4: return the [n_heads, p*p] attributions")"""),
    code("""
from walkthrough_checks import check_head_logit_attribution

check_head_logit_attribution(head_logit_attribution, model, task, cache)"""),
    solution("head_logit_attribution"),
    md(r"""
The same for neurons: neuron $n$ adds $\text{post}_n \cdot W_{logit}[n, c]$ to logit $c$.
TransformerLens's `stack_neuron_results` gives it as `[d_mlp, batch, d_model]` vectors (12,769 ×
512 × 128 floats on the whole table, so below on a slice of the batch, to check our product);
grouped by the neurons' frequency clusters, each cluster's neurons contribute a share of the
correct logit:
"""),
    code("""
with torch.no_grad():
    W_logit = circuits["W_out·W_U"].AB                           # [d_mlp, p]
    post = cache["post", 0][:, -1]                               # [p², d_mlp]
    neuron_attr = post * W_logit[:, labels].T                    # [p², d_mlp]
    head = cache.apply_slice_to_batch_dim(slice(0, 64))
    tl_attr = head.logit_attrs(head.stack_neuron_results(layer=1, pos_slice=-1),
                               tokens=labels[:64], pos_slice=-1)   # [d_mlp, 64]
NEURON_ERROR = float((tl_attr.T - neuron_attr[:64]).abs().max())
print("stack_neuron_results + logit_attrs vs post · W_logit: max difference", NEURON_ERROR)
by_cluster = {f"freq {f}": float(neuron_attr[:, clustered & (neuron_freq == f)].sum(1).mean())
              for f in sorted(set(neuron_freq[clustered].tolist()))}
by_cluster["unclustered"] = float(neuron_attr[:, ~clustered].sum(1).mean())
by_cluster"""),
    md(r"""
The **logit lens** reads the residual stream at each stage through the unembedding, as if the
rest of the model were skipped: after the embeddings (`0_pre`), after attention (`0_mid`) and at
the end (`final_post`). `cache.accumulated_resid` stacks the stages (with `apply_ln=True` it
applies the final LayerNorm, the identity here). Before the MLP the lens reads little of the
answer (a loss near chance, $\log p$); after it, everything:
"""),
    code("""
import math

import pandas as pd

stages, stage_names = cache.accumulated_resid(layer=1, pos_slice=-1, incl_mid=True,
                                              apply_ln=True, return_labels=True)
with torch.no_grad():
    lens_logits = stages @ model.W_U + model.b_U                 # [stage, p², p]
lens = pd.DataFrame({"stage": stage_names,
                     "loss": [float(F_nn.cross_entropy(x.double(), labels)) for x in lens_logits],
                     "accuracy": [float((x.argmax(-1) == labels).double().mean()) for x in lens_logits]})
LENS_FINAL_ERROR = float((lens_logits[-1] - final).abs().max())
print("chance: log p =", round(math.log(P), 3), "| last stage − model logits:", LENS_FINAL_ERROR)
lens"""),
    md(r"""
## circuitsvis

circuitsvis draws per-example views; the attention of one input, all heads (it works offline: the
notebook inlines its JavaScript when no network is reachable). For pictures over the whole table,
use the grids above.
"""),
    code("""
import circuitsvis as cv

i = 5 * P + 17                                            # the input (5, 17)
cv.attention.attention_heads(attention=cache["pattern", 0][i], tokens=model.to_str_tokens(tokens[i]),
                             attention_head_names=[f"L0H{h}" for h in range(H)])"""),
    md(r"""
## Where the one-line analyzers begin

The restricted loss of Nanda et al. (docs/mathematics.md §4.3) asks whether the key frequencies
alone carry the answer. Over the whole table, keep of each neuron's activation (at `=`) only its
mean and its components along the directions $\cos(\omega_f(a+b))$, $\sin(\omega_f(a+b))$ for the
key $f$; replace the part of the residual stream that bypasses the MLP (`resid_mid`) by its mean
over the table; read the logits through $W_{out}$ and $W_U$; take the cross-entropy on all
inputs. Low: the circuit alone solves the task.

**Exercise 5.** Write `restricted_loss_by_hand(cache, model, task, frequencies)`. The directions are
orthogonal over the table; `torch.linalg.qr` makes them orthonormal, and the projection of the
centred activations is then $Q Q^\top(\text{post} - \overline{\text{post}})$.
"""),
    exercise("restricted_loss_by_hand", """
def restricted_loss_by_hand(cache, model, task, frequencies):
    # a, b = task.inputs[:, 0], task.inputs[:, 1]; directions cos/sin(2π f (a + b) / p) as columns
    raise NotImplementedError("exercise 5: return the restricted loss (a float)")"""),
    code("""
from walkthrough_checks import check_restricted_loss

KEY = mm.key_frequencies(model, task)
restricted = mm.restricted_loss(model, task, KEY)       # the analyzer, for the check
check_restricted_loss(restricted_loss_by_hand, cache, model, task, restricted)"""),
    solution("restricted_loss_by_hand"),
    md(r"""
Now the analyzers of tutorial 1, checked against the tensors we built. `mm.fourier_spectrum`
computes the Fourier spectra of the weights and of the grids (its `sources` say which weights and
hooks each part was read from); `mm.key_frequencies` applies the rule of docs/mathematics.md §4.2
to the logits (a frequency is key when its share of the centred logits' variance over the table is
at least half the share it would have if all $p//2$ frequencies shared equally); and
`mm.restricted_loss` is exercise 5 (already compared there). The analyzers run the model again
(in float32, through sums of up to `d_mlp` terms), so they agree with the hand computation to
about $d_{mlp} \cdot 2^{-24}$, not bit for bit.
"""),
    code("""
TOL = D_MLP * 2.0**-24
spec = mm.fourier_spectrum(model, task)
embed_power = pool_frequencies((F @ W_E.detach().double()).square().sum(1))
attention_grids = einops.rearrange(pattern[..., :2], "(a b) h k -> (h k) a b", a=P)
by_hand = {"embed": embed_power / embed_power.sum(),
           "W_L": logit_map_shares(model, P),
           "neurons": shares,
           "attention": frequency_shares(attention_grids)}
analyzer = {"embed": spec.weights["embed"], "W_L": spec.weights["W_L"],
            "neurons": spec.grid["neurons"], "attention": spec.grid["attention"]}
AGREEMENT = {}
for name in by_hand:
    AGREEMENT[name] = float((by_hand[name].detach() - analyzer[name]).abs().max())
    print(f"{name:9s} read from {spec.sources[name]:27s} max |by hand − analyzer| = "
          f"{AGREEMENT[name]:.1e}")
    assert AGREEMENT[name] <= TOL, name

# key frequencies: the variance-weighted block shares of the centred logits
centred = final.double() - final.double().mean(1, keepdim=True)    # softmax ignores a constant
logit_grids = einops.rearrange(centred, "(a b) c -> c a b", a=P)
variance = logit_grids.flatten(1).var(1)
logit_shares = variance @ frequency_shares(logit_grids) / variance.sum()
KEY_BY_HAND = [f + 1 for f, s in enumerate(logit_shares.tolist()) if s >= 0.5 / (P // 2)]
print("key frequencies by hand:", KEY_BY_HAND, "| mm.key_frequencies:", KEY)
assert KEY_BY_HAND == KEY
restricted.to_dataframe()           # exercise 5 checked its restricted loss against yours"""),
    md(r"""
## The explanation, from the bridge

`model.to_bridge()` is TransformerLens 4's own `TransformerBridge` with these weights, and the
analyzers take it as they take the model. `mm.explain` (tutorial 2) turns what they find into a
runnable network of the same shape; given the bridge, it explains the bridge's native twin
(`mm.HookedOneLayerTransformer.from_bridge`, the exact inverse of `to_bridge`) and hands the
explanation back as a bridge, which runs and hooks like any TransformerLens model
(`mm.analysis.fidelity(expl)` scores it, as in tutorial 2).
"""),
    code("""
from transformer_lens import TransformerBridge

bridge = model.to_bridge()
expl = mm.explain(bridge, task)                    # labels read from the native twin
print(expl.summary())
with torch.no_grad():
    EXPL_LOSS = float(expl.model(tokens, return_type="loss", labels=labels))
    EXPL_ACCURACY = float((expl.model(tokens)[:, -1].argmax(1) == labels).double().mean())
print(f"the explanation is a TransformerBridge: {isinstance(expl.model, TransformerBridge)}; "
      f"loss {EXPL_LOSS:.3g}, accuracy {EXPL_ACCURACY:.4f} on every input")
back = mm.HookedOneLayerTransformer.from_bridge(bridge)
assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())"""),
    md(r"""
From here on, the one-line analyzers do the bookkeeping: `mm.neuron_clusters` (exercise 2's
clusters, with phases), `mm.logit_similarity`, `mm.progress_measures` over checkpoints (tutorial
1), `mm.compare_to_theory` (tutorial 2), and `mm.viz.write_report` for an HTML report. Every result
says what it read (`spec.sources`, `restricted.source`, in their `to_dataframe()` too), so you can
always go back to the tensors, as we did here. Tutorial 5 goes on with hooks: ablations and
`transformer_lens.patching`.
"""),
]

POPULATIONS = [
    md(r"""
# 7. Populations of seeds: universality and the max-margin contradiction

The papers' claims are about **populations**. Chughtai et al. found that which irreps an $S_5$ MLP
learns changes from seed to seed, yet sign and standard are key in 49 of their 50 seeds; Nanda
et al.'s key frequencies differ between seeds; and Morwani et al.'s Theorem 9 says that the
max-margin network uses *every* non-trivial irrep, with budget shares $\propto d^{2.5}$
(docs/mathematics.md §1.5). Whether trained networks agree with the theory is a question about
counts over seeds, which this notebook computes.

`mm.study` trains N seeds of one setting until each has grokked stably and cleaned up, resumes
after any kill, and keeps one summary row per seed (docs/mathematics.md §4.4 defines every
column). The zoo ships the rows of four populations, trained with the papers' recipes; we read
them first, recompute what the views count from the rows by hand, and then run a small study.
"""),
    code(SETUP),
    md(r"""
## A shipped population: 100 seeds of $S_4$

Chughtai et al.'s MLP (separate operand embeddings, 128 ReLU neurons) on $S_4$ composition with
70% of the pairs for training, seeds 0–99. Each row is one seed: its split and initialisation,
when it memorized and grokked, its final losses, and per irrep its **logit similarity** (the
cosine of the centred logits with that irrep's character; its square is the share of the
logits' variance the character explains) and its share of the logit spectrum.
"""),
    code("""
import pandas as pd

from mi_margin import groups
from mi_margin.studies.keys import default_rule, key_labels
from mi_margin.studies.views import grokking_distribution, key_count_distribution, label_frequency

print("shipped populations:", mm.zoo.populations.names())
s4 = mm.zoo.population("chughtai_S4_mlp")
print(len(s4), "seeds;", int(s4.grokked.sum()), "grokked stably;",
      int((s4.test_acc >= 0.99).sum()), "end with test accuracy >= 0.99")
s4[["seed", "step", "memorized", "stable", "test_acc", "n_delta", "mean_purity", "cpu_s"]].head()"""),
    md(r"""
An irrep is **key** in a seed when its logit similarity exceeds a threshold. Chughtai et al. used
0.005 for $S_5$; on a smaller group a random function already has similarity of order
$|G|^{-(k+1)/2}$ with each irrep, so the package raises the threshold to
$\max(0.005,\ 4|G|^{-(k+1)/2})$ ($k = 2$ operands). Below, the key irreps of every seed that
generalized, counted by hand, beside the view `label_frequency` and Theorem 9's budget share
computed from the irreps' dimensions:
"""),
    code("""
G = groups.symmetric(4)
dims = {rho.name: rho.dim for rho in G.irreps() if rho.name != "trivial"}   # the trivial irrep
threshold = max(0.005, 4 * G.order ** (-3 / 2))                           # is constant: no label
generalized = s4[s4.test_acc >= 0.99]
by_hand = {name: 0 for name in dims}
for _, row in generalized.iterrows():
    similarity = json.loads(row.similarity)
    for name, value in similarity.items():
        by_hand[name] += value > threshold
print(f"threshold {threshold:.4f} (the view's rule: {default_rule(s4.iloc[0])})")

weight = {name: d ** 2.5 for name, d in dims.items()}
theorem9 = {name: w / sum(weight.values()) for name, w in weight.items()}

lf = label_frequency(s4)
view = lf.to_dataframe().set_index("label")
pd.DataFrame({"dim": dims, "key (by hand)": by_hand, "key (view)": view.seeds_key,
              "Thm 9 share (by hand)": theorem9, "Thm 9 share (view)": view.theory_share})"""),
    code("""
lf.plot().show()"""),
    md(r"""
**The contradiction.** Compare like with like. Theorem 9's max-margin network has *every*
irrep key (`theory_key`): sign, key in 83 of the 85 seeds that generalized, agrees with it, and
standard_sign, key in only 64, does not. How much of the logits each irrep holds departs further
(left panel above: fractions of seeds; right panel: shares of the logit spectrum). The max-margin
network's logits, measured on its certificate as the seeds' are, hold 0.043 in sign and 0.391 in
each 3-dimensional irrep; the seeds hold on average 0.207 in sign and 0.068 in standard_sign. A
cross-entropy network keeps irreps in proportions of its own. (The theorem is about x² networks;
for Chughtai et al.'s ReLU MLP the max-margin columns are a reference, not a prediction.)
"""),
    code("""
view[["fraction", "theory_key", "logit_share", "theory_logit_share"]].round(3)"""),
    md(r"""
Pooled by dimension (the form in which a paper that names irreps differently can be compared):
"""),
    code("""
pd.DataFrame(lf.by_dim)"""),
    md(r"""
## When the seeds grok

Grokking is a delay: the training set is memorized within a few hundred steps, test accuracy
rises thousands of steps later. `stable` is the first evaluation from which test accuracy stays
at or above 0.99 for 5 evaluations in a row; seeds that never got there are counted, not
dropped. (In the table, seed 75 crossed 0.99 at step 14,700 and stayed there, but its budget of
15,000 steps ended after 4 of the 5 evaluations `stable` needs, so `first_crossing` counts 85
seeds and `stable` 84: their means are over different seeds. Seeds that never grokked are not in
these quantiles at all, so they are lower than the population's.)
"""),
    code("""
gd = grokking_distribution(s4)
print(gd)
gd.plot().show()
s4[["memorized", "first_crossing", "stable", "delay"]].describe().round(0)"""),
    md(r"""
## How many labels carry the logits: $N_\delta$

$N_\delta$ is the number of labels holding a $1 - \delta$ share of the logit spectrum
($\delta = 0.05$): sort the shares, count until they reach 0.95. It needs no threshold on
similarities, so it is the count to compare across groups and primes. By hand for the first seed,
then the distribution:
"""),
    code("""
shares = sorted(json.loads(s4.iloc[0].logit_share).values(), reverse=True)
total, n_delta = 0.0, 0
while total < 0.95 * sum(shares):
    total += shares[n_delta]
    n_delta += 1
print("seed 0: N_δ by hand", n_delta, "| in its row", int(s4.iloc[0].n_delta))
kc = key_count_distribution(s4)
kc.plot().show()
kc.to_dataframe()"""),
    md(r"""
## The other populations

The same views on the other shipped populations: $A_5$ (20 seeds), the $S_5$ MLP (Chughtai et
al.'s mainline, beside their counts over 50 seeds; ours are still being trained, the table says
how many are in) and Nanda et al.'s $p = 113$ transformer (10 seeds), whose labels are
frequencies. The paper names $S_5$'s two 5-dimensional irreps "5d_a" and "5d_b", so those are
compared by dimension (the second table):
"""),
    code("""
from mi_margin.zoo.recipes import POPULATIONS

OTHER = {}
for name in ("chughtai_A5_mlp", "chughtai_S5_mlp", "nanda_p113_transformer"):
    table, pop = mm.zoo.population(name), POPULATIONS[name]
    keys = [key_labels(row) for _, row in table[table.test_acc >= 0.99].iterrows()]
    OTHER[name] = {"seeds": len(table), "grokked": int(table.grokked.sum()),
                   "keys": [sorted(k) for k in keys]}
    print(f"{name}: {len(table)} seeds, {int(table.grokked.sum())} grokked stably. {pop.paper}")
    theirs = label_frequency(table, paper=pop.paper_key, paper_seeds=pop.paper_seeds)
    frame = theirs.to_dataframe()
    display(frame[frame.seeds_key > 0])            # labels key in at least one seed
    if pop.paper_key:
        display(pd.DataFrame(theirs.by_dim))"""),
    md(r"""
The rows also hold the **normalized margin ratio** (trained margin over the theory's $\gamma^*$)
where the theory defines one. For these networks it does not, and each row says why: the
embed-style MLP shares its embeddings across neurons and the transformer is not homogeneous in
per-neuron parameters, so $h(\theta) / \sum_i \|\omega_i\|^\nu$ has no meaning for them
(tutorial 2 computes the ratio for the theory's own networks).
"""),
    code("""
s4.margin_ratio_reason.iloc[0]"""),
    md(r"""
## One seed's weights

The rows are computed from each seed's final weights, which the repository keeps in
`populations/NAME/seed_S/` (they are not installed with the package). From a clone, read a seed
back and recompute its row's key irreps from the weights:
"""),
    code("""
from pathlib import Path

from mi_margin.studies.seeds import read_seed

SEED_DIR = Path("..") / "populations" / "chughtai_S4_mlp" / "seed_0"
SEED_CHECK = {"available": SEED_DIR.is_dir()}
if SEED_CHECK["available"]:
    model, task, history, meta = read_seed(SEED_DIR)
    sim = mm.logit_similarity(model, task)
    recomputed = {str(lab): float(v) for lab, v in zip(sim.labels, sim.similarity)}
    stored = json.loads(s4.iloc[0].similarity)
    SEED_CHECK.update(
        row_keys=key_labels(s4.iloc[0]),
        recomputed_keys=[lab for lab, v in recomputed.items() if v > threshold],
        max_similarity_diff=max(abs(recomputed[k] - stored[k]) for k in stored),
        step=int(meta["step"]))
    print(SEED_CHECK)
else:
    print("NOTE: the seeds' weights are in the repository's populations/ folder, not installed "
          "with the package; clone the repository to read them.")"""),
    md(r"""
## Your own study

`mm.study(source, seeds, out)` takes a zoo population's name or any
`seed -> (model, task, TrainConfig)` function. Each seed trains in chunks of 2,000 steps until
it has grokked stably and trained 25% longer (the cleanup; `mm.studies.StopRule` sets both),
or until the recipe's budget. Rows stream into `OUT/rows.jsonl` as seeds finish; calling again
with more seeds trains only the new ones, and a killed study resumes where it stopped. Here
three new seeds of the $S_4$ population (about 30–45 s of CPU each; in fast mode a
300-step version, which does not grok: such seeds are counted as not grokked), then one more:
"""),
    code("""
import tempfile

from mi_margin.studies.study import recipe_of

s4_recipe = recipe_of("chughtai_S4_mlp")


def short_s4(seed):
    model, task, config = s4_recipe(seed)
    return model, task, config.replace(steps=300)


source = short_s4 if FAST else "chughtai_S4_mlp"
out = Path(tempfile.mkdtemp()) / "s4_study"
st = mm.study(source, seeds=range(100, 103), out=out, progress=not FAST)
print(st.table[["seed", "step", "grokked", "stable", "test_acc", "n_delta"]])

new_rows = []
st = mm.study(source, seeds=range(100, 104), out=out, progress=False, on_row=new_rows.append)
print("trained again:", [r["seed"] for r in new_rows], "| rows now:", st.table.seed.tolist())"""),
    md(r"""
The same from a shell, with an HTML report of the three views (it opens offline):

    mi-margin study chughtai_S4_mlp --seeds 100-103 --out studies/s4 --report studies/s4/report.html

With `--address auto` (or `mm.study(..., address="auto")`) the seeds run as Ray tasks on a
cluster started with `ray start --head` and `ray start --address HEAD:6379` on each node; the
study folder must be on a filesystem every node sees. A node that dies mid-study loses nothing:
its seeds are retried and resume from their run folders.
"""),
    code("""
from mi_margin.viz.population import write_study_report

report = write_study_report(st, out / "report.html")
print(f"wrote {report.name} ({report.stat().st_size:,} bytes; plotly.js inlined, opens offline)")"""),
    code("""
print("RESULT " + json.dumps({
    "s4_seeds": len(s4), "s4_generalized": len(generalized), "threshold": threshold,
    "key_by_hand": {k: int(v) for k, v in by_hand.items()},
    "key_view": {k: int(v) for k, v in view.seeds_key.items()},
    "theorem9_by_hand": theorem9,
    "theorem9_view": {k: float(v) for k, v in view.theory_share.dropna().items()},
    "n_delta_by_hand": n_delta, "n_delta_row": int(s4.iloc[0].n_delta),
    "other": OTHER, "seed_check": SEED_CHECK,
    "study_seeds": st.table.seed.tolist(), "retrained": [r["seed"] for r in new_rows],
    "study_grokked": st.table.grokked.tolist(), "study_steps": st.table.step.tolist(),
    "fast": FAST}))"""),
]

NOTEBOOKS = {
    "01_grokking_modular_addition.ipynb": GROKKING,
    "02_margins_and_theory.ipynb": MARGINS,
    "03_group_composition.ipynb": GROUPS,
    "04_k_input_and_parity.ipynb": K_INPUT,
    "05_ablation_studies.ipynb": ABLATIONS,
    "06_transformerlens_walkthrough.ipynb": WALKTHROUGH,
    "07_populations_of_seeds.ipynb": POPULATIONS,
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
