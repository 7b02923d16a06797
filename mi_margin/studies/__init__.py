"""Studies: populations of seeds, trained to a stop rule and summarized one row per seed.

- :func:`study` (``mm.study``): train or finish N seeds of a zoo population or any seed recipe,
  locally or on a Ray cluster, streaming one summary row per seed (:mod:`~mi_margin.studies.study`).
- :mod:`~mi_margin.studies.stop`: grokking steps (memorized, first and stable crossing, delay) and the
  stop rule; :mod:`~mi_margin.studies.summary`: the row; :mod:`~mi_margin.studies.keys`: key labels
  re-derived from stored similarities; :mod:`~mi_margin.studies.views`: the population views papers
  print (label frequencies against dimension and the max-margin budget share, grokking steps,
  N_δ).
- :func:`~mi_margin.studies.grid.study_grid`: the same seeds over several settings (e.g. primes),
  one study per setting; :func:`~mi_margin.studies.grid.key_count_by_setting` is its view.
"""

from mi_margin.studies.grid import key_count_by_setting, study_grid
from mi_margin.studies.stop import StopRule, grokking_steps
from mi_margin.studies.study import Study, study

__all__ = ["StopRule", "Study", "grokking_steps", "key_count_by_setting", "study", "study_grid"]
