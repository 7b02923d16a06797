"""Progress bars that never warn: tqdm's notebook widget when ipywidgets is installed, else plain tqdm.

``tqdm.auto`` picks the notebook widget inside Jupyter and, when ipywidgets is missing, prints
"IProgress not found" in every notebook; this picks the widget only when it can render.
``TQDM_DISABLE=1`` (tqdm's own environment switch) hides every bar, also those a caller asked for
(tqdm only applies it where the caller passes no ``disable``).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

#: the values of ``TQDM_DISABLE`` that switch bars off (as tqdm reads booleans)
_TRUE = ("1", "true", "yes", "on")


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """``tqdm(*args, **kwargs)``, the notebook widget only when ipywidgets is importable.

    Example:
        >>> sum(progress_bar(range(3), disable=True))
        3
    """
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in _TRUE:
        kwargs["disable"] = True
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(*args, **kwargs)
