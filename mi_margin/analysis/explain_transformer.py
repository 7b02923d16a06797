"""The idealized circuit of a one-layer transformer, and its resampling tests (docs/mathematics.md §6.4).

Nanda et al. (2023) read modular addition in a one-layer transformer as: the embedding carries
cos/sin of a few key frequencies of each operand, attention moves them to the last position, the
MLP neurons, each tuned to one key frequency, multiply them into cos/sin(ω_f(a+b)), and the
unembedding reads cos(ω_f(a+b−c)) off them. :func:`transformer_circuit` writes that reading as a
transformer of the same shape, through the one harmonic basis of the task (frequencies, irreps):

- embedding: the rows of the group elements projected onto {trivial} ∪ K over the elements
  (the ``=`` token and the positional embedding kept), K the key labels (the live neurons' labels
  and the logits' key labels, e.g. Nanda's harmonic 42 = 2·21);
- attention: kept (it reads the projected embedding);
- MLP: a neuron with a label keeps its weights; unassigned and dead neurons write nothing (their
  W_out row zeroed). What a neuron writes reaches the logits only through the projected
  unembedding, i.e. in the key labels. A stricter reading, each neuron writing only its own
  label (the least-norm change of its output direction that removes the other clusters' labels
  from its logit map), does not hold for the zoo's Nanda model: its neurons of frequency 8 put
  about 4% of their logit-map energy on frequency 1, coherently, and removing it raises the
  explanation's loss from 0.005 to 0.36 (accuracy 0.999 → 0.87), so it is not part of the
  explanation;
- unembedding: its columns projected onto {trivial} ∪ K over the classes.

The model has no LayerNorm, so its logits are affine in the MLP's hidden activations h and in
``resid_mid`` r at the last position: ℓ = (r + h W_out + b_out) W_U + b_U, which is what the
resampling tests of :func:`resampler` swap pieces of.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from mi_margin.analysis.core import POST, RESID_MID, subject
from mi_margin.analysis.restricted import default_components
from mi_margin.errors import MiMarginError


def _projector(basis: Any, labels: list[Any]) -> Tensor:
    """Orthogonal projector [n, n] onto the trivial label and ``labels`` of one operand."""
    Q = torch.cat([basis.operand_basis(lab) for lab in [basis.labels[0], *labels]], dim=1)
    return Q @ Q.T


def transformer_circuit(model: Any, task: Any, label: tuple[Any, ...],
                        keep: Iterable[Any] | None = None) -> tuple[Any, list[Any], Tensor]:
    """(explanation model, key labels K, kept share per neuron [d_mlp]) for per-neuron labels;
    ``keep`` (when given) limits K to those labels.

    ``kept``: the share of the squared norm of each neuron's input map over the elements
    (W_E[:n] W_in) and its logit map (W_out W_U) that the explanation keeps.
    """
    if getattr(model.cfg, "normalization_type", None):
        raise MiMarginError(f"the transformer explanation needs a model without LayerNorm, got "
                            f"normalization_type={model.cfg.normalization_type!r}")
    basis = subject(model, task).basis
    if model.cfg.n_ctx - 1 != task.algebra.k:
        raise MiMarginError(
            f"the transformer explanation projects each operand token's embedding onto the "
            f"task's harmonics, one token per operand; this model reads {model.cfg.n_ctx - 1} "
            f"tokens for {task.algebra.k} operand(s) of {basis.n} values (a sparse-parity "
            "transformer reads bits, not points of the cube): explain an MLP on this task, or "
            "use spectrum and restricted_loss, which read the activations")
    owned = list(dict.fromkeys(lab for lab in label if lab is not None))
    key = basis.resolve(owned + [lab for lab in default_components(model, task)
                                 if lab not in owned and (keep is None or lab in set(keep))])
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dtype, n = model.W_E.dtype, basis.n
    P = _projector(basis, list(key))
    W_E = state["embed.W_E"].double()
    W_E[:n] = P @ W_E[:n]
    W_U = state["unembed.W_U"].double() @ P
    W_out = state["blocks.0.mlp.W_out"].double()
    W_out[[i for i, lab in enumerate(label) if lab is None or lab not in key]] = 0
    state["embed.W_E"], state["unembed.W_U"] = W_E.to(dtype), W_U.to(dtype)
    state["blocks.0.mlp.W_out"] = W_out.to(dtype)
    out = type(model)(model.cfg)
    out.load_state_dict(state)
    return out, list(key), _kept(model, out, n)


def _kept(model: Any, expl: Any, n: int) -> Tensor:
    def maps(net: Any) -> Tensor:
        W_in = net.W_in[0].detach().double()
        return torch.cat([net.W_E[:n].detach().double() @ W_in,
                          (net.W_out[0].detach().double() @ net.W_U.detach().double()).T])
    before, after = maps(model).square().sum(0), maps(expl).square().sum(0)
    return after / before.clamp_min(1e-300)


def hybrids(model: Any, expl: Any) -> dict[str, Any]:
    """The model with its embedding, MLP or unembedding replaced by the explanation's."""
    parts = {"embedding replaced": ("embed.W_E",),
             "MLP replaced": ("blocks.0.mlp.W_in", "blocks.0.mlp.W_out"),
             "unembedding replaced": ("unembed.W_U",)}
    ideal, out = expl.state_dict(), {}
    for name, keys in parts.items():
        state = dict(model.state_dict())
        state.update({k: ideal[k] for k in keys})
        net = type(model)(model.cfg)
        net.load_state_dict(state)
        out[name] = net
    return out


def _run(model: Any, task: Any, embed: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(resid_mid, hidden activations) at the last position, float64, optionally with the
    embedding's output replaced by ``embed`` [N, n_ctx, d_model]."""
    sub = subject(model, task)
    hooks = None if embed is None else (
        lambda rows: [("hook_embed", lambda act, hook: embed[rows].to(act.dtype))])
    acts = sub.run([RESID_MID, POST], hooks=hooks)[1]
    return acts[RESID_MID].double(), acts[POST].double()


def resampler(model: Any, expl: Any, task: Any, names: tuple[str, ...]
              ) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """The resampling rows' logits (float64) as a function of one draw's donors, the random
    source inputs (``"any"``, ``"same"``); ``names`` are the four rows of
    :data:`~mi_margin.analysis.explain.RESAMPLED`. The model's own run, which no draw changes,
    is done once, here.

    With Ê = Ŵ_E[tokens] and δE = (W_E − Ŵ_E)[tokens] the embedding's kept and left-out parts,
    δW = W_out − Ŵ_out, δU = W_U − Ŵ_U and x' a random input, the explanation claims δE, δW and
    δU carry nothing. Scrub rest: run the model on the embedding Ê(x) + δE(x') to get resid_mid
    r̃ and hidden activations h̃ at the last position; logits (r̃ + h̃ Ŵ_out + b_out + h(x') δW) Ŵ_U
    + s(x') δU + b_U, with h, s the model's own hidden activations and final residual stream. The
    control takes every kept part from x' and every left-out part from x.
    """
    tokens = subject(model, task).inputs
    E, E_hat = model.W_E.detach().double(), expl.W_E.detach().double()
    W, W_hat = model.W_out[0].detach().double(), expl.W_out[0].detach().double()
    U, U_hat = model.W_U.detach().double(), expl.W_U.detach().double()
    b_out, b_U = model.b_out[0].detach().double(), model.b_U.detach().double()
    r, h = _run(model, task)
    s = r + h @ W + b_out
    logits, own = s @ U + b_U, torch.arange(len(r))

    def scrub(kept: Tensor, rest: Tensor) -> Tensor:
        embed = E_hat[tokens[kept]] + (E - E_hat)[tokens[rest]]
        r_s, h_s = _run(model, task, embed)
        return (r_s + h_s @ W_hat + b_out + h[rest] @ (W - W_hat)) @ U_hat + \
            s[rest] @ (U - U_hat) + b_U

    def draw(donors: dict[str, Tensor]) -> dict[str, Tensor]:
        x1, same = donors["any"], donors["same"]
        return {names[0]: scrub(own, x1), names[1]: scrub(x1, own),
                names[2]: logits[same], names[3]: logits[x1], "model": logits}

    return draw
