"""Fixtures for the Talos node tests: the reference stack's config, a fake
secrets bundle and talosconfig, and the stand-in talosctl on PATH."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.config import StackConfig, parse_stack_config, parse_version
from components.mockengine import PLACEHOLDER_MACHINE_SECRETS, PLACEHOLDER_TALOSCONFIG

HERE = Path(__file__).resolve().parent

# Shaped like `talosctl gen secrets` output and a talosconfig; stand-in values.
MACHINE_SECRETS = PLACEHOLDER_MACHINE_SECRETS
TALOSCONFIG = PLACEHOLDER_TALOSCONFIG


@pytest.fixture
def cfg(homelab: dict[str, Any]) -> StackConfig:
    return parse_stack_config(homelab)


def make_cfg(homelab: dict[str, Any], **talos: Any) -> StackConfig:
    raw = json.loads(json.dumps(homelab))
    raw["talos"].update(talos)
    if "version" in talos and parse_version(talos["version"]) < (1, 13, 0):
        # The GPU Operator needs Talos 1.13 (fact 13).
        raw["gpuStack"]["mode"] = "devicePlugin"
    return parse_stack_config(raw)


@dataclass
class FakeTalosctl:
    state: Path
    bin_dir: Path

    def node(self, version: str, schematic: str | None) -> None:
        (self.state / "version").write_text(version)
        (self.state / "schematic").write_text(schematic or "")

    def fail_next(self, message: str) -> None:
        (self.state / "fail").write_text(message)

    def calls(self) -> list[dict[str, Any]]:
        log = self.state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_TALOS_STATE": str(self.state)}


@pytest.fixture
def fake_talosctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTalosctl:
    """A `talosctl` first on PATH that records its calls."""
    bin_dir, state = tmp_path / "bin", tmp_path / "talos-state"
    bin_dir.mkdir()
    state.mkdir()
    script = bin_dir / "talosctl"
    script.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(HERE / 'fake_talosctl.py')!r}, run_name='__main__')\n")
    script.chmod(0o755)
    fake = FakeTalosctl(state=state, bin_dir=bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TALOS_STATE", str(state))
    return fake
