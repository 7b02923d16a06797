"""The docs cannot rot: every ``docs/mathematics.md §N`` cited in the code exists, and the API
reference builds from the docstrings with the public names in it."""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITE = re.compile(r"docs/mathematics\.md (§[0-9][0-9.]*(?:[–-][0-9.]+)?(?:, §[0-9][0-9.]*)*)")


def cited_sections() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [*ROOT.glob("mi_margin/**/*.py"), *ROOT.glob("tests/**/*.py"),
                 *ROOT.glob("bench/*.py"), *ROOT.glob("tutorials/*.py"), ROOT / "README.md"]:
        if not path.is_file():
            continue
        for match in CITE.finditer(path.read_text(encoding="utf-8")):
            for part in re.findall(r"§?([0-9][0-9.]*[0-9]|[0-9])", match.group(1)):
                found.setdefault(part, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_cited_section_of_the_mathematics_exists():
    headings = set(re.findall(r"^#+ §([0-9.]+) ", (ROOT / "docs" / "mathematics.md").read_text(),
                              flags=re.M))
    cited = cited_sections()
    assert {"1.3", "4.3", "6.2"} <= set(cited)               # the scan finds citations
    missing = {sec: sorted(paths) for sec, paths in cited.items() if sec not in headings}
    assert not missing, f"cited but not in docs/mathematics.md: {missing}"


def test_no_reference_to_files_users_do_not_have():
    private = ["THEORY" + ".md", "DESIGN" + ".md", "TL4_NOTES" + ".md"]   # the team's own notes
    for path in [*ROOT.glob("mi_margin/**/*.py"), *ROOT.glob("docs/*"), *ROOT.glob("tests/**/*.py"),
                 *ROOT.glob("bench/*.py"), *ROOT.glob("tutorials/*"), ROOT / "README.md"]:
        if path.is_file() and path.suffix in (".py", ".md", ".ipynb"):
            text = path.read_text(encoding="utf-8")
            assert not any(name in text for name in private), path


def test_api_reference_builds_with_the_public_names(tmp_path):
    if importlib.util.find_spec("pdoc") is None:
        pytest.fail("pdoc is not installed; install the test extras: pip install -e '.[test]'")
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    assert spec is not None and spec.loader is not None
    build_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_api)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = build_api.build(tmp_path)
    pdoc_warnings = [str(w.message) for w in caught if "pdoc" in str(w.filename)]
    assert not pdoc_warnings, pdoc_warnings
    index = (out / "mi_margin.html").read_text()
    for name in ["HookedOneLayerTransformer", "HookedMLP", "ModularAddition", "train",
                 "compare_to_theory", "clock_pizza", "MiMarginError"]:
        assert name in index, name
    models = (out / "mi_margin" / "models.html").read_text()
    assert "attn_rate" in models and "to_str_tokens" in models
    assert "write_report" in (out / "mi_margin" / "viz.html").read_text()
