"""benchmarks/test_counts.py groups pytest's node ids into the suites docs/testing.md names."""

from __future__ import annotations

import importlib.util

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("test_counts", ROOT / "benchmarks" / "test_counts.py")
test_counts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_counts)


def test_a_top_level_file_is_its_own_suite_and_a_folder_is_one_suite():
    ids = ["tests/test_config.py::test_a[x]", "tests/test_config.py::test_b", "tests/flux/test_objects.py::test_c",
           "tests/flux/test_graph.py::test_d", "", "3 tests collected in 0.1s"]
    assert test_counts.counts(ids) == {"tests/test_config.py": 2, "tests/flux/": 2}
