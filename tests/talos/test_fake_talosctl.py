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


PERSISTENT_NOT_FOUND = ("1 error occurred:\n\t* rpc error: code = NotFound desc = resource "
                        "MachineConfigs.config.talos.dev(config/persistent@undefined) doesn't exist")
STATE_NOT_FOUND = "error reading: rpc error: code = NotFound desc = stat /system/state/config.yaml: no such file or directory"


def spec_of(output: str, resource_id: str) -> str:
    import yaml

    return next(doc["spec"] for doc in yaml.safe_load_all(output) if doc["metadata"]["id"] == resource_id)


@pytest.mark.parametrize(("version", "serves_file"), [("v1.9.6", True), ("v1.10.9", False), ("v1.11.6", False),
                                                      ("v1.12.11", False), ("v1.13.9", False)])
def test_each_version_serves_its_configs_as_talos_does(fake_talosctl: FakeTalosctl, tmp_path: Path, version, serves_file) -> None:
    """v1alpha1 always; persistent from 1.10, only after an apply since the
    boot; the STATE file only before 1.10 (machine_config.go, acquire.go,
    commits d4aacb0d8 and 9db6dc06c)."""
    documents = worker_documents(version)
    fake_talosctl.node(version, None, config=as_text(documents))
    running = talosctl(fake_talosctl, tmp_path, "get", "machineconfig", "v1alpha1", *NODE, "-o", "yaml")
    assert running.returncode == 0 and spec_of(running.stdout, "v1alpha1") == as_text(documents)
    assert running.stdout.startswith("node: 192.168.8.123\nmetadata:\n    namespace: config\n")
    persistent = talosctl(fake_talosctl, tmp_path, "get", "machineconfig", "persistent", *NODE, "-o", "yaml")
    assert persistent.returncode == 1 and PERSISTENT_NOT_FOUND in persistent.stderr, "a boot from STATE sets no persistent"
    read = talosctl(fake_talosctl, tmp_path, "read", *NODE, "/system/state/config.yaml")
    if serves_file:
        assert read.returncode == 0 and read.stdout == as_text(documents)
    else:
        assert read.returncode == 1 and STATE_NOT_FOUND in read.stderr
    documents[0]["machine"]["nodeLabels"] = {"a": "b"}
    new = tmp_path / "new.yaml"
    new.write_text(as_text(documents))
    staged = talosctl(fake_talosctl, tmp_path, "apply-config", *NODE, "--file", str(new), "--mode", "staged")
    assert "Staged configuration to be applied after the next reboot" in staged.stderr
    running = talosctl(fake_talosctl, tmp_path, "get", "machineconfig", "v1alpha1", *NODE, "-o", "yaml")
    assert spec_of(running.stdout, "v1alpha1") != new.read_text(), "a staged config does not run before the reboot"
    listed = talosctl(fake_talosctl, tmp_path, "get", "machineconfig", *NODE, "-o", "yaml").stdout
    if serves_file:
        assert talosctl(fake_talosctl, tmp_path, "read", *NODE, "/system/state/config.yaml").stdout == new.read_text()
        assert "persistent" not in listed
    else:
        persistent = talosctl(fake_talosctl, tmp_path, "get", "machineconfig", "persistent", *NODE, "-o", "yaml")
        assert persistent.returncode == 0 and spec_of(persistent.stdout, "persistent") == new.read_text()
        assert spec_of(listed, "persistent") == new.read_text() and spec_of(listed, "v1alpha1") != new.read_text()


def test_the_staged_config_runs_after_the_upgrades_reboot_and_persistent_is_gone(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    documents = worker_documents("v1.12.11")
    fake_talosctl.node("v1.12.11", None, config=as_text(documents))
    documents[0]["machine"]["nodeLabels"] = {"a": "b"}
    new = tmp_path / "new.yaml"
    new.write_text(as_text(documents))
    talosctl(fake_talosctl, tmp_path, "apply-config", *NODE, "--file", str(new), "--mode", "staged")
    assert fake_talosctl.persistent_config() == new.read_text()
    schematic = next(iter(__import__("json").loads((fake_talosctl.state / "catalog.json").read_text())["schematics"]))
    image = f"factory.talos.dev/metal-installer/{schematic}:v1.13.9"
    done = talosctl(fake_talosctl, tmp_path, "upgrade", *NODE, "--image", image, "--wait", "--timeout", "1800s")
    assert done.returncode == 0, done.stderr
    assert "New upgrade API is not available, falling back to legacy" in done.stderr
    assert fake_talosctl.reboots == 1 and fake_talosctl.get("version") == "v1.13.9"
    assert fake_talosctl.running_config() == new.read_text() and fake_talosctl.persistent_config() is None
    assert fake_talosctl.get("drains") == [{"by": "talos-node", "reboot": 1}], "the legacy upgrade sequence drains on the node"


def test_the_old_stand_in_serves_the_file_on_every_version(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    fake_talosctl.node("v1.13.9", None)
    fake_talosctl.serve_old_state_file()
    assert talosctl(fake_talosctl, tmp_path, "read", *NODE, "/system/state/config.yaml").returncode == 0
    assert talosctl(fake_talosctl, tmp_path, "get", "machineconfig", "persistent", *NODE, "-o", "yaml").returncode == 1


def _upgrade_113(fake: FakeTalosctl, tmp_path: Path, *flags: str, endpoint: str = "192.168.8.99", extra_args=None, uki=None,
                 bootloader: str = "grub") -> subprocess.CompletedProcess[str]:
    documents = worker_documents("v1.13.4")
    if extra_args is not None:
        documents[0]["machine"]["install"]["extraKernelArgs"] = extra_args
    if uki is not None:
        documents[0]["machine"]["install"]["grubUseUKICmdline"] = uki
    schematic = next(iter(__import__("json").loads((fake.state / "catalog.json").read_text())["schematics"]))
    fake.node("v1.13.4", schematic, config=as_text(documents))
    fake.set(controlplanes=["192.168.8.99"], bootloader=bootloader)
    image = f"factory.talos.dev/metal-installer/{schematic}:v1.13.9"
    return talosctl(fake, tmp_path, "upgrade", "--nodes", "192.168.8.123", "--endpoints", endpoint, "--image", image, *flags)


def test_lifecycle_upgrade_drains_with_the_endpoints_kubeconfig(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    done = _upgrade_113(fake_talosctl, tmp_path)
    assert done.returncode == 0 and "falling back" not in done.stderr, done.stderr
    assert fake_talosctl.get("drains") == [{"by": "talosctl", "reboot": 1}] and fake_talosctl.reboots == 1


def test_lifecycle_drain_through_a_worker_endpoint_fails_after_the_image_is_written(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    done = _upgrade_113(fake_talosctl, tmp_path, endpoint="192.168.8.123")
    assert done.returncode == 1 and "kubeconfig is only available on control plane nodes" in done.stderr
    assert fake_talosctl.reboots == 0 and fake_talosctl.get("pending_image").endswith(":v1.13.9")
    assert fake_talosctl.get("version") == "v1.13.4"


def test_lifecycle_without_drain_reboots_undrained(fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    done = _upgrade_113(fake_talosctl, tmp_path, "--drain=false", endpoint="192.168.8.123")
    assert done.returncode == 0 and fake_talosctl.reboots == 1 and not fake_talosctl.get("drains")


@pytest.mark.parametrize(("flags", "uki", "bootloader", "kept"), [
    ((), None, "grub", False), (("--legacy",), None, "grub", True), ((), True, "grub", True), ((), None, "sd-boot", True)])
def test_lifecycle_upgrade_drops_extra_kernel_args_on_grub_without_the_uki_cmdline(fake_talosctl: FakeTalosctl, tmp_path: Path,
                                                                                    flags, uki, bootloader, kept) -> None:
    done = _upgrade_113(fake_talosctl, tmp_path, *flags, extra_args=["pcie_aspm=off"], uki=uki, bootloader=bootloader)
    assert done.returncode == 0, done.stderr
    assert (fake_talosctl.get("kernel_args") == ["pcie_aspm=off"]) is kept
    if flags:
        assert "Forcing use of legacy upgrade method" in done.stderr and fake_talosctl.get("drains") == [{"by": "talos-node", "reboot": 1}]


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
