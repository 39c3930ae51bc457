"""Config is validated once, at the edge: every bad value names its key path,
the value and what is allowed, and stops the program before any resource."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from components.config import ConfigError, StackConfig, normalise_pci_address, parse_stack_config
from tests.conftest import FAKE_SECRETS, run_main, stack_file_config

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Mutation that sets a dotted path (`gpus.0.address`) in the raw config."""
    def mutate(raw: dict[str, Any]) -> None:
        parts = path.split(".")
        target: Any = raw
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        last = parts[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return mutate


def _delete(path: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        parts = path.split(".")
        target: Any = raw
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[parts[-1]]
    return mutate


def _both(*mutations: Mutation) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(raw)
    return mutate


SECOND_T4 = {"address": "0000:af:00.0", "id": "10de:1eb8", "slot": "hostpci0"}

# (case id, mutation, key path the message must name, a fragment of what is allowed)
BAD_INPUTS: list[tuple[str, Mutation, str, str]] = [
    ("pci address too short", _set("gpus.0.address", "3b:00"), "gpus[0].address", "0000:3b:00.0"),
    ("pci address with bad function", _set("gpus.0.address", "0000:3b:00.9"), "gpus[0].address", "domain:bus:device.function"),
    ("pci address not hex", _set("gpus.0.address", "0000:zz:00.0"), "gpus[0].address", "PCI address"),
    ("vendor:device wrong shape", _set("gpus.0.id", "10de-1eb8"), "gpus[0].id", "10de:1eb8"),
    ("subsystem id too long", _set("gpus.0.subsystemId", "10de:12a2a"), "gpus[0].subsystemId", "vendor:device"),
    ("vmid below Proxmox range", _set("vm.vmId", 99), "vm.vmId", "greater than or equal to 100"),
    ("vmid not a number", _set("vm.vmId", "moody"), "vm.vmId", "integer"),
    ("slot is a pci address (the guide's device=)", _set("gpus.0.slot", "0000:3b:00.0"), "gpus[0].slot", "hostpci0 .. hostpci15"),
    ("slot out of range", _set("gpus.0.slot", "hostpci16"), "gpus[0].slot", "hostpci15"),
    ("duplicate slot", lambda raw: raw["gpus"].append(dict(SECOND_T4)), "gpus[1].slot", "already used by gpus[0]"),
    ("same gpu twice", lambda raw: raw["gpus"].append({**SECOND_T4, "address": "3b:00.0", "slot": "hostpci1"}), "gpus[1].address", "listed twice"),
    ("replicas below 2 (the plugin rejects 1)", _set("gpuStack.timeSlicing.replicas", 1), "gpuStack.timeSlicing.replicas", "2 or more"),
    ("replicas absurd", _set("gpuStack.timeSlicing.replicas", 500), "gpuStack.timeSlicing.replicas", "at most 64"),
    ("talos version without v", _set("talos.version", "1.13.9"), "talos.version", "v1.13.9"),
    ("talos version 2.x", _set("talos.version", "v2.0.0"), "talos.version", "Talos version"),
    ("operator chart without leading v", _set("gpuStack.operatorChartVersion", "26.7.0"), "gpuStack.operatorChartVersion", "leading v"),
    ("operator chart too old for Talos", _set("gpuStack.operatorChartVersion", "v25.10.1"), "gpuStack.operatorChartVersion", "v26.3.1"),
    ("device plugin chart with v", _set("gpuStack.devicePluginChartVersion", "v0.18.2"), "gpuStack.devicePluginChartVersion", "without a leading v"),
    ("operator mode on Talos 1.11 (the guide's pair)", _set("talos.version", "v1.11.6"), "gpuStack.mode", "devicePlugin"),
    ("operator mode on Talos 1.12", _set("talos.version", "v1.12.4"), "gpuStack.mode", "devicePlugin"),
    ("unknown mode", _set("gpuStack.mode", "helm"), "gpuStack.mode", "'operator' or 'devicePlugin'"),
    ("unknown delivery", _set("gpuStack.delivery", "argocd"), "gpuStack.delivery", "'helm' or 'flux'"),
    ("flux objects from git with helm delivery", _set("gpuStack.flux.objects", "git"), "gpuStack.flux.objects", "only with gpuStack.delivery: flux"),
    ("git device plugin policy unknown", _set("gpuStack.flux.gitDevicePlugin", "delete"), "gpuStack.flux.gitDevicePlugin", "'refuse' or 'suspend'"),
    ("flux path leaving the repository", _set("gpuStack.flux.path", "../other/app"), "gpuStack.flux.path", "relative to the Git repository's root"),
    ("flux path absolute", _set("gpuStack.flux.path", "/kubernetes/app"), "gpuStack.flux.path", "no leading /"),
    ("flux git repository not a name", _set("gpuStack.flux.gitRepository", "Profmoo_Home"), "gpuStack.flux.gitRepository", "DNS label"),
    ("pcie without q35", _set("vm.machine", "pc"), "vm.machine", "q35"),
    ("machine type unknown", _set("vm.machine", "i440fx"), "vm.machine", "'q35' or 'pc'"),
    ("raw id with an API token", _set("gpus.0.passthrough", "raw"), "gpus[0].passthrough", "mapping"),
    ("raw id with password auth but not root@pam", _both(_set("gpus.0.passthrough", "raw"), _set("proxmox.authMethod", "password"), _set("proxmox.username", "admin@pve")), "gpus[0].passthrough", "root@pam"),
    ("password auth without username", _set("proxmox.authMethod", "password"), "proxmox.username", "root@pam"),
    ("unknown key in vm (typo)", _set("vm.memory", 243712), "vm.memory", "memoryMiB"),
    ("unknown top-level key", _set("gpu", {}), "gpu", "unknown key"),
    ("unknown key in a gpu", _set("gpus.0.device", "0000:3b:00.0"), "gpus[0].device", "unknown key"),
    ("guide's time-slicing key", _set("gpuStack.timeSlicing.resources", []), "gpuStack.timeSlicing.resources", "unknown key"),
    ("no gpus", _set("gpus", []), "gpus", "at least 1"),
    ("missing vm section", _delete("vm"), "vm", "required"),
    ("mac address malformed", _set("vm.network.macAddress", "94:96:cc:43:7d"), "vm.network.macAddress", "MAC address"),
    ("vlan out of range", _set("vm.network.vlanId", 4095), "vm.network.vlanId", "less than or equal to 4094"),
    ("vm name not a dns label", _set("vm.name", "Moody_Good"), "vm.name", "DNS label"),
    ("host key not pinned", _delete("host.hostKey"), "host.hostKey", "pin the host key"),
    ("host key garbage", _set("host.hostKey", "yes"), "host.hostKey", "SHA256"),
    ("ssh port out of range", _set("host.port", 70000), "host.port", "65535"),
    ("node address not an IP", _set("talos.nodeAddress", "moody-good"), "talos.nodeAddress", "IPv4 or IPv6"),
    ("proxmox endpoint not https", _set("proxmox.endpoint", "http://pve5:8006"), "proxmox.endpoint", "https URL"),
    ("node label with a space", lambda raw: raw["talos"]["nodeLabels"].update({"drmoo.io/gpu": "nvidia t4"}), "talos.nodeLabels.drmoo.io/gpu", "label value"),
    ("node label key invalid", lambda raw: raw["talos"]["nodeLabels"].update({"drmoo.io/gpu type": "t4"}), "talos.nodeLabels.drmoo.io/gpu type (key)", "label key"),
    ("extension name bare", _set("talos.extensions.extra", ["qemu-guest-agent"]), "talos.extensions.extra[0]", "siderolabs/"),
    ("kmod branch unknown", _set("talos.extensions.branch", "beta"), "talos.extensions.branch", "'production' or 'lts'"),
    ("jellyfin on without url", _both(_set("jellyfin.enabled", True), _delete("jellyfin.url")), "jellyfin.url", "required"),
    ("AV1 decode on a T4", _both(_set("jellyfin.enabled", True), _set("jellyfin.decodeCodecs", ["h264", "av1"])), "jellyfin.decodeCodecs", "h264"),
    ("AV1 encode on a T4", _both(_set("jellyfin.enabled", True), _set("jellyfin.allowAv1Encoding", True)), "jellyfin.allowAv1Encoding", "cannot encode AV1"),
    ("memory too small", _set("vm.memoryMiB", 512), "vm.memoryMiB", "1024"),
    ("duplicate mapping name", lambda raw: raw["gpus"].append({**SECOND_T4, "slot": "hostpci1", "mappingName": "moody-good-gpu0"}), "gpus[1].mappingName", "unique"),
    ("mapping without host facts lacks the IOMMU group", _set("host", {"enabled": False}), "gpus[0].iommuGroup",
     "/sys/bus/pci/devices/0000:3b:00.0/iommu_group"),
    ("mapping without host facts lacks the subsystem id", _both(_set("host", {"enabled": False}), _set("gpus.0.iommuGroup", 27), _delete("gpus.0.subsystemId")),
     "gpus[0].subsystemId", "lspci -nn -s 0000:3b:00.0"),
    ("all functions from a function other than 0", _both(_set("gpus.0.address", "0000:3b:00.1"), _set("gpus.0.allFunctions", True)), "gpus[0].address", "function 0"),
    ("all functions not a bool", _set("gpus.0.allFunctions", "audio"), "gpus[0].allFunctions", "boolean"),
    ("owner-only key in a non-owner stack", _set("gpuStack.ownsClusterObjects", False), "gpuStack.prometheusOperator",
     "only the stack that owns the cluster objects"),
    ("nfd in a non-owner stack", _both(_set("gpuStack.ownsClusterObjects", False), _delete("gpuStack.prometheusOperator"), _set("gpuStack.nfd", False)),
     "gpuStack.nfd", "set it in the owner's stack file"),
    ("device plugin on Talos 1.13 (CDI toolkit)", _set("gpuStack.mode", "devicePlugin"), "gpuStack.mode", "use gpuStack.mode: operator"),
    ("upgrade path entry of the target's minor", _set("talos.upgradePath", ["v1.13.2"]), "talos.upgradePath[0]", "older minor"),
    ("upgrade path entry of another major", _set("talos.upgradePath", ["v0.14.1"]), "talos.upgradePath[0]", "Talos version"),
    ("upgrade path: two releases of one minor", _set("talos.upgradePath", ["v1.12.9", "v1.12.11"]), "talos.upgradePath[1]", "one release per minor"),
    ("upgrade path below the -lts/-production split", _set("talos.upgradePath", ["v1.7.7"]), "talos.upgradePath[0]", "from Talos v1.8 on"),
    ("upgrade timeout too short for a reboot", _set("talos.upgradeTimeoutSeconds", 60), "talos.upgradeTimeoutSeconds", "300"),
    ("config source unknown", _set("talos.configSource", "file"), "talos.configSource", "'running' or 'generated'"),
    ("config patches with the node's own config", _set("talos.configPatches", ["network.yaml"]), "talos.configPatches", "configSource: generated"),
    ("open modules on a Pascal GPU", _both(_set("gpus.0.generation", "pascal"), _set("talos.extensions.driver", "open")), "talos.extensions.driver", "Turing and newer"),
    ("open modules on a Volta GPU, lts", _both(_set("gpus.0.generation", "volta"), _set("talos.extensions.driver", "open"), _set("talos.extensions.branch", "lts")), "talos.extensions.driver", "driver: proprietary"),
    ("production driver on Talos 1.13 for Pascal", _set("gpus.0.generation", "pascal"), "talos.extensions.branch", "branch: lts"),
    ("production driver on Talos 1.13 for Volta", _set("gpus.0.generation", "volta"), "talos.extensions.branch", "R580"),
]


@pytest.mark.parametrize("case, mutate, key, allowed", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_names_key_value_and_allowed(homelab, case, mutate, key, allowed):
    mutate(homelab)
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(homelab)
    message = str(raised.value)
    assert f"proxmox-talos-gpu:{key}" in message, message
    assert allowed in message, message
    assert "Traceback" not in message


def test_config_error_is_a_run_error_so_pulumi_prints_no_traceback():
    # The program reads its config through components.config.engine, which
    # makes ConfigError a RunError (the language host prints no traceback for one).
    import components.config.engine  # noqa: F401

    assert issubclass(ConfigError, pulumi.RunError)
    with pytest.raises(pulumi.RunError, match="invalid stack configuration"):
        parse_stack_config({"gpus": "not a list"})


def test_homelab_stack_parses_with_guide_values(homelab):
    cfg = parse_stack_config(homelab)
    assert isinstance(cfg, StackConfig)
    assert (cfg.vm.vm_id, cfg.vm.name, cfg.vm.cores, cfg.vm.memory_mib) == (1105, "moody-good", 50, 243712)
    assert cfg.gpus[0].address == "0000:3b:00.0" and cfg.gpus[0].id == "10de:1eb8"
    assert cfg.talos.node_labels["drmoo.io/gpu"] == "nvidia-t4"
    assert cfg.advertised_gpus == 4


def test_short_pci_address_is_normalised(homelab):
    homelab["gpus"][0]["address"] = "3B:00.0"
    assert parse_stack_config(homelab).gpus[0].address == "0000:3b:00.0"
    assert normalise_pci_address("0000:AF:00.1") == "0000:af:00.1"


def test_sharing_off_allows_any_replicas_and_advertises_whole_gpus(homelab):
    homelab["gpuStack"]["timeSlicing"] = {"enabled": False, "replicas": 1}
    assert parse_stack_config(homelab).advertised_gpus == 1


def test_every_problem_is_reported_at_once(homelab):
    homelab["gpus"][0]["address"] = "nope"
    homelab["vm"]["vmId"] = 1
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(homelab)
    keys = {issue.key for issue in raised.value.issues}
    assert {"gpus[0].address", "vm.vmId"} <= keys


def test_bad_config_registers_no_resource():
    raw = copy.deepcopy(stack_file_config())
    raw["gpus"][0]["slot"] = "0000:3b:00.0"
    with pytest.raises(ConfigError, match=r"gpus\[0\]\.slot"):
        run_main(raw)


def test_secret_set_in_plain_text_is_refused():
    import runpy

    from tests.conftest import ROOT
    from tools.mockengine import run_program

    config = {**stack_file_config(), "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"}
    secrets = {key: value for key, value in FAKE_SECRETS.items() if key != "sshPrivateKey"}
    with pytest.raises(ConfigError, match="sshPrivateKey .*plain text"):
        run_program(lambda: runpy.run_path(str(ROOT / "__main__.py")), config, secret_keys=secrets)


def test_missing_required_secret_names_key_and_env(monkeypatch):
    monkeypatch.delenv("PROXMOX_VE_API_TOKEN", raising=False)
    secrets = {key: value for key, value in FAKE_SECRETS.items() if key != "proxmoxApiToken"}
    with pytest.raises(ConfigError, match=r"proxmoxApiToken.*PROXMOX_VE_API_TOKEN"):
        run_main(stack_file_config(), secrets)


def test_mapping_without_host_facts_names_both_keys_and_how_to_read_them(homelab):
    homelab["host"] = {"enabled": False}
    del homelab["gpus"][0]["subsystemId"]
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(homelab)
    assert [issue.key for issue in raised.value.issues] == ["gpus[0].iommuGroup", "gpus[0].subsystemId"]
    message = str(raised.value)
    assert "proxmox-talos-gpu:gpus[0].iommuGroup = (missing): required when the host section is off" in message
    assert "readlink /sys/bus/pci/devices/0000:3b:00.0/iommu_group" in message
    assert "lspci -nn -s 0000:3b:00.0 -v" in message and "Subsystem" in message


def test_mapping_keys_are_not_needed_with_host_facts_or_a_raw_id(homelab):
    del homelab["gpus"][0]["subsystemId"]
    assert parse_stack_config(homelab).gpus[0].iommu_group is None  # the host's facts fill both in
    homelab["host"] = {"enabled": False}
    homelab["gpus"][0]["passthrough"] = "raw"
    homelab["proxmox"].update(authMethod="password", username="root@pam")
    assert parse_stack_config(homelab).gpus[0].passthrough == "raw"


def test_all_functions_maps_the_device_without_its_function(homelab):
    cfg = parse_stack_config(homelab)
    assert (cfg.gpus[0].all_functions, cfg.gpus[0].device_path) == (False, "0000:3b:00.0")
    homelab["gpus"][0]["allFunctions"] = True
    assert parse_stack_config(homelab).gpus[0].device_path == "0000:3b:00"


def test_non_owner_stack_without_owner_only_keys_is_accepted(homelab):
    homelab["gpuStack"]["ownsClusterObjects"] = False
    del homelab["gpuStack"]["prometheusOperator"]
    cfg = parse_stack_config(homelab)
    assert cfg.gpu_stack.owns_cluster_objects is False and cfg.gpu_stack.nfd is True  # the default, not set here


def test_owner_only_keys_in_a_non_owner_stack_stop_the_program_before_any_resource(homelab):
    homelab["gpuStack"].update(ownsClusterObjects=False, nfd=False)
    with pytest.raises(ConfigError) as raised:
        run_main(homelab)
    assert {issue.key for issue in raised.value.issues} == {"gpuStack.prometheusOperator", "gpuStack.nfd"}


@pytest.mark.parametrize(("generation", "talos", "driver", "branch"), [
    ("pascal", {}, "proprietary", "lts"),
    ("volta", {}, "proprietary", "lts"),
    ("turing", {}, "open", "production"),
    ("ampere", {}, "open", "production"),
    ("pascal", {"version": "v1.12.11"}, "proprietary", "production"),
])
def test_driver_rules_accept_what_the_gpu_can_run(homelab, generation, talos, driver, branch):
    homelab["gpus"][0]["generation"] = generation
    homelab["talos"].update(talos, extensions={"driver": driver, "branch": branch})
    if talos.get("version", "v1.13.9") < "v1.13":
        homelab["gpuStack"]["mode"] = "devicePlugin"
    assert parse_stack_config(homelab).talos.extensions.branch == branch


def _issues(raw: dict[str, Any]) -> list[tuple[str, Any, str]]:
    try:
        parse_stack_config(raw)
    except ConfigError as error:
        return [(issue.key, issue.value, issue.allowed) for issue in error.issues]
    return []


@pytest.mark.parametrize(("mutate", "keys"), [
    (_set("gpuStack.timeSlicing.replicas", 2), []),
    (_set("gpuStack.timeSlicing.replicas", 1), ["gpuStack.timeSlicing.replicas"]),
    (_set("gpuStack.timeSlicing.replicas", 64), []),
    (_set("gpuStack.timeSlicing.replicas", 65), ["gpuStack.timeSlicing.replicas"]),
    (_set("gpuStack.timeSlicing", {"enabled": False, "replicas": 1}), []),
    (_set("gpuStack.timeSlicing", {"enabled": False, "replicas": 65}), ["gpuStack.timeSlicing.replicas"]),
    (_set("gpuStack.operatorChartVersion", "v26.3.1"), []),
    (_set("gpuStack.operatorChartVersion", "v26.3.0"), ["gpuStack.operatorChartVersion"]),
    (_set("talos.version", "v1.13.0"), []),
    (_set("talos.version", "v1.12.9"), ["gpuStack.mode"]),
    (_both(_set("talos.version", "v1.9.0"), _set("gpuStack.mode", "devicePlugin")), []),
    # The device plugin up to the last 1.12, refused from 1.13.0 (CDI toolkit).
    (_both(_set("talos.version", "v1.12.11"), _set("gpuStack.mode", "devicePlugin")), []),
    (_both(_set("talos.version", "v1.13.0"), _set("gpuStack.mode", "devicePlugin")), ["gpuStack.mode"]),
    (_both(_set("talos.version", "v1.8.4"), _set("gpuStack.mode", "devicePlugin")), ["talos.version"]),
    (_both(_set("talos.version", "v1.8.4"), _set("gpuStack.mode", "devicePlugin"), _set("gpuStack.operatorChartVersion", "v25.10.1")), ["talos.version"]),
    (_set("proxmox", {"endpoint": "https://pve5.lan:8006/", "node": "pve5", "authMethod": "password"}), ["proxmox.username"]),
    (_set("host.address", None), ["host.address"]),
    (_set("host.hostKey", None), ["host.hostKey"]),
    # Without the host's facts a PCI mapping needs its IOMMU group (the
    # reference stack configures the subsystem id).
    (_both(_set("host", {"enabled": False}), _set("gpus.0.iommuGroup", 0)), []),
    (_set("host", {"enabled": False}), ["gpus[0].iommuGroup"]),
    (_set("jellyfin.enabled", True), []),
    (_both(_set("jellyfin.enabled", True), _set("jellyfin.url", None)), ["jellyfin.url"]),
    (_set("gpus.0.pcie", False), []),
    (_both(_set("gpus.0.pcie", False), _set("vm.machine", "pc")), []),
    (_set("vm.machine", "pc"), ["vm.machine"]),
], ids=lambda value: "" if callable(value) else ",".join(value) or "accepted")
def test_cross_field_rules_hold_at_their_boundaries(homelab, mutate, keys):
    mutate(homelab)
    assert [key for key, _value, _allowed in _issues(homelab)] == keys


def _set_gpu(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw["gpus"][0].update(values)


def _set_gpu_stack(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda raw: raw["gpuStack"].update(values)


@pytest.mark.parametrize(("mutate", "issue"), [
    (_set_gpu(address="0000:3b:00.1", allFunctions=True),
     ("gpus[0].address", "0000:3b:00.1", "with gpus[0].allFunctions: true the address must be the card's function 0 (e.g. 0000:3b:00.0): "
                                         "Proxmox maps the whole device and checks it against function 0")),
    (_set_gpu_stack(mode="devicePlugin"),
     ("gpuStack.mode", "devicePlugin", "the nvidia-device-plugin chart is not supported on Talos v1.13.9: from v1.13 the NVIDIA toolkit works "
                                       "through CDI and Talos documents only the GPU Operator; use gpuStack.mode: operator (the program removes "
                                       "the device plugin and RuntimeClass nvidia before the upgrade to 1.13)")),
    (lambda raw: raw["gpuStack"]["flux"].update(objects="git"),
     ("gpuStack.flux.objects", "git", "only with gpuStack.delivery: flux (the Flux objects come from Git); with delivery helm leave it at pulumi")),
    (_set_gpu_stack(ownsClusterObjects=False, prometheusOperator=True),
     ("gpuStack.prometheusOperator", True, "only the stack that owns the cluster objects (gpuStack.ownsClusterObjects: true) sets this: it is "
                                           "a value of the GPU Operator / device plugin release, which this stack does not install; set it in "
                                           "the owner's stack file and remove it here")),
], ids=["whole device not at function 0", "device plugin on Talos 1.13", "objects from Git without Flux", "owner-only key in a non-owner"])
def test_each_newer_cross_field_rule_names_key_value_and_remedy_whole(homelab, mutate, issue):
    mutate(homelab)
    assert _issues(homelab) == [issue]


def test_raw_passthrough_needs_root_pam_with_a_password(homelab):
    homelab["gpus"][0]["passthrough"] = "raw"
    refusal = ("a raw PCI id may only be set by root@pam with password auth (Proxmox refuses API tokens, even root@pam!x); "
               "use passthrough: mapping (a PCI resource mapping, works with a token that has Mapping.Use) "
               "or set proxmox.authMethod: password and proxmox.username: root@pam")
    assert _issues(homelab) == [("gpus[0].passthrough", "raw", refusal)]
    homelab["proxmox"].update(authMethod="password", username="admin@pve")
    assert _issues(homelab) == [("gpus[0].passthrough", "raw", refusal)]
    homelab["proxmox"]["username"] = "root@pam"
    assert _issues(homelab) == []


def test_each_gpu_needs_its_own_slot_address_and_mapping_name(homelab):
    first = homelab["gpus"][0]
    homelab["gpus"] += [{**first, "slot": "hostpci1", "mappingName": "other"},                  # same address
                        {**first, "address": "0000:af:00.0", "slot": "hostpci0", "mappingName": "third"},  # same slot
                        {**first, "address": "0000:d8:00.0", "slot": "hostpci3", "mappingName": "moody-good-gpu0"}]
    homelab["gpus"][0].pop("slot")  # the default slot of gpus[0] is hostpci0
    assert _issues(homelab) == [
        ("gpus[1].address", "0000:3b:00.0", "listed twice (also gpus[0])"),
        ("gpus[2].slot", "hostpci0", "each GPU needs its own slot; hostpci0 is already used by gpus[0]"),
        ("gpus[3].mappingName", "moody-good-gpu0", "PCI mapping names must be unique (also gpus[0])"),
    ]


def test_cross_field_messages_name_the_remedy(homelab):
    homelab["talos"]["version"] = "v1.12.9"
    homelab["gpuStack"].update(operatorChartVersion="v26.3.0", timeSlicing={"replicas": 1})
    homelab["host"].pop("hostKey")
    homelab["proxmox"]["authMethod"] = "password"
    homelab["vm"]["machine"] = "pc"
    homelab["jellyfin"].update(enabled=True, url=None)
    assert _issues(homelab) == [
        ("vm.machine", "pc", "gpus[0].pcie is true and PCIe passthrough needs machine q35 (Proxmox: 'q35 machine model is not enabled'); "
                             "set vm.machine: q35 or gpus[0].pcie: false"),
        ("proxmox.username", None, "required with authMethod password, e.g. root@pam"),
        ("host.hostKey", None, "required when host.enabled is true: pin the host key (SHA256 fingerprint or known_hosts line); unknown keys are never accepted"),
        ("gpuStack.mode", "operator", "the GPU Operator is not supported on Talos v1.12.9 (its validator loops on driver validation); "
                                      "use gpuStack.mode: devicePlugin, or upgrade Talos one minor at a time to v1.13"),
        ("gpuStack.operatorChartVersion", "v26.3.0", "Talos documents the GPU Operator from v26.3.1 (hostPaths.driverInstallDir=/usr/local); "
                                                     "use v26.3.1 or newer, or gpuStack.mode: devicePlugin"),
        ("gpuStack.timeSlicing.replicas", 1, "must be 2 or more (the device plugin rejects fewer); to give pods whole GPUs set gpuStack.timeSlicing.enabled: false"),
        ("jellyfin.url", None, "required when jellyfin.enabled is true, e.g. http://jellyfin.media.svc:8096"),
    ]


def test_more_cross_field_messages_name_the_remedy(homelab):
    homelab["host"].pop("address")
    homelab["talos"]["version"] = "v1.8.4"
    homelab["gpuStack"].update(mode="devicePlugin", timeSlicing={"replicas": 65})
    assert _issues(homelab) == [
        ("host.address", None, "required when host.enabled is true: the Proxmox host's SSH address"),
        ("talos.version", "v1.8.4", "device-plugin mode needs Talos v1.9 or newer"),
        ("gpuStack.timeSlicing.replicas", 65, "at most 64 replicas per GPU"),
    ]
