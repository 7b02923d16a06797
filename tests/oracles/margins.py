"""Brute-force margins: the oracle every certificate's bound is checked against."""

import torch

from mi_margin.analysis.explain import build, operand_tables


def true_margins(model, task):
    """min_{c≠y} (logit_y − logit_c) per input, brute force in float64."""
    model64 = build(model, operand_tables(model), model.W_out.detach().double())
    x = task.inputs.double() if task.inputs.is_floating_point() else task.inputs
    with torch.no_grad():
        logits = model64.double()(x)
    rows = torch.arange(len(x))
    gap = logits[rows, task.labels][:, None] - logits
    gap[rows, task.labels] = float("inf")
    return gap.amin(1)
