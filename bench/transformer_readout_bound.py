"""Measurement: why a weight-only bound cannot certify a one-layer transformer from its explanation.

docs/mathematics.md §6.4 (the paragraph "Reading the logits through the explanation and bounding
the rest does not work either") quotes these numbers for ``nanda_p113_transformer``. The logits at
the last position are ℓ = r W_U + h W_out W_U + const (no LayerNorm). Grant a certificate the
model's own residual r and hidden activations h exactly (what brute force computes), read them out
through the explanation (``mm.explain``): ℓ̂ = r W_U + h Ŵ_out Ŵ_U + const, and bound the left-out
readout h·R, R = W_out W_U − Ŵ_out Ŵ_U, without computing it:

- Cauchy–Schwarz: |h(x)·(R_y − R_c)| ≤ ‖h(x)‖ (‖R_y‖ + ‖R_c‖);
- elementwise: |h(x)·(R_y − R_c)| ≤ Σ_i |h_i(x)| |R_iy − R_ic|.

It prints the fraction of inputs each bound certifies, the median of ‖h(x)‖, and the model's
median and minimum margin (every logit in float64 from the model's own r and h). A third split
keeps every neuron and drops only the non-key labels of the logit map: ℓ̂ = r W_U + h (W_out W_U) P_K
+ const, P_K the projector onto {trivial} ∪ K over the classes, with the rest h (W_out W_U)(I − P_K)
bounded elementwise.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/transformer_readout_bound.py [--entry NAME]``
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

import mi_margin as mm
from mi_margin.analysis.core import POST, RESID_MID, subject
from mi_margin.analysis.explain_transformer import _projector


def margins(logits: Tensor, labels: Tensor, error: Tensor | None = None) -> Tensor:
    """min over c ≠ y of ℓ_y − ℓ_c (minus ``error[x, c]``, the bound on that gap's error)."""
    rows = torch.arange(len(labels))
    gap = logits[rows, labels][:, None] - logits
    if error is not None:
        gap = gap - error
    gap[rows, labels] = float("inf")
    return gap.amin(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entry", default="nanda_p113_transformer")
    name = parser.parse_args().entry
    torch.set_num_threads(1)
    run = mm.zoo.load(name)
    model, task = run.model, run.task
    expl = mm.explain(model, task)
    acts = subject(model, task).run([RESID_MID, POST])[1]
    r, h = acts[RESID_MID].double(), acts[POST].double()
    W_U, W_out = model.W_U.detach().double(), model.W_out[0].detach().double()
    R = W_out @ W_U - expl.model.W_out[0].detach().double() @ expl.model.W_U.detach().double()
    const = model.b_out[0].detach().double() @ W_U + model.b_U.detach().double()
    labels = task.labels
    logits = r @ W_U + h @ W_out @ W_U + const
    true = margins(logits, labels)
    explained = logits - h @ R
    norms = R.norm(dim=0)
    cauchy = h.norm(dim=1, keepdim=True) * (norms[labels][:, None] + norms[None, :])
    elementwise = torch.empty_like(logits)
    for y in labels.unique():                          # one product per answer y
        sel = labels == y
        elementwise[sel] = h[sel].abs() @ (R[:, y, None] - R).abs()
    print(f"{name}: {len(labels)} inputs; model margin median {float(true.median()):.3g}, "
          f"min {float(true.min()):.3g}; ‖h(x)‖ median {float(h.norm(dim=1).median()):.3g}")
    for what, error in [("Cauchy–Schwarz", cauchy), ("elementwise", elementwise)]:
        certified = float((margins(explained, labels, error) > 0).double().mean())
        print(f"  {what} bound on the left-out readout: certifies {certified:.2%} of the inputs")
    M = W_out @ W_U
    P = _projector(subject(model, task).basis, list(expl.key))
    rest = M - M @ P
    for y in labels.unique():
        sel = labels == y
        elementwise[sel] = h[sel].abs() @ (rest[:, y, None] - rest).abs()
    certified = float((margins(logits - h @ rest, labels, elementwise) > 0).double().mean())
    print(f"  every neuron read through the key labels, the rest elementwise: certifies "
          f"{certified:.2%} of the inputs")


if __name__ == "__main__":
    main()
