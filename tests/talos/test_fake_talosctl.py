"""The stand-in talosctl is as strict as the real one (talosctl v1.13.9's
cobra/pflag flags and machined's apply-config rules): what the real tool
refuses, it refuses, so the program's calls are checked against it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.talos.conftest import TALOSCONFIG, FakeTalosctl
from tests.talos.running_configs import as_text, worker_documents

NODE = ["--nodes", "192.168.8.123", "--endpoints", "192.168.8.99"]


def talosctl(fake: FakeTalosctl, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "talosconfig"
    config.write_text(TALOSCONFIG)
    return subprocess.run([str(fake.bin_dir / "talosctl"), "--talosconfig", str(config), *args], env=fake.env(),
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["version", "--nodez", "x"], "unknown flag: --nodez"),
    (["version", "-x"], "unknown shorthand flag: 'x' in -x"),
    (["upgrade", *NODE, "--image"], "flag needs an argument: --image"),
    (["upgrade", *NODE, "--timeout", "30 minutes"], 'invalid argument "30 minutes" for "--timeout" flag: time: invalid duration'),
    (["apply-config", *NODE, "--file", "x", "--mode", "later"], "possible options are: auto, no-reboot, reboot, staged, try"),
    (["upgrade", *NODE, "--wipe-mode", "all"], "unknown flag: --wipe-mode"),
    (["reset", *NODE], 'unknown command "reset" for "talosctl"'),
    (["read", *NODE], "accepts 1 arg(s), received 0"),
    (["read", "--nodes", "a,b", "--endpoints", "e", "/system/state/config.yaml"], 'command "read" is not supported with multiple nodes'),
    (["apply-config", *NODE], "no filename supplied for configuration"),
])
def test_what_talosctl_refuses_the_stand_in_refuses(fake_talosctl: FakeTalosctl, tmp_path: Path, args, message) -> None:
    done = talosctl(fake_talosctl, tmp_path, *args)
    assert done.returncode == 1 and message in done.stderr, done.stderr


def test_flags_in_every_form_pflag_accepts(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    for args in (["version", "-n", "192.168.8.123", "-e", "192.168.8.99"], ["version", "-n192.168.8.123", "-e=192.168.8.99"],
                 ["-n", "192.168.8.123", "version", "--endpoints=192.168.8.99"]):
        done = talosctl(fake_talosctl, tmp_path, *args)
        assert done.returncode == 0 and "NODE:        192.168.8.123" in done.stdout, (args, done.stderr)


def test_nodes_come_from_the_talosconfig_context_and_a_missing_config_is_an_error(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    assert "NODE:        192.168.8.123" in talosctl(fake_talosctl, tmp_path, "version").stdout
    env = {**fake_talosctl.env(), "HOME": str(tmp_path)}
    env.pop("TALOSCONFIG", None)
    done = subprocess.run([str(fake_talosctl.bin_dir / "talosctl"), "version", *NODE], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "failed to determine endpoints" in done.stderr


def test_no_reboot_refuses_a_change_talos_cannot_apply_live_and_auto_reboots_for_it(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    documents = worker_documents("v1.13.9")
    fake_talosctl.node("v1.13.9", None, config=as_text(documents))
    documents[0]["machine"]["files"].append({"op": "create", "path": "/etc/cri/conf.d/20-customization.part", "permissions": 0o644, "content": "[metrics]\n"})
    new = tmp_path / "new.yaml"
    new.write_text(as_text(documents))
    refused = talosctl(fake_talosctl, tmp_path, "apply-config", *NODE, "--file", str(new), "--mode", "no-reboot")
    assert refused.returncode == 1 and "can't be applied in immediate mode" in refused.stderr
    dry = talosctl(fake_talosctl, tmp_path, "apply-config", *NODE, "--file", str(new), "--dry-run")
    assert "Dry run summary:\nApplied configuration with a reboot (skipped in dry-run)." in dry.stderr
    assert fake_talosctl.reboots == 0 and not any(call["mutated"] for call in fake_talosctl.calls())
    applied = talosctl(fake_talosctl, tmp_path, "apply-config", *NODE, "--file", str(new))
    assert "Applied configuration with a reboot" in applied.stderr and fake_talosctl.reboots == 1


def test_staged_config_waits_for_the_upgrades_reboot(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    documents = worker_documents("v1.12.11")
    fake_talosctl.node("v1.12.11", None, config=as_text(documents))
    documents[0]["machine"]["nodeLabels"] = {"a": "b"}
    new = tmp_path / "new.yaml"
    new.write_text(as_text(documents))
    staged = talosctl(fake_talosctl, tmp_path, "apply-config", *NODE, "--file", str(new), "--mode", "staged")
    assert "Staged configuration to be applied after the next reboot" in staged.stderr
    assert fake_talosctl.stored_config() == new.read_text() and fake_talosctl.running_config() != new.read_text()
    read = talosctl(fake_talosctl, tmp_path, "read", *NODE, "/system/state/config.yaml")
    assert read.stdout == new.read_text()
    schematic = next(iter(__import__("json").loads((fake_talosctl.state / "catalog.json").read_text())["schematics"]))
    image = f"factory.talos.dev/metal-installer/{schematic}:v1.13.9"
    done = talosctl(fake_talosctl, tmp_path, "upgrade", *NODE, "--image", image, "--wait", "--timeout", "1800s")
    assert done.returncode == 0, done.stderr
    assert fake_talosctl.reboots == 1 and fake_talosctl.get("version") == "v1.13.9"
    assert fake_talosctl.running_config() == new.read_text()


def test_an_image_the_factory_does_not_serve_fails_to_pull(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    done = talosctl(fake_talosctl, tmp_path, "upgrade", *NODE, "--image", f"factory.talos.dev/metal-installer/{'0' * 64}:v1.13.9")
    assert done.returncode == 1 and "error pulling upgrade image" in done.stderr and fake_talosctl.reboots == 0


def test_a_config_the_schema_refuses_is_refused(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    documents = worker_documents("v1.13.9")
    documents[0]["machine"]["sysctls"]["net.core.bpf_jit_harden"] = 1
    new = tmp_path / "new.yaml"
    new.write_text(as_text(documents))
    done = talosctl(fake_talosctl, tmp_path, "apply-config", *NODE, "--file", str(new))
    assert done.returncode == 1 and "InvalidArgument" in done.stderr and "bpf_jit_harden" in done.stderr


@pytest.mark.parametrize(("misbehaviour", "version", "extensions", "upgrade_ok"), [
    ("boots-old", "v1.12.11", True, True),
    ("no-extensions", "v1.13.9", False, True),
    ("timeout", "v1.13.9", True, False),
])
def test_upgrades_can_misbehave_as_real_ones_do(fake_talosctl: FakeTalosctl, tmp_path: Path, misbehaviour, version, extensions, upgrade_ok) -> None:
    schematic = next(iter(__import__("json").loads((fake_talosctl.state / "catalog.json").read_text())["schematics"]))
    fake_talosctl.node("v1.12.11", schematic)
    fake_talosctl.misbehave(misbehaviour)
    done = talosctl(fake_talosctl, tmp_path, "upgrade", *NODE, "--image", f"factory.talos.dev/metal-installer/{schematic}:v1.13.9")
    assert (done.returncode == 0) is upgrade_ok, done.stderr
    assert fake_talosctl.reboots == 1
    if misbehaviour == "timeout":
        assert "context deadline exceeded" in done.stderr
        assert "connection refused" in talosctl(fake_talosctl, tmp_path, "version", *NODE).stderr, "still rebooting"
        talosctl(fake_talosctl, tmp_path, "version", *NODE)
    answer = talosctl(fake_talosctl, tmp_path, "version", *NODE)
    assert f"Tag:         {version}" in answer.stdout, answer.stderr
    listed = talosctl(fake_talosctl, tmp_path, "get", "extensions", *NODE, "-o", "yaml").stdout
    assert ("nonfree-kmod-nvidia-production" in listed) is extensions
