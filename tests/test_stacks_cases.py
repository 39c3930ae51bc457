"""Conflicts between node stacks (the pure planner of `stacks check`), case
by case as data: validated stack configs in, every conflict out, whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.config import parse_stack_config
from tests.test_stacks import homelab, second_node, write
from tools.stacks import Conflict, conflicts, load_stacks, stack_name

OWNER_RULE = "exactly one must set proxmox-talos-gpu:gpuStack.ownsClusterObjects: true (the default) and every other stack false"
MAPPING = "mappingName: PCI mapping 'moody-good-gpu0' (proxmox-talos-gpu:gpus[].mappingName) is used by homelab (gpus[0]), two (gpus[0]) on the Proxmox cluster"
SAME_T4 = ("gpu: homelab (proxmox-talos-gpu:gpus[0].address 0000:3b:00.0) and two (proxmox-talos-gpu:gpus[0].address 0000:3b:00.0) "
           "claim the same GPU on node pve5")


def edited(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``raw`` with ``section__key=value`` (``gpu__key`` for gpus[0]) set."""
    for path, value in changes.items():
        section, key = path.split("__")
        target = raw["gpus"][0] if section == "gpu" else raw.setdefault(section, {})
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return raw


def two(**changes: Any) -> Callable[[], dict[str, dict[str, Any]]]:
    return lambda: {"homelab": homelab(), "two": edited(second_node(), **changes)}


ON_PVE5 = {"proxmox__node": "pve5"}

# (case, stacks, clusters by endpoint) -> every conflict, in order
CASES = [
    ("an owner and a second node agree", two(), False, []),
    ("two owners", two(gpuStack__ownsClusterObjects=True), False, [f"owner: 2 stacks own the cluster objects (homelab, two); {OWNER_RULE}"]),
    ("no owner", lambda: {"homelab": edited(homelab(), gpuStack__ownsClusterObjects=False, gpuStack__prometheusOperator=None),
                          "two": second_node()}, False,
     [f"owner: 0 stacks own the cluster objects (none); {OWNER_RULE}"]),
    ("shared keys differ, each named with its values", two(gpuStack__namespace="gpu", gpuStack__devicePluginChartVersion="0.17.0",
                                                           gpuStack__configMapName="ts"), False, [
        "must match: proxmox-talos-gpu:gpuStack.namespace differs: gpu in two; gpu-operator in homelab",
        "must match: proxmox-talos-gpu:gpuStack.configMapName differs: time-slicing-config in homelab; ts in two",
        "must match: proxmox-talos-gpu:gpuStack.devicePluginChartVersion differs: 0.17.0 in two; 0.18.2 in homelab"]),
    ("one VMID in three stacks", lambda: {
        "homelab": homelab(), "two": edited(second_node(), vm__vmId=1105),
        "three": edited(second_node(), vm__vmId=1105, vm__name="three", gpu__address="0000:b0:00.0")}, False,
     ["vmId: proxmox-talos-gpu:vm.vmId 1105 is used by homelab, three, two on the Proxmox cluster (VMIDs are cluster-wide)"]),
    ("one VMID on one endpoint host, told apart by endpoint", two(vm__vmId=1105, proxmox__endpoint="https://pve5.lan:8006/api"), True,
     ["vmId: proxmox-talos-gpu:vm.vmId 1105 is used by homelab, two on the Proxmox cluster at pve5.lan (VMIDs are cluster-wide)"]),
    ("one GPU on one node", two(**ON_PVE5, gpu__address="0000:3b:00.0"), False, [SAME_T4]),
    ("a stack on another node in between does not hide the claim", lambda: {
        "homelab": homelab(), "three": edited(second_node(), proxmox__node="pve6", vm__vmId=1107, vm__name="three",
                                              gpuStack__configKey="three", gpu__mappingName="three-gpu0"),
        "two": edited(second_node(), **ON_PVE5, gpu__address="0000:3b:00.0")}, False, [SAME_T4]),
    ("another function of the same card is free", two(**ON_PVE5, gpu__address="0000:3b:00.1"), False, []),
    ("unless a stack maps the whole device", lambda: {"homelab": edited(homelab(), gpu__allFunctions=True),
                                                      "two": edited(second_node(), **ON_PVE5, gpu__address="0000:3b:00.1")}, False,
     ["gpu: homelab (proxmox-talos-gpu:gpus[0].address 0000:3b:00) and two (proxmox-talos-gpu:gpus[0].address 0000:3b:00.1) "
      "claim the same GPU on node pve5"]),
    ("the other stack maps the whole device", lambda: {"homelab": homelab(),
                                                       "two": edited(second_node(), **ON_PVE5, gpu__address="0000:3b:00.0", gpu__allFunctions=True)}, False,
     ["gpu: homelab (proxmox-talos-gpu:gpus[0].address 0000:3b:00.0) and two (proxmox-talos-gpu:gpus[0].address 0000:3b:00) "
      "claim the same GPU on node pve5"]),
    ("the same address on another node", two(gpu__address="0000:3b:00.0"), False, []),
    ("a VMID, a GPU and a mapping on one cluster", two(**ON_PVE5, proxmox__endpoint="https://pve6.lan:8006/", gpu__address="0000:3b:00.0",
                                                       vm__vmId=1105, gpu__mappingName="moody-good-gpu0"), False, [
        "vmId: proxmox-talos-gpu:vm.vmId 1105 is used by homelab, two on the Proxmox cluster (VMIDs are cluster-wide)", SAME_T4, MAPPING]),
    ("the same, on two clusters told apart by endpoint", two(**ON_PVE5, proxmox__endpoint="https://pve6.lan:8006/", gpu__address="0000:3b:00.0",
                                                             vm__vmId=1105, gpu__mappingName="moody-good-gpu0"), True, []),
    ("one node name, and the mapping named after it", two(vm__name="moody-good", gpuStack__configKey="k2"), False, [
        "node name: proxmox-talos-gpu:vm.name 'moody-good' (the Kubernetes node) is used by homelab, two", MAPPING]),
    ("one ConfigMap key", two(gpuStack__configKey="moody-good"), False, [
        "configKey: proxmox-talos-gpu:gpuStack.configKey 'moody-good' (default: vm.name) is used by homelab, two: each node needs its own "
        "key in the shared ConfigMap"]),
    ("a mapping name used by a raw passthrough is no mapping", two(gpu__mappingName="moody-good-gpu0", gpu__passthrough="raw",
                                                                   proxmox__authMethod="password", proxmox__username="root@pam"), False, []),
]


@pytest.mark.parametrize(("stacks", "by_endpoint", "found"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_every_conflict_between_stacks_is_named_whole(stacks, by_endpoint, found):
    configs = {name: parse_stack_config(raw) for name, raw in stacks().items()}
    assert [str(conflict) for conflict in conflicts(configs, clusters_by_endpoint=by_endpoint)] == found


def test_two_gpus_of_one_stack_never_conflict_with_each_other():
    raw = second_node()
    raw["gpus"].append({**raw["gpus"][0], "address": "0000:af:00.1", "slot": "hostpci1", "mappingName": "gpu-two-audio"})
    assert conflicts({"homelab": parse_stack_config(homelab()), "two": parse_stack_config(raw)}) == []


def test_owner_only_keys_of_a_non_owner_become_conflicts_and_other_problems_stay_errors(tmp_path: Path):
    write(tmp_path, {"homelab": homelab(), "two": edited(second_node(), gpuStack__nfd=False),
                     "three": edited(second_node(), gpuStack__prometheusOperator=True, gpu__address="0000:af:00.1", gpu__allFunctions=True)})
    stacks, owner_only, problems = load_stacks(tmp_path)
    assert sorted(stacks) == ["homelab", "two"] and stacks["two"].gpu_stack.nfd is True, "validated without the owner-only key"
    assert [(conflict.kind, conflict.message.split(": only")[0]) for conflict in owner_only] == [
        ("owner-only key", "two: proxmox-talos-gpu:gpuStack.nfd = False")]
    assert [problem.kind for problem in problems] == ["Pulumi.three.yaml"]
    assert problems[0].message.startswith("invalid stack configuration (2 problem(s)):\n  - proxmox-talos-gpu:gpus[0].address = '0000:af:00.1'")
    assert "\n  - proxmox-talos-gpu:gpuStack.prometheusOperator = True: only the stack that owns" in problems[0].message


def test_a_non_owner_without_its_owner_only_keys_is_exactly_the_stack_it_would_be(tmp_path: Path):
    """Only the refused keys go: the stack keeps being a non-owner with its
    own settings, so the other checks judge what the user wrote."""
    write(tmp_path, {"homelab": homelab(), "two": edited(second_node(), gpuStack__nfd=False, gpuStack__prometheusOperator=True)})
    stacks, owner_only, problems = load_stacks(tmp_path)
    assert stacks["two"] == parse_stack_config(second_node()) and stacks["two"].gpu_stack.owns_cluster_objects is False
    assert [conflict.message.split(": only")[0] for conflict in owner_only] == [
        "two: proxmox-talos-gpu:gpuStack.prometheusOperator = True", "two: proxmox-talos-gpu:gpuStack.nfd = False"]
    assert problems == [] and conflicts(stacks) == []


def test_by_default_every_stack_is_on_one_proxmox_cluster():
    stacks = {"homelab": parse_stack_config(homelab()),
              "two": parse_stack_config(edited(second_node(), vm__vmId=1105, proxmox__endpoint="https://pve6.lan:8006/api"))}
    assert [str(conflict) for conflict in conflicts(stacks)] == [
        "vmId: proxmox-talos-gpu:vm.vmId 1105 is used by homelab, two on the Proxmox cluster (VMIDs are cluster-wide)"]


def test_a_conflict_reads_as_kind_and_message_and_a_stack_is_named_by_its_file():
    assert str(Conflict("vmId", "1105 twice")) == "vmId: 1105 twice"
    assert stack_name(Path("/x/Pulumi.gpu-two.yaml")) == "gpu-two"
