"""The recipes that train the zoo's entries: model, task and training config, every seed explicit.

Each recipe is a function returning ``(model, task, TrainConfig)`` built with the public API only,
so a reader can copy it into a notebook. :mod:`mi_margin.zoo.build` trains a recipe (or takes an
existing run folder), keeps checkpoints across the phases of training and writes the entry and its
card. Paper numbers are quoted as the papers' numbers, with where they come from
(docs/mathematics.md §1.6, §2.3, §3.3–3.5, §4.1–4.3); nothing here is a result of ours.

Example:
    >>> from mi_margin.zoo.recipes import RECIPES
    >>> model, task, config = RECIPES["morwani_parity_n10_k4_quartic"].make()
    >>> task, model.cfg.act_fn, config.steps
    (SparseParity(n=10, k=4, ...), 'power', 1000)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import mi_margin as mm
from mi_margin.theory.recipe import max_margin_recipe, reweight_neurons

Made = tuple[Any, Any, "mm.TrainConfig"]

#: every recipe pins the micro-batch its entry was trained with (the default of
#: ``TrainConfig.microbatch`` was 2048 then), so that a stored config, and ``train --resume`` of a
#: run started then, stay the recipe's config exactly; the gradient is the same full-batch one
ZOO_MICROBATCH = 2048


@dataclass(frozen=True)
class Recipe:
    """How one zoo entry is trained, and what the paper reports for it.

    Attributes:
        name: the entry name (says what it is: paper, task, architecture, seed).
        title: one line for the card and the README.
        paper: the paper and figure/table it reproduces.
        make: ``() -> (model, task, TrainConfig)``.
        kind: "grokking" (train/test split, delayed generalization: checkpoints across the
            memorization, circuit-formation and cleanup phases) or "max_margin" (full table,
            L_{2,ν} penalty: checkpoints log-spaced, margin/γ* recorded while training).
        paper_numbers: (quantity, the paper's value and where it is stated, our measurement:
            "key", "labels_used", "margin", "purity", "test_loss" or "phases"; see
            ``zoo.cards.ours``).
        n_ship: number of checkpoints shipped (the final one in full precision, the others
            in float16 or float32 where the analyses agree; see ``zoo.build``).
        heavy: needs hours at today's CPU speed (docs/performance.md).
        finish: ``(model, task) -> model`` applied to the trained weights (e.g.
            :func:`~mi_margin.theory.recipe.reweight_neurons`); the entry keeps both, the
            finished weights as the variant named ``variant`` (``mm.zoo.load(name, variant=...)``).
        variant: the name of the finished weights (required with ``finish``).
        verdict: against the paper's own figure: "reproduced", "partly", "not reproduced", or
            "not in the paper" (a setting the paper does not report; tests/zoo checks each verdict
            against the shipped model).
        differs: what differs from the paper's figure (the README row and the card say it).
        parity: where our recipe differs from the paper's (initialisation, data, optimizer, steps).
    """

    name: str
    title: str
    paper: str
    make: Callable[[], Made]
    kind: str
    paper_numbers: tuple[tuple[str, str, str], ...] = ()
    n_ship: int = 12
    heavy: bool = False
    finish: Callable[[Any, Any], Any] | None = None
    variant: str | None = None
    verdict: str = "reproduced"
    differs: str = ""
    parity: str = ""


# -- Morwani et al. (2024): networks trained to the max margin ----------------------------------------
def morwani_p71_quadratic() -> Made:
    """Modular addition p=71, quadratic MLP m=500 (the paper's width), full table, L_{2,3} penalty."""
    task = mm.ModularAddition(p=71, seed=0)
    train, model_cfg = max_margin_recipe(task, width=500, steps=4000, method="adam",
                                         penalty=1e-4, seed=0, eval_every=200,
                                         checkpoint_schedule="log", n_checkpoints=40,
                                         microbatch=ZOO_MICROBATCH)
    return mm.HookedMLP(model_cfg), task, train


def morwani_s4_quadratic() -> Made:
    """S4 composition, quadratic MLP (twice Theorem 9's width bound), full table, L_{2,3} penalty.

    Training plateaus below γ* (the neurons' budget across irreps stays off the optimum); the
    recipe's finish, :func:`reweight_neurons` (Lemma 6: the best non-negative rescaling of the
    trained neurons, an LP), moves it to the max margin with the same neuron directions."""
    task = mm.GroupComposition("S4", seed=0)
    train, model_cfg = max_margin_recipe(task, steps=10_000, method="adam", penalty=1e-4, seed=0,
                                         eval_every=250, checkpoint_schedule="log",
                                         n_checkpoints=40, microbatch=ZOO_MICROBATCH)
    return mm.HookedMLP(model_cfg), task, train


def morwani_parity() -> Made:
    """(10, 4)-sparse parity, x^4 MLP of the paper's width m=40, full table, L_{2,5} penalty 1e-3."""
    task = mm.SparseParity(n=10, k=4, seed=0)
    train, model_cfg = max_margin_recipe(task, width=40, steps=1000, method="adam", penalty=1e-3,
                                         seed=0, eval_every=50, checkpoint_schedule="log",
                                         n_checkpoints=20, microbatch=ZOO_MICROBATCH)
    return mm.HookedMLP(model_cfg), task, train


# -- Li et al. (2024): k = 3 operands -------------------------------------------------------------------
def li_p23_k3_cubic() -> Made:
    """(a+b+c) mod 23, x^3 MLP of Li et al.'s width 2^{2k-2}(p-1), 50/50 split, AdamW with their
    App. J.1 settings: minibatches of 1024, lr 5e-3, betas (0.9, 0.98), λ = 0.005 (as AdamW weight
    decay), 10 warm-up steps. Full-batch training with the same settings stalls below 0.99 test
    accuracy (the train loss reaches float32's floor and the gradient vanishes); the minibatches'
    noise carries it past."""
    task = mm.ModularAddition(p=23, k=3, train_fraction=0.5, seed=0)
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, d_mlp=16 * (23 - 1), act_fn="power", seed=0))
    train = mm.TrainConfig(steps=12_000, lr=5e-3, betas=(0.9, 0.98), weight_decay=0.005,
                           warmup_steps=10, batch_size=1024, eval_every=100,
                           checkpoint_schedule="linear", n_checkpoints=120, seed=0, progress=False,
                           microbatch=ZOO_MICROBATCH)
    return model, task, train


def li_p23_k3_max_margin() -> Made:
    """(a+b+c) mod 23, the theorem's x^3 MLP (twice its width bound 2^{2k-2}(p-1)), full table,
    L_{2,4} penalty: Li et al.'s Theorem 4.1 / I.1 setting."""
    task = mm.ModularAddition(p=23, k=3, seed=0)
    train, model_cfg = max_margin_recipe(task, steps=2000, method="adam", penalty=1e-4, seed=0,
                                         eval_every=100, checkpoint_schedule="log",
                                         n_checkpoints=30, microbatch=ZOO_MICROBATCH)
    return mm.HookedMLP(model_cfg), task, train


# -- Chughtai et al. (2023): universality on groups -----------------------------------------------------
def chughtai_mlp(group: str, train_fraction: float, seed: int, steps: int) -> Made:
    """Chughtai et al.'s MLP (embed 256, hidden 128, ReLU) with their full-batch AdamW recipe.

    Weights are kept every 100 steps (at most 300 times), so that the short memorization phase
    is sampled too."""
    return _chughtai_mlp_on(mm.GroupComposition(group, train_fraction=train_fraction, seed=seed),
                            seed, steps)


def chughtai_mlp_mod_p(p: int, seed: int, train_fraction: float = 0.4, steps: int = 40_000) -> Made:
    """Chughtai et al.'s MLP and recipe (:func:`chughtai_mlp`) on modular addition mod ``p``:
    the grid :data:`KEY_FREQUENCY_PRIMES` asks how many key frequencies it keeps as p grows
    (:func:`mi_margin.studies.grid.study_grid`)."""
    return _chughtai_mlp_on(mm.ModularAddition(p=p, train_fraction=train_fraction, seed=seed),
                            seed, steps)


def _chughtai_mlp_on(task: Any, seed: int, steps: int) -> Made:
    model = mm.HookedMLP(mm.MLPConfig.for_task(task, input_style="embed", d_embed=256, d_mlp=128,
                                               act_fn="relu", seed=seed))
    train = mm.TrainConfig(steps=steps, lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0,
                           warmup_steps=10, eval_every=100, checkpoint_schedule="linear",
                           n_checkpoints=min(steps // 100, 300), seed=seed, progress=False,
                           microbatch=ZOO_MICROBATCH)
    return model, task, train


#: the primes of the key-frequency grid (``chughtai_mlp_mod_p``; populations/key_frequencies_vs_p)
KEY_FREQUENCY_PRIMES = (23, 31, 43, 59, 71, 83, 97)


def chughtai_transformer(group: str, train_fraction: float, seed: int, steps: int) -> Made:
    """Chughtai et al.'s one-layer transformer (Nanda's architecture, biases off)."""
    task = mm.GroupComposition(group, train_fraction=train_fraction, seed=seed)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, seed=seed))
    train = mm.TrainConfig(steps=steps, lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0,
                           warmup_steps=10, eval_every=100, checkpoint_schedule="linear",
                           n_checkpoints=min(steps // 100, 300), seed=seed, progress=False,
                           microbatch=ZOO_MICROBATCH)
    return model, task, train


# -- Nanda et al. (2023): progress measures -------------------------------------------------------------
def nanda_transformer(seed: int) -> Made:
    """Nanda et al.'s mainline: p=113, 30% train, one-layer ReLU transformer, AdamW wd 1; ``seed``
    draws the split, the initialisation and nothing else (full batch)."""
    task = mm.ModularAddition(p=113, train_fraction=0.3, seed=seed)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(task, seed=seed))
    train = mm.TrainConfig(steps=25_000, lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0,
                           warmup_steps=10, eval_every=100, checkpoint_schedule="linear",
                           n_checkpoints=250, seed=seed, progress=False,
                           microbatch=ZOO_MICROBATCH)
    return model, task, train


def nanda_p113_transformer() -> Made:
    """The zoo's Nanda entry: seed 0 of :func:`nanda_transformer`."""
    return nanda_transformer(0)


# -- Zhong et al. (2023): the clock and the pizza ----------------------------------------------------
def zhong_transformer(attn_rate: float, seed: int, steps: int) -> Made:
    """Zhong et al.'s p = 59 model at attention rate α (App. F.1; docs/mathematics.md §6.2).

    One-layer ReLU transformer of their default width 128 (4 heads, MLP 512), bidirectional
    attention mixed with constant attention at rate α, 80% train, full-batch AdamW lr 1e-3,
    weight decay 2, betas (0.9, 0.98) and 10 warm-up steps (as in their training script), for
    half their 20,000 epochs. Their inputs are [a, b]; ours keep the '=' token, so at α = 0 the
    logits see E_a and E_b only through their sum and s_g is exactly 1 (theirs: 99.37%).
    Weights are kept every 100 steps."""
    task = mm.ModularAddition(p=59, train_fraction=0.8, seed=seed)
    model = mm.HookedOneLayerTransformer(mm.TransformerConfig.for_task(
        task, attention_dir="bidirectional", attn_rate=attn_rate, seed=seed))
    train = mm.TrainConfig(steps=steps, lr=1e-3, betas=(0.9, 0.98), weight_decay=2.0,
                           warmup_steps=10, eval_every=50, checkpoint_schedule="linear",
                           n_checkpoints=steps // 100, seed=seed, progress=False,
                           microbatch=ZOO_MICROBATCH)
    return model, task, train


NANDA_PARITY = ("Initialisation N(0, 1)/sqrt(fan) per weight as in Nanda et al.'s own code (W_E, "
                "W_pos, attention, W_in and W_out by 1/sqrt(d_model), W_U by 1/sqrt(d_vocab)), not "
                "TransformerLens's default initialisation; drawn from our seeded generator, so not "
                "their network; W_U has 113 output classes (theirs 114, with a logit for '='); "
                "full-batch AdamW as theirs, stopped at 25,000 steps.")
CHUGHTAI_PARITY = ("Their MLP (their repository's MLP class) uses PyTorch's default initialisation "
                   "and biases: nn.Embedding N(0, 1), nn.Linear U(±1/sqrt(fan_in)) with bias; ours: "
                   "embeddings N(0, 1/256), W_in N(0, 1/512), W_out N(0, 1/128) and no biases. "
                   "Full-batch AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98) as theirs.")
ZHONG_PARITY = ("Inputs [a, b, '='] (theirs [a, b]); 10,000 of their 20,000 full-batch steps; "
                "initialisation: ours (Nanda et al.'s N(0, 1)/sqrt(fan)), not compared with theirs.")
MORWANI_PARITY = ("AdamW with an explicit L_{2,ν} penalty and a step-decayed learning rate "
                  "(theirs: gradient descent on the regularized loss); initialisation N(0, 1/fan), "
                  "not compared with theirs.")

ZHONG_PHASE_RULE = "Fig. 7 counts a run as a pizza when s_g > 98% and q < 0.6"

CHUGHTAI_S5_NUMBERS = (
    ("key irreps, mainline seed", "{sign, standard} (§5, S5 MLP seed 2)", "key"),
    ("key irreps over 50 seeds", "sign 49, standard 49, standard_sign 17, 5d_a 18, 5d_b 10, 6d 0 "
                                 "(their repository's per-seed key_reps)", "key"),
    ("test loss (4-seed mean)", "1.02e-5 (Table 3)", "test_loss"),
    ("phases", "memorization 0–2k, circuit formation 2.2k–87k, cleanup 87k–120k epochs (App. E)",
     "phases"),
)

_RECIPES = [
    Recipe("morwani_p71_quadratic", "p = 71 modular addition, quadratic MLP (m = 500) trained to the max "
           "L_{2,3} margin", "Morwani et al. 2024, Fig. 1c and Fig. 4", morwani_p71_quadratic,
           "max_margin",
           (("normalized margin", "approaches γ*(71) from below (Fig. 1c; 40k GD steps)", "margin"),
            ("max normalized power per neuron", "≈ 1 for the quadratic net with L_{2,3} (Fig. 4)",
             "purity"),
            ("frequencies used", "all (neurons per frequency ≈ uniform, Fig. 7)", "labels_used"),
            ("key frequencies of the logits", "all (Theorem 7)", "key")),
           n_ship=4, parity=MORWANI_PARITY + " 4,000 steps (theirs: 40k GD steps)."),
    Recipe("morwani_S4_quadratic", "S4 composition, quadratic MLP trained to the max L_{2,3} margin",
           "Morwani et al. 2024, Theorem 9 and Fig. 9", morwani_s4_quadratic, "max_margin",
           (("irreps used", "every non-trivial irrep (Theorem 9)", "key"),
            ("normalized margin", "approaches γ*(S4) (Fig. 9)", "margin")), n_ship=6,
           finish=reweight_neurons, variant="reweighted", verdict="partly",
           differs="the trained network plateaus below γ* (Fig. 9 approaches γ*); every "
                   "non-trivial irrep is used as Theorem 9 says; only the LP-reweighted variant "
                   "`reweighted` reaches γ*", parity=MORWANI_PARITY),
    Recipe("morwani_parity_n10_k4_quartic", "(10, 4)-sparse parity, x^4 MLP (m = 40) trained to the "
           "max L_{2,5} margin", "Morwani et al. 2024, Theorem 8 and Fig. 5", morwani_parity,
           "max_margin", (("normalized margin", "approaches γ* (Fig. 5; 30k GD steps, lr 0.1)", "margin"),),
           n_ship=8, parity=MORWANI_PARITY + " 1,000 steps (theirs: 30k GD steps, lr 0.1)."),
    Recipe("li_p23_k3_cubic", "(a + b + c) mod 23, x^3 MLP (m = 352), 50/50 split",
           "Li et al. 2024, Fig. 1–2 and App. J.2 (k = 3)", li_p23_k3_cubic, "grokking",
           (("frequencies used", "all, ≈ uniform histogram of neuron frequencies (Fig. 2; k = 3 at "
                                 "p = 97: Fig. 6a)", "labels_used"),
            ("key frequencies of the logits", "not reported", "key"),
            ("max normalized power per neuron", "≈ 1 after training (Fig. 1)", "purity"),
            ("normalized margin", "γ* = 3 / (16 p (p − 1)) at the max margin (Theorem I.1)",
             "margin")), n_ship=5, verdict="partly",
           differs="it generalizes and every frequency dominates some neurons, but its neurons are "
                   "far from single-frequency (Fig. 6c: max normalized power ≈ 1), at p = 23 and "
                   "m = 352 (the figure: p = 97, m = 1536) within the recipe's training budget",
           parity="App. J.1's optimizer settings (minibatches of 1024, lr 5e-3, betas (0.9, 0.98), "
                  "λ = 0.005 taken as AdamW weight decay, 10 warm-up steps); p = 23 instead of 97 so "
                  "that it trains on a CPU; initialisation N(0, 1/fan), not compared with theirs "
                  "(their code is not in the paper)."),
    Recipe("li_p23_k3_max_margin", "(a + b + c) mod 23, x^3 MLP trained to the max L_{2,4} margin",
           "Li et al. 2024, Theorem 4.1 / I.1 (k = 3)", li_p23_k3_max_margin, "max_margin",
           (("frequencies used", "every frequency ζ is used by some neuron (Theorem 4.1)", "labels_used"),
            ("neurons", "single-frequency cosines (Theorem 4.1)", "purity"),
            ("normalized margin", "γ* = 3 / (16 p (p − 1)) (Theorem I.1)", "margin")), n_ship=5,
           parity=MORWANI_PARITY + " A theorem, not an experiment of theirs: p = 23 by choice."),
    *[Recipe(f"chughtai_S4_mlp_seed{seed}", f"S4 composition, Chughtai et al.'s ReLU MLP, 70% train, "
             f"seed {seed}", "Chughtai et al. 2023's MLP recipe on S4 (S4 is not in the paper)",
             partial(chughtai_mlp, "S4", 0.7, seed, 15_000), "grokking",
             (("key irreps", "S4 is not in the paper (its S5 MLPs: Fig. 7, 40% train)", "key"),),
             n_ship=5, verdict="not in the paper",
             differs="S4 at 70% train is our extension of their S5/A5 experiments",
             parity=CHUGHTAI_PARITY)
      for seed in (0, 1, 2)],
    Recipe("chughtai_A5_mlp_seed1", "A5 composition, Chughtai et al.'s ReLU MLP, 50% train, seed 1",
           "Chughtai et al. 2023, Table 3 and Table 6 (A5 MLP)",
           partial(chughtai_mlp, "A5", 0.5, 1, 60_000), "grokking",
           (("key irreps, 4 seeds", "{std, 3d-a, 3d-b}, {std, 3d-a, 3d-b}, {3d-a, 5d-a, std}, "
                                    "{5d-a, 3d-a, std, 3d-b} (Table 6)", "key"),
            ("test loss (4-seed mean)", "1.94e-5 (Table 3)", "test_loss")), n_ship=5,
           differs="one seed: its key irreps are one of Table 6's four sets",
           parity=CHUGHTAI_PARITY),
    Recipe("zhong_p59_clock_transformer", "p = 59 modular addition, Zhong et al.'s one-layer "
           "transformer with standard attention (α = 1), 80% train, seed 0",
           "Zhong et al. 2023, Model B (§4) and Fig. 7 (α = 1)",
           partial(zhong_transformer, 1.0, 0, 10_000), "grokking",
           (("distance irrelevance q", "0.85 for Model B (α = 1; §4); typical clocks 0.4–1, "
                                       "pizzas 0–0.4", "distance_irrelevance"),
            ("gradient symmetricity s_g", "33.36% for Model B (§4)", "gradient_symmetricity"),
            ("algorithm", f"α = 1 at width 128: mostly clocks (Fig. 7); {ZHONG_PHASE_RULE}",
             "clock_or_pizza")), n_ship=2,
           differs="a clock as Model B, with q close to theirs; s_g lower than Model B's 33.36%",
           parity=ZHONG_PARITY),
    Recipe("zhong_p59_pizza_transformer", "p = 59 modular addition, Zhong et al.'s one-layer "
           "transformer with constant attention (α = 0), 80% train, seed 0",
           "Zhong et al. 2023, Model A (§4) and Fig. 7 (α = 0)",
           partial(zhong_transformer, 0.0, 0, 10_000), "grokking",
           (("distance irrelevance q", "0.17 for Model A (α = 0; §4); typical pizzas 0–0.4, "
                                       "clocks 0.4–1", "distance_irrelevance"),
            ("gradient symmetricity s_g", "99.37% for Model A (§4)", "gradient_symmetricity"),
            ("algorithm", f"α = 0: pizzas (Fig. 7); {ZHONG_PHASE_RULE}", "clock_or_pizza")),
           n_ship=2, verdict="partly",
           differs="a pizza by q, close to Model A's; but s_g is structural with our '=' input "
                   "(docs/mathematics.md §6.2: the same at initialization), so unlike their s_g it "
                   "does not confirm the pizza",
           parity=ZHONG_PARITY),
    Recipe("nanda_p113_transformer", "p = 113 modular addition, Nanda et al.'s one-layer transformer, "
           "30% train, past cleanup", "Nanda et al. 2023, Fig. 7 (progress measures)",
           nanda_p113_transformer, "grokking",
           (("key frequencies (mainline seed)", "{14, 35, 41, 42, 52} (§4.2)", "key"),
            ("phases", "memorization 0–1.4k, circuit formation 1.4k–9.4k, cleanup 9.4k–14k "
                       "epochs (Fig. 7)", "phases"),
            ("test loss after grokking", "≈ 2.4e-7 (§4.2)", "test_loss")), n_ship=26, heavy=True,
           verdict="partly",
           differs="grokking and a sparse Fourier circuit reproduce; our seed embeds other key "
                   "frequencies (the paper's are its mainline seed's) and ends at a higher test loss, "
                   "carried by a few test examples whose margins fell late in training",
           parity=NANDA_PARITY),
    *[Recipe(f"chughtai_S5_mlp_seed{seed}", f"S5 composition, Chughtai et al.'s ReLU MLP, 40% train, "
             f"seed {seed}", "Chughtai et al. 2023, §5 and Fig. 7 (S5 MLP)",
             partial(chughtai_mlp, "S5", 0.4, seed, 150_000), "grokking",
             CHUGHTAI_S5_NUMBERS, n_ship=5, heavy=True, parity=CHUGHTAI_PARITY)
      for seed in (1, 2, 3)],
    Recipe("chughtai_S5_transformer_seed1", "S5 composition, one-layer transformer, 60% train, seed 1",
           "Chughtai et al. 2023, Table 3 and Table 5 (S5 transformer)",
           partial(chughtai_transformer, "S5", 0.6, 1, 50_000), "grokking",
           (("key irreps, 4 seeds", "{sign, std_sign} ×2, {sign, std} ×2 (Table 5)", "key"),
            ("test loss (4-seed mean)", "1.43e-7 (Table 3)", "test_loss")), n_ship=2, heavy=True,
           differs="one seed: its key irreps are one of Table 5's sets",
           parity="Nanda et al.'s one-layer transformer without biases, as theirs; initialisation "
                  "N(0, 1)/sqrt(fan) as in Nanda et al.'s code, not compared with Chughtai et al.'s; "
                  "full-batch AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98)."),
]

#: every recipe by entry name
RECIPES: dict[str, Recipe] = {r.name: r for r in _RECIPES}


@dataclass(frozen=True)
class Population:
    """Many seeds of one zoo setting (:mod:`mi_margin.studies`), as the papers count them.

    Attributes:
        name: the population's name (``mm.zoo.population(name)``).
        title: one line for its card.
        make: ``seed -> (model, task, TrainConfig)``; ``steps`` is the per-seed budget.
        seeds: how many seeds (0, 1, ..., seeds - 1).
        paper: what the paper reports over its seeds (quoted, with where).
        paper_key: the paper's label name -> seeds (of ``paper_seeds``) in which it was key.
        paper_n_key: number of key labels -> seeds (of ``paper_seeds``) with that many.
        paper_seeds: how many seeds the paper's counts are over.
    """

    name: str
    title: str
    make: Callable[[int], Made]
    seeds: int
    paper: str
    paper_key: dict[str, int] | None = None
    paper_n_key: dict[int, int] | None = None
    paper_seeds: int | None = None


POPULATIONS: dict[str, Population] = {p.name: p for p in [
    Population("chughtai_S4_mlp", "S4 composition, Chughtai et al.'s ReLU MLP, 70% train",
               partial(chughtai_mlp, "S4", 0.7, steps=15_000), 100,
               "S4 is not in the paper; its S5 MLP seeds learn sign + standard in 49 of 50 (Fig. 7)"),
    Population("nanda_p113_transformer", "p = 113 modular addition, Nanda et al.'s transformer, "
               "30% train", nanda_transformer, 10,
               "key frequencies {14, 35, 41, 42, 52} in the mainline seed (§4.2)",
               paper_n_key={5: 1}, paper_seeds=1),
    Population("chughtai_A5_mlp", "A5 composition, Chughtai et al.'s ReLU MLP, 50% train",
               partial(chughtai_mlp, "A5", 0.5, steps=60_000), 20,
               "key irreps of 4 seeds: {std, 3d-a, 3d-b} ×2, {3d-a, 5d-a, std}, "
               "{5d-a, 3d-a, std, 3d-b} (Table 6)",
               paper_key={"standard": 4, "3d_a": 4, "3d_b": 3, "5d_a": 2},
               paper_n_key={3: 3, 4: 1}, paper_seeds=4),
    Population("chughtai_S5_mlp", "S5 composition, Chughtai et al.'s ReLU MLP, 40% train",
               partial(chughtai_mlp, "S5", 0.4, steps=150_000), 50,
               "over 50 seeds: sign 49, standard 49, standard_sign 17, 5d_a 18, 5d_b 10, 6d 0; "
               "key irreps per seed 2: 20 seeds, 3: 19, 4: 9, 5: 2 (Fig. 7; their repository's "
               "per-seed key_reps)",
               paper_key={"sign": 49, "standard": 49, "standard_sign": 17, "5d_a": 18, "5d_b": 10,
                          "6d": 0},
               paper_n_key={2: 20, 3: 19, 4: 9, 5: 2}, paper_seeds=50),
]}
