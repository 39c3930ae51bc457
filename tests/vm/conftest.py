"""The guide's moody-good as Terraform made it (two disks: the OS and the
Ceph OSD; two NICs), on the stand-in Proxmox API, with its Kubernetes node in
the stand-in kubectl. The node is NotReady while the VM is stopped."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.config import parse_stack_config
from components.vm.adopt import spec_from_config
from components.vm.api import ApiTarget, connect
from components.vm.engine import AdoptEngine
from components.vm.restart import Clock, RestartOptions
from tests.conftest import stack_file_config
from tests.hostprep.fakekube import Kube
from tests.stand_ins.proxmox_api import ProxmoxApiServer, ProxmoxSim

TOKEN = "root@pam!pulumi=5ecret-t0ken"
MOODY_GOOD = """#GPU-enabled worker node in the Kubernetes homelab cluster
agent: 1
balloon: 16384
boot: order=scsi0;net0
cores: 50
cpu: host
ide2: none,media=cdrom
machine: q35
memory: 243712
meta: creation-qemu=9.0.2,ctime=1735000000
name: moody-good
net0: virtio=94:96:CC:43:7D:80,bridge=vmbr0,tag=2
net1: virtio=BC:24:11:5E:0A:01,bridge=vmbr1,firewall=1
numa: 0
onboot: 1
ostype: l26
scsi0: disk3:vm-1105-disk-0,iothread=1,size=450G
scsi1: ceph-osd:vm-1105-disk-1,backup=0,iothread=1,size=2000G
scsihw: virtio-scsi-single
smbios1: uuid=5b0f6a52-3a4e-4f0e-9a3c-0d7c7f0e1105
sockets: 1
tags: gpu;kubernetes;worker-node
vmgenid: 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d
"""
OTHER_VM = """cores: 4
memory: 8192
name: jellyfin-old
net0: virtio=BC:24:11:00:00:12,bridge=vmbr0
scsi0: local-zfs:vm-1200-disk-0,size=32G
"""
MAPPING = ["node=pve5,path=0000:3b:00.0,id=10de:1eb8,iommugroup=27,subsystem-id=10de:12a2"]


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(lambda: self.t, self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def pve(tmp_path: Path) -> Iterator[tuple[ProxmoxSim, ProxmoxApiServer]]:
    sim = ProxmoxSim()
    sim.add_vm(1105, "pve5", MOODY_GOOD)
    sim.add_vm(1200, "pve5", OTHER_VM)
    sim.mappings["moody-good-gpu0"] = list(MAPPING)
    with ProxmoxApiServer(sim, tmp_path) as server:
        yield sim, server


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pve) -> Kube:
    """kubectl on PATH; node moody-good Ready exactly while VM 1105 runs."""
    sim, _ = pve
    stand_in = Kube.install(tmp_path / "kube", nodes={"moody-good": {"ready": True}},
                            pods=[{"namespace": "media", "name": "jellyfin-0", "node": "moody-good", "owner": "StatefulSet"},
                                  {"namespace": "kube-system", "name": "kube-proxy-x", "node": "moody-good", "owner": "DaemonSet"}])
    monkeypatch.setenv("PATH", f"{stand_in.bin}:{Path('/usr/bin')}:{Path('/bin')}")

    def ready(value: bool):
        def callback(vmid: int) -> None:
            if vmid == 1105:
                state = stand_in.load()
                state["nodes"]["moody-good"]["ready"] = value
                stand_in.save(state)
        return callback

    sim.on_stop.append(ready(False))
    sim.on_start.append(ready(True))
    return stand_in


def homelab_raw() -> dict[str, Any]:
    return copy.deepcopy(stack_file_config())


def make_engine(server: ProxmoxApiServer, raw: dict[str, Any] | None = None, *, restart: str = "drained",
                token: str = TOKEN, clock: Clock | None = None, check_mappings: bool = True) -> AdoptEngine:
    cfg = parse_stack_config(raw or homelab_raw())
    target = ApiTarget(server.endpoint, insecure=True, api_token=token)
    options = RestartOptions(node_name=cfg.node_name, drain_timeout=60, timeout=600, poll=5, clock=clock or FakeClock())
    return AdoptEngine(lambda: connect(target), spec_from_config(cfg, check_mappings=check_mappings), restart, options)
