"""Shared fixtures: the reference stack's config and a mock-engine runner for
the whole program (__main__.py)."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pytest

from components.config import read_stack_file
from components.mockengine import PLACEHOLDER_SECRETS, ProgramRun, run_program

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"

FAKE_SECRETS = PLACEHOLDER_SECRETS


def stack_file_config(stack: str = "homelab") -> dict[str, Any]:
    """Top-level config of Pulumi.<stack>.yaml, namespace stripped."""
    return read_stack_file(ROOT / f"Pulumi.{stack}.yaml")


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
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared upstream reference data), which is not present")
    return path
