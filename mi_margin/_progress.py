"""Progress bars that never warn: tqdm's notebook widget when ipywidgets is installed, else plain tqdm.

``tqdm.auto`` picks the notebook widget inside Jupyter and, when ipywidgets is missing, prints
"IProgress not found" in every notebook; this picks the widget only when it can render.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    """``tqdm(*args, **kwargs)``, the notebook widget only when ipywidgets is importable.

    Example:
        >>> sum(progress_bar(range(3), disable=True))
        3
    """
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(*args, **kwargs)
