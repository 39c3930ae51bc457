"""The adopt-mode config resource the way the engine runs it (serialized with
dill, loaded in a fresh process) against the stand-in talosctl's node:
preview reads and changes nothing, the first `up` stages the config so the
upgrade's reboot applies it (one reboot), a second run changes nothing,
destroy gives the node its own values back."""

from __future__ import annotations

from typing import Any

import pytest

from components.talos.config_documents import load_documents
from tests.conftest import stack_file_config
from tests.talos.conftest import FakeTalosctl, make_cfg
from tests.talos.engine import engine, registration
from tests.talos.running_configs import as_text, multi_document, with_own_cri_file, worker_documents
from tests.talos.test_adopt import is_owned, leaves
from tests.talos.test_component import CONFIG, UPGRADE, run_node

OLD = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
READ_ONLY = {"version", "get", "read"}


@pytest.fixture
def program(homelab) -> dict[str, tuple[str, dict[str, Any]]]:
    run, _ = run_node(homelab)
    return {"config": registration(run, CONFIG), "upgrade": registration(run, UPGRADE, "-talos-upgrade")}


def up(program, fake: FakeTalosctl, name: str = "config", olds: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `pulumi up` does with one resource: check, then create (or diff
    and update when it exists)."""
    provider, props = program[name]
    checked = engine(provider, "check", props, fake.env(), olds=olds)
    assert checked["ok"]["failures"] == [], checked
    inputs = checked["ok"]["inputs"]
    if olds is None:
        return engine(provider, "create", inputs, fake.env())
    if not engine(provider, "diff", inputs, fake.env(), olds=olds)["ok"]["changes"]:
        return {"ok": {"outs": olds}, "unchanged": True}
    return engine(provider, "update", inputs, fake.env(), olds=olds)


def non_owned(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    labels = stack_file_config()["talos"]["nodeLabels"]
    return [{path: value for path, value in leaves(document).items() if not is_owned(path, labels)} for document in documents]


def test_preview_reads_the_node_and_shows_the_changes_without_touching_it(program, fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.node("v1.12.11", OLD, config=as_text(worker_documents("v1.12.11")))
    provider, props = program["config"]
    checked = engine(provider, "check", props, fake_talosctl.env())["ok"]
    pending = checked["inputs"]["pendingChanges"]
    assert any(line.startswith("machine.install.image:") for line in pending)
    assert any("machine.kernel.modules[name=nvidia]: add" in line for line in pending)
    assert any("--mode=staged" in line for line in pending)
    assert any(line.startswith("talos (dry run): Dry run summary:") for line in pending)
    assert not any("abcdef.0123456789abcdef" in line for line in pending), "no secret of the node in the preview"
    assert engine(provider, "diff", checked["inputs"], fake_talosctl.env(), olds={**checked["inputs"], "pendingChanges": []})["ok"]["changes"] is True
    calls = fake_talosctl.calls()
    assert calls and not any(call["mutated"] for call in calls), "check and diff never change the node"
    for call, command in zip(calls, fake_talosctl.commands(), strict=True):
        assert command in READ_ONLY or (command == "apply-config" and "--dry-run" in call["argv"]), call["argv"]


def test_first_up_stages_the_config_and_the_upgrade_reboots_once(program, fake_talosctl: FakeTalosctl) -> None:
    original = worker_documents("v1.12.11")
    fake_talosctl.node("v1.12.11", OLD, config=as_text(original))
    created = up(program, fake_talosctl)["ok"]["outs"]
    assert created["mode"] == "staged"
    assert fake_talosctl.reboots == 0, "staging the config reboots nothing"
    assert fake_talosctl.running_config() == as_text(original), "a staged config does not run before the reboot"
    stored = load_documents(fake_talosctl.stored_config())
    assert non_owned(stored) == non_owned(original), "every value the program does not own is still there"
    assert stored[0]["machine"]["install"]["image"].endswith(":v1.13.9")

    upgraded = up(program, fake_talosctl, "upgrade")["ok"]["outs"]
    assert upgraded["upgraded"] is True
    assert fake_talosctl.reboots == 1, "one reboot applies both the upgrade and the config"
    assert load_documents(fake_talosctl.running_config()) == stored

    calls_before = len(fake_talosctl.calls())
    second = up(program, fake_talosctl, olds=created)
    assert second.get("unchanged") is True, "a second run changes nothing"
    assert up(program, fake_talosctl, "upgrade", olds=upgraded).get("unchanged") is True
    assert fake_talosctl.reboots == 1
    assert not any(call["mutated"] for call in fake_talosctl.calls()[calls_before:])


def test_destroy_puts_back_the_replaced_values_and_removes_only_what_it_added(program, fake_talosctl: FakeTalosctl) -> None:
    original = multi_document()
    schematic = program["config"][1]["spec"]["schematicId"]
    fake_talosctl.node("v1.13.9", schematic, config=as_text(original))
    created = up(program, fake_talosctl)["ok"]["outs"]
    assert created["mode"] == "auto" and created["rebootPaths"] == [], "labels and modules apply without a reboot"
    assert fake_talosctl.reboots == 0
    assert created["originals"]["install"]["image"] == "ghcr.io/siderolabs/installer:v1.13.9"
    provider, _ = program["config"]
    assert engine(provider, "delete", created, fake_talosctl.env())["ok"] == {"deleted": None}
    assert load_documents(fake_talosctl.stored_config()) == original
    assert fake_talosctl.reboots == 0, "destroy never reboots the node"


def test_destroy_refuses_when_someone_changed_an_owned_path(program, fake_talosctl: FakeTalosctl) -> None:
    schematic = program["config"][1]["spec"]["schematicId"]
    fake_talosctl.node("v1.13.9", schematic, config=as_text(worker_documents("v1.13.9")))
    created = up(program, fake_talosctl)["ok"]["outs"]
    edited = fake_talosctl.stored_config().replace("drmoo.io/gpu: nvidia-t4", "drmoo.io/gpu: a100")
    fake_talosctl.node("v1.13.9", schematic, config=edited)
    provider, _ = program["config"]
    result = engine(provider, "delete", created, fake_talosctl.env())
    assert result["error"] == "RuntimeError" and "machine.nodeLabels[drmoo.io/gpu] is 'a100'" in result["message"]
    assert fake_talosctl.stored_config() == edited, "nothing is applied when restore is refused"


def test_a_cri_file_that_cannot_take_the_line_stops_before_anything_is_applied(homelab, fake_talosctl: FakeTalosctl) -> None:
    run, _ = run_node(homelab, nvidiaDefaultRuntime=True)
    provider, props = registration(run, CONFIG)
    conflicting = with_own_cri_file("v1.13.9", '[plugins."io.containerd.cri.v1.runtime".containerd]\n  default_runtime_name = "runc"\n')
    fake_talosctl.node("v1.12.11", OLD, config=as_text(conflicting))
    checked = engine(provider, "check", props, fake_talosctl.env())["ok"]
    [(key, reason)] = checked["failures"]
    assert key == "spec" and "default_runtime_name = 'runc'" in reason and "talos.nvidiaDefaultRuntime" in reason
    result = engine(provider, "create", {**props, "originals": {}}, fake_talosctl.env())
    assert result["error"] == "AdoptError"
    assert "apply-config" not in fake_talosctl.commands()


def test_preview_of_a_node_that_does_not_answer_does_not_fail(program, fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.node("v1.13.9", None, maintenance=True)
    provider, props = program["config"]
    checked = engine(provider, "check", props, fake_talosctl.env())["ok"]
    assert checked["failures"] == [] and checked["inputs"]["pendingChanges"][0].startswith("not known: cannot read 192.168.8.123")


def test_a_node_already_holding_every_owned_value_is_left_alone(homelab, fake_talosctl: FakeTalosctl) -> None:
    cfg = make_cfg(homelab)
    provider, props = registration(run_node(homelab)[0], CONFIG)
    fake_talosctl.node("v1.13.9", props["spec"]["schematicId"], config=as_text(worker_documents("v1.13.9")))
    created = engine(provider, "create", {**props, "originals": {}}, fake_talosctl.env())["ok"]["outs"]
    fake_talosctl.node("v1.13.9", props["spec"]["schematicId"], config=fake_talosctl.stored_config())
    again = engine(provider, "update", {**props, "originals": created["originals"]}, fake_talosctl.env(), olds=created)["ok"]["outs"]
    assert again["mode"] == "none" and again["lastChanges"][0].startswith("nothing to do because")
    assert "apply-config" not in fake_talosctl.commands()[-4:]
    assert cfg.talos.config_source == "running"
