"""Install the stand-in kubectl and talosctl (tests/stand_ins/kubectl.py and
talosctl.py, each answering from scripted rules) for a test."""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
STAND_INS = HERE.parent / "stand_ins"


def data(name: str) -> str:
    return (DATA / name).read_text()


def answer(stdout: str = "", stderr: str = "", rc: int = 0, sleep: float = 0) -> dict[str, Any]:
    return {"stdout": stdout, "stderr": stderr, "rc": rc, "sleep": sleep}


def rule(argv: list[str], *responses: dict[str, Any]) -> dict[str, Any]:
    """Answers exactly ``argv`` (order and values), the private config file's
    flag left out."""
    return {"match": list(argv), "responses": list(responses)}


@dataclass
class FakeCli:
    state: Path
    bin: Path

    def set_rules(self, tool: str, rules: list[dict[str, Any]]) -> None:
        (self.state / f"{tool}.json").write_text(json.dumps(rules))
        wrapper = self.bin / tool
        # The shared stand-in, answering from these rules (its scripted mode:
        # no cluster or node state of its own).
        state = {"kubectl": "FAKE_KUBE_STATE", "talosctl": "FAKE_TALOS_STATE"}[tool]
        command = f"{state}= exec {shlex.quote(sys.executable)} {shlex.quote(str(STAND_INS / f'{tool}.py'))}"
        wrapper.write_text(f"#!/bin/sh\n{command} \"$@\"\n")
        wrapper.chmod(0o755)

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return [record for record in records if tool is None or record["tool"] == tool]

    def env(self, **extra: str) -> dict[str, str]:
        """An environment whose PATH finds only the stand-ins (their wrappers
        name /bin/sh and the Python binary by absolute path). HOME is the test's
        own folder, so ~/.kube and ~/.talos of the machine never leak in."""
        env = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "TALOSCONFIG")}
        env.update(PATH=str(self.bin), FAKE_CLI_DIR=str(self.state), HOME=str(self.state.parent), **extra)
        return env


def install(tmp_path: Path) -> FakeCli:
    state, bin_dir = tmp_path / "fake-state", tmp_path / "fake-bin"
    state.mkdir()
    bin_dir.mkdir()
    return FakeCli(state, bin_dir)


def install_on_path(tmp_path: Path, monkeypatch: Any) -> FakeCli:
    """``install``, and this test's environment set so that its kubectl and
    talosctl are the stand-ins (``monkeypatch`` undoes it after the test)."""
    cli = install(tmp_path)
    for key, value in cli.env().items():
        monkeypatch.setenv(key, value)
    return cli
