"""Every config key flows through: for each key of the README's
Configuration table (parsed row by row), set it to a value other than its
default and find that value where it takes effect: the inputs the program
registers under the mock engine, the config it asks Talos for, the files
`render` writes, or the commands `doctor` runs. The same observation on the
unchanged stack must differ, so a key that is ignored, hard-coded or takes
another key's value fails its case.

A key added to the README without a case here fails
``test_config_key_reaches_what_the_program_registers``; add its case to
``CASES`` (or, if it has no observable effect, to ``WITHOUT_EFFECT`` with the
reason)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from unittest import mock

import pytest
import yaml

from components.config import StackConfig, parse_stack_config
from components.flux.objects import flux_tree
from components.talos.machine_config import NodeSpec
from tests.conftest import FAKE_SECRETS, ROOT, created_config, run_main
from tests.readme_config import documented_keys
from tools.mockengine import GET_CONFIGURATION, ProgramMocks, ProgramRun, reveal
from tools.render import render

VM = "proxmoxve:index/vmLegacy:VmLegacy"
MAPPING = "proxmoxve:hardware/mapping/pci:Pci"
PROXMOX = "pulumi:providers:proxmoxve"
RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
CONFIG_MAP_PATCH = "kubernetes:core/v1:ConfigMapPatch"
NAMESPACE = "kubernetes:core/v1:Namespace"
NODE_PATCH = "kubernetes:core/v1:NodePatch"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
SCHEMATIC = "talos:imageFactory/schematic:Schematic"
RUNTIME_CLASS = "kubernetes:node.k8s.io/v1:RuntimeClass"
FLUX_RELEASE = "kubernetes:helm.toolkit.fluxcd.io/v2:HelmRelease"
FLUX_REPOSITORY = "kubernetes:source.toolkit.fluxcd.io/v1:HelmRepository"
# A user's own machine-config patch (talos.configPatches), read from the checkout.
NETWORK_PATCH = ROOT / "tests" / "data" / "talos-network-patch.yaml"


class RecordingMocks(ProgramMocks):
    """ProgramMocks that also keep the arguments of every invoke (the config
    the program asks Talos to generate)."""

    def __init__(self) -> None:
        super().__init__()
        self.invokes: dict[str, dict[str, Any]] = {}

    def call(self, args):
        self.invokes[args.token] = dict(args.args)
        return super().call(args)


class Stack:
    """One stack configuration and the places a key can take effect, each
    computed on first use."""

    def __init__(self, raw: dict[str, Any], secrets: dict[str, str]):
        self.raw, self.secrets, self.mocks = raw, secrets, RecordingMocks()

    @cached_property
    def cfg(self) -> StackConfig:
        return parse_stack_config(self.raw)

    @cached_property
    def run(self) -> ProgramRun:
        return run_main(self.raw, self.secrets, mocks=self.mocks)

    @cached_property
    def files(self) -> dict[str, str]:
        return render(self.cfg, self.raw, with_graph=False)

    @cached_property
    def flux_files(self) -> dict[str, dict[str, Any]]:
        """The documents `render --flux` writes, by path."""
        return {path: document for path, (_, document) in flux_tree(self.cfg, "test").items()}

    @cached_property
    def doctor_kubectl(self) -> list[list[str]]:
        """The kubectl commands `doctor`'s workload layer runs (answered with
        an empty pod list)."""
        from tools.doctor import runners

        calls: list[list[str]] = []

        def kubectl(args, **_kwargs):
            calls.append(list(args))
            return json.dumps({"kind": "List", "items": []})

        with mock.patch.object(runners, "run_kubectl", kubectl):
            runners.gather_workload(self.cfg, runners.Credentials(kubeconfig="apiVersion: v1\nkind: Config\n"))
        return calls

    # -- views -------------------------------------------------------------

    def all(self, type_: str) -> list[dict[str, Any]]:
        return [reveal(reg.inputs) for reg in self.run.by_type(type_)]

    def inputs(self, type_: str) -> dict[str, Any]:
        return reveal(self.run.one(type_).inputs)

    def named(self, suffix: str) -> dict[str, Any]:
        found = [reg for reg in self.run.registrations if reg.name.endswith(suffix)]
        assert len(found) == 1, f"one registration named *{suffix}, found {[reg.urn for reg in found]}"
        return reveal(found[0].inputs)

    def count(self, type_: str = "", suffix: str = "") -> int:
        return len([reg for reg in self.run.registrations if reg.type.startswith(type_) and reg.name.endswith(suffix)])

    def patch(self) -> dict[str, Any]:
        """The GPU patch of a generated config (the last one: the user's
        own patches come first)."""
        return yaml.safe_load(self.inputs(APPLY)["configPatches"][-1])["machine"]

    def spec(self) -> dict[str, Any]:
        """What the adopted node should run: the spec TalosMachineConfig
        merges into the node's own config (talos.configSource: running)."""
        return self.named("-talos-config")["spec"]

    def owned_at_target(self) -> Any:
        """The owned machine-config values the provider computes from that
        spec for the target version."""
        return NodeSpec.from_dict(self.spec()).target

    def plugin_config(self) -> dict[str, Any]:
        (text,) = (self.inputs(CONFIG_MAP)["data"]).values()
        return yaml.safe_load(text)

    def values(self) -> dict[str, Any]:
        return self.inputs(RELEASE)["values"]

    def jellyfin(self) -> dict[str, Any]:
        return self.named("-jellyfin-encoding")["settings"]

    def invoke(self, name: str) -> Any:
        self.run  # noqa: B018 - the invoke happens during the run
        return self.mocks.invokes[GET_CONFIGURATION].get(name)


# -- base stacks ----------------------------------------------------------
# Each case starts from one of these; its value is then set on top.


def _jellyfin(raw: dict[str, Any]) -> None:
    raw["jellyfin"]["enabled"] = True


def _jellyfin_ada(raw: dict[str, Any]) -> None:
    _jellyfin(raw)
    raw["gpus"][0]["generation"] = "ada"


def _password(raw: dict[str, Any]) -> None:
    raw["proxmox"].update(authMethod="password", username="root@pam")


def _jellyfin_ampere(raw: dict[str, Any]) -> None:
    _jellyfin(raw)
    raw["gpus"][0].update(generation="ampere", model="ga10x")


def _device_plugin(raw: dict[str, Any]) -> None:
    # The device plugin chart is refused from Talos 1.13 (CDI toolkit).
    raw["gpuStack"]["mode"] = "devicePlugin"
    raw["talos"]["version"] = "v1.12.11"


def _no_pcie(raw: dict[str, Any]) -> None:
    raw["gpus"][0]["pcie"] = False


def _no_host(raw: dict[str, Any]) -> None:
    # Without the host's facts the mapping needs both values configured.
    raw["host"] = {"enabled": False}
    raw["gpus"][0]["iommuGroup"] = 12


def _generated(raw: dict[str, Any]) -> None:
    # A new node's config; the kubelet pinned (unset, it is read from the cluster).
    raw["talos"].update(configSource="generated", kubernetesVersion="v1.34.3")


def _owner_defaults(raw: dict[str, Any]) -> None:
    # A non-owner stack may not set the owner-only keys the reference stack sets.
    raw["gpuStack"].pop("prometheusOperator")


def _flux(raw: dict[str, Any]) -> None:
    raw["gpuStack"]["delivery"] = "flux"


def _monitoring(raw: dict[str, Any]) -> None:
    raw["gpuStack"]["prometheusOperator"] = True


def _adopted(raw: dict[str, Any]) -> None:
    # The reference stack as it is: vm.source existing (every other base creates the VM).
    raw["vm"]["source"] = "existing"


def _disks(raw: dict[str, Any]) -> None:
    raw["vm"]["disks"] = [raw["vm"].pop("disk"), {"datastoreId": "ceph-osd", "sizeGiB": 900, "interface": "scsi1"}]


def _networks(raw: dict[str, Any]) -> None:
    raw["vm"]["networks"] = [raw["vm"].pop("network"), {"bridge": "vmbr1", "vlanId": 30}]


BASES: dict[str, Callable[[dict[str, Any]], None]] = {
    "homelab": lambda raw: None,
    "adopted": _adopted,
    "disks": _disks,
    "networks": _networks,
    "jellyfin": _jellyfin,
    "jellyfin-ada": _jellyfin_ada,
    "jellyfin-ampere": _jellyfin_ampere,
    "password": _password,
    "device-plugin": _device_plugin,
    "no-pcie": _no_pcie,
    "no-host": _no_host,
    "generated": _generated,
    "owner-defaults": _owner_defaults,
    "flux": _flux,
    "monitoring": _monitoring,
}
SECRETS = {"password": {**FAKE_SECRETS, "proxmoxPassword": "hunter2"}}


UNSET = object()


@dataclass(frozen=True)
class Case:
    value: Any
    observe: Callable[[Stack], Any]
    expected: Any
    base: str = "homelab"
    extra: dict[str, Any] = field(default_factory=dict)  # other keys the value needs
    # Keys that must change together with the value (the changed stack only),
    # for a value that no stack accepts without them.
    with_value: dict[str, Any] = field(default_factory=dict)
    baseline: Any = field(default_factory=lambda: UNSET)  # when set: what the unchanged stack shows, exactly


def _vm(path: str) -> Callable[[Stack], Any]:
    def observe(stack: Stack) -> Any:
        value: Any = stack.inputs(VM)
        for part in path.split("."):
            if value is None:
                return None
            value = value[int(part)] if part.isdigit() else value.get(part)
        return value
    return observe


def _host(name: str) -> Callable[[Stack], Any]:
    return lambda stack: stack.named("-vfio")[name]


def _mapping(name: str) -> Callable[[Stack], Any]:
    return lambda stack: stack.inputs(MAPPING)["maps"][0].get(name)


def _gate(name: str) -> Callable[[Stack], Any]:
    return lambda stack: stack.named("-readiness-gate")[name]


def _time_slicing(name: str) -> Callable[[Stack], Any]:
    return lambda stack: stack.plugin_config()["sharing"]["timeSlicing"][name]


CASES: dict[str, Case] = {
    "proxmox.endpoint": Case("https://pve6.lan:8006/", lambda s: s.inputs(PROXMOX)["endpoint"], "https://pve6.lan:8006/"),
    "proxmox.node": Case("pve6", lambda s: (s.inputs(VM)["nodeName"], s.inputs(MAPPING)["maps"][0]["node"]), ("pve6", "pve6")),
    "proxmox.authMethod": Case("password", lambda s: sorted(set(s.inputs(PROXMOX)) & {"apiToken", "password", "username"}),
                               ["password", "username"], base="password", extra={"proxmox.authMethod": "apiToken"}),
    "proxmox.username": Case("pulumi@pve", lambda s: s.inputs(PROXMOX)["username"], "pulumi@pve", base="password"),
    # Provider inputs reach the engine as strings.
    "proxmox.insecure": Case(True, lambda s: s.inputs(PROXMOX)["insecure"], "true"),
    "host.enabled": Case(False, lambda s: (s.count("pulumi-python:dynamic:Resource", "-vfio"), _mapping("iommuGroup")(s)), (0, 12),
                         extra={"gpus[].iommuGroup": 12}),
    "host.address": Case("10.0.0.5", _host("host"), "10.0.0.5"),
    "host.port": Case(2222, _host("port"), 2222),
    "host.user": Case("admin", _host("user"), "admin"),
    "host.hostKey": Case("SHA256:" + "B" * 43, _host("hostKey"), "SHA256:" + "B" * 43),
    "host.allowReboot": Case(False, _host("allowReboot"), False),
    "host.rebootTimeoutSeconds": Case(900, _host("rebootTimeoutSeconds"), 900),
    "host.rebootOnDestroy": Case(True, _host("rebootOnDestroy"), True),
    "host.intelIommu": Case("on", _host("intelIommu"), "on"),
    "host.iommuPassthroughMode": Case(False, _host("iommuPassthrough"), False),
    "host.runningGuests": Case("stop", _host("runningGuests"), "stop"),
    "host.commandTimeoutSeconds": Case(1800, _host("commandTimeoutSeconds"), 1800),
    "host.drainTimeoutSeconds": Case(120, _host("drainTimeoutSeconds"), 120),
    "host.guestTimeoutSeconds": Case(1200, _host("guestTimeoutSeconds"), 1200),
    "host.handEdits": Case("overwrite", _host("handEdits"), "overwrite"),
    "gpus[].address": Case("af:00.0", lambda s: (_mapping("path")(s), s.named("-vfio")["gpus"][0]["address"]), ("0000:af:00.0", "0000:af:00.0")),
    "gpus[].id": Case("10de:1db4", lambda s: (_mapping("id")(s), s.named("-vfio")["gpus"][0]["id"]), ("10de:1db4", "10de:1db4")),
    "gpus[].subsystemId": Case("10de:1234", _mapping("subsystemId"), "10de:1234", base="no-host"),
    "gpus[].iommuGroup": Case(31, _mapping("iommuGroup"), 31, base="no-host"),
    "gpus[].allFunctions": Case(True, _mapping("path"), "0000:3b:00", baseline="0000:3b:00.0"),
    "gpus[].slot": Case("hostpci3", _vm("hostpcis.0.device"), "hostpci3"),
    "gpus[].passthrough": Case("raw", lambda s: (_vm("hostpcis.0.id")(s), s.count(MAPPING)), ("0000:3b:00.0", 0), base="password"),
    "gpus[].mappingName": Case("t4-on-pve5", lambda s: (_vm("hostpcis.0.mapping")(s), s.inputs(MAPPING)["name"]), ("t4-on-pve5", "t4-on-pve5")),
    "gpus[].pcie": Case(False, _vm("hostpcis.0.pcie"), False),
    "gpus[].rombar": Case(False, _vm("hostpcis.0.rombar"), False),
    "gpus[].xvga": Case(True, _vm("hostpcis.0.xvga"), True),
    "gpus[].generation": Case("ada", lambda s: (s.jellyfin()["HardwareDecodingCodecs"][-1], s.jellyfin()["AllowAv1Encoding"]), ("av1", True), base="jellyfin"),
    # GA100 (A100, A30): an Ampere chip without NVENC and without AV1 decoding.
    "gpus[].model": Case("ga100", lambda s: (s.jellyfin()["EnableHardwareEncoding"], "av1" in s.jellyfin()["HardwareDecodingCodecs"]), (False, False),
                         base="jellyfin-ampere", baseline=(True, True)),
    "gpus[].mig": Case(True, lambda s: (s.values()["migManager"]["enabled"], s.plugin_config()["flags"]["migStrategy"]), (True, "single")),
    "vm.vmId": Case(1200, lambda s: (_vm("vmId")(s), s.run.outputs["vmId"]), (1200, 1200)),
    "vm.name": Case("moody-bad", lambda s: (_vm("name")(s), s.inputs(NODE_PATCH)["metadata"]["name"]), ("moody-bad", "moody-bad")),
    "vm.source": Case("existing", lambda s: (s.count(VM), s.count(suffix="-gpu-slots")), (0, 1), baseline=(1, 0)),
    "vm.restart": Case("never", lambda s: s.named("-gpu-slots")["restart"], "never", base="adopted", baseline="drained"),
    "vm.restartTimeoutSeconds": Case(1200, lambda s: s.named("-gpu-slots")["restartTimeoutSeconds"], 1200, base="adopted", baseline=900),
    "vm.drainTimeoutSeconds": Case(600, lambda s: s.named("-gpu-slots")["drainTimeoutSeconds"], 600, base="adopted", baseline=300),
    "vm.disks[].datastoreId": Case("local-zfs", _vm("disks.0.datastoreId"), "local-zfs", base="disks", baseline="disk3"),
    "vm.disks[].sizeGiB": Case(120, _vm("disks.0.size"), 120, base="disks", baseline=450),
    "vm.disks[].interface": Case("virtio0", lambda s: [d["interface"] for d in _vm("disks")(s)], ["virtio0", "scsi1"], base="disks",
                                 baseline=["scsi0", "scsi1"]),
    "vm.networks[].bridge": Case("vmbr9", lambda s: [n["bridge"] for n in _vm("networkDevices")(s)], ["vmbr9", "vmbr1"], base="networks",
                                 baseline=["vmbr0", "vmbr1"]),
    "vm.networks[].vlanId": Case(40, _vm("networkDevices.0.vlanId"), 40, base="networks", baseline=2),
    "vm.networks[].macAddress": Case("BC:24:11:00:00:02", _vm("networkDevices.0.macAddress"), "bc:24:11:00:00:02", base="networks"),
    "vm.networks[].model": Case("e1000", _vm("networkDevices.0.model"), "e1000", base="networks"),
    "vm.description": Case("a second GPU worker", _vm("description"), "a second GPU worker"),
    "vm.tags": Case(["gpu", "lab"], _vm("tags"), ["gpu", "lab"]),
    "vm.cores": Case(12, _vm("cpu.cores"), 12),
    "vm.sockets": Case(2, _vm("cpu.sockets"), 2),
    "vm.cpuType": Case("x86-64-v3", _vm("cpu.type"), "x86-64-v3"),
    "vm.memoryMiB": Case(65536, lambda s: (_vm("memory.dedicated")(s), _vm("timeoutStartVm")(s)), (65536, 300 + 2 * 64)),
    "vm.machine": Case("pc", _vm("machine"), "pc", base="no-pcie"),
    "vm.bios": Case("ovmf", lambda s: (_vm("bios")(s), _vm("efiDisk")(s)), ("ovmf", {"datastoreId": "disk3", "fileFormat": "raw", "type": "4m"}),
                    baseline=("seabios", None)),
    "vm.disk.datastoreId": Case("local-zfs", _vm("disks.0.datastoreId"), "local-zfs"),
    "vm.disk.sizeGiB": Case(120, _vm("disks"), [{"interface": "scsi0", "datastoreId": "disk3", "size": 120, "fileFormat": "raw"}]),
    "vm.disk.interface": Case("virtio0", _vm("disks.0.interface"), "virtio0"),
    "vm.network.bridge": Case("vmbr1", _vm("networkDevices.0.bridge"), "vmbr1"),
    "vm.network.vlanId": Case(30, _vm("networkDevices.0.vlanId"), 30),
    "vm.network.macAddress": Case("BC:24:11:00:00:01", _vm("networkDevices.0.macAddress"), "bc:24:11:00:00:01"),
    "vm.network.model": Case("e1000", _vm("networkDevices.0.model"), "e1000"),
    "vm.bootIso": Case("local:iso/metal-amd64.iso", _vm("cdrom"), {"fileId": "local:iso/metal-amd64.iso", "interface": "ide2"}, baseline=None),
    "vm.onBoot": Case(False, _vm("onBoot"), False),
    "vm.startTimeoutSeconds": Case(1200, _vm("timeoutStartVm"), 1200),
    "vm.retainOnDestroy": Case(False, lambda s: bool(s.run.one(VM).retain_on_delete), False),
    # A release newer than the table: refused without the key (test_config_limits.py), planned with it.
    "talos.allowUnlistedVersion": Case(True, lambda s: s.named("-talos-upgrade")["version"], "v1.13.10",
                                       with_value={"talos.version": "v1.13.10"}),
    "talos.version": Case("v1.13.2", lambda s: (s.named("-talos-upgrade")["version"], s.named("-talos-upgrade")["image"].rsplit(":", 1)[1],
                                                 s.spec()["targetVersion"]), ("v1.13.2", "v1.13.2", "v1.13.2")),
    "talos.upgradePath": Case(["v1.12.9"], lambda s: (s.named("-talos-preflight")["upgradePath"], s.named("-talos-upgrade")["upgradePath"],
                                                       s.named("-talos-config")["upgradePath"]), (["v1.12.9"],) * 3),
    "talos.upgradeTimeoutSeconds": Case(3600, lambda s: (s.named("-talos-upgrade")["timeoutSeconds"], s.named("-talos-upgrade-before-1.13")["timeoutSeconds"]),
                                        (3600, 3600)),
    "talos.platform": Case("nocloud", lambda s: s.named("-talos-upgrade")["image"].split("/")[1], "nocloud-installer"),
    "talos.nodeAddress": Case("192.168.8.124", lambda s: (s.named("-talos-config")["node"], s.named("-talos-upgrade")["node"]), ("192.168.8.124", "192.168.8.124")),
    "talos.endpoint": Case("192.168.8.98", lambda s: (s.named("-talos-config")["endpoint"], s.named("-talos-preflight")["endpoint"]), ("192.168.8.98", "192.168.8.98")),
    # running (the default) adopts the node's config; generated applies a new one.
    "talos.configSource": Case("generated", lambda s: (s.count(APPLY), s.count(suffix="-talos-config")), (1, 0), baseline=(0, 1),
                               extra={"talos.kubernetesVersion": "v1.34.3"}),
    "talos.configPatches": Case([str(NETWORK_PATCH)], lambda s: [yaml.safe_load(text)["machine"].get("network") for text in s.inputs(APPLY)["configPatches"]],
                                [{"hostname": "gpu-worker-1"}, None], base="generated", baseline=[None]),
    # The keys of a generated config (configSource: generated).
    "talos.clusterName": Case("lab", lambda s: s.invoke("clusterName"), "lab", base="generated"),
    "talos.clusterEndpoint": Case("https://192.168.8.100:6443", lambda s: s.invoke("clusterEndpoint"), "https://192.168.8.100:6443", base="generated"),
    "talos.kubernetesVersion": Case("v1.35.0", lambda s: s.invoke("kubernetesVersion"), "v1.35.0", base="generated"),
    "talos.installDisk": Case("/dev/nvme0n1", lambda s: s.patch()["install"]["disk"], "/dev/nvme0n1", base="generated"),
    "talos.extensions.driver": Case("open", lambda s: "siderolabs/nvidia-open-gpu-kernel-modules-production" in s.inputs(SCHEMATIC)["schematic"], True),
    "talos.extensions.branch": Case("lts", lambda s: "siderolabs/nonfree-kmod-nvidia-lts" in s.inputs(SCHEMATIC)["schematic"], True),
    "talos.extensions.extra": Case(["siderolabs/iscsi-tools"], lambda s: ("siderolabs/iscsi-tools" in s.inputs(SCHEMATIC)["schematic"],
                                                                        _vm("agent.enabled")(s)), (True, False), baseline=(False, True)),
    "talos.nodeLabels": Case({"drmoo.io/gpu": "nvidia-a2"}, lambda s: dict(s.owned_at_target().node_labels), {"drmoo.io/gpu": "nvidia-a2"}),
    # On Talos 1.13 the NVIDIA guide sets neither: the override turns each on.
    "talos.bpfJitHarden": Case(True, lambda s: s.owned_at_target().sysctls, {"net.core.bpf_jit_harden": "1"}, baseline={}),
    "talos.nvidiaDefaultRuntime": Case(True, lambda s: s.owned_at_target().default_runtime, True, baseline=False),
    "gpuStack.mode": Case("devicePlugin", lambda s: (s.inputs(RELEASE)["chart"], s.count(RUNTIME_CLASS)), ("nvidia-device-plugin", 1),
                          with_value={"talos.version": "v1.12.11"}, baseline=("gpu-operator", 0)),
    "gpuStack.delivery": Case("flux", lambda s: (s.count(RELEASE), s.count(FLUX_REPOSITORY), [release["spec"]["chart"]["spec"]["chart"] for release in s.all(FLUX_RELEASE)]),
                              (0, 1, ["gpu-operator"]), baseline=(1, 0, [])),
    "gpuStack.flux.objects": Case("git", lambda s: (s.count(FLUX_RELEASE), s.count(FLUX_REPOSITORY), s.count(CONFIG_MAP), s.count(NODE_PATCH),
                                                    s.named("-readiness-gate")["helmRelease"]["name"]),
                                  (0, 0, 0, 1, "gpu-operator"), base="flux", baseline=(1, 1, 1, 1, "gpu-operator")),
    "gpuStack.flux.gitRepository": Case("home-ops", lambda s: s.flux_files["ks.yaml"]["spec"]["sourceRef"], {"kind": "GitRepository", "name": "home-ops"}),
    "gpuStack.flux.namespace": Case("flux-apps", lambda s: s.flux_files["ks.yaml"]["metadata"]["namespace"], "flux-apps"),
    "gpuStack.flux.path": Case("./clusters/lab/gpu/app", lambda s: s.flux_files["ks.yaml"]["spec"]["path"], "./clusters/lab/gpu/app"),
    "gpuStack.flux.gitDevicePlugin": Case("suspend", lambda s: s.named("-talos-mode-migration")["gitDevicePlugin"], "suspend"),
    "gpuStack.adoptGuideObjects": Case(True, lambda s: s.named("-talos-mode-migration")["adoptGuideObjects"], True),
    "gpuStack.ownsClusterObjects": Case(False, lambda s: (s.count(RELEASE), s.count(CONFIG_MAP_PATCH)), (0, 1), base="owner-defaults"),
    "gpuStack.namespace": Case("nvidia", lambda s: (s.inputs(NAMESPACE)["metadata"]["name"], s.inputs(RELEASE)["namespace"], _gate("namespace")(s)),
                               ("nvidia", "nvidia", "nvidia")),
    "gpuStack.operatorChartVersion": Case("v26.3.1", lambda s: s.inputs(RELEASE)["version"], "v26.3.1"),
    "gpuStack.devicePluginChartVersion": Case("0.17.4", lambda s: s.inputs(RELEASE)["version"], "0.17.4", base="device-plugin"),
    "gpuStack.configMapName": Case("gpu-sharing", lambda s: (s.inputs(CONFIG_MAP)["metadata"]["name"], s.values()["devicePlugin"]["config"]["name"]),
                                   ("gpu-sharing", "gpu-sharing")),
    "gpuStack.configKey": Case("t4", lambda s: (list(s.inputs(CONFIG_MAP)["data"]), s.inputs(NODE_PATCH)["metadata"]["labels"]["nvidia.com/device-plugin.config"],
                                                 s.values()["devicePlugin"]["config"]["default"], _gate("configKey")(s)), (["t4"], "t4", "t4", "t4")),
    "gpuStack.timeSlicing.enabled": Case(False, lambda s: ("sharing" in s.plugin_config(), _gate("expectedGpus")(s)), (False, 1)),
    "gpuStack.timeSlicing.replicas": Case(8, lambda s: (_time_slicing("resources")(s)[0]["replicas"], _gate("expectedGpus")(s), s.run.outputs["advertisedGpus"]),
                                          (8, 8, 8)),
    "gpuStack.timeSlicing.renameByDefault": Case(True, _time_slicing("renameByDefault"), True),
    "gpuStack.timeSlicing.failRequestsGreaterThanOne": Case(True, _time_slicing("failRequestsGreaterThanOne"), True),
    "gpuStack.prometheusOperator": Case(True, lambda s: s.values()["dcgmExporter"]["serviceMonitor"]["enabled"], True),
    "gpuStack.nfd": Case(False, lambda s: s.values()["nfd"]["enabled"], False),
    "gpuStack.monitoring.dashboard": Case(False, lambda s: s.count(suffix="-gpu-dashboard"), 0, base="monitoring", baseline=1),
    "gpuStack.monitoring.dashboardNamespace": Case("monitoring", lambda s: s.named("-gpu-dashboard")["metadata"]["namespace"], "monitoring",
                                                   base="monitoring", baseline="gpu-operator"),
    "gpuStack.monitoring.dashboardLabel": Case("grafana_dashboards", lambda s: s.named("-gpu-dashboard")["metadata"]["labels"],
                                               {"grafana_dashboards": "1"}, base="monitoring", baseline={"grafana_dashboard": "1"}),
    "gpuStack.monitoring.dashboardLabelValue": Case("gpu", lambda s: s.named("-gpu-dashboard")["metadata"]["labels"], {"grafana_dashboard": "gpu"},
                                                    base="monitoring"),
    "gpuStack.monitoring.prometheusLabels": Case({"prometheus": "homelab"}, lambda s: (
        s.named("-gpu-alerts")["metadata"]["labels"], s.values()["dcgmExporter"]["serviceMonitor"]["additionalLabels"],
        s.flux_files["app/gpu-alerts.yaml"]["metadata"]["labels"]), ({"prometheus": "homelab"},) * 3, base="monitoring"),
    "gpuStack.monitoring.gpuTemperatureCelsius": Case(80, lambda s: [rule["expr"] for rule in s.named("-gpu-alerts")["spec"]["groups"][0]["rules"]
                                                                     if rule["alert"] == "GpuTemperatureHigh"],
                                                      ["DCGM_FI_DEV_GPU_TEMP >= 80"], base="monitoring", baseline=["DCGM_FI_DEV_GPU_TEMP >= 85"]),
    "jellyfin.enabled": Case(True, lambda s: s.count(suffix="-jellyfin-encoding"), 1),
    "jellyfin.url": Case("http://jellyfin.example:8096", lambda s: s.named("-jellyfin-encoding")["url"], "http://jellyfin.example:8096", base="jellyfin"),
    "jellyfin.namespace": Case("video", lambda s: s.doctor_kubectl[0][2:4], ["-n", "video"], base="jellyfin"),
    "jellyfin.podSelector": Case("app=jf", lambda s: s.doctor_kubectl[0][4:6], ["-l", "app=jf"], base="jellyfin"),
    "jellyfin.decodeCodecs": Case(["h264", "hevc"], lambda s: (s.jellyfin()["HardwareDecodingCodecs"], "EnableDecodingColorDepth10Vp9" in s.jellyfin()),
                                  (["h264", "hevc"], False), base="jellyfin"),
    "jellyfin.enhancedNvdec": Case(False, lambda s: s.jellyfin()["EnableEnhancedNvdecDecoder"], False, base="jellyfin"),
    "jellyfin.allowHevcEncoding": Case(False, lambda s: s.jellyfin()["AllowHevcEncoding"], False, base="jellyfin"),
    "jellyfin.allowAv1Encoding": Case(False, lambda s: s.jellyfin()["AllowAv1Encoding"], False, base="jellyfin-ada"),
    "jellyfin.timeoutSeconds": Case(90, lambda s: s.named("-jellyfin-encoding")["timeoutSeconds"], 90, base="jellyfin"),
    "readiness.enabled": Case(False, lambda s: s.count(suffix="-readiness-gate"), 0),
    "readiness.timeoutSeconds": Case(1800, _gate("timeoutSeconds"), 1800),
}

# Keys that change nothing the program registers, renders or runs, and why.
# Empty today: every key has a case above.
WITHOUT_EFFECT: dict[str, str] = {}


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (README spelling; ``gpus[]`` means the first GPU)."""
    target: Any = raw
    parts = key.split(".")
    for part in parts[:-1]:
        target = target[part[:-2]][0] if part.endswith("[]") else target.setdefault(part, {})
    target[parts[-1]] = copy.deepcopy(value)


_BASELINES: dict[str, Stack] = {}


def stack(base: str, changes: dict[str, Any] | None = None) -> Stack:
    if not changes and base in _BASELINES:
        return _BASELINES[base]
    # The VM keys are observed on the VmLegacy of create mode; the base
    # "adopted" keeps the reference stack's vm.source: existing.
    raw = created_config()
    BASES[base](raw)
    for key, value in (changes or {}).items():
        set_key(raw, key, value)
    made = Stack(raw, SECRETS.get(base, FAKE_SECRETS))
    if not changes:
        _BASELINES[base] = made
    return made


@pytest.mark.parametrize("key", [key for key in documented_keys() if key not in WITHOUT_EFFECT])
def test_config_key_reaches_what_the_program_registers(key):
    assert key in CASES, f"{key} is in the README's Configuration table but has no case in CASES (or WITHOUT_EFFECT) here"
    case = CASES[key]
    before = case.observe(stack(case.base, case.extra))
    after = case.observe(stack(case.base, {**case.extra, **case.with_value, key: case.value}))
    assert after == case.expected, f"{key} = {case.value!r}: observed {after!r}, expected {case.expected!r}"
    assert before != case.expected, f"{key}: the unchanged stack already shows {before!r}, so this case proves nothing"
    if case.baseline is not UNSET:
        assert before == case.baseline, f"{key} left at its default: observed {before!r}, expected {case.baseline!r}"


def test_vm_runs_talos_as_a_linux_guest_with_its_agent():
    vm = stack("homelab").inputs(VM)
    assert (vm["operatingSystem"], vm["agent"]) == ({"type": "l26"}, {"enabled": True}), "qemu-guest-agent is in talos.extensions.extra"
    assert vm["scsiHardware"] == "virtio-scsi-single", "one controller per disk (iothread-capable)"


def test_cases_and_exceptions_name_only_documented_keys():
    documented = set(documented_keys())
    assert sorted(set(CASES) - documented) == [] and sorted(set(WITHOUT_EFFECT) - documented) == []
    assert set(CASES).isdisjoint(WITHOUT_EFFECT)
    assert all(reason.strip() for reason in WITHOUT_EFFECT.values())


# -- nodes with more than one GPU -----------------------------------------


# The chip of a generation whose chips differ in NVENC (Jellyfin needs it).
MIXED_CHIP = {"pascal": "gp10x", "ampere": "ga10x"}


def _mixed(*generations: str) -> Stack:
    changes: dict[str, Any] = {"jellyfin.enabled": True}
    if "pascal" in generations:
        # Talos 1.13's production driver (595) dropped Pascal: R580 (lts) has it.
        changes["talos.extensions.branch"] = "lts"
    made = stack("homelab", changes)
    gpus = [{**made.raw["gpus"][0], "generation": generations[0]}] + [
        {"address": f"0000:{0xa0 + index:02x}:00.0", "id": "10de:27b8", "slot": f"hostpci{index}", "generation": generation}
        for index, generation in enumerate(generations[1:], start=1)
    ]
    made.raw["gpus"] = [{**gpu, "model": MIXED_CHIP[gpu["generation"]]} if gpu["generation"] in MIXED_CHIP else gpu for gpu in gpus]
    return made


@pytest.mark.parametrize(("generations", "codecs", "encode", "av1_encode"), [
    # An Ada GPU alone decodes and encodes AV1; next to a T4 (Turing) neither
    # is safe, because Jellyfin may be handed either GPU: the weakest wins.
    (("ada",), ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9", "av1"], True, True),
    (("turing", "ada"), ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"], True, False),
    (("ada", "turing"), ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"], True, False),
    # Hopper has no NVENC at all: with it in the node, nothing is encoded in hardware.
    (("ada", "hopper"), ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp8", "vp9"], False, False),
    # Pascal decodes VP8 only on some chips: not chosen for a Pascal + Ada node.
    (("pascal", "ada"), ["h264", "hevc", "mpeg2video", "mpeg4", "vc1", "vp9"], True, False),
])
def test_mixed_gpu_node_gets_only_what_every_gpu_can(generations, codecs, encode, av1_encode):
    node = _mixed(*generations)
    settings = node.jellyfin()
    assert settings["HardwareDecodingCodecs"] == codecs, generations
    assert (settings["EnableHardwareEncoding"], settings["AllowAv1Encoding"]) == (encode, av1_encode), generations
    assert json.loads(node.files["consumers/jellyfin-encoding.json"]) == settings, "render and the program agree"


def test_mixed_gpu_node_refuses_a_codec_one_gpu_cannot_decode():
    from components.config import ConfigError

    node = _mixed("ada", "turing")
    node.raw["jellyfin"]["decodeCodecs"] = ["h264", "av1"]
    with pytest.raises(ConfigError, match=r"jellyfin\.decodeCodecs.*'av1' cannot be decoded.*gpus\[0\], gpus\[1\]"):
        node.run  # noqa: B018


def test_mixed_gpu_node_counts_and_maps_every_gpu():
    node = _mixed("turing", "ampere", "ada")
    node.raw["gpus"][2]["mig"] = True
    assert [entry["device"] for entry in node.inputs(VM)["hostpcis"]] == ["hostpci0", "hostpci1", "hostpci2"]
    assert sorted(mapping["maps"][0]["path"] for mapping in node.all(MAPPING)) == ["0000:3b:00.0", "0000:a1:00.0", "0000:a2:00.0"]
    assert node.named("-readiness-gate")["expectedGpus"] == 12 and node.named("-readiness-gate")["gpus"] == 3
    # One MIG-capable GPU turns the MIG manager on for the node.
    assert node.values()["migManager"]["enabled"] is True and node.plugin_config()["flags"]["migStrategy"] == "single"
