"""Print how many tests each suite of docs/testing.md has, as pytest collects them now.

    .venv/bin/python benchmarks/test_counts.py

A suite is a test file at the top of tests/ or a folder below it (tests/flux/).
The counts are printed, never kept by hand in the docs.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def suite(node_id: str) -> str:
    """``tests/flux/test_objects.py::test_x[a]`` -> ``tests/flux/``; a top-level file is its own suite."""
    path = node_id.split("::", 1)[0]
    parts = path.split("/")
    return path if len(parts) <= 2 else "/".join(parts[:2]) + "/"


def counts(node_ids: list[str]) -> Counter[str]:
    return Counter(suite(node) for node in node_ids if "::" in node)


def main() -> int:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"test_counts: pytest could not collect the tests (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}",
              file=sys.stderr)
        return 1
    found = counts(done.stdout.splitlines())
    print("| Suite | Tests |\n|---|---|")
    for name, number in sorted(found.items()):
        print(f"| `{name}` | {number} |")
    print(f"| all | {sum(found.values())} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
