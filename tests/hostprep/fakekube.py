"""The host-reboot tests' handle on the kubectl stand-in
(tests/stand_ins/kubectl.py, its nodes file: tests/stand_ins/kubectl_nodes.py):
``Kube.install`` writes the nodes and pods and a ``kubectl`` wrapper;
``calls()`` are the calls it got."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STAND_IN = REPO / "tests" / "stand_ins" / "kubectl.py"


class Kube:
    """The test's handle on the stand-in: its state and its calls."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.state_file = directory / "state.json"
        self.bin = directory / "bin"

    @classmethod
    def install(cls, directory: Path, *, nodes: dict[str, dict[str, Any]], pods: list[dict[str, Any]] | None = None) -> Kube:
        kube = cls(directory)
        kube.bin.mkdir(parents=True, exist_ok=True)
        kube.save({"nodes": nodes, "pods": pods or []})
        wrapper = kube.bin / "kubectl"
        wrapper.write_text(f"#!/bin/sh\nFAKE_CLI_DIR= FAKE_KUBE_STATE={shlex.quote(str(kube.state_file))} exec {shlex.quote(sys.executable)} "
                           f"{shlex.quote(str(STAND_IN))} \"$@\"\n")
        wrapper.chmod(0o755)
        return kube

    def load(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def node(self, name: str) -> dict[str, Any]:
        return self.load()["nodes"][name]

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def verbs(self) -> list[list[str]]:
        return [call["args"] for call in self.calls()]
