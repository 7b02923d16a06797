"""How many key frequencies does a trained network keep as p grows? A grid of studies over primes.

Chughtai et al.'s MLP (embed 256, hidden 128, ReLU; full-batch AdamW, weight decay 1) on modular
addition mod p with 40% of the pairs for training, ``--seeds`` seeds per prime of
``mi_margin.zoo.recipes.KEY_FREQUENCY_PRIMES``, each trained to the study's stop rule (grokked and
cleaned up, or its 40,000-step budget). Prints, per prime, N_δ (δ = 0.05) and the number of key
frequencies over the seeds that generalized, and writes the figure beside the rows.

The grid resumes: run it again with the same ``--out`` and it finishes what is missing.

Run: ``python examples/studies/key_frequencies_vs_p.py --out populations/key_frequencies_vs_p
[--seeds 3] [--primes 23 31 43]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mi_margin as mm
from mi_margin.studies.grid import key_count_by_setting, study_grid
from mi_margin.zoo.recipes import KEY_FREQUENCY_PRIMES, chughtai_mlp_mod_p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="grid folder (one study per prime)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per prime")
    parser.add_argument("--primes", type=int, nargs="+", default=list(KEY_FREQUENCY_PRIMES))
    args = parser.parse_args()
    grid = study_grid(chughtai_mlp_mod_p, args.primes, args.seeds, args.out)
    view = key_count_by_setting(grid)
    print(view.to_dataframe().to_string(index=False))
    view.plot().write_html(Path(args.out) / "key_frequencies_vs_p.html", include_plotlyjs="cdn")
    print(f"{mm.__name__}: figure written to {Path(args.out) / 'key_frequencies_vs_p.html'}")


if __name__ == "__main__":
    main()
