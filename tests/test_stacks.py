"""`python -m components.stacks check`: the node stacks of a project agree.
Each case writes real stack files into tmp_path (the reference stack plus a
second node), runs the command and reads what it names."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import PROJECT
from tests.conftest import ROOT, STACKS, stack_file_config
from tools.stacks import main


def homelab() -> dict[str, Any]:
    return copy.deepcopy(stack_file_config("homelab"))


def second_node() -> dict[str, Any]:
    """A second GPU node on pve6 that does not own the cluster objects."""
    raw = homelab()
    raw["proxmox"]["node"] = "pve6"
    raw["host"]["address"] = "pve6.lan"
    raw["gpus"][0]["address"] = "0000:af:00.0"
    raw["vm"].update(vmId=1106, name="gpu-two", description="second GPU node")
    raw["talos"]["nodeAddress"] = "192.168.8.124"
    raw["gpuStack"] = {"mode": "operator", "ownsClusterObjects": False}
    return raw


def write(directory: Path, stacks: dict[str, dict[str, Any]]) -> Path:
    for name, config in stacks.items():
        document = {"config": {f"{PROJECT}:{key}": value for key, value in config.items()}}
        (directory / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


def check(directory: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["check", "--project-dir", str(directory), *extra], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def conflicts(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("conflict: ")]


def test_owner_and_a_second_node_agree(tmp_path: Path) -> None:
    code, out, err = check(write(tmp_path, {"homelab": homelab(), "gpu-two": second_node()}))
    assert (code, conflicts(out), err) == (0, [], "")
    assert out.strip() == "2 stack(s) checked (gpu-two, homelab), 0 conflict(s), 0 unreadable file(s)"


def test_the_tests_own_stack_files_agree() -> None:
    code, out, err = check(STACKS)
    assert code == 0, out + err


def test_check_takes_a_chosen_set_of_stacks_by_name_or_path(tmp_path: Path) -> None:
    """A copy of the reference stack renamed to the user's node is a second
    owner: the whole folder conflicts, the stacks of one cluster agree."""
    write(tmp_path, {"homelab": homelab(), "gpu-two": second_node(), "mynode": homelab()})
    assert check(tmp_path)[0] == 1
    code, out, err = check(tmp_path, "--stack", "homelab", "--stack", str(tmp_path / "Pulumi.gpu-two.yaml"))
    assert (code, err) == (0, ""), out + err
    assert out.strip() == "2 stack(s) checked (gpu-two, homelab), 0 conflict(s), 0 unreadable file(s)"
    code, out, _ = check(tmp_path, "--stack", "mynode", "--stack", "gpu-two")
    assert (code, conflicts(out)) == (0, []), out


def test_check_of_a_chosen_stack_that_is_not_there_names_its_file(tmp_path: Path) -> None:
    write(tmp_path, {"homelab": homelab()})
    code, out, err = check(tmp_path, "--stack", "homelab", "--stack", "absent")
    assert code == 2
    assert "Pulumi.absent.yaml" in err and "no such file" in err, err
    assert check(tmp_path, "--stack", "homelab", "--stack", "homelab")[0] == 2


@pytest.mark.parametrize("owners", [0, 2])
def test_not_exactly_one_owner(tmp_path: Path, owners: int) -> None:
    one, two = homelab(), second_node()
    one["gpuStack"]["ownsClusterObjects"] = owners == 2
    if owners == 2:
        two["gpuStack"]["ownsClusterObjects"] = True
    else:
        del one["gpuStack"]["prometheusOperator"]
    code, out, _ = check(write(tmp_path, {"homelab": one, "gpu-two": two}))
    assert code == 1
    expected = "gpu-two, homelab" if owners == 2 else "none"
    assert f"conflict: owner: {owners} stacks own the cluster objects ({expected}); exactly one must set" in out


def test_owner_only_keys_in_a_non_owner_stack_are_named_and_the_rest_still_checked(tmp_path: Path) -> None:
    two = second_node()
    two["gpuStack"].update(nfd=False, prometheusOperator=True)
    two["vm"]["vmId"] = 1105  # also clashes with the owner
    code, out, err = check(write(tmp_path, {"homelab": homelab(), "gpu-two": two}))
    assert code == 1 and err == ""
    found = conflicts(out)
    assert "conflict: owner-only key: gpu-two: proxmox-talos-gpu:gpuStack.prometheusOperator = True: only the stack that owns" in found[0]
    assert found[1].startswith("conflict: owner-only key: gpu-two: proxmox-talos-gpu:gpuStack.nfd = False")
    assert any("vm.vmId 1105 is used by gpu-two, homelab" in line for line in found)


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("namespace", "nvidia", "proxmox-talos-gpu:gpuStack.namespace differs: gpu-operator in homelab; nvidia in gpu-two"),
    ("configMapName", "slices", "proxmox-talos-gpu:gpuStack.configMapName differs: slices in gpu-two; time-slicing-config in homelab"),
    ("operatorChartVersion", "v26.3.1", "proxmox-talos-gpu:gpuStack.operatorChartVersion differs: v26.3.1 in gpu-two; v26.7.0 in homelab"),
])
def test_shared_keys_must_match(tmp_path: Path, key: str, value: str, shown: str) -> None:
    two = second_node()
    two["gpuStack"][key] = value
    code, out, _ = check(write(tmp_path, {"homelab": homelab(), "gpu-two": two}))
    assert code == 1
    assert conflicts(out) == [f"conflict: must match: {shown}"]


def test_mode_must_match(tmp_path: Path) -> None:
    two = second_node()
    two["gpuStack"]["mode"] = "devicePlugin"
    two["talos"]["version"] = "v1.11.6"
    code, out, _ = check(write(tmp_path, {"homelab": homelab(), "gpu-two": two}))
    assert code == 1
    assert "conflict: must match: proxmox-talos-gpu:gpuStack.mode differs: devicePlugin in gpu-two; operator in homelab" in out


def test_vmid_twice_on_one_cluster_unless_clusters_are_told_apart(tmp_path: Path) -> None:
    two = second_node()
    two["vm"]["vmId"] = 1105
    two["proxmox"]["endpoint"] = "https://pve6.lan:8006/"
    write(tmp_path, {"homelab": homelab(), "gpu-two": two})
    code, out, _ = check(tmp_path)
    assert code == 1
    assert conflicts(out) == ["conflict: vmId: proxmox-talos-gpu:vm.vmId 1105 is used by gpu-two, homelab on the Proxmox cluster (VMIDs are cluster-wide)"]
    assert check(tmp_path, "--clusters-by-endpoint")[0] == 0


def test_same_gpu_on_one_host_and_a_whole_device_overlapping_a_function(tmp_path: Path) -> None:
    two = second_node()
    two["proxmox"]["node"] = "pve5"
    two["gpus"][0]["address"] = "0000:3b:00.0"
    code, out, _ = check(write(tmp_path, {"homelab": homelab(), "gpu-two": two}))
    assert code == 1
    assert ("conflict: gpu: gpu-two (proxmox-talos-gpu:gpus[0].address 0000:3b:00.0) and homelab "
            "(proxmox-talos-gpu:gpus[0].address 0000:3b:00.0) claim the same GPU on node pve5") in conflicts(out)
    # The audio function of the same card is free, unless one stack maps the whole device.
    two["gpus"][0]["address"] = "0000:3b:00.1"
    assert check(write(tmp_path, {"gpu-two": two}))[0] == 0
    one = homelab()
    one["gpus"][0]["allFunctions"] = True
    code, out, _ = check(write(tmp_path, {"homelab": one}))
    assert code == 1 and "homelab (proxmox-talos-gpu:gpus[0].address 0000:3b:00) and" not in out
    assert "(proxmox-talos-gpu:gpus[0].address 0000:3b:00) claim the same GPU on node pve5" in out


def test_same_gpu_address_on_two_hosts_is_no_conflict(tmp_path: Path) -> None:
    two = second_node()
    two["gpus"][0]["address"] = "0000:3b:00.0"  # pve6's own card at the same address
    assert check(write(tmp_path, {"homelab": homelab(), "gpu-two": two}))[0] == 0


def test_config_key_node_name_and_mapping_name_twice(tmp_path: Path) -> None:
    two = second_node()
    two["vm"]["name"] = "moody-good"
    code, out, _ = check(write(tmp_path, {"homelab": homelab(), "gpu-two": two}))
    assert code == 1
    found = conflicts(out)
    assert "conflict: configKey: proxmox-talos-gpu:gpuStack.configKey 'moody-good' (default: vm.name) is used by gpu-two, homelab: each node needs its own key in the shared ConfigMap" in found
    assert "conflict: node name: proxmox-talos-gpu:vm.name 'moody-good' (the Kubernetes node) is used by gpu-two, homelab" in found
    assert any(line.startswith("conflict: mappingName: PCI mapping 'moody-good-gpu0'") for line in found)


@pytest.mark.parametrize(("text", "says"), [
    ("config: [1, 2\n", "not valid YAML"),
    ("- a list\n", "is not a Pulumi stack file"),
    ("config:\n  proxmox-talos-gpu:vm: {vmId: 1}\n", "invalid stack configuration"),
])
def test_a_bad_file_is_one_clear_message_and_exit_2(tmp_path: Path, text: str, says: str) -> None:
    write(tmp_path, {"homelab": homelab()})
    (tmp_path / "Pulumi.broken.yaml").write_text(text)
    code, out, err = check(tmp_path)
    assert code == 2
    assert err.startswith("stacks: cannot check Pulumi.broken.yaml: ") and says in err
    assert "Traceback" not in err + out
    assert out.strip().endswith("1 stack(s) checked (homelab), 0 conflict(s), 1 unreadable file(s)")


def test_no_stack_files_and_a_missing_folder(tmp_path: Path) -> None:
    assert check(tmp_path)[0] == 2 and "no Pulumi.*.yaml in" in check(tmp_path)[2]
    assert check(tmp_path / "nope")[0] == 2


def test_module_entry_point_help_names_every_option_and_default() -> None:
    done = subprocess.run([sys.executable, "-m", "components.stacks", "check", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--project-dir DIR" in text and "else this project" in text
    assert "--clusters-by-endpoint" in text and "(default: off" in text
    assert "Exit codes: 0" in text and "prometheusOperator, nfd" in text


def test_module_entry_point_exits_non_zero_on_a_conflict(tmp_path: Path) -> None:
    two = second_node()
    two["gpuStack"]["ownsClusterObjects"] = True
    write(tmp_path, {"homelab": homelab(), "gpu-two": two})
    done = subprocess.run([sys.executable, "-m", "components.stacks", "check", "--project-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "conflict: owner: 2 stacks own" in done.stdout, done.stdout + done.stderr
