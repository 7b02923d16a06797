"""Average gradient outer product (AGOP) and the pre-activation tangent kernel, via ``torch.func``.

Mallinar et al. 2024 Def. 2.1 (docs/mathematics.md §5.2): ``G(f) = (1/n) Σ_x J(x)^T J(x)`` with J(x) the
Jacobian [C, d] of all C logits w.r.t. the layer input x (summing over classes). Beaglehole et al.
2024 (§5.1): with pre-activation h = W x + b, the pre-activation tangent kernel is
``K = (1/n) Σ_x Σ_c ∂f_c/∂h ∂f_c/∂h^T`` [d_mlp, d_mlp] and ``G = W^T K W`` exactly, because
∂f/∂x = W^T ∂f/∂h. Beaglehole sums over examples; both matrices here are means over the n chosen
inputs (Mallinar's normalisation), which changes no correlation.

Two methods give the same matrices: ``"jacrev"`` (default) differentiates the logits with
``torch.func.vmap(torch.func.jacrev(...))`` in memory-bounded chunks and works for any layer
function; ``"factored"`` uses that the activation is elementwise and the head linear, so
∂f_c/∂h_j = act'(h_j) H[j, c] and ``K = (H H^T) ⊙ (1/n) Σ_x act'(h) act'(h)^T`` (act' from
``torch.func.jvp``), G = W^T K W: no per-class Jacobians, far faster for wide layers.

The logits are written as an explicit function of a *continuous* layer input so that gradients
exist (float64 copies of the weights; the model is not modified):

- :class:`HookedMLP`: x ∈ R^{k·d_vocab} is the concatenation of the k one-hot operands (the ±1
  vector for sparse parity), ``f(x) = act(W x + b_in) W_out + b_out``; at one-hot x this is the
  model's own forward.
- :class:`HookedOneLayerTransformer`: x ∈ R^{d_model} is ``resid_mid`` at the last position (the
  MLP input, taken from a float64 forward pass), and f is the MLP's contribution to the logits,
  ``f(x) = (act(x W_in + b_in) W_out + b_out) W_U``. The residual path x W_U around the MLP is left
  out: it does not pass through W_in, and keeping it would break ``G = W^T K W``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from mi_margin.analysis.feature_matrix import FeatureMatrix
from mi_margin.analysis.nfm import axis_labels, check_layer, layer_weight
from mi_margin.errors import MiMarginError
from mi_margin.models.activations import activation
from mi_margin.models.compat import check_fits, model_kind
from mi_margin.models.protocol import HookedModel
from mi_margin.models.transformer import native
from mi_margin.tasks import Task
from mi_margin.tasks.base import subset_indices

WRT = ("input", "preactivation")
METHODS = ("jacrev", "factored")
#: Bytes of Jacobians held at once; p = 113 (k = 2, 113 classes, 226 inputs) needs ~200 kB/example.
JACOBIAN_BUDGET = 2**27


@dataclass(frozen=True)
class LayerFunction:
    """The logits as a function of the layer input: ``f(x) = act(x W^T + b) @ head_W + head_b``.

    Attributes:
        weight: W [d_mlp, d_in]; bias: b [d_mlp]; act: the elementwise activation;
        head_weight [d_mlp, C] and head_bias [C]: the (linear) map from activations to logits.
    """

    weight: Float[Tensor, "d_mlp d_in"]
    bias: Float[Tensor, " d_mlp"]
    act: Callable[[Tensor], Tensor]
    head_weight: Float[Tensor, "d_mlp C"]
    head_bias: Float[Tensor, " C"]

    def from_preactivation(self, h: Tensor) -> Tensor:
        """Logits from the pre-activation h (where Beaglehole's perturbation is added)."""
        return self.act(h) @ self.head_weight + self.head_bias

    def __call__(self, x: Tensor) -> Tensor:
        """Logits from the layer input x."""
        return self.from_preactivation(x @ self.weight.T + self.bias)


def layer_function(model: HookedModel, layer: int = 0) -> LayerFunction:
    """The model's logits as a function of layer ``layer``'s input (see the module docstring).

    Example:
        >>> import mi_margin as mm, torch
        >>> task = mm.ModularAddition(p=5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, dtype="float64"))
        >>> x = torch.nn.functional.one_hot(task.inputs, 5).reshape(25, 10).double()
        >>> torch.allclose(layer_function(mlp)(x), mlp(task.inputs))
        True
    """
    model = native(model)
    check_layer(model, layer)
    cfg, mlp = model.cfg, model.blocks[0].mlp
    with torch.no_grad():
        head_w, head_b = mlp.W_out.detach().double(), mlp.b_out.detach().double()
        if model_kind(model) == "transformer":
            W_U = model.W_U.detach().double()
            head_w, head_b = head_w @ W_U, head_b @ W_U
        return LayerFunction(layer_weight(model, layer), mlp.b_in.detach().double(),
                             activation(cfg.act_fn, cfg.degree), head_w, head_b)




def layer_inputs(model: HookedModel, task: Task, idx: Tensor, chunk: int = 4096
                 ) -> Float[Tensor, "n d_in"]:
    """The continuous layer inputs x of the examples ``idx`` (float64), see the module docstring."""
    model = native(model)
    cfg = model.cfg
    if model_kind(model) == "mlp":
        if cfg.input_kind == "vector":
            return task.inputs[idx].double()
        return F.one_hot(task.inputs[idx].long(), cfg.d_vocab).double().flatten(1)
    model64 = copy.deepcopy(model).double()
    captured: list[Tensor] = []

    def grab(resid: Tensor, hook: Any) -> None:
        captured.append(resid[:, -1].detach())

    with torch.no_grad():
        for part in task.tokens[idx].split(chunk):
            model64.run_with_hooks(part, final_pos_only=True,
                                   fwd_hooks=[("blocks.0.hook_resid_mid", grab)])
    return torch.cat(captured)


def mean_gradient_outer_product(fn: Callable[[Tensor], Tensor], points: Float[Tensor, "n d"],
                                n_out: int, chunk: int | None = None) -> Float[Tensor, "d d"]:
    """``(1/n) Σ_x J(x)^T J(x)`` with J(x) = ∂fn(x)/∂x [n_out, d], by ``vmap(jacrev(fn))``.

    Points are processed in chunks sized so that the chunk's Jacobians take about
    :data:`JACOBIAN_BUDGET` bytes (or ``chunk`` points at a time when given).

    Example:
        >>> import torch
        >>> A = torch.randn(3, 4, dtype=torch.float64)
        >>> G = mean_gradient_outer_product(lambda x: A @ x, torch.randn(6, 4).double(), 3)
        >>> torch.allclose(G, A.T @ A)
        True
    """
    n, d = points.shape
    chunk = chunk or max(1, JACOBIAN_BUDGET // (8 * n_out * d))
    jac = torch.func.vmap(torch.func.jacrev(fn))
    total = torch.zeros(d, d, dtype=torch.float64)
    for part in points.split(chunk):
        J = jac(part).reshape(-1, d)                   # (B·n_out) × d
        total += J.T @ J
    return total / n


def activation_derivative(fn: LayerFunction, pre: Tensor) -> Tensor:
    """act'(h) elementwise (a forward-mode derivative along the all-ones tangent)."""
    return torch.func.jvp(fn.act, (pre,), (torch.ones_like(pre),))[1]


def factored_kernel(fn: LayerFunction, points: Float[Tensor, "n d_in"], chunk: int = 8192
                    ) -> Float[Tensor, "d_mlp d_mlp"]:
    """K = (H H^T) ⊙ (1/n) Σ_x act'(h(x)) act'(h(x))^T for an elementwise act and linear head H.

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> fn, x = layer_function(mlp), layer_inputs(mlp, task, task.train_idx)
        >>> torch.allclose(factored_kernel(fn, x), agop(mlp, task, wrt="preactivation").matrix)
        True
    """
    m = fn.weight.shape[0]
    second = torch.zeros(m, m, dtype=torch.float64)
    for part in points.split(chunk):
        D = activation_derivative(fn, part @ fn.weight.T + fn.bias)
        second += D.T @ D
    return (fn.head_weight @ fn.head_weight.T) * second / len(points)


def _jacrev_kernel(fn: LayerFunction, points: Tensor, chunk: int | None) -> Tensor:
    pre = points @ fn.weight.T + fn.bias
    return mean_gradient_outer_product(fn.from_preactivation, pre, fn.head_weight.shape[1], chunk)


def _matrix(fn: LayerFunction, points: Tensor, wrt: str, method: str, chunk: int | None
            ) -> Tensor:
    if method == "factored":
        K = factored_kernel(fn, points)
        return K if wrt == "preactivation" else fn.weight.T @ K @ fn.weight
    if wrt == "preactivation":
        return _jacrev_kernel(fn, points, chunk)
    return mean_gradient_outer_product(fn, points, fn.head_weight.shape[1], chunk)


def agop(model: HookedModel, task: Task, layer: int = 0, wrt: str = "input", subset: str = "train",
         chunk: int | None = None, method: str = "jacrev") -> FeatureMatrix:
    """AGOP of the logits w.r.t. the layer input, or the pre-activation tangent kernel K.

    Args:
        model: a :class:`HookedMLP` or :class:`HookedOneLayerTransformer` (see the module
            docstring for what "layer input" means for each), or the transformer's
            ``TransformerBridge`` (read as its native twin, the same weights).
        task: the task the model was trained on.
        layer: 0.
        wrt: ``"input"``: AGOP ``(1/n) Σ_x J_x^T J_x`` over the layer input (Mallinar et al.
            Def. 2.1; for the MLP, k·d_vocab × k·d_vocab); ``"preactivation"``: Beaglehole's K
            [d_mlp, d_mlp] (the gradient w.r.t. a perturbation added to the pre-activation).
        subset: average over the ``"train"`` (default), ``"test"`` or ``"all"`` inputs.
        chunk: inputs per ``vmap(jacrev)`` call (default: from a ~128 MiB budget).
        method: ``"jacrev"`` or ``"factored"`` (same matrix; see the module docstring).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5, train_fraction=0.6)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8))
        >>> G, K = agop(mlp, task), agop(mlp, task, wrt="preactivation")
        >>> tuple(G.matrix.shape), tuple(K.matrix.shape)
        ((10, 10), (8, 8))
    """
    check_layer(model, layer)
    if wrt not in WRT:
        raise MiMarginError(f"wrt must be one of {list(WRT)}, got wrt={wrt!r}")
    if method not in METHODS:
        raise MiMarginError(f"method must be one of {list(METHODS)}, got method={method!r}")
    if chunk is not None and (not isinstance(chunk, int) or chunk < 1):
        raise MiMarginError(f"chunk must be None or a positive integer, got chunk={chunk!r}")
    model = native(model)
    check_fits(model, task, finite=True)
    fn = layer_function(model, layer)
    points = layer_inputs(model, task, subset_indices(task, subset))
    matrix = _matrix(fn, points, wrt, method, chunk)
    if wrt == "preactivation":
        return FeatureMatrix(matrix, "K", tuple(f"h[{j}]" for j in range(matrix.shape[0])))
    return FeatureMatrix(matrix, "AGOP", *axis_labels(model))


@dataclass(frozen=True)
class AGOPAndKernel:
    """The AGOP G, the pre-activation tangent kernel K and the layer matrix W (G = W^T K W).

    Attributes:
        agop: :class:`FeatureMatrix` [d_in, d_in], computed directly from input gradients.
        kernel: :class:`FeatureMatrix` [d_mlp, d_mlp], from pre-activation gradients.
        weight: W [d_mlp, d_in] (float64).
    """

    agop: FeatureMatrix
    kernel: FeatureMatrix
    weight: Float[Tensor, "d_mlp d_in"]

    def max_identity_error(self) -> float:
        """max |G − W^T K W| / max |G|: 0 up to rounding (Beaglehole et al., docs/mathematics.md §5.1)."""
        G = self.agop.matrix
        return float((G - self.weight.T @ self.kernel.matrix @ self.weight).abs().max()
                     / G.abs().max())


def agop_and_kernel(model: HookedModel, task: Task, layer: int = 0, subset: str = "train",
                    chunk: int | None = None) -> AGOPAndKernel:
    """Both the input AGOP and the pre-activation kernel K, each from its own ``jacrev``
    gradients (so that ``max_identity_error`` checks G = W^T K W independently).

    Example:
        >>> import mi_margin as mm
        >>> task = mm.ModularAddition(p=5, train_fraction=0.6)
        >>> mlp = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=8, act_fn="relu"))
        >>> agop_and_kernel(mlp, task).max_identity_error() < 1e-12
        True
    """
    model = native(model)                  # a bridge is converted once, here
    return AGOPAndKernel(agop(model, task, layer, "input", subset, chunk),
                         agop(model, task, layer, "preactivation", subset, chunk),
                         layer_weight(model, layer))
