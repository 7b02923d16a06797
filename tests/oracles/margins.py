"""Brute-force margins: the oracle every certificate's bound is checked against."""

import torch

from mi_margin.analysis.explain import build, operand_tables


def gaps(logits, labels):
    """ℓ_y − ℓ_c per input and class, float64 [N, V] (0 at c = y)."""
    logits = logits.double()
    return logits[torch.arange(len(labels)), labels][:, None] - logits


def margins_of(logits, labels):
    """min_{c≠y} (ℓ_y − ℓ_c) per input, float64 [N]."""
    gap = gaps(logits, labels)
    gap[torch.arange(len(labels)), labels] = float("inf")
    return gap.amin(1)


def true_margins(model, task):
    """min_{c≠y} (logit_y − logit_c) per input, brute force in float64."""
    model64 = build(model, operand_tables(model), model.W_out.detach().double())
    x = task.inputs.double() if task.inputs.is_floating_point() else task.inputs
    with torch.no_grad():
        logits = model64.double()(x)
    return margins_of(logits, task.labels)
