"""Every third-party module the program and its tools import is pinned in
requirements.txt: a package that is only in this machine's venv would pass
every test here and fail in a fresh clone."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from tools.layout_report import parse

ROOT = Path(__file__).resolve().parents[1]
OWN = {"components", "tools", "benchmarks", "tests"}


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> first file that imports it, for components/, tools/, benchmarks/, __main__.py."""
    found: dict[str, str] = {}
    files = [ROOT / "__main__.py", *sorted((ROOT / "components").rglob("*.py")), *sorted((ROOT / "tools").rglob("*.py")),
             *sorted((ROOT / "benchmarks").rglob("*.py"))]
    for path in files:
        for node in ast.walk(parse(path)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _pinned() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {re.split(r"[=<>!~\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in lines if line.strip() and not line.startswith("#")}


def test_every_imported_distribution_is_pinned() -> None:
    distributions = packages_distributions()
    pinned = _pinned()
    missing = []
    for module, where in sorted(_imported_top_levels().items()):
        if module in OWN or module in sys.stdlib_module_names:
            continue
        owners = {name.lower().replace("_", "-") for name in distributions.get(module, [])}
        if not owners & pinned:
            missing.append(f"{module} (imported by {where}; distribution {sorted(owners) or 'not installed'})")
    assert missing == [], "not pinned in requirements.txt: " + "; ".join(missing)
