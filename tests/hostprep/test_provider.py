"""The dynamic provider the engine's way: the serialized ``__provider`` from
the mock registration, loaded with dill in a fresh Python process started in
the project root, driving check/diff/create/diff/delete against the
simulated host over the real sshd."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.config.engine import load_stack_config
from components.hostprep.component import HostVfioPrep
from tests.stand_ins.proxmox_host_spec import SimSpec, t4
from tools.mockengine import StateMocks, reveal, run_program

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parents[2]
DYNAMIC = "pulumi-python:dynamic:Resource"

DRIVER = r"""
import base64, json, sys
import dill

request = json.load(sys.stdin)
provider = dill.loads(base64.b64decode(request["provider"]))
props = request["props"]
out = {"class": f"{type(provider).__module__}.{type(provider).__name__}"}
check = provider.check({}, props)
out["check_failures"] = [(f.property, f.reason) for f in check.failures]
bad = provider.check({}, {**props, "hostKey": "not a key", "gpus": []})
out["bad_check"] = sorted(f.property for f in bad.failures)
created = provider.create(check.inputs)
out["id"] = created.id
out["outs"] = {k: created.outs[k] for k in ("drivers", "iommuGroups", "subsystemIds", "rebooted")}
out["diff_after_create"] = provider.diff(created.id, created.outs, props).changes
out["diff_new_gpu_id"] = provider.diff(created.id, created.outs, {**props, "host": "other"}).replaces
read = provider.read(created.id, created.outs)
out["read_drivers"] = read.outs["drivers"]
provider.delete(created.id, created.outs)
print(json.dumps(out))
"""


def registration(sim, homelab: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    homelab["host"] = {"enabled": True, "address": "127.0.0.1", "port": sim.target.port, "user": sim.target.user,
                       "hostKey": sim.target.host_key, "allowReboot": True, "rebootTimeoutSeconds": 30}

    def program() -> None:
        HostVfioPrep("pve5", load_stack_config(), pulumi.Config("proxmox-talos-gpu").get_secret("sshPrivateKey"))

    result = run_program(program, homelab, secret_keys={"sshPrivateKey": sim.target.private_key}, stack="homelab", mocks=StateMocks())
    inputs = reveal(result.one(DYNAMIC).inputs)
    provider = inputs.pop("__provider")
    props = {key: value for key, value in inputs.items() if value is not None}
    props["root"] = sim.root  # test-only: the simulated host's tree
    return provider, props


def test_provider_round_trips_through_dill_and_prepares_then_undoes_the_host(make_sim, homelab):
    sim = make_sim(SimSpec(devices=t4()))
    provider, props = registration(sim, homelab)
    raw = base64.b64decode(provider)
    assert b"components.hostprep.provider" in raw and len(raw) < 4096  # pickled by reference, not by value
    assert b"OPENSSH PRIVATE KEY" not in raw  # no secret captured in the provider
    before = sim.host.snapshot()
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps({"provider": provider, "props": props}),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["class"] == "components.hostprep.provider.HostPrepProvider"
    assert out["check_failures"] == []
    assert out["bad_check"] == ["gpus", "hostKey"]
    assert out["outs"] == {"drivers": {"0000:3b:00.0": "vfio-pci"}, "iommuGroups": {"0000:3b:00.0": 30},
                           "subsystemIds": {"0000:3b:00.0": "10de:12a2"}, "rebooted": True}
    assert out["diff_after_create"] is False  # converged: nothing to update
    assert out["diff_new_gpu_id"] == ["host"]
    assert out["read_drivers"] == {"0000:3b:00.0": "vfio-pci"}
    assert "planned host changes" in done.stderr and "+GRUB_CMDLINE_LINUX_DEFAULT" in done.stderr  # check() previews the diff
    assert "OPENSSH PRIVATE KEY" not in done.stderr + done.stdout
    assert sim.host.snapshot() == before  # delete restored every file


def test_provider_check_refuses_what_the_host_cannot_do(make_sim, homelab):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", iommu_firmware=False, devices=t4()))
    provider, props = registration(sim, homelab)
    script = ("import base64, json, sys, dill\nr = json.load(sys.stdin)\np = dill.loads(base64.b64decode(r['provider']))\n"
              "print(json.dumps([(f.property, f.reason) for f in p.check({}, r['props']).failures]))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps({"provider": provider, "props": props}),
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout)
    assert failures and failures[0][0] == "gpus" and "switched off in the firmware" in failures[0][1]


def test_preview_lists_the_running_guests_a_reboot_would_stop(make_sim, homelab):
    """What `pulumi preview` shows: the provider's check(), run the engine's way."""
    from tests.stand_ins.proxmox_host_spec import SimGuest

    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(1105, "moody-good"), SimGuest(101, "k8s-cp-1"), SimGuest(200, "nas", type="lxc", onboot=False)]))
    provider, props = registration(sim, homelab)
    before = sim.host.snapshot()
    script = ("import base64, json, sys, dill\nr = json.load(sys.stdin)\np = dill.loads(base64.b64decode(r['provider']))\n"
              "print(json.dumps([(f.property, f.reason) for f in p.check({}, r['props']).failures]))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps({"provider": provider, "props": props}),
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    for shown in ("the reboot stops these running guests", "1105 moody-good (qemu), onboot, this stack's VM", "101 k8s-cp-1 (qemu), onboot",
                  "200 nas (lxc), no onboot: stays off", "drain Kubernetes node moody-good", "reboot withheld (host.runningGuests: refuse)"):
        assert shown in done.stderr, done.stderr
    assert sim.host.snapshot() == before and sim.host.tool_calls("reboot") == []
