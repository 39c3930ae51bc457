"""Adopt, stage, walk and destroy against the stand-in talosctl on each
supported Talos version, as each serves its configs: ``v1alpha1`` runs;
the next boot is ``persistent`` from 1.10 (NotFound until something is
applied) and the STATE file only before 1.10
(tests/stand_ins/talosctl.py names the upstream files)."""

from __future__ import annotations

from typing import Any

import pytest

from components.talos.config_documents import load_documents
from components.talos.node_config import read_configs
from tests.talos.conftest import TALOSCONFIG, FakeTalosctl
from tests.talos.engine import engine, registration
from tests.talos.running_configs import as_text, worker_documents
from tests.talos.test_component import CONFIG, UPGRADE, run_node
from tests.talos.test_config_provider import OLD, up

VERSIONS = ["v1.9.6", "v1.10.9", "v1.11.6", "v1.12.11", "v1.13.9"]
NODE, ENDPOINT = "192.168.8.123", "192.168.8.99"


@pytest.fixture
def program(homelab) -> dict[str, tuple[str, dict[str, Any]]]:
    run, _ = run_node(homelab)
    return {"config": registration(run, CONFIG), "upgrade": registration(run, UPGRADE, "-talos-upgrade")}


def on(fake: FakeTalosctl, version: str, program: dict[str, Any]) -> list[dict[str, Any]]:
    """The node on ``version``: from the old schematic (an upgrade follows)
    below 1.13.9, from the stack's on 1.13.9 (no upgrade)."""
    documents = worker_documents(version)
    schematic = program["config"][1]["spec"]["schematicId"] if version == "v1.13.9" else OLD
    fake.publish(OLD)
    fake.node(version, schematic, config=as_text(documents))
    return documents


@pytest.mark.parametrize("version", VERSIONS)
def test_preview_reads_every_version_and_plans_the_change(program, fake_talosctl: FakeTalosctl, version: str) -> None:
    on(fake_talosctl, version, program)
    provider, props = program["config"]
    pending = engine(provider, "check", props, fake_talosctl.env())["ok"]["inputs"]["pendingChanges"]
    assert not pending[0].startswith("not known"), pending
    assert any("machine.kernel.modules[name=nvidia]: add" in line for line in pending), pending
    assert not any(call["mutated"] for call in fake_talosctl.calls())


@pytest.mark.parametrize("version", VERSIONS)
def test_adoption_applies_and_reads_back_the_next_boot_config(program, fake_talosctl: FakeTalosctl, version: str) -> None:
    original = on(fake_talosctl, version, program)
    created = up(program, fake_talosctl)
    assert "ok" in created, created
    outs = created["ok"]["outs"]
    assert outs["mode"] == ("auto" if version == "v1.13.9" else "staged")
    stored = load_documents(fake_talosctl.stored_config())
    assert stored != original and any(module["name"] == "nvidia" for module in stored[0]["machine"]["kernel"]["modules"])
    if version != "v1.13.9":
        assert load_documents(fake_talosctl.running_config()) == original, "staged: nothing runs before the reboot"
        persistent = fake_talosctl.persistent_config()
        assert (persistent is None) is (version == "v1.9.6"), "persistent holds the staged config from 1.10"


@pytest.mark.parametrize("version", VERSIONS[:-1])
def test_a_config_already_staged_is_recognised_without_the_file(program, fake_talosctl: FakeTalosctl, version: str) -> None:
    on(fake_talosctl, version, program)
    first = up(program, fake_talosctl)["ok"]["outs"]
    staged = fake_talosctl.stored_config()
    calls = len(fake_talosctl.calls())
    again = up(program, fake_talosctl, olds=first)
    assert again.get("unchanged") is True, again
    assert not any(call["mutated"] for call in fake_talosctl.calls()[calls:])
    configs = read_configs(NODE, ENDPOINT, TALOSCONFIG, version)
    assert configs.staged and load_documents(configs.next_boot) == load_documents(staged)
    if version != "v1.9.6":
        assert "read" not in fake_talosctl.commands(), "from 1.10 the file is never read"


@pytest.mark.parametrize("version", VERSIONS[:-1])
def test_the_walk_stages_each_steps_config_and_one_reboot_applies_it(program, fake_talosctl: FakeTalosctl, version: str) -> None:
    on(fake_talosctl, version, program)
    created = up(program, fake_talosctl)["ok"]["outs"]
    provider, props = program["upgrade"]
    result = engine(provider, "create", {**props, "originals": created["originals"], "pollSeconds": 0.05}, fake_talosctl.env())
    assert "ok" in result, result
    assert fake_talosctl.get("version") == "v1.13.9"
    steps = result["ok"]["outs"]["stepsDone"]
    assert fake_talosctl.reboots == len(steps), "one reboot per step: the staged config rides on the upgrade's"
    running = load_documents(fake_talosctl.running_config())[0]["machine"]
    assert running["install"]["image"].endswith(":v1.13.9") and running["install"]["wipe"] is False
    assert [drain["by"] for drain in fake_talosctl.get("drains")] == ["talos-node"] * len(steps), "one drain per reboot"


@pytest.mark.parametrize("version", VERSIONS)
def test_destroy_restores_on_every_version(program, fake_talosctl: FakeTalosctl, version: str) -> None:
    original = on(fake_talosctl, version, program)
    created = up(program, fake_talosctl)["ok"]["outs"]
    provider, _ = program["config"]
    result = engine(provider, "delete", created, fake_talosctl.env())
    assert result.get("ok") == {"deleted": None}, result
    assert load_documents(fake_talosctl.stored_config()) == original
    assert fake_talosctl.reboots == 0, "destroy never reboots"


def test_a_foreign_change_between_read_and_apply_is_refused(program, fake_talosctl: FakeTalosctl, monkeypatch) -> None:
    """Talos has no compare-and-swap: the config is read again just before
    the apply, and a change by someone else stops it."""
    from components.talos import config_provider

    documents = on(fake_talosctl, "v1.12.11", program)
    state = config_provider.read_node_state(NODE, ENDPOINT, TALOSCONFIG)
    provider, props = program["config"]
    plan = config_provider.plan_for(props, state, None)
    documents[0]["machine"].setdefault("nodeLabels", {})["hand.made/by"] = "someone"
    fake_talosctl.stage(as_text(documents))  # someone applied --mode=staged meanwhile
    with pytest.raises(RuntimeError, match="next-boot machine config changed since it was read"):
        config_provider.apply_plan(plan, state, NODE, ENDPOINT, TALOSCONFIG)
    assert load_documents(fake_talosctl.stored_config()) == documents, "their change is kept"
