"""Shared fixtures: the reference stack's config and a mock-engine runner for
the whole program (__main__.py)."""

from __future__ import annotations

import copy
import os
import runpy
from pathlib import Path
from typing import Any

import pytest

from components.cli import PROJECT_DIR_ENV
from components.config import read_stack_file
from tools.mockengine import PLACEHOLDER_SECRETS, ProgramRun, run_program

ROOT = Path(__file__).resolve().parents[1]
# Upstream files vendored into the repository (tests/data/upstream/README.md
# lists source, version and licence of each).
REFERENCE = ROOT / "tests" / "data" / "upstream"
# The tests' own stack files. The project folder's Pulumi.*.yaml belong to the
# user (rename, edit, delete, add): no test reads them.
STACKS = ROOT / "tests" / "data" / "stacks"
HOMELAB_STACK = STACKS / "Pulumi.homelab.yaml"
# Every tool run by a test, in this process or a child, looks for stack files
# there unless the test names another folder with --project-dir.
os.environ[PROJECT_DIR_ENV] = str(STACKS)

FAKE_SECRETS = PLACEHOLDER_SECRETS


def stack_file_config(stack: str = "homelab") -> dict[str, Any]:
    """Top-level config of the tests' tests/data/stacks/Pulumi.<stack>.yaml, namespace stripped."""
    return read_stack_file(STACKS / f"Pulumi.{stack}.yaml")


def created_config(stack: str = "homelab") -> dict[str, Any]:
    """The stack with ``vm.source: create``: the program creates the VM
    (VmLegacy), for the tests of what it creates."""
    raw = stack_file_config(stack)
    raw["vm"]["source"] = "create"
    return raw


@pytest.fixture
def homelab() -> dict[str, Any]:
    return copy.deepcopy(stack_file_config("homelab"))


def run_main(config: dict[str, Any], secrets: dict[str, str] | None = None, **kwargs: Any) -> ProgramRun:
    """Run __main__.py under the mock engine with ``config``."""
    return run_program(
        lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
        config,
        secret_keys=FAKE_SECRETS if secrets is None else secrets,
        **kwargs,
    )


def reference(*parts: str) -> Path:
    """A vendored upstream file; a missing one is an error, never a skip."""
    path = REFERENCE.joinpath(*parts)
    assert path.is_file(), f"{path} is missing from tests/data/upstream (see its README.md)"
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With REQUIRE_NO_SKIPS=1 (CI) a skipped test fails the run: every test
    must run from a clean clone once openssh-server is installed."""
    import os

    if os.environ.get("REQUIRE_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(f"REQUIRE_NO_SKIPS=1: {skipped} test(s) skipped; CI requires 0", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
