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
from components.talos.schematic import planned_installer
from tests.conftest import stack_file_config
from tests.stand_ins.kubectl_objects import FakeKubectl, install_kubectl
from tests.talos.running_configs import as_text, worker_documents
from tools.mockengine import PLACEHOLDER_MACHINE_SECRETS, PLACEHOLDER_TALOSCONFIG

HERE = Path(__file__).resolve().parent
STAND_IN = HERE.parent / "stand_ins" / "talosctl.py"

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
        # The GPU Operator needs Talos 1.13 (README row 13).
        raw["gpuStack"]["mode"] = "devicePlugin"
    return parse_stack_config(raw)


# Extensions of a node installed from the stack's schematic (the homelab's).
NVIDIA_EXTENSIONS = ["nonfree-kmod-nvidia-production", "nvidia-container-toolkit-production", "qemu-guest-agent"]


@dataclass
class FakeTalosctl:
    """Drives the stand-in talosctl's node (tests/stand_ins/talosctl.py)."""

    state: Path
    bin_dir: Path

    def _node(self) -> dict[str, Any]:
        path = self.state / "node.json"
        return json.loads(path.read_text()) if path.exists() else {"reboots": 0, "extensions": []}

    def _save(self, node: dict[str, Any]) -> None:
        (self.state / "node.json").write_text(json.dumps(node, indent=2))

    def node(self, version: str, schematic: str | None, *, config: str | None = None, extensions: list[str] | None = None,
             maintenance: bool = False) -> None:
        """A node running ``version`` from ``schematic`` (None: not an Image
        Factory image), with ``config`` as its running and stored machine
        config (default: the guide's worker config for that version)."""
        node = self._node()
        node.pop("pending_image", None)
        node.update(version=version, schematic=schematic, maintenance=maintenance, down_calls=0, drains=[],
                    extensions=list(extensions if extensions is not None else (NVIDIA_EXTENSIONS if schematic else [])))
        self._save(node)
        text = config if config is not None else as_text(worker_documents(version))
        for name in ("active.yaml", "config.yaml"):
            (self.state / name).write_text(text)
        (self.state / "persistent.yaml").unlink(missing_ok=True)  # a node just booted from STATE

    def stage(self, text: str) -> None:
        """A config applied with --mode=staged (by someone, or an earlier run):
        on STATE, and in the ``persistent`` resource from Talos 1.10."""
        (self.state / "config.yaml").write_text(text)
        if parse_version(self.get("version")) >= (1, 10, 0) and not (self.state / "serves-state-file").exists():
            (self.state / "persistent.yaml").write_text(text)

    def serve_old_state_file(self) -> None:
        """The stand-in of before: every version serves /system/state/config.yaml
        and only the MachineConfig ``v1alpha1`` exists (the opposite of Talos
        from 1.10), to show which tests it lets pass."""
        (self.state / "serves-state-file").write_text("")

    def persistent_config(self) -> str | None:
        path = self.state / "persistent.yaml"
        return path.read_text() if path.exists() else None

    def publish(self, schematic: str, extensions: list[str] | None = None) -> None:
        """The Image Factory serves ``schematic`` (its installer images pull)."""
        path = self.state / "catalog.json"
        catalog = json.loads(path.read_text()) if path.exists() else {"schematics": {}}
        catalog["schematics"][schematic] = list(extensions if extensions is not None else NVIDIA_EXTENSIONS)
        path.write_text(json.dumps(catalog))

    def misbehave(self, upgrade: str, **details: Any) -> None:
        (self.state / "misbehave.json").write_text(json.dumps({"upgrade": upgrade, **details}))

    def fail_next(self, message: str) -> None:
        (self.state / "fail").write_text(message)

    def set(self, **fields: Any) -> None:
        node = self._node()
        node.update(fields)
        self._save(node)

    def get(self, field: str) -> Any:
        return self._node()[field]

    @property
    def reboots(self) -> int:
        return int(self._node()["reboots"])

    def running_config(self) -> str:
        return (self.state / "active.yaml").read_text()

    def stored_config(self) -> str:
        return (self.state / "config.yaml").read_text()

    def calls(self) -> list[dict[str, Any]]:
        log = self.state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def commands(self) -> list[str]:
        """The subcommand of each call (`version`, `get`, `apply-config`, ...)."""
        out = []
        for call in self.calls():
            argv = call["argv"]
            words = [arg for index, arg in enumerate(argv) if not arg.startswith("-") and (index == 0 or argv[index - 1] != "--talosconfig")]
            out.append(words[0] if words else "")
        return out

    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_TALOS_STATE": str(self.state)}


def install_talosctl(tmp_path: Path) -> FakeTalosctl:
    """The stand-in `talosctl` in ``tmp_path/bin`` (on the PATH of
    :meth:`FakeTalosctl.env`): a node on the stack's target version and
    schematic, the stack's schematic published at the factory."""
    bin_dir, state = tmp_path / "bin", tmp_path / "talos-state"
    bin_dir.mkdir()
    state.mkdir()
    script = bin_dir / "talosctl"
    script.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(STAND_IN)!r}, run_name='__main__')\n")
    script.chmod(0o755)
    fake = FakeTalosctl(state=state, bin_dir=bin_dir)
    talos = parse_stack_config(stack_file_config("homelab")).talos
    _, schematic, _ = planned_installer(talos)
    fake.publish(schematic)
    fake.node("v1.13.9", schematic)
    # The homelab's talos.endpoint is a control plane: its Talos API serves a kubeconfig.
    fake.set(controlplanes=[talos.talosctl_endpoint] if talos.endpoint else [])
    if os.environ.get("FAKE_TALOS_OLD_READ"):
        fake.serve_old_state_file()
    return fake


@pytest.fixture
def fake_talosctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTalosctl:
    """:func:`install_talosctl`, first on this process's PATH too."""
    fake = install_talosctl(tmp_path)
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TALOS_STATE", str(fake.state))
    return fake


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_talosctl: FakeTalosctl) -> FakeKubectl:
    """A `kubectl` next to the stand-in talosctl, with an empty cluster."""
    fake = install_kubectl(tmp_path, fake_talosctl.bin_dir)
    monkeypatch.setenv("FAKE_KUBE_STATE", str(fake.state))
    return fake
