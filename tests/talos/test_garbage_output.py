"""talosctl exiting 0 with something that is not its YAML (a wrapper
script, a proxy's page): every reader names the command, no raw
yaml.ScannerError escapes."""

from __future__ import annotations

import json

import pytest

from tests.talos.conftest import FakeTalosctl
from tests.talos.engine import engine, registration
from tests.talos.test_component import CONFIG, UPGRADE, run_node

GARBAGE = "<html><body>502: {{ bad gateway"


@pytest.fixture
def program(homelab):
    run, _ = run_node(homelab)
    return {"config": registration(run, CONFIG), "upgrade": registration(run, UPGRADE, "-talos-upgrade")}


def garbage(fake: FakeTalosctl, command: str) -> None:
    (fake.state / "garbage.json").write_text(json.dumps({"command": command, "output": GARBAGE}))


@pytest.mark.parametrize(("command", "named"), [("machineconfig", "`talosctl get machineconfig v1alpha1`"),
                                                 ("extensions", "`talosctl get extensions`")])
def test_the_config_resource_names_the_command(program, fake_talosctl: FakeTalosctl, command: str, named: str) -> None:
    provider, props = program["config"]
    garbage(fake_talosctl, command)
    pending = engine(provider, "check", props, fake_talosctl.env())["ok"]["inputs"]["pendingChanges"]
    assert pending[0].startswith("not known: cannot read") and f"{named} printed something that is not YAML" in pending[0], pending
    garbage(fake_talosctl, command)
    created = engine(provider, "create", props, fake_talosctl.env())
    assert created["error"] == "ValueError" and f"{named} printed something that is not YAML" in created["message"], created
    assert not any(call["mutated"] for call in fake_talosctl.calls())


def test_the_walk_names_the_command(program, fake_talosctl: FakeTalosctl) -> None:
    provider, props = program["upgrade"]
    garbage(fake_talosctl, "extensions")
    pending = engine(provider, "check", props, fake_talosctl.env())["ok"]["inputs"]["pendingSteps"]
    assert "`talosctl get extensions` printed something that is not YAML" in pending[0], pending
