"""Fixtures for the Flux tests: the stand-in kubectl on PATH (tests.doctor.fakecli)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doctor.fakecli import FakeCli, install_on_path


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    return install_on_path(tmp_path, monkeypatch)
