"""Runners for the SSH layers (host, proxmox) with a stand-in transport, and
the adapter from hostprep's HostFacts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from components.hostprep.facts import FactsError, HostFacts, PciFunction
from components.ssh import transport as transport_module
from components.ssh.connect import SshTarget
from components.ssh.errors import TransportError
from components.ssh.transport import CommandResult
from tests.doctor import samples
from tests.doctor.fakecli import data
from tools.doctor import runners
from tools.doctor.host_checks import check_host
from tools.doctor.model import HostObservation, ProxmoxObservation, Unreachable

CFG = samples.homelab_cfg()
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in\n-----END OPENSSH PRIVATE KEY-----\n"
PIN = "pve5.lan ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def t4(driver: str | None, address: str = "0000:3b:00.0", ident: str = "10de:1eb8") -> PciFunction:
    return PciFunction(address, ident, "0x030200", "10de:12a2", driver, 42)


def host_facts(functions: dict[str, PciFunction], iommu: bool = True) -> HostFacts:
    nic = PciFunction("0000:19:00.0", "8086:1563", "0x020000", None, "ixgbe", 30)
    return HostFacts("intel", "6.8.12-4-pve", "systemd-boot", "root=ZFS=rpool/ROOT/pve-1 boot=zfs", iommu, functions, {},
                     devices={**functions, nic.address: nic})


@dataclass
class StandInTransport:
    answers: dict[str, CommandResult]
    commands: list[str] = field(default_factory=list)

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float | None = None, label: str | None = None) -> CommandResult:
        self.commands.append(command)
        # Only the exact command line is answered, as a shell would run it.
        return self.answers.get(command, CommandResult(127, "", f"sh: 1: {command.split()[0] if command.split() else ''}: not found"))

    def __enter__(self) -> StandInTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch):
    """Replace SshTransport.connect; records the target it was asked for."""
    seen: dict[str, SshTarget] = {}

    def install(transport: StandInTransport | Exception):
        def fake_connect(target: SshTarget, timeout: float = 10.0, *, command_timeout: float = 900.0):
            seen["target"] = target
            if isinstance(transport, Exception):
                raise transport
            return transport

        monkeypatch.setattr(transport_module.SshTransport, "connect", staticmethod(fake_connect))
        return seen

    return install


CREDS = runners.Credentials(identity=KEY, known_hosts=None, timeout=5)


def test_adapter_keeps_drivers_ids_modules_and_every_nvidia_device() -> None:
    obs = runners.host_observation_from_facts(host_facts({"0000:3b:00.0": t4("vfio-pci")}), "pve5.lan", {"0000:3b:00.0": ("nvidiafb", "nouveau")})
    assert obs.functions["0000:3b:00.0"].driver == "vfio-pci"
    assert obs.functions["0000:3b:00.0"].kernel_modules == ("nvidiafb", "nouveau")
    assert obs.nvidia_devices == {"0000:3b:00.0": "10de:1eb8"}, "the Intel NIC is not an NVIDIA device"


def test_gather_host_reads_facts_then_lspci_over_one_connection(connect, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners, "gather_facts", lambda transport, addresses: host_facts({"0000:3b:00.0": t4("vfio-pci")}))
    transport = StandInTransport({"lspci -nnk -D -s 0000:3b:00": CommandResult(0, data("lspci-nnk.t4.txt"), "")})
    seen = connect(transport)
    cfg = samples.homelab_cfg(host={"hostKey": PIN})
    obs = runners.gather_host(cfg, CREDS)
    assert isinstance(obs, HostObservation)
    assert obs.functions["0000:3b:00.0"].kernel_modules == ("nvidiafb", "nouveau")
    assert transport.commands == ["lspci -nnk -D -s 0000:3b:00"]
    assert (seen["target"].host, seen["target"].user, seen["target"].host_key) == ("pve5.lan", "root", PIN)
    assert all(result.status == "pass" for result in check_host(obs, cfg))


def test_gather_host_without_pciutils_still_checks_drivers(connect, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runners, "gather_facts", lambda transport, addresses: host_facts({"0000:3b:00.0": t4(None)}))
    connect(StandInTransport({}))
    obs = runners.gather_host(CFG, CREDS)
    assert isinstance(obs, HostObservation) and obs.functions["0000:3b:00.0"].driver is None
    assert [r.status for r in check_host(obs, CFG)] == ["pass", "fail"]


def test_facts_failure_is_reported_as_unreachable(connect, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(transport, addresses):
        raise FactsError("the facts script failed (rc=2): sh: 1: base64: not found")

    monkeypatch.setattr(runners, "gather_facts", broken)
    connect(StandInTransport({}))
    obs = runners.gather_host(CFG, CREDS)
    assert isinstance(obs, Unreachable) and "base64: not found" in obs.reason


def test_connection_errors_make_both_ssh_layers_unreachable(connect) -> None:
    connect(TransportError("root@pve5.lan:22: cannot connect: [Errno 111] Connection refused"))
    for gather in (runners.gather_host, runners.gather_proxmox):
        obs = gather(CFG, CREDS)
        assert isinstance(obs, Unreachable) and "Connection refused" in obs.reason


def test_gather_proxmox_runs_qm_config(connect) -> None:
    transport = StandInTransport({"qm config 1105": CommandResult(0, data("qm-config.mapping.txt"), "")})
    connect(transport)
    obs = runners.gather_proxmox(CFG, CREDS)
    assert isinstance(obs, ProxmoxObservation) and obs.qm_config.text == data("qm-config.mapping.txt")
    assert transport.commands == ["qm config 1105"]


def test_gather_proxmox_missing_vm_is_an_observation_and_missing_qm_is_unreachable(connect) -> None:
    connect(StandInTransport({"qm config 1105": CommandResult(2, "", "Configuration file 'nodes/pve5/qemu-server/1105.conf' does not exist\n")}))
    obs = runners.gather_proxmox(CFG, CREDS)
    assert isinstance(obs, ProxmoxObservation) and "does not exist" in obs.qm_config.error
    connect(StandInTransport({}))
    obs = runners.gather_proxmox(CFG, CREDS)
    assert isinstance(obs, Unreachable) and "Proxmox VE host" in obs.reason


def test_ssh_target_needs_a_key_and_a_pin() -> None:
    assert isinstance(runners._ssh_target(CFG, runners.Credentials()), Unreachable)
    no_pin = samples.homelab_cfg(host={"enabled": False, "hostKey": None}, gpus=samples.gpus_with_group())
    reason = runners._ssh_target(no_pin, CREDS)
    assert isinstance(reason, Unreachable) and "host.hostKey or pass --known-hosts" in reason.reason


def test_known_hosts_file_overrides_the_configured_pin() -> None:
    creds = runners.Credentials(identity=KEY, known_hosts=f"# comment\nother ssh-ed25519 AAAA\n{PIN}\n")
    target = runners._ssh_target(CFG, creds)
    assert isinstance(target, SshTarget) and target.host_key == PIN


def test_host_address_falls_back_to_the_proxmox_endpoint() -> None:
    cfg = samples.homelab_cfg(host={"enabled": False, "address": None}, proxmox={"endpoint": "https://pve5.example.net:8006/"},
                              gpus=samples.gpus_with_group())
    target = runners._ssh_target(cfg, CREDS)
    assert isinstance(target, SshTarget) and target.host == "pve5.example.net"
