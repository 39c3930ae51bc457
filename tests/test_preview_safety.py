"""`pulumi preview` changes nothing. In a preview the engine calls only each
dynamic provider's ``check`` and ``diff``; this test calls exactly those, the
engine's way, for every dynamic resource the program registers (taken from a
mock-engine run of __main__.py, so a provider added later is covered without
a change here): the serialized ``__provider`` input loaded with dill in a
fresh Python process started in the project root.

Every outside system is a stand-in that logs each call: the simulated
Proxmox host behind a real sshd, a Jellyfin API server, kubectl and
talosctl. Afterwards no call may have changed anything: no host file
written, no host command other than a read, no POST to Jellyfin, no kubectl
or talosctl subcommand that writes (apply, label, upgrade, ...).

``test_the_harness_reports_a_provider_that_changes_things_in_preview``
drives a deliberately unsafe provider through the same harness, so the
harness is shown able to fail."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.mockengine import reveal
from tests.conftest import FAKE_SECRETS, ROOT, run_main, stack_file_config
from tests.consumers.conftest import API_KEY
from tests.consumers.fake_jellyfin import FakeJellyfin
from tests.doctor.fake_cli import Usage, parse_kubectl, without_config_flag
from tests.doctor.fakecli import FakeCli, answer, install, rule
from tests.doctor.samples import node_json
from tests.hostprep.conftest import keys, make_sim  # noqa: F401 - fixtures
from tests.hostprep.simhost import SimSpec, t4

pytestmark = pytest.mark.sshd

DYNAMIC = "pulumi-python:dynamic"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"
NODE = ["--nodes", "192.168.8.123", "--endpoints", "192.168.8.99"]

# Subcommands that only read. Anything else a stand-in sees is a change.
KUBECTL_READS = frozenset({"get", "describe", "version", "explain", "api-resources", "api-versions", "cluster-info", "top", "logs", "events"})
TALOSCTL_READS = frozenset({"version", "get", "read", "list", "ls", "logs", "dmesg", "health", "containers", "services",
                            "memory", "processes", "stats", "mounts", "netstat", "time", "disks", "events"})
HOST_READS = {("efibootmgr", ()), ("efibootmgr", ("-v",)), ("proxmox-boot-tool", ("status",))}

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
    cli: FakeCli

    def config(self) -> tuple[dict[str, Any], dict[str, str]]:
        raw = copy.deepcopy(stack_file_config())
        raw["host"] = {"enabled": True, "address": self.sim.target.host, "port": self.sim.target.port, "user": self.sim.target.user,
                       "hostKey": self.sim.target.host_key, "rebootTimeoutSeconds": 30}
        raw["jellyfin"].update(enabled=True, url=self.jellyfin.url, timeoutSeconds=5)
        secrets = {**FAKE_SECRETS, "sshPrivateKey": self.sim.target.private_key, "jellyfinApiKey": API_KEY, "kubeconfig": KUBECONFIG}
        return raw, secrets

    def drive(self, resources: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        extra = json.loads(json.dumps(EXTRA_PROPS).replace("{sim_root}", self.sim.root))
        done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=self.cli.env(), capture_output=True, text=True, timeout=300,
                              input=json.dumps({"resources": resources, "extra": extra}))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), done.stderr

    def changes(self, host_before: dict[str, Any], boot_before: str) -> list[str]:
        """Every call a stand-in saw that changes something."""
        found = []
        for call in self.cli.calls("kubectl"):
            try:
                verb = parse_kubectl(call["argv"])[0]
            except Usage:
                verb = next((arg for arg in call["argv"] if not arg.startswith("-")), "")
            if verb not in KUBECTL_READS:
                found.append(f"kubectl {' '.join(call['argv'])}")
        for call in self.cli.calls("talosctl"):
            command = [arg for arg in without_config_flag(call["argv"]) if not arg.startswith("-")]
            if not command or command[0] not in TALOSCTL_READS:
                found.append(f"talosctl {' '.join(call['argv'])}")
        found += [f"{method} {path} to Jellyfin" for method, path, _headers, _body in self.jellyfin.requests if method not in ("GET", "HEAD")]
        for call in self.sim.host.calls():
            if (call["tool"], tuple(call["args"])) not in HOST_READS:
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
    cli = install(tmp_path)
    cli.set_rules("kubectl", [rule(["get", "node", "moody-good", "-o", "json"], answer(node_json()))])
    cli.set_rules("talosctl", [rule(["version", *NODE], answer("Server:\n\tTag:         v1.12.4\n")),
                               rule(["get", "extensions", *NODE, "--output", "yaml"], answer(""))])
    with FakeJellyfin(API_KEY) as jellyfin:
        yield World(sim, jellyfin, cli)


def dynamic_resources(world: World) -> list[dict[str, Any]]:
    raw, secrets = world.config()
    found = []
    for reg in run_main(raw, secrets).registrations:
        if reg.type.startswith(DYNAMIC):
            inputs = reveal(reg.inputs)
            provider = inputs.pop("__provider")
            found.append({"urn": reg.urn, "provider": provider, "props": {key: value for key, value in inputs.items() if value is not None}})
    return found


def test_check_and_diff_of_every_dynamic_provider_change_nothing(world: World) -> None:
    resources = dynamic_resources(world)
    host_before, boot_before = world.sim.host.snapshot(""), world.sim.host.boot_id()
    results, stderr = world.drive(resources)
    assert [result["urn"] for result in results] == [item["urn"] for item in resources]
    # The providers this program has today; a new one is driven all the same.
    assert {result["class"].rsplit(".", 1)[1] for result in results} >= {
        "HostPrepProvider", "TalosUpgradeProvider", "TalosUpgradePreflightProvider", "GpuReadinessProvider", "JellyfinEncodingProvider"}
    changes = world.changes(host_before, boot_before)
    assert changes == [], f"preview (check/diff) changed things: {changes}\nproviders: {json.dumps(results, indent=1)}"
    # The stand-ins were really reached: the host was read and previewed,
    # Jellyfin was asked for its settings.
    assert "planned host changes" in stderr and "could not read the host" not in stderr, stderr
    assert any(method == "GET" for method, *_ in world.jellyfin.requests)


def test_the_harness_reports_a_provider_that_changes_things_in_preview(world: World) -> None:
    from pulumi.dynamic.dynamic import serialize_provider

    from tests.unsafe_provider import ChangesThingsInPreview

    target = world.sim.target
    props = {"url": world.jellyfin.url, "api_key": API_KEY, "host": target.host, "port": target.port, "user": target.user,
             "private_key": target.private_key, "host_key": target.host_key, "root": world.sim.root}
    host_before, boot_before = world.sim.host.snapshot(""), world.sim.host.boot_id()
    results, _ = world.drive([{"urn": "urn:pulumi:test::proxmox-talos-gpu::unsafe::it", "provider": serialize_provider(ChangesThingsInPreview()),
                               "props": props}])
    assert [step[1] for step in results[0]["steps"]] == ["ok"] * 4, results
    changes = world.changes(host_before, boot_before)
    assert "kubectl label node moody-good preview=touched --overwrite" in changes
    assert any(change.startswith("talosctl upgrade") for change in changes)
    assert "POST /System/Configuration/encoding to Jellyfin" in changes
    assert "host file etc/modules changed" in changes
