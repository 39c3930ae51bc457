"""`pulumi preview` changes nothing. In a preview the engine calls only each
dynamic provider's ``check`` and ``diff``; this test calls exactly those, the
engine's way, for every dynamic resource the program registers (taken from
mock-engine runs of __main__.py with Helm and with Flux delivery, so a
provider added later is covered without a change here): the serialized
``__provider`` input loaded with dill in a fresh Python process started in
the project root.

Every outside system is a stand-in that logs each call and answers reads as
the real one would, so each check reads as far as it does in a real
preview: the simulated Proxmox host behind a real sshd, a Jellyfin API
server, a cluster behind kubectl (the guide's device plugin installed by
Helm, Flux installed) and a node behind talosctl (the guide's Talos, one
step of the walk behind). Afterwards no call may have changed anything. A
call is a read or a change by what the tool's documentation says it does:
``pvesh get``, ``qm config``, ``efibootmgr -v``, ``proxmox-boot-tool
status``, ``kubectl get``, ``talosctl get|read|version`` and
``talosctl apply-config --dry-run`` read; a host file written, a command
that writes, applies, deletes, patches, labels, upgrades or reboots, a POST
to Jellyfin, is a change. The kubectl and talosctl stand-ins also say
themselves whether a call changed their cluster or node.

``test_the_harness_reports_a_provider_that_changes_things_in_preview``
drives a deliberately unsafe provider through the same harness, so the
harness is shown able to fail."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.gpu_migration_facts import OWNER_LABEL
from tests.conftest import FAKE_SECRETS, ROOT, run_main, stack_file_config
from tests.consumers.conftest import API_KEY
from tests.hostprep.conftest import keys, make_sim  # noqa: F401 - fixtures
from tests.stand_ins.jellyfin import FakeJellyfin
from tests.stand_ins.kubectl_flags import Usage
from tests.stand_ins.kubectl_flags import parse as parse_kubectl
from tests.stand_ins.kubectl_objects import FakeKubectl, install_kubectl, installed_device_plugin, node, runtime_class
from tests.stand_ins.proxmox_host_spec import SimSpec, t4
from tests.talos.conftest import FakeTalosctl, install_talosctl
from tests.talos.running_configs import as_text, worker_documents
from tools.mockengine import reveal

pytestmark = pytest.mark.sshd

DYNAMIC = "pulumi-python:dynamic"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"
# The schematic of a node installed from a plain Image Factory image (no extensions).
PLAIN_SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

# kubectl's commands that only read (`kubectl help`); any command run with
# --dry-run=client or =server sends nothing to persist ("If server strategy,
# submit server-side request without persisting the resource").
KUBECTL_READS = frozenset({"get", "describe", "version", "explain", "api-resources", "api-versions", "cluster-info", "top", "logs", "events",
                           "diff", "wait"})
# talosctl's commands that only read (talosctl CLI reference); apply-config,
# patch and edit with --dry-run only show what would change.
TALOSCTL_READS = frozenset({"version", "get", "read", "list", "ls", "logs", "dmesg", "health", "containers", "services",
                            "memory", "processes", "stats", "mounts", "netstat", "time", "disks", "events"})
TALOSCTL_DRY_RUN = frozenset({"apply-config", "patch", "edit"})


def kubectl_reads(argv: Sequence[str]) -> bool:
    try:
        verb = parse_kubectl(list(argv))[0]
    except Usage:
        verb = next((arg for arg in argv if not arg.startswith("-")), "")
    dry_run = any(arg in ("--dry-run=client", "--dry-run=server") for arg in argv) or any(
        first == "--dry-run" and second in ("client", "server") for first, second in zip(argv, argv[1:], strict=False))
    return verb in KUBECTL_READS or dry_run


def talosctl_reads(command: str, argv: Sequence[str]) -> bool:
    return command in TALOSCTL_READS or (command in TALOSCTL_DRY_RUN and "--dry-run" in argv)


def host_tool_reads(tool: str, args: Sequence[str]) -> bool:
    """The Proxmox host's tools, each by its manual: ``pvesh get|ls|usage``
    (``create``, ``set``, ``delete`` change); ``qm``/``pct`` ``config``,
    ``list``, ``status``, ``pending``, ``listsnapshot`` (``start``,
    ``shutdown``, ``set``, ... change); ``efibootmgr`` with only ``-v``
    (every other option edits the firmware's boot entries);
    ``proxmox-boot-tool status`` and ``kernel list`` (``refresh``, ``init``,
    ... write the ESPs). ``update-grub``, ``update-initramfs`` and ``reboot``
    always change."""
    if tool == "pvesh":
        return args[:1] in (["get"], ["ls"], ["usage"])
    if tool in ("qm", "pct"):
        return args[:1] in (["config"], ["list"], ["status"], ["pending"], ["listsnapshot"])
    if tool == "efibootmgr":
        return set(args) <= {"-v", "--verbose"}
    if tool == "proxmox-boot-tool":
        return list(args[:1]) == ["status"] or list(args[:2]) == ["kernel", "list"]
    return False


# Test-only inputs by provider class: the simulated host's file tree.
EXTRA_PROPS = {"HostPrepProvider": {"root": "{sim_root}"}}

DRIVER = r"""
import base64, json, sys
import dill

request = json.load(sys.stdin)
results = []
for item in request["resources"]:
    provider = dill.loads(base64.b64decode(item["provider"]))
    name = type(provider).__name__
    props = {**item["props"], **request["extra"].get(name, {})}
    steps = []
    for label, call in (("check (create)", lambda: provider.check({}, props)),
                        ("check (update)", lambda: provider.check(props, props)),
                        ("diff (unchanged inputs)", lambda: provider.diff(item["urn"], props, props)),
                        ("diff (from nothing)", lambda: provider.diff(item["urn"], {}, props))):
        try:
            call()
            steps.append([label, "ok"])
        except Exception as error:  # a refusal is fine in preview; a change is not
            steps.append([label, f"{type(error).__name__}: {str(error)[:300]}"])
    results.append({"urn": item["urn"], "class": f"{type(provider).__module__}.{name}", "steps": steps})
print(json.dumps(results))
"""


@dataclass
class World:
    """The stand-ins every outside system is replaced by, and what they saw."""

    sim: Any
    jellyfin: FakeJellyfin
    talos: FakeTalosctl
    cluster: FakeKubectl
    home: Path

    def config(self, **gpu_stack: Any) -> tuple[dict[str, Any], dict[str, str]]:
        raw = copy.deepcopy(stack_file_config())
        raw["host"] = {"enabled": True, "address": self.sim.target.host, "port": self.sim.target.port, "user": self.sim.target.user,
                       "hostKey": self.sim.target.host_key, "rebootTimeoutSeconds": 30}
        raw["jellyfin"].update(enabled=True, url=self.jellyfin.url, timeoutSeconds=5)
        raw["gpuStack"].update(gpu_stack)
        secrets = {**FAKE_SECRETS, "sshPrivateKey": self.sim.target.private_key, "jellyfinApiKey": API_KEY, "kubeconfig": KUBECONFIG}
        return raw, secrets

    def env(self) -> dict[str, str]:
        """Only the stand-ins on PATH (they name the Python binary by
        absolute path); HOME is the test's folder, so no ~/.kube or ~/.talos
        of the machine leaks in."""
        env = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "TALOSCONFIG")}
        env.update(PATH=str(self.talos.bin_dir), HOME=str(self.home), FAKE_TALOS_STATE=str(self.talos.state),
                   FAKE_KUBE_STATE=str(self.cluster.state))
        return env

    def drive(self, resources: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        extra = json.loads(json.dumps(EXTRA_PROPS).replace("{sim_root}", self.sim.root))
        done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=300,
                              input=json.dumps({"resources": resources, "extra": extra}))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), done.stderr

    def changes(self, host_before: dict[str, Any], boot_before: str) -> list[str]:
        """Every call a stand-in saw that changes something."""
        found = []
        for call in self.cluster.calls():
            if call["mutated"] or not kubectl_reads(call["argv"]):
                found.append(f"kubectl {' '.join(call['argv'])}")
        for call, command in zip(self.talos.calls(), self.talos.commands(), strict=True):
            if call["mutated"] or not talosctl_reads(command, call["argv"]):
                found.append(f"talosctl {' '.join(call['argv'])}")
        found += [f"{method} {path} to Jellyfin" for method, path, _headers, _body in self.jellyfin.requests if method not in ("GET", "HEAD")]
        for call in self.sim.host.calls():
            if not host_tool_reads(call["tool"], call["args"]):
                found.append(f"host: {call['tool']} {' '.join(call['args'])}")
        after = self.sim.host.snapshot("")
        found += [f"host file {path} changed" for path in sorted(set(host_before) | set(after)) if host_before.get(path) != after.get(path)]
        found += [f"host temp file {path}" for path in self.sim.host.temp_files()]
        if self.sim.host.boot_id() != boot_before:
            found.append("host rebooted")
        return found


@pytest.fixture
def world(make_sim, tmp_path: Path):  # noqa: F811 - the fixture imported above
    sim = make_sim(SimSpec(devices=t4()))
    # The guide's node: Talos v1.11.6 from a plain image, its own worker
    # config; the walk to v1.13.9 goes through v1.12.11.
    talos = install_talosctl(tmp_path)
    talos.node("v1.11.6", PLAIN_SCHEMATIC, config=as_text(worker_documents("v1.11.6")))
    # The guide's cluster: the device plugin installed by Helm, this
    # program's RuntimeClass nvidia, the node; Flux installed.
    cluster = install_kubectl(tmp_path, talos.bin_dir)
    cluster.objects([*installed_device_plugin(), runtime_class(dict([OWNER_LABEL])), node()])
    cluster.install_flux()
    cluster.settle(rounds=1)  # the API server gives every object its uid
    with FakeJellyfin(API_KEY) as jellyfin:
        yield World(sim, jellyfin, talos, cluster, tmp_path)


def dynamic_resources(world: World) -> list[dict[str, Any]]:
    """Every dynamic resource of the reference stack, with Helm and with
    Flux delivery."""
    found = []
    for delivery in ("helm", "flux"):
        raw, secrets = world.config(delivery=delivery)
        for reg in run_main(raw, secrets).registrations:
            if reg.type.startswith(DYNAMIC):
                inputs = reveal(reg.inputs)
                provider = inputs.pop("__provider")
                found.append({"urn": reg.urn, "provider": provider, "props": {key: value for key, value in inputs.items() if value is not None}})
    return found


def test_check_and_diff_of_every_dynamic_provider_change_nothing(world: World) -> None:
    resources = dynamic_resources(world)
    host_before, boot_before = world.sim.host.snapshot(""), world.sim.host.boot_id()
    cluster_before, node_before = world.cluster.objects(), (world.talos.stored_config(), world.talos.running_config(), world.talos.reboots)
    results, stderr = world.drive(resources)
    assert [result["urn"] for result in results] == [item["urn"] for item in resources]
    # The providers this program has today; a new one is driven all the same.
    assert {result["class"].rsplit(".", 1)[1] for result in results} >= {
        "HostPrepProvider", "TalosUpgradePreflightProvider", "TalosMachineConfigProvider", "TalosUpgradeProvider", "GpuModeMigrationProvider",
        "FluxPreflightProvider", "GpuReadinessProvider", "JellyfinEncodingProvider"}
    assert any(item["props"].get("helmRelease") for item in resources), "the readiness gate of flux delivery waits for the HelmRelease"
    changes = world.changes(host_before, boot_before)
    assert changes == [], f"preview (check/diff) changed things: {changes}\nproviders: {json.dumps(results, indent=1)}"
    assert world.cluster.objects() == cluster_before and (world.talos.stored_config(), world.talos.running_config(), world.talos.reboots) == node_before
    # The stand-ins were really reached, as far as a real preview reads: the
    # host was read (its guests too: its plan needs a reboot) and previewed;
    # the node's version, extensions and config read, the merged config
    # checked by Talos in a dry run; Helm's records of the device plugin and
    # the Flux CRDs read; Jellyfin asked for its settings.
    assert "planned host changes" in stderr and "could not read the host" not in stderr, stderr
    assert any(call["tool"] == "pvesh" for call in world.sim.host.calls())
    assert {"version", "get", "apply-config"} <= set(world.talos.commands())
    assert any("--dry-run" in call["argv"] for call in world.talos.calls())
    argvs = [" ".join(call["argv"]) for call in world.cluster.calls()]
    assert any("get secrets" in argv and "owner=helm" in argv for argv in argvs), argvs
    assert any("get customresourcedefinitions.apiextensions.k8s.io" in argv for argv in argvs), argvs
    assert any(method == "GET" for method, *_ in world.jellyfin.requests)
    # `get machineconfig persistent` answers NotFound on a node that booted
    # from STATE with nothing applied since: an answer, not a refusal.
    refused = [call["argv"] for call in world.cluster.calls() + world.talos.calls()
               if call["exit"] != 0 and "persistent" not in call["argv"]]
    assert refused == [], "every read was answered, so every check saw the cluster and the node as they are"


def test_reads_and_changes_follow_each_tools_documentation() -> None:
    """The classification the harness relies on, on the calls that matter."""
    assert host_tool_reads("pvesh", ["get", "/cluster/resources", "--type", "vm", "--output-format", "json"])
    assert not host_tool_reads("pvesh", ["create", "/nodes/pve5/stopall"]) and not host_tool_reads("pvesh", ["set", "/nodes/pve5/qemu/1105/config"])
    assert host_tool_reads("qm", ["config", "1105"]) and host_tool_reads("pct", ["status", "200"])
    assert not host_tool_reads("qm", ["shutdown", "1105"]) and not host_tool_reads("qm", ["set", "1105", "--onboot", "1"])
    assert host_tool_reads("efibootmgr", ["-v"]) and not host_tool_reads("efibootmgr", ["-o", "0006,0001"])
    assert host_tool_reads("proxmox-boot-tool", ["status"]) and not host_tool_reads("proxmox-boot-tool", ["refresh"])
    assert not host_tool_reads("update-initramfs", ["-u", "-k", "all"]) and not host_tool_reads("reboot", [])
    assert kubectl_reads(["--kubeconfig", "/tmp/k", "get", "secrets", "-o", "json", "--all-namespaces"])
    assert kubectl_reads(["delete", "runtimeclasses.node.k8s.io", "nvidia", "--dry-run=server"])
    for argv in (["delete", "runtimeclasses.node.k8s.io", "nvidia"], ["patch", "kustomizations", "x", "--type=merge", "-p", "{}"],
                 ["label", "node", "moody-good", "a=b"], ["apply", "-f", "-"], ["drain", "moody-good"], ["delete", "x", "y", "--dry-run=none"]):
        assert not kubectl_reads(argv), argv
    assert talosctl_reads("apply-config", ["apply-config", "--file", "c.yaml", "--mode", "staged", "--dry-run"])
    assert not talosctl_reads("apply-config", ["apply-config", "--file", "c.yaml", "--mode", "staged"])
    assert talosctl_reads("read", ["read", "/system/state/config.yaml"]) and not talosctl_reads("upgrade", ["upgrade", "--image", "x"])
    assert not talosctl_reads("reboot", ["reboot"]) and not talosctl_reads("reset", ["reset"])


def test_the_harness_reports_a_provider_that_changes_things_in_preview(world: World) -> None:
    from pulumi.dynamic.dynamic import serialize_provider

    from tests.unsafe_provider import ChangesThingsInPreview

    target = world.sim.target
    props = {"url": world.jellyfin.url, "api_key": API_KEY, "host": target.host, "port": target.port, "user": target.user,
             "privateKey": target.private_key, "hostKey": target.host_key, "root": world.sim.root}
    host_before, boot_before = world.sim.host.snapshot(""), world.sim.host.boot_id()
    results, _ = world.drive([{"urn": "urn:pulumi:test::proxmox-talos-gpu::unsafe::it", "provider": serialize_provider(ChangesThingsInPreview()),
                               "props": props}])
    assert [step[1] for step in results[0]["steps"]] == ["ok"] * 4, results
    changes = world.changes(host_before, boot_before)
    assert "kubectl label node moody-good preview=touched --overwrite" in changes
    assert any(change.startswith("talosctl upgrade") for change in changes)
    assert "POST /System/Configuration/encoding to Jellyfin" in changes
    assert "host file etc/modules changed" in changes
    assert "host: qm shutdown 1105" in changes
    assert not [change for change in changes if "pvesh" in change], "a read is not a change"
