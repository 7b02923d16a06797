"""A sound lower bound on an MLP's accuracy over every input, from its explanation (and on a
one-layer transformer's, from exact logits and a rounding allowance:
:mod:`~mi_margin.analysis.certify_transformer`).

In the spirit of compact proofs from mechanistic explanations (Gross et al. 2024; Wu et al.,
ICLR 2025): the explanation's hidden layer (:func:`~mi_margin.analysis.explain.explain`) is run
on every input and read out by the model's own output layer, and what the explanation leaves out
of the input side is bounded from the weights, never by running the model (docs/mathematics.md
§6.4). Pre-activations are additive over operands, pre(x) = Σ_j T[j, x_j] + b_in, so neuron i's
pre-activation moves by at most δ_i(x) = Σ_j |T − T̂|[j, x_j, i] ≤ ε_i = Σ_j max_v |T − T̂|[j, v, i];
the activation is Lipschitz on the range the weights allow (L_i), so |h_i − ĥ_i| ≤ L_i ε_i, and

    |logit_c(x) − (ĥ(x) W_out + b_out)_c| ≤ E_c = Σ_i L_i ε_i |W_out[i, c]|

An input is certified when its margin through ĥ exceeds E_y + E_c (plus a floating-point
allowance) for every c ≠ y (``bound="uniform"``); ``"per_input"`` bounds h_i − ĥ_i by the
activation's exact range on [p̂re_i − δ_i(x), p̂re_i + δ_i(x)] and pairs it with each
W_out[i, y] − W_out[i, c]. The certified fraction never exceeds the accuracy. The ``harmonic``
bound replaces the explanation's run over every input by its closed form
(:mod:`mi_margin.analysis.closed_form`), reading out through the explanation's output map Ŵ_out,
so that nothing in it is computed per input. ``"low_rank"`` reads no explanation: the readout
through its leading singular directions, the rest bounded per input
(:mod:`mi_margin.analysis.certify_low_rank`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from mi_margin.analysis.certify_low_rank import by_cases, low_rank_margins
from mi_margin.analysis.certify_transformer import (
    GELU_ROUNDINGS,
    allowance_flops,
    check_range,
    transformer_flops,
    transformer_margins,
    underflow,
)
from mi_margin.analysis.closed_form import cyclic_margin, parity_margin
from mi_margin.analysis.closed_form_group import group_margin
from mi_margin.analysis.core import ROWS, subject
from mi_margin.analysis.explain import (
    Explanation,
    LabelSet,
    check_explanation,
    native,
    operand_tables,
    table_index,
    table_sum,
)
from mi_margin.analysis.results import AnalysisResult
from mi_margin.checks import check_bool, check_memory
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import GELU_LIPSCHITZ, activation
from mi_margin.models.mlp import HookedMLP
from mi_margin.models.transformer import HookedOneLayerTransformer
from mi_margin.tasks import GroupComposition, ModularAddition


@dataclass(frozen=True)
class Certificate(AnalysisResult):
    """A certified accuracy lower bound beside the brute-force accuracy, with both costs.

    Attributes:
        certified_accuracy: fraction of inputs certified correct (a lower bound on accuracy).
        accuracy: the model's accuracy on every input, by brute force (for comparison).
        min_certified_margin: min over inputs of the certified lower bound on the model's
            margin logit_y − max_{c≠y} logit_c (negative where nothing is certified).
        margin_bound: per input the certified lower bound on its margin [N] (task.inputs order).
        error: E_c per class [V] (a transformer: E[y, c] per answer and class [V, V], the
            floating-point allowance of the gap ℓ_y − ℓ_c). slack: ε_i per neuron [d_mlp] (a
            transformer: the bound on its hidden activations' rounding error).
        flops, brute_force_flops: the certificate's and brute force's operation counts.
    """

    _score = "value"

    certified_accuracy: float
    accuracy: float
    min_certified_margin: float
    margin_bound: Tensor = field(repr=False)
    error: Tensor = field(repr=False)
    slack: Tensor = field(repr=False)
    flops: int
    brute_force_flops: int

    def _table(self) -> pd.DataFrame:
        names = ["certified_accuracy", "accuracy", "min_certified_margin", "max_error",
                 "flops", "brute_force_flops"]
        values = [self.certified_accuracy, self.accuracy, self.min_certified_margin,
                  float(self.error.max()), self.flops, self.brute_force_flops]
        return pd.DataFrame({"quantity": names, "value": values})


def lipschitz(model: HookedMLP, bound: Tensor) -> Tensor:
    """Per-neuron Lipschitz constant of the activation on [−bound_i, bound_i], [d_mlp]."""
    name = model.cfg.act_fn
    if name == "relu":
        return torch.ones_like(bound)
    if name == "gelu":
        return torch.full_like(bound, GELU_LIPSCHITZ)
    d = model.cfg.degree
    return d * bound ** (d - 1)


def _left_out(model: HookedMLP, T: Tensor, T_hat: Tensor, b_in: Tensor
              ) -> tuple[Tensor, Tensor, Tensor]:
    """ε_i = Σ_j max_v |T − T̂|[j, v, i], the reach R_i of either network's pre-activations
    (Σ_j max_v of its tables, plus |b_in|), and the activation's Lipschitz constant L_i on
    [−R_i, R_i] (module docstring), each [d_mlp]."""
    eps = (T - T_hat).abs().amax(1).sum(0)
    reach = torch.maximum(T.abs().amax(1).sum(0), T_hat.abs().amax(1).sum(0)) + b_in.abs()
    return eps, reach, lipschitz(model, reach)


def _sup_activation(act: Any, reach: Tensor) -> Tensor:
    """sup |act| on [−R_i, R_i] per neuron (at an end: every activation here is largest in
    absolute value at one end of a symmetric interval)."""
    return torch.maximum(act(reach).abs(), act(-reach).abs())


def _brute_force_flops(model: HookedMLP, n_inputs: int) -> int:
    """Operations of running the model on every input: the effective tables (embed style),
    then per input k·d_mlp additions, d_mlp activations (degree − 1 products for x^d),
    2·d_mlp·V for the output layer and V for the argmax."""
    cfg, (k, n, m), V = model.cfg, operand_tables(model).shape, model.W_out.shape[1]
    table = 2 * k * n * cfg.d_embed * m if cfg.input_style == "embed" else 0
    act = max(1, (cfg.degree or 2) - 1)
    return table + n_inputs * (k * m + act * m + 2 * m * V + V)


BOUNDS = ("uniform", "per_input", "harmonic", "low_rank")


def _gamma(chain: int, dtype: torch.dtype) -> float:
    """Higham's γ_n = n·u/(1 − n·u), u the unit roundoff of ``dtype``."""
    u = torch.finfo(dtype).eps / 2
    return chain * u / (1 - chain * u)


def _input_side(model: HookedMLP, reach: Tensor) -> tuple[int, Tensor]:
    """(roundings, magnitude [d_mlp]) of the pre-activations as the model computes them.

    Index and ±1 inputs read a table: k + 1 additions of entries and the bias, of magnitude the
    reach. An embed-style model computes W_E[x]·W_in, either as one chain of k·d_embed products
    (its forward pass) or through the table W_E W_in formed in its dtype (the fast path, and the
    table the certificate reads, itself d_embed roundings away from the exact product): within
    (k + 1)·d_embed + k + 1 roundings of Σ_j max_v (|W_E| |W_in|)[j, v, i] + |b_in,i|, which is
    far above the table's own magnitude where a neuron's embeddings cancel.
    """
    k = operand_tables(model).shape[0]
    if model.cfg.input_style != "embed" or model.cfg.input_kind == "vector":
        return k + 1, reach
    absolute = torch.einsum("kve,kem->kvm", model.W_E.detach().double().abs(),
                            model.W_in.detach().double().abs())
    magnitude = absolute.amax(1).sum(0) + model.b_in.detach().double().abs()
    return (k + 1) * model.W_E.shape[-1] + k + 1, torch.maximum(reach, magnitude)


def _rounding(model: HookedMLP, L: Tensor, reach: Tensor, h: Tensor, eps: Tensor, W: Tensor,
              b_out: Tensor) -> Tensor:
    """Per class the rounding allowance of the model's own forward pass and of the
    certificate's float64 one (module docstring): γ_N in both unit roundoffs times the
    magnitudes of the chain, N = the input side's roundings (:func:`_input_side`) + d_mlp +
    degree + 1, plus 2N·η·((L + 1)·|W_out| + 1) for underflow (every operation may lose up to
    η, the smallest normal number; η for each pass). A model whose values may overflow its
    dtype is refused (:func:`_check_range`)."""
    chain, magnitude = _input_side(model, reach)
    dtype = model.W_out.dtype
    n = chain + W.shape[0] + (model.cfg.degree or 1) + 1
    gamma = _gamma(n, dtype) + _gamma(n, torch.float64)
    top = reach + gamma * magnitude       # the computed pre-activations lie within [−top, top]
    lip = torch.maximum(L, lipschitz(model, top))
    _check_range(model, top, magnitude, W, b_out)
    eta_both = underflow(torch.finfo(dtype).eps / 2) + underflow(torch.finfo(torch.float64).eps / 2)
    allowance = gamma * (((lip * magnitude + h + lip * eps) @ W.abs()) + b_out.abs()) \
        + 2 * n * eta_both * ((lip + 1) @ W.abs() + 1)
    if model.cfg.act_fn == "gelu":       # GELU's own rounding is a few u·|x|, not u·|GELU(x)|
        both = _gamma(GELU_ROUNDINGS, dtype) + _gamma(GELU_ROUNDINGS, torch.float64)
        allowance = allowance + (both * top) @ W.abs()
    return allowance


def _check_range(model: HookedMLP, top: Tensor, magnitude: Tensor, W: Tensor, b_out: Tensor
                 ) -> None:
    """Refuse a model whose pass may overflow its dtype, where no rounding bound holds: the
    pre-activations' partial sums reach at most ``magnitude``, the hidden activations sup |act|
    on [−top, top], the logits' partial sums that times |W_out| plus |b_out|."""
    hidden = _sup_activation(activation(model.cfg.act_fn, model.cfg.degree), top)
    largest = max(float(magnitude.max()), float(hidden.max()),
                  float((hidden @ W.abs() + b_out.abs()).max()))
    check_range(largest, model.W_out.dtype)


def certify(explanation: Explanation, bound: str = "uniform", compare: bool = True) -> Certificate:
    """A lower bound on the original model's accuracy over every input that is always sound.

    ``bound="uniform"``: one error E_c per class from the weights (module docstring); cheap, the
    explanation's hidden layer on every input read out by the model's output layer, plus
    O(k·n·d_mlp + d_mlp·V). ``bound="per_input"``: each input's own pre-activation shifts
    δ_i(x) = Σ_j |T − T̂|[j, x_j, i] give the exact range of h_i − ĥ_i (a ReLU neuron with
    p̂re_i(x) + δ_i(x) ≤ 0 is off in both networks), and each range is paired with
    W_out[i, y] − W_out[i, c] for every wrong class c; never looser than the uniform bound, about
    twice the cost of brute force. ``bound="harmonic"`` (x^d activations on modular addition, any
    k, and on sparse parity; x² on two-operand group composition, any finite group, through
    :mod:`~mi_margin.analysis.closed_form_group`): never runs anything per input. The idealized
    circuit is expanded once into characters (:mod:`~mi_margin.analysis.closed_form`): for
    modular addition the
    characters of a₁+…+a_k − c give every input's logit gap exactly per Δ = c − y, every other
    character is bounded by its coefficient; the rest is the uniform E_c, with the explanation's
    output map and sup |ĥ_i| bounded by the ℓ1 norm of neuron i's coefficients. One margin
    bound then holds for every input (so the certified accuracy is 1 or 0), at a cost that does
    not grow with the number of inputs (0.7% of brute force's operations on
    ``morwani_p71_quadratic``; on a group it grows with |G|² against brute force's |G|³, see
    bench/bench_certify.py); with
    ``mm.explain(..., source="weights")`` the labels too are read without running the model. See
    docs/mathematics.md §6.4. The floating-point allowance is Higham's γ_n = n·u/(1 − n·u) (u the
    unit roundoff of the model's dtype, n = k + d_mlp + degree + 2 the longest chain of roundings
    in one logit; for embed-style models (k + 1)·d_embed more, read against |W_E||W_in|) times
    the magnitudes that enter it, plus a term for underflow, so the bound also holds for the
    model as computed in float32, by its forward pass and its fast path (and the harmonic
    bound's own float64 arithmetic gets the same allowance); values that could overflow are
    refused, and so is arithmetic the allowance does not model: reduced-precision float32
    matmuls, and a process that flushes subnormal numbers to zero.

    A one-layer transformer (or its ``TransformerBridge``) is certified per input
    (:mod:`~mi_margin.analysis.certify_transformer`): every input's logits in float64 through the
    attention tables, less a floating-point allowance from the weights that holds in any summation
    order, so its cost is brute force's through the tables; reading the logits through the
    explanation and bounding the rest certifies at most a quarter of the Nanda model's inputs
    (docs/mathematics.md §6.4).

    ``bound="low_rank"`` (transformers and MLPs; it reads no labels): the logits are affine in
    the last position's [resid_mid, hidden activations] X, through M = [W_U; W_out W_U] (an MLP:
    W_out). M's leading singular directions carry the key labels, so every gap is read through
    rank k and the rest bounded by ‖X‖ ‖Res_k[:, y] − Res_k[:, c]‖ (Cauchy–Schwarz); inputs not
    certified at rank 8 go on to 16, 32, … up to M's full rank, where the bound is exact
    (:mod:`~mi_margin.analysis.certify_low_rank`). It certifies every input of the zoo's
    transformers at 0.39–0.56 of brute force's operations; its margin bound is the first rank's
    that certifies, so ``per_input`` gives the tighter margin.

    ``compare=False`` skips the brute-force accuracy reported beside (``accuracy`` is NaN), to
    time the certificate alone.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=7)
        >>> cert = mm.analysis.certify(mm.explain(mm.theory.certificate(task), task))
        >>> cert.certified_accuracy, cert.accuracy
        (1.0, 1.0)
        >>> task = mm.ModularAddition(p=5, k=3)
        >>> expl = mm.explain(mm.theory.certificate(task), task)
        >>> mm.analysis.certify(expl, "harmonic").certified_accuracy
        1.0
        >>> task = mm.GroupComposition("S4")
        >>> expl = mm.explain(mm.theory.certificate(task), task)
        >>> mm.analysis.certify(expl, "harmonic").certified_accuracy
        1.0
        >>> run = mm.zoo.load("zhong_p59_pizza_transformer")
        >>> mm.analysis.certify(mm.explain(run.model, run.task), "per_input").certified_accuracy
        1.0
    """
    check_explanation(explanation, "certify")
    if bound not in BOUNDS:
        raise MiMarginError(f"bound must be one of {BOUNDS}, got bound={bound!r}")
    check_bool("compare", compare)
    original = native(explanation.original)            # a bridge is converted once, here
    _check_arithmetic()
    if isinstance(original, HookedOneLayerTransformer):
        return _transformer(original, explanation.task, bound, compare)
    if not isinstance(explanation.original, HookedMLP):
        raise MiMarginError(
            f"certify covers one-hidden-layer MLPs (HookedMLP) and one-layer transformers "
            f"(HookedOneLayerTransformer or its TransformerBridge), got "
            f"{type(explanation.original).__name__}")
    if bound == "harmonic":
        return _harmonic(explanation, compare)
    if bound == "low_rank":
        return _low_rank(explanation.original, explanation.task, compare)
    model, task, expl = explanation.original, explanation.task, explanation.model
    T, T_hat = operand_tables(model), operand_tables(expl)
    W, b_out = model.W_out.detach().double(), model.b_out.detach().double()
    b_in = model.b_in.detach().double()
    k, n_vals, m = T.shape
    act = activation(model.cfg.act_fn, model.cfg.degree)
    eps, reach, L = _left_out(model, T, T_hat, b_in)
    h_bound = _sup_activation(act, reach)                                    # sup |ĥ_i|
    rounding = _rounding(model, L, reach, h_bound, eps, W, b_out)
    E = (L * eps) @ W.abs() + rounding
    live = torch.tensor([lab is not None for lab in explanation.label])
    still = act(b_in[~live]) @ W[~live] + b_out     # zeroed neurons: T̂ = 0, a constant readout
    inputs, labels = task.inputs, task.labels
    margins = torch.empty(len(inputs), dtype=torch.float64)
    for start in range(0, len(inputs), ROWS):
        rows = slice(start, min(start + ROWS, len(inputs)))
        pre_hat = _pre(expl, T_hat, inputs[rows])
        logits = act(pre_hat[:, live]) @ W[live] + still
        if bound == "uniform":
            margins[rows] = _margin(logits, labels[rows], E)
            continue
        shift = _pre(expl, (T - T_hat).abs(), inputs[rows], bias=False)
        lo, hi = _activation_range(model, pre_hat, shift)
        margins[rows] = _pair_margin(logits, labels[rows], lo, hi, W, rounding)
    accuracy = _brute_force_accuracy(model, task) if compare else math.nan
    flops = _certificate_flops(explanation, k, n_vals)
    if bound == "per_input":
        V = len(b_out)
        flops += len(inputs) * (k * m + 6 * m + 4 * m * V + 3 * V) + 2 * m * V * V
    return Certificate(certified_accuracy=float((margins > 0).double().mean()),
                       accuracy=accuracy, min_certified_margin=float(margins.min()),
                       margin_bound=margins, error=E,
                       slack=eps, flops=flops,
                       brute_force_flops=_brute_force_flops(model, len(inputs)))


def _reduced_precision() -> str | None:
    """The setting that makes this process's float32 matmuls keep fewer than float32's 24 bits
    (bf16 or tf32 products, on CPUs that honour it), or None."""
    mkldnn = torch.backends.mkldnn
    for where, owner in (("torch.backends", torch.backends), ("torch.backends.mkldnn", mkldnn),
                         ("torch.backends.mkldnn.matmul", getattr(mkldnn, "matmul", None))):
        value = str(getattr(owner, "fp32_precision", "none"))
        if value not in ("none", "ieee"):
            return f"{where}.fp32_precision = {value!r}"
    try:
        precision = torch.get_float32_matmul_precision()
    except RuntimeError:                 # the legacy getter refuses once the new API was used
        return None
    return None if precision == "highest" else f"float32 matmul precision {precision!r}"


def _flushes_subnormals() -> bool:
    """Whether this process flushes subnormal float32 results or inputs to zero (FTZ/DAZ, e.g.
    after ``torch.set_flush_denormal(True)``), elementwise or in a matmul."""
    tiny = torch.finfo(torch.float32).tiny
    small = torch.full((8, 8), tiny / 8)
    return any(bool((out == 0).any()) for out in (small * 1.5, torch.full((8,), tiny) * 0.25,
                                                  small @ torch.eye(8)))


def _check_arithmetic() -> None:
    """Refuse arithmetic the allowance does not model: reduced-precision float32 matmuls and
    flushing subnormal numbers to zero (docs/mathematics.md §6.4: IEEE float32 and float64 with
    gradual underflow, PyTorch's default)."""
    reduced = _reduced_precision()
    if reduced is not None:
        raise MiMarginError(
            f"float32 matmuls are set to reduced precision ({reduced}); the certificate's "
            f"rounding allowance assumes IEEE float32: torch.backends.mkldnn.matmul."
            f"fp32_precision = 'none' and torch.set_float32_matmul_precision('highest')")
    if _flushes_subnormals():
        raise MiMarginError(
            "this process flushes subnormal numbers to zero (torch.set_flush_denormal(True) or "
            "a library's FTZ/DAZ mode); the certificate's rounding allowance assumes gradual "
            "underflow, under which it holds: torch.set_flush_denormal(False)")


def _transformer(model: HookedOneLayerTransformer, task: Any, bound: str, compare: bool
                 ) -> Certificate:
    """The one-layer transformer's certificate: every input's logits in float64 through the
    attention tables, less a floating-point allowance from the weights
    (:mod:`~mi_margin.analysis.certify_transformer`), or through the low-rank readout
    (:mod:`~mi_margin.analysis.certify_low_rank`)."""
    if bound not in ("per_input", "low_rank"):
        raise MiMarginError(
            f"a one-layer transformer is certified per input (bound='per_input': its logits are "
            f"evaluated exactly through the attention tables) or through its low-rank readout "
            f"(bound='low_rank'); bound={bound!r} has no transformer form (docs/mathematics.md "
            f"§6.4)")
    N, n = len(task.inputs), task.tokens.shape[1]
    brute = transformer_flops(model, N, n)
    if bound == "low_rank":
        lr = low_rank_margins(model, task)
        return _certificate(lr.margins, lr.E, lr.hidden, lr.flops, brute, model, task, compare)
    margins, E, err_h = transformer_margins(model, task)
    return _certificate(margins, E, err_h, brute + allowance_flops(model, n), brute, model, task,
                        compare)


def _brute_force_accuracy(model: HookedMLP | HookedOneLayerTransformer, task: Any) -> float:
    """The model's accuracy on every input (beside the certificate, not part of its cost)."""
    logits = subject(model, task).run()[0]
    return float((logits.argmax(1) == task.labels).double().mean())


def _certificate(margins: Tensor, E: Tensor, slack: Tensor, flops: int, brute: int,
                 model: HookedMLP | HookedOneLayerTransformer, task: Any, compare: bool
                 ) -> Certificate:
    return Certificate(certified_accuracy=float((margins > 0).double().mean()),
                       accuracy=_brute_force_accuracy(model, task) if compare else math.nan,
                       min_certified_margin=float(margins.min()), margin_bound=margins,
                       error=E, slack=slack, flops=flops, brute_force_flops=brute)


def _low_rank(model: HookedMLP, task: Any, compare: bool) -> Certificate:
    """The low-rank readout's certificate of an MLP (its hidden activations exact through the
    input tables; :mod:`~mi_margin.analysis.certify_low_rank`)."""
    X, M, const, E, slack, flops = _mlp_readout(model, task)
    margins, _, cases = by_cases(X, M, const, E, task.labels)
    return _certificate(margins, E, slack, flops + cases,
                        _brute_force_flops(model, len(task.inputs)), model, task, compare)


def _mlp_readout(model: Any, task: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int]:
    """(X, M, const, E, slack, operations to form X and E) of an MLP: X = h exactly through the
    input tables, M = W_out, E_y + E_c from the rounding allowance of the model's own pass and
    this float64 one (as the uniform bound's with nothing left out), and the slack ε = 0
    (nothing is left out)."""
    T = operand_tables(model)
    W, b_out = model.W_out.detach().double(), model.b_out.detach().double()
    b_in = model.b_in.detach().double()
    act = activation(model.cfg.act_fn, model.cfg.degree)
    idx = table_index(model, task.inputs)
    check_memory(f"the low-rank certificate's hidden activations [{len(idx):,}, "
                 f"{T.shape[2]}] and gaps of {task!r}",
                 8 * len(idx) * (T.shape[2] + 6 * W.shape[1]))
    X = torch.cat([act(table_sum(T, idx[rows]) + b_in)
                   for rows in torch.arange(len(idx)).split(ROWS)])
    eps, reach, L = _left_out(model, T, T, b_in)                            # ε = 0
    per_class = _rounding(model, L, reach, _sup_activation(act, reach), eps, W, b_out)
    k, n, m = T.shape
    flops = len(idx) * (k * m + 2 * m) + 6 * k * n * m + 4 * m * len(b_out)
    return X, W, b_out, per_class[:, None] + per_class[None], eps, flops


def _harmonic(explanation: Explanation, compare: bool) -> Certificate:
    """One margin bound for every input at once, from the closed form of the idealized circuit
    (:mod:`~mi_margin.analysis.closed_form`) and the weight-only bound on the rest; its cost
    does not grow with the number of inputs (docs/mathematics.md §6.4)."""
    model, task, label = explanation.original, explanation.task, explanation.label
    kind = explanation.clusters.label_kind
    if any(isinstance(lab, LabelSet) for lab in label):
        raise MiMarginError(
            "the harmonic certificate expands neurons of one label each; this explanation keeps "
            "several per neuron (labels_per_neuron > 1; use bound='uniform' or 'per_input')")
    T, W = operand_tables(model), model.W_out.detach().double()
    b_in, b_out = model.b_in.detach().double(), model.b_out.detach().double()
    if kind == "frequency" and isinstance(task, ModularAddition):
        ex = cyclic_margin(T, W, b_in, label, model)
    elif kind == "subset":
        ex = parity_margin(T, W, b_in, b_out, label, tuple(task.support), model)
    elif kind == "irrep" and isinstance(task, GroupComposition):
        ex = group_margin(T, W, b_in, label, model, task.group)
    else:
        raise MiMarginError(
            f"the harmonic certificate covers modular addition, group composition and sparse "
            f"parity; {type(task).__name__} with {kind} labels is not expanded (use "
            f"bound='uniform' or 'per_input')")
    k, n_vals, m = T.shape
    eps, reach, L = _left_out(model, T, ex.tables, b_in)
    E = (L * eps) @ W.abs() + ex.h_bound @ (W - ex.W_out).abs()
    E = E + _rounding(model, L, reach, ex.h_bound, eps, W, b_out)
    own = _gamma(2 * ex.chain, torch.float64) * (ex.magnitude + 2 * float(E.max()))
    if kind == "subset":
        bound = float(ex.margin[0] - E[0] - E[1]) - own
    elif kind == "irrep":
        gap = ex.margin + b_out[:, None] - b_out[None] - E[:, None] - E[None]
        bound = float(gap.fill_diagonal_(math.inf).min()) - own
    else:
        V = len(E)
        y = torch.arange(V)
        step = torch.arange(1, V)
        c = (y[None] + step[:, None]) % V                                    # [Δ, y]
        worst = (b_out[y][None] - b_out[c] - E[y][None] - E[c]).amin(1)
        bound = float((ex.margin[1:] + worst).min()) - own
    N = len(task.inputs)
    flops = ex.flops + 6 * k * n_vals * m + 4 * m * len(E) + 6 * len(E) ** 2
    return Certificate(certified_accuracy=float(bound > 0),
                       accuracy=_brute_force_accuracy(model, task) if compare else math.nan,
                       min_certified_margin=bound,
                       margin_bound=torch.full((N,), bound, dtype=torch.float64), error=E,
                       slack=eps, flops=flops, brute_force_flops=_brute_force_flops(model, N))


def _pre(model: HookedMLP, tables: Tensor, inputs: Tensor, bias: bool = True) -> Tensor:
    """Σ_j tables[j, x_j] (+ b_in) per input, float64 [N, d_mlp]."""
    out = table_sum(tables, table_index(model, inputs))
    return out + model.b_in.detach().double() if bias else out


def _activation_range(model: HookedMLP, pre_hat: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """(lo, hi) with lo ≤ act(a) − act(b) ≤ hi for b = ``pre_hat`` and |a − b| ≤ ``shift``,
    elementwise (lo ≤ 0 ≤ hi).

    The exact range of the activation on [b − δ, b + δ]: ReLU and odd powers are increasing, so
    their ends; x² and even powers also reach 0 when the interval holds 0; GELU, whose minimum
    sits inside, ± its Lipschitz constant times δ.
    """
    name = model.cfg.act_fn
    if name == "gelu":
        return -GELU_LIPSCHITZ * shift, GELU_LIPSCHITZ * shift
    act = activation(name, model.cfg.degree)
    h, low, high = act(pre_hat), act(pre_hat - shift), act(pre_hat + shift)
    if (model.cfg.degree or 1) % 2 == 0:
        across = (pre_hat - shift <= 0) & (pre_hat + shift >= 0)
        low, high = torch.where(across, torch.zeros_like(h), torch.minimum(low, high)), \
            torch.maximum(low, high)
    return low - h, high - h


def _pair_margin(logits: Tensor, labels: Tensor, lo: Tensor, hi: Tensor, W: Tensor,
                 rounding: Tensor) -> Tensor:
    """min_{c≠y} of the margin's lower bound when h − ĥ lies in [lo, hi] per neuron:
    Σ_i min over the range of (h_i − ĥ_i)(W[i, y] − W[i, c]) = mid·a − rad·|a| with
    mid = (lo + hi)/2, rad = (hi − lo)/2, a = W[:, y] − W[:, c]; the |a| products are one matrix
    product per class y, over the inputs whose answer is y."""
    rows = torch.arange(len(labels))
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    shifted = logits + mid @ W
    gap = shifted[rows, labels][:, None] - shifted - rounding[labels][:, None] - rounding
    for y in labels.unique():
        sel = labels == y
        gap[sel] -= rad[sel] @ (W[:, y, None] - W).abs()
    gap[rows, labels] = math.inf
    return gap.amin(1)


def _margin(logits: Tensor, labels: Tensor, E: Tensor) -> Tensor:
    """min_{c≠y} (logit_y − logit_c − E_y − E_c) per row, E [V]."""
    rows = torch.arange(len(labels))
    gap = logits[rows, labels][:, None] - logits - E[labels][:, None] - E
    gap[rows, labels] = math.inf
    return gap.amin(1)


def _certificate_flops(explanation: Explanation, k: int, n_vals: int) -> int:
    """Operations of :func:`certify` without its brute-force comparison: the explanation's
    projections (2n² per map of a live neuron), the bounds ε, reach and E (4 per table entry and
    per output weight), the explanation on every input over its live neurons only, and the
    margin check (3 per logit)."""
    model, N = explanation.original, len(explanation.task.inputs)
    m, V = model.W_out.shape
    n = model.W_out.shape[1] if explanation.clusters.label_kind != "subset" else 0
    live = sum(lab is not None for lab in explanation.label)
    act = max(1, (model.cfg.degree or 2) - 1)
    build = live * (k + 1) * 2 * n * n
    bounds = 4 * k * n_vals * m + 4 * m * V
    run = N * (k * live + act * live + 2 * live * V) + 3 * N * V
    return build + bounds + run
