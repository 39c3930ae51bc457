"""The mutation run's arithmetic (benchmarks/mutation.py): a mutant listed
as equivalent is left out of the rate only while it survives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutation_run", ROOT / "benchmarks" / "mutation.py")
mutation_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation_run)

STATUSES = {"m.x_a__mutmut_1": "killed", "m.x_a__mutmut_2": "survived", "m.x_a__mutmut_3": "timeout",
            "m.x_b__mutmut_1": "survived", "m.x_b__mutmut_2": "killed", "m.x_b__mutmut_3": "caught by type check"}


def test_a_listed_mutant_that_survives_is_left_out_and_one_that_is_killed_counts_as_killed_and_is_named() -> None:
    assert mutation_run.tally(STATUSES, ["m.x_b__mutmut_1", "m.x_b__mutmut_2", "m.x_c__mutmut_9"]) == {
        "killed": 4, "judged": 5, "equivalent": ["m.x_b__mutmut_1"], "stale": ["m.x_b__mutmut_2"], "survivors": ["m.x_a__mutmut_2"]}


def test_without_a_list_every_mutant_is_judged() -> None:
    assert mutation_run.tally(STATUSES, []) == {
        "killed": 4, "judged": 6, "equivalent": [], "stale": [], "survivors": ["m.x_a__mutmut_2", "m.x_b__mutmut_1"]}


def test_the_equivalent_list_is_read_from_its_table_rows() -> None:
    listed = mutation_run.equivalent_mutants()
    rows = [line for line in (ROOT / "benchmarks" / "mutation-equivalent.md").read_text().splitlines() if line.startswith("| `")]
    assert len(listed) == len(rows) and all(name.rsplit("__mutmut_", 1)[1].isdigit() for name in listed)
