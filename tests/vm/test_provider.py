"""The adopt provider the engine's way: the serialized ``__provider`` of the
mock registration, loaded with dill in a fresh Python process started in the
project root, driving check/diff (what preview runs: reads only) and
create/diff/delete against the stand-in Proxmox API and kubectl."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

from tests.conftest import FAKE_SECRETS, ROOT, run_main
from tests.vm.conftest import MOODY_GOOD, TOKEN, homelab_raw, make_engine
from tools.mockengine import is_secret, reveal

DRIVER = r"""
import base64, json, sys
import dill

request = json.loads(sys.stdin.readline())  # one line: the stdin stays open for the go-ahead
provider = dill.loads(base64.b64decode(request["provider"]))
props = request["props"]
out = {"class": f"{type(provider).__module__}.{type(provider).__name__}"}
check = provider.check({}, props)
out["check_failures"] = [(f.property, f.reason) for f in check.failures]
out["diff_before"] = provider.diff("pve5/1105", {**props, "previous": {}, "written": {}, "pending": []}, props).changes
print(json.dumps(out), flush=True)
input()  # the test looks at the API's requests: preview wrote nothing
created = provider.create(check.inputs)
out["id"] = created.id
out["outs"] = {k: created.outs[k] for k in ("previous", "written", "restarted", "pending")}
out["diff_after_create"] = provider.diff(created.id, created.outs, props).changes
out["diff_other_vm"] = provider.diff(created.id, created.outs, {**props, "spec": {**props["spec"], "vmId": 1200}}).replaces
provider.delete(created.id, created.outs)
print(json.dumps(out))
"""


def _registration(endpoint: str) -> tuple[str, dict[str, Any], Any]:
    raw = homelab_raw()
    raw["proxmox"].update(endpoint=endpoint, insecure=True)
    raw["vm"].update(restartTimeoutSeconds=120)
    run = run_main(raw, {**FAKE_SECRETS, "proxmoxApiToken": TOKEN})
    (reg,) = [r for r in run.registrations if r.name.endswith("-gpu-slots")]
    inputs = reveal(reg.inputs)
    provider = inputs.pop("__provider")
    return provider, {k: v for k, v in inputs.items() if v is not None}, reg


def test_the_component_adopts_the_vm_with_the_credentials_as_secrets(pve) -> None:
    _, server = pve
    _, props, reg = _registration(server.endpoint)
    assert is_secret(reg.inputs["apiToken"]) and is_secret(reg.inputs["kubeconfig"]), reg.urn
    assert props["spec"]["slots"] == [{"index": 0, "slot": "hostpci0", "mapping": "moody-good-gpu0", "path": "0000:3b:00.0",
                                       "pcie": True, "rombar": True, "xvga": False}], reg.urn
    assert props["restart"] == "drained" and props["nodeName"] == "moody-good" and props["spec"]["checkMappings"] is False


def test_provider_round_trips_through_dill_previews_without_writing_then_adopts_and_undoes(pve, kube) -> None:
    sim, server = pve
    sim.steps_to_stop = sim.steps_to_start = 1
    provider, props, _ = _registration(server.endpoint)
    raw = base64.b64decode(provider)
    assert b"components.vm.provider" in raw and len(raw) < 4096 and b"5ecret" not in raw, "pickled by reference, no secret inside"
    process = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=ROOT, text=True)
    assert process.stdin and process.stdout
    process.stdin.write(json.dumps({"provider": provider, "props": props}) + "\n")
    process.stdin.flush()
    preview = json.loads(process.stdout.readline())
    assert preview["check_failures"] == [] and preview["diff_before"] is True, preview
    assert {method for method, _ in sim.requests} == {"GET"} and sim.vms[1105].raw == MOODY_GOOD, "preview only reads"
    stdout, stderr = process.communicate("go\n", timeout=300)
    assert process.returncode == 0, stderr
    out = json.loads(stdout)
    assert out["class"] == "components.vm.provider.VmAdoptProvider" and out["id"] == "pve5/1105"
    assert out["outs"] == {"previous": {"hostpci0": None, "balloon": "16384"}, "written": {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "balloon": "0"},
                           "restarted": True, "pending": []}
    assert out["diff_after_create"] is False and out["diff_other_vm"] == ["spec"]
    assert "planned VM changes" in stderr and "+   balloon: 0" in stderr and "5ecret" not in stderr + stdout
    assert sim.vms[1105].raw == MOODY_GOOD and sim.vms[1105].starts == 2, "delete restored the file; one restart each way"
    modes = {call["mode"] for call in kube.calls()}
    assert modes == {"0o600"}, "the kubeconfig secret reaches kubectl only as a 0600 temp file"


def test_check_refuses_a_taken_slot_before_anything_is_written(pve) -> None:
    sim, server = pve
    sim.edit(1105, hostpci0="0000:af:00.0,pcie=1")
    provider, props, _ = _registration(server.endpoint)
    script = ("import base64, json, sys, dill\nr = json.load(sys.stdin)\np = dill.loads(base64.b64decode(r['provider']))\n"
              "print(json.dumps([(f.property, f.reason) for f in p.check({}, r['props']).failures]))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps({"provider": provider, "props": props}),
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    (failure,) = json.loads(done.stdout)
    assert failure[0] == "spec" and failure[1].startswith("gpus[0].slot = 'hostpci0'") and sim.writes == []


STEPS = r"""
import base64, json, sys
import dill

request = json.loads(sys.stdin.readline())
provider = dill.loads(base64.b64decode(request["provider"]))
props = provider.check({}, request["props"]).inputs
fresh = {**props, "previous": {}, "written": {}, "pending": []}
out = {"preview": provider.diff("pve5/1105", fresh, props).changes}
created = provider.create(props)
out["outs"] = {k: created.outs[k] for k in ("previous", "written", "restarted", "pending")}
out["second_run"] = provider.diff(created.id, created.outs, props).changes
print(json.dumps(out), flush=True)
input()  # the test cold-starts the VM (its user's `qm reboot`)
out["after_cold_start"] = provider.diff(created.id, created.outs, props).changes
out["drained_now"] = provider.diff(created.id, created.outs, {**props, "restart": "drained"}).changes
print(json.dumps(out), flush=True)
"""


def test_restart_never_with_the_host_section_off_previews_the_owned_diff_and_a_second_run_is_no_change(pve, kube) -> None:
    """host.enabled false (the mapping's IOMMU group and subsystem id from
    gpus[]), vm.restart never: preview shows the owned keys' diff and writes
    nothing; up writes them and leaves them pending, restarting nothing; the
    next preview is no change (it says the keys are pending), and stays so
    after the user's cold start; switching to drained is a change."""
    sim, server = pve
    raw = homelab_raw()
    raw["proxmox"].update(endpoint=server.endpoint, insecure=True)
    raw["host"]["enabled"] = False
    raw["gpus"][0]["iommuGroup"] = 27  # MAPPING's iommugroup (the host's facts would give it)
    raw["vm"]["restart"] = "never"
    run = run_main(raw, {**FAKE_SECRETS, "proxmoxApiToken": TOKEN})
    host = [r.urn for r in run.registrations if r.parent.endswith("HostVfioPrep::pve5")]
    assert host == [], "the host section off: nothing under HostVfioPrep"
    (reg,) = [r for r in run.registrations if r.name.endswith("-gpu-slots")]
    inputs = reveal(reg.inputs)
    provider = inputs.pop("__provider")
    props = {k: v for k, v in inputs.items() if v is not None}
    assert props["restart"] == "never", props
    (mapping,) = [r for r in run.registrations if r.type == "proxmoxve:hardware/mapping/pci:Pci"]
    assert reveal(mapping.inputs)["maps"][0]["iommuGroup"] == raw["gpus"][0]["iommuGroup"], mapping.inputs
    process = subprocess.Popen([sys.executable, "-c", STEPS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=ROOT, text=True)
    assert process.stdin and process.stdout
    process.stdin.write(json.dumps({"provider": provider, "props": props}) + "\n")
    process.stdin.flush()
    first = json.loads(process.stdout.readline())
    assert first["preview"] is True and first["second_run"] is False, first
    assert first["outs"]["restarted"] is False and first["outs"]["pending"] == ["balloon", "hostpci0"], first
    assert sim.vms[1105].starts == 0 and kube.verbs() == [], "restart: never restarts and drains nothing"
    assert "[PENDING]\nballoon: 0\nhostpci0: mapping=moody-good-gpu0,pcie=1\n" in sim.vms[1105].raw
    writes = len(sim.writes)
    sim.cold_restart(1105)
    stdout, stderr = process.communicate("go\n", timeout=300)
    assert process.returncode == 0, stderr
    last = json.loads(stdout.splitlines()[-1])
    assert last["after_cold_start"] is False and last["drained_now"] is True, last
    assert "+   hostpci0: mapping=moody-good-gpu0,pcie=1" in stderr, "check printed the owned keys' diff"
    assert "balloon, hostpci0 pending until its next cold start (vm.restart: never)" in stderr, stderr
    assert len(sim.writes) == writes == 1 and sim.vms[1105].starts == 1, "one write; the only start was the user's"


def test_a_change_left_pending_by_the_cli_is_a_change_for_a_drained_stack(pve, kube) -> None:
    """`python -m components.vm apply --no-restart` wrote the keys; the
    stack (restart: drained) sees them pending on the running VM and its
    next `pulumi up` restarts it."""
    sim, server = pve
    make_engine(server).apply(restart=False)
    provider, props, _ = _registration(server.endpoint)
    script = ("import base64, json, sys, dill\nr = json.load(sys.stdin)\np = dill.loads(base64.b64decode(r['provider']))\n"
              "props = r['props']\nolds = {**props, 'previous': {'hostpci0': None, 'balloon': '16384'}, "
              "'written': {'hostpci0': 'mapping=moody-good-gpu0,pcie=1', 'balloon': '0'}, 'pending': []}\n"
              "print(json.dumps(p.diff('pve5/1105', olds, props).changes))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps({"provider": provider, "props": props}),
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) is True and sim.vms[1105].starts == 0


def test_a_gpu_removed_from_gpus_has_its_slot_deleted_and_the_vm_restarted_once_drained(pve, kube) -> None:
    """The state says this program wrote hostpci1 (a second GPU since removed
    from gpus[]): the update deletes it, and since the deletion is pending on
    the running VM, restarts it once, drained, so the GPU is free again."""
    sim, server = pve
    sim.steps_to_stop = sim.steps_to_start = 1
    sim.edit(1105, hostpci0="mapping=moody-good-gpu0,pcie=1", balloon="0", hostpci1="0000:af:00.0,pcie=1")
    sim.cold_restart(1105)  # all of it running, nothing pending
    provider, props, _ = _registration(server.endpoint)
    olds = {**props, "previous": {"hostpci0": None, "hostpci1": None, "balloon": "16384"},
            "written": {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "hostpci1": "0000:af:00.0,pcie=1", "balloon": "0"}, "pending": []}
    script = ("import base64, json, sys, dill\nr = json.load(sys.stdin)\np = dill.loads(base64.b64decode(r['provider']))\n"
              "outs = p.update('pve5/1105', r['olds'], r['props']).outs\n"
              "print(json.dumps({k: outs[k] for k in ('previous', 'written', 'restarted', 'pending')}))")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps({"provider": provider, "props": props, "olds": olds}),
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["restarted"] is True and out["pending"] == [] and out["written"] == {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "balloon": "0"}, out
    assert "hostpci1" not in sim.vms[1105].started_with and sim.vms[1105].starts == 2, sim.vms[1105].raw
    assert [args[0] for args in kube.verbs() if args[0] != "get"] == ["cordon", "drain", "uncordon"]
