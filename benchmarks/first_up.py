"""Restarts of the first `pulumi up` of the guide's homelab on the test
stand-ins, driven the way the Pulumi engine runs a dynamic provider:
__main__.py runs under the mock engine (tools/mockengine.py); each
driven registration's serialized ``__provider`` is loaded with dill in a
fresh Python process started in the project root and driven
check -> diff -> create, in dependency order:

  1. host preparation against the simulated Proxmox host behind a real
     OpenSSH sshd (tests/stand_ins/proxmox_host.py: sysfs binding, guests, reboots);
  2. the VM adoption against the stand-in Proxmox API
     (tests/stand_ins/proxmox_api.py: VM 1105 moody-good without the GPU,
     ballooning on, the Ceph OSD disk scsi1) and kubectl
     (tests/hostprep/fakekube.py: node moody-good, a StatefulSet pod and a
     DaemonSet pod on it; NotReady while the VM is stopped);
  3. the Talos resources (preflight, machine config, the walk to the last
     1.12, the device plugin's removal, the step to v1.13.9) against the
     talosctl stand-in (tests/stand_ins/talosctl.py: Talos v1.11.6 from a
     plain image) and the cluster's kubectl (tests/stand_ins/kubectl.py:
     the device plugin installed by Helm).

The host needs vfio (a T4 on nouveau) and runs two other guests (VM 101,
CT 200). Two hosts: the IOMMU already on (Intel, kernel 6.8) and off
(Intel, kernel 6.5); host.runningGuests is stop, so a needed reboot is not
refused. Every figure is counted from the stand-ins' own call logs, counters
and states, never set here:

  host reboots        -- boots the simulated host recorded;
  other guests stopped -- guests running before that a `qm|pct shutdown|stop`
                         or a host reboot took down;
  VM restarts         -- QEMU starts of VM 1105 the stand-in API counted;
  drained first       -- restarts at whose stop the node was cordoned and no
                         pod but DaemonSet pods was left on it (read from
                         kubectl's state when the API stops the VM);
  Talos reboots       -- the talosctl stand-in's reboot counter; drained
                         first when the stand-in recorded a drain (by the
                         node's own upgrade sequence or by talosctl) for it;
  node restarts       -- host reboots while VM 1105 runs + VM restarts +
                         Talos reboots.

What is NOT driven: the Kubernetes resources (Helm releases, RuntimeClass,
Jellyfin, monitoring) and the readiness checks; they restart no node. The
stand-ins are not linked to each other: VM 1105 is a guest of the simulated
host (its reboot restarts the node, counted, and drained first when host
preparation drained moody-good through kubectl) and, separately, a VM of the
Proxmox API stand-in (which does not see that reboot), the VM phase's kubectl
(tests/hostprep/fakekube.py) is another stand-in than the Talos phase's,
and the Talos node is a fresh stand-in, not the VM the API restarted.

    .venv/bin/python benchmarks/first_up.py

Needs /usr/sbin/sshd and ssh-keygen (apt-get install -y openssh-server).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hostprep import keys, serve_over_ssh  # noqa: E402
from components.gpu_migration_facts import OWNER_LABEL  # noqa: E402
from components.ssh.connect import SshTarget  # noqa: E402
from tests.conftest import FAKE_SECRETS, run_main, stack_file_config  # noqa: E402
from tests.hostprep.fakekube import Kube  # noqa: E402
from tests.stand_ins.kubectl_objects import install_kubectl, installed_device_plugin, node, runtime_class  # noqa: E402
from tests.stand_ins.proxmox_api import ProxmoxApiServer, ProxmoxSim  # noqa: E402
from tests.stand_ins.proxmox_host import SimHost  # noqa: E402
from tests.stand_ins.proxmox_host_spec import SimGuest, SimSpec, t4  # noqa: E402
from tests.talos.conftest import install_talosctl  # noqa: E402
from tests.talos.running_configs import as_text, worker_documents  # noqa: E402
from tests.vm.conftest import MAPPING, MOODY_GOOD, TOKEN  # noqa: E402
from tools.mockengine import reveal  # noqa: E402

# The schematic of a node installed from a plain Image Factory image (no extensions).
PLAIN_SCHEMATIC = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"
TALOS_PROVIDERS = (b"TalosUpgradePreflightProvider", b"TalosMachineConfigProvider", b"TalosUpgradeProvider", b"GpuModeMigrationProvider")
HOSTS = {"iommu on": SimSpec(cpu="intel", kernel="6.8.12-4-pve"), "iommu off": SimSpec(cpu="intel", kernel="6.5.13-5-pve")}
OTHERS = [SimGuest(101, "k8s-cp-1"), SimGuest(200, "nas", type="lxc")]
# The stack's own VM runs on the host too: a host reboot restarts the node.
OWN_VM = SimGuest(1105, "moody-good")

DRIVER = r"""
import base64, json, sys
import dill

request = json.load(sys.stdin)
provider = dill.loads(base64.b64decode(request["provider"]))
check = provider.check({}, request["props"])
assert not check.failures, [(f.property, f.reason) for f in check.failures]
diff = provider.diff(request["urn"], {}, check.inputs)
created = provider.create(check.inputs)
print(json.dumps({"class": type(provider).__name__, "id": created.id}))
"""


def _host(work: Path, key_dir: Path, spec: SimSpec) -> tuple[SimHost, SshTarget]:
    host = SimHost.create(work, dataclasses.replace(spec, devices=t4(), guests=[*OTHERS, OWN_VM]))
    return host, serve_over_ssh(host, key_dir)


def _registrations(target: SshTarget, endpoint: str) -> dict[str, dict[str, Any]]:
    """The host-preparation and VM-adoption registrations, by provider class."""
    raw = copy.deepcopy(stack_file_config())
    raw["proxmox"].update(endpoint=endpoint, insecure=True)
    raw["vm"].update(restartTimeoutSeconds=120)
    raw["host"] = {"enabled": True, "address": target.host, "port": target.port, "user": target.user,
                   "hostKey": target.host_key, "rebootTimeoutSeconds": 30,
                   "runningGuests": "stop"}  # the guide's user lets a needed reboot stop the other guests
    run = run_main(raw, {**FAKE_SECRETS, "sshPrivateKey": target.private_key, "proxmoxApiToken": TOKEN, "kubeconfig": KUBECONFIG})
    found: dict[str, Any] = {"talos": []}
    for reg in run.registrations:  # in registration order, which is the graph's order for these
        inputs = reveal(reg.inputs)
        provider = inputs.pop("__provider", None)
        if not provider:
            continue
        item = {"urn": reg.urn, "provider": provider, "props": {k: v for k, v in inputs.items() if v is not None}}
        pickled = base64.b64decode(provider)
        for name in (b"HostPrepProvider", b"VmAdoptProvider"):
            if name in pickled:
                found[name.decode()] = item
        if any(name in pickled for name in TALOS_PROVIDERS):
            found["talos"].append(item)
    missing = {"HostPrepProvider", "VmAdoptProvider"} - set(found)
    if missing:
        raise SystemExit(f"error: __main__.py registered no resource of {sorted(missing)}")
    return found


def _drive(item: dict[str, Any], env: dict[str, str] | None = None) -> None:
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          input=json.dumps(item), env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: {item['urn']} failed: {done.stderr.strip().splitlines()[-1:]}")


def _cluster(work: Path, api: ProxmoxSim) -> tuple[Kube, list[dict[str, Any]]]:
    """The node moody-good in kubectl, NotReady while VM 1105 is stopped;
    each stop records whether the node was cordoned and drained then."""
    kube = Kube.install(work / "kube", nodes={"moody-good": {"ready": True}},
                        pods=[{"namespace": "media", "name": "jellyfin-0", "node": "moody-good", "owner": "StatefulSet"},
                              {"namespace": "kube-system", "name": "kube-proxy-x", "node": "moody-good", "owner": "DaemonSet"}])
    stops: list[dict[str, Any]] = []

    def stopped(vmid: int) -> None:
        if vmid == 1105:
            state = kube.load()
            node = state["nodes"]["moody-good"]
            left = [p["name"] for p in state["pods"] if p.get("node") == "moody-good" and p.get("owner") != "DaemonSet"]
            stops.append({"cordoned": bool(node.get("unschedulable")), "pods_left": left})
            node["ready"] = False
            kube.save(state)

    def started(vmid: int) -> None:
        if vmid == 1105:
            state = kube.load()
            state["nodes"]["moody-good"]["ready"] = True
            kube.save(state)

    api.on_stop.append(stopped)
    api.on_start.append(started)
    return kube, stops


def _talos_walk(work: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The guide's node (Talos v1.11.6 from a plain image, the device plugin
    installed by Helm) through the Talos resources: preflight, machine
    config, the walk to the last 1.12, the device plugin's removal, the step
    to v1.13.9. Counted by the talosctl stand-in: its reboots and who drained
    the node before each one."""
    (work / "talos").mkdir(parents=True, exist_ok=True)
    talos = install_talosctl(work / "talos")
    talos.node("v1.11.6", PLAIN_SCHEMATIC, config=as_text(worker_documents("v1.11.6")))
    cluster = install_kubectl(work / "talos", talos.bin_dir)
    cluster.objects([*installed_device_plugin(), runtime_class(dict([OWNER_LABEL])), node()])
    cluster.settle(rounds=1)  # the API server gives every object its uid
    env = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "TALOSCONFIG")}
    env.update(PATH=str(talos.bin_dir), HOME=str(work / "talos"), FAKE_TALOS_STATE=str(talos.state), FAKE_KUBE_STATE=str(cluster.state))
    for item in items:
        if b"UpgradeProvider" in base64.b64decode(item["provider"]):
            item["props"]["pollSeconds"] = 0.05  # the stand-in answers at once
        _drive(item, env)
    drains = talos.get("drains") or []
    drained = {drain["reboot"] for drain in drains}
    return {"talos_reboots": talos.reboots, "talos_reboots_drained": sum(1 for r in range(1, talos.reboots + 1) if r in drained),
            "talos_version": talos.get("version"), "talos_drains_by": [drain["by"] for drain in drains]}


def scenario(label: str, work: Path, key_dir: Path) -> dict[str, Any]:
    """One first `pulumi up` of host preparation on a fresh simulated host."""
    host, target = _host(work, key_dir, HOSTS[label])
    api = ProxmoxSim()
    api.add_vm(1105, "pve5", MOODY_GOOD)
    api.mappings["moody-good-gpu0"] = list(MAPPING)
    api.steps_to_stop = api.steps_to_start = 1
    kube, stops = _cluster(work, api)
    try:
        with ProxmoxApiServer(api, work) as server:
            found = _registrations(target, server.endpoint)
            prep = found["HostPrepProvider"]
            prep["props"]["root"] = str(host.root)  # the simulated host's file tree (test-only input)
            running = {vmid for vmid, status in host.guest_status().items() if status == "running"}
            starts_before = api.vms[1105].starts
            kube_path = {**os.environ, "PATH": f"{kube.bin}:/usr/bin:/bin"}
            _drive(prep, kube_path)  # the VM depends on host preparation: the engine creates it first
            prep_calls = kube.calls()
            _drive(found["VmAdoptProvider"], kube_path)
            vm_restarts = api.vms[1105].starts - starts_before
            walk = _talos_walk(work, found["talos"])
        reboots = len(host.tool_calls("boot"))
        stopped = {int(args[1]) for tool in ("qm", "pct") for args in host.tool_calls(tool) if args[:1] in (["shutdown"], ["stop"])}
        if reboots:
            stopped |= running
        # A host reboot restarts the node's VM; drained first when host
        # preparation cordoned and drained moody-good through kubectl.
        host_node_restarts = reboots if OWN_VM.vmid in running else 0
        prep_drained = any(call["args"][:2] == ["drain", "moody-good"] for call in prep_calls)
        host_node_restarts_drained = host_node_restarts if prep_drained else 0
        others = {guest.vmid for guest in OTHERS}
        return {"host": label, "host_reboots": reboots, "other_guests_stopped": sorted(stopped & running & others),
                "host_node_restarts": host_node_restarts, "host_node_restarts_drained": host_node_restarts_drained,
                "gpu_driver": host.driver("0000:3b:00.0"), "vm_restarts": vm_restarts,
                "vm_restarts_drained": sum(1 for s in stops if s["cordoned"] and not s["pods_left"]),
                "vm_started_with_gpu": "hostpci0" in api.vms[1105].started_with,
                "vm_kept_osd_disk": "scsi1: ceph-osd:" in api.vms[1105].raw, **walk,
                "node_restarts": host_node_restarts + vm_restarts + walk["talos_reboots"],
                "node_restarts_drained": host_node_restarts_drained + sum(1 for s in stops if s["cordoned"] and not s["pods_left"])
                + walk["talos_reboots_drained"]}
    finally:
        host.stop_helpers()
        host.stop_sshd()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        keys(work)
        for label in HOSTS:
            result = scenario(label, work / label.replace(" ", "-"), work)
            print(f"{label}: host reboots {result['host_reboots']}, other guests stopped {len(result['other_guests_stopped'])} "
                  f"{result['other_guests_stopped']}, GPU driver {result['gpu_driver']}; "
                  f"node restarts by the host reboot {result['host_node_restarts']} (drained first: {result['host_node_restarts_drained']}); "
                  f"VM restarts {result['vm_restarts']} (drained first: {result['vm_restarts_drained']}), "
                  f"VM runs with the GPU: {result['vm_started_with_gpu']}, OSD disk kept: {result['vm_kept_osd_disk']}; "
                  f"Talos reboots {result['talos_reboots']} (drained first: {result['talos_reboots_drained']}, by {result['talos_drains_by']}), "
                  f"now {result['talos_version']}; node restarts {result['node_restarts']}, drained first: {result['node_restarts_drained']}")


if __name__ == "__main__":
    main()
