"""Fixtures for the Flux tests: the stand-in kubectl on PATH (tests.doctor.fakecli)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doctor.fakecli import FakeCli, install


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    cli = install(tmp_path)
    for key, value in cli.env().items():
        monkeypatch.setenv(key, value)
    return cli
