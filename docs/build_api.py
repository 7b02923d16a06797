"""Build the API reference (HTML, from the docstrings) with pdoc: ``python docs/build_api.py [OUT]``.

The test suite builds it too (tests/test_docs.py), so a docstring that breaks the build fails a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: pdoc follows ``mi_margin.__all__`` into the public subpackages (models, training, viz, ...)
MODULES = ["mi_margin"]


def build(out: Path) -> Path:
    """Write the reference to ``out`` (``out/index.html`` and one page per module)."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="google", search=True, show_source=False)
    pdoc.pdoc(*MODULES, output_directory=out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api")).resolve() / "index.html")
