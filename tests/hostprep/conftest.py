"""Fixtures: a real OpenSSH server on loopback serving a simulated Proxmox host."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.hostprep.connections import EngineOptions
from components.hostprep.engine import HostPrepEngine
from components.hostprep.inputs import GpuSpec, HostPrepInputs
from components.ssh.connect import SshTarget
from components.ssh.transport import SshTransport
from tests.hostprep.fakekube import Kube
from tests.stand_ins.proxmox_host import SSHD, SimHost
from tests.stand_ins.proxmox_host_spec import SimSpec

OWNER = "proxmox-talos-gpu/test"


class SleptClock:
    """The engine's clock for runs against the simulated host: it counts only
    the time the engine sleeps (really sleeping it, so the host's reboot and
    guests move on). A wait bound then means that many seconds of pauses
    between asks, however long each ask takes on a busy machine."""

    def __init__(self) -> None:
        self.slept = 0.0

    def __call__(self) -> float:
        return self.slept

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.slept += seconds


def _require_sshd() -> None:
    missing = [tool for tool in (SSHD, shutil.which("ssh-keygen")) if not tool or not os.path.exists(tool)]
    if missing:
        reason = f"OpenSSH server not installed ({SSHD} or ssh-keygen missing): `apt-get install -y openssh-server`"
        if os.environ.get("REQUIRE_SSHD") == "1":
            pytest.fail(reason + " (REQUIRE_SSHD=1)")
        pytest.skip(reason)


@dataclass
class Keys:
    client_private: str
    client_public: str
    other_private: str
    host_dir: Path  # host_ed25519, host_rsa (+ .pub)

    def host_public(self, kind: str = "ed25519") -> str:
        return (self.host_dir / f"host_{kind}.pub").read_text().strip()


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    _require_sshd()
    directory = tmp_path_factory.mktemp("keys")
    for name, kind in (("client", "ed25519"), ("other", "ed25519"), ("host_ed25519", "ed25519"), ("host_rsa", "rsa")):
        extra = ["-b", "2048"] if kind == "rsa" else []
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", name, "-f", str(directory / name)], check=True)
    return Keys((directory / "client").read_text(), (directory / "client.pub").read_text(), (directory / "other").read_text(), directory)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sim:
    host: SimHost
    target: SshTarget
    keys: Keys

    @property
    def root(self) -> str:
        return str(self.host.root)

    def connect(self, timeout: float = 5.0) -> SshTransport:
        return SshTransport.connect(self.target, timeout=timeout)

    def engine(self, gpus: list[str] | tuple[GpuSpec, ...], *, owner: str = OWNER, progress: list[str] | None = None,
               reboot_timeout: float = 20.0, options: dict[str, object] | None = None, **inputs: object) -> HostPrepEngine:
        specs = tuple(g if isinstance(g, GpuSpec) else GpuSpec(address=g) for g in gpus)
        settings: dict[str, object] = {"root": self.root, "connect_timeout": 2.0, "reboot_timeout": reboot_timeout, "poll_initial": 0.05,
                                       "poll_cap": 0.25, "reboot_start_grace": 10.0, "guest_timeout": 10.0, "drain_timeout": 10.0,
                                       "progress_every": 0.5,
                                       "progress": progress.append if progress is not None else (lambda message: None)}
        clock = SleptClock()
        settings.update({"clock": clock, "sleep": clock.sleep})
        settings.update(options or {})
        return HostPrepEngine(self.connect, HostPrepInputs(gpus=specs, **inputs), owner, EngineOptions(**settings))  # type: ignore[arg-type]

    def ssh(self, command: str) -> str:
        """Run a command on the simulated host as its admin would (qm, pct, ...)."""
        with self.connect() as transport:
            result = transport.run(command)
        assert result.ok, f"{command}: rc={result.rc} {result.stderr}"
        return result.stdout


@pytest.fixture
def make_sim(keys: Keys, tmp_path: Path) -> Iterator[Callable[[SimSpec], Sim]]:
    made: list[SimHost] = []

    def make(spec: SimSpec) -> Sim:
        host = SimHost.create(tmp_path / f"sim{len(made)}", spec)
        made.append(host)
        for name in ("host_ed25519", "host_rsa"):
            for suffix in ("", ".pub"):
                shutil.copy(keys.host_dir / f"{name}{suffix}", host.sshd_dir / f"{name}{suffix}")
            (host.sshd_dir / name).chmod(0o600)
        (host.sshd_dir / "authorized_keys").write_text(keys.client_public)
        port = free_port()
        host.sshd_config(port)
        host.start_sshd()
        target = SshTarget("127.0.0.1", port, _user(), private_key=keys.client_private,
                           host_key=f"[127.0.0.1]:{port} {keys.host_public()}")
        return Sim(host, target, keys)

    yield make
    for host in made:
        host.stop_helpers()
        host.stop_sshd()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Kube]:
    """A strict stand-in kubectl first on PATH (see fakekube.py)."""

    def install(**state: object) -> Kube:
        stand_in = Kube.install(tmp_path / "kube", **state)  # type: ignore[arg-type]
        monkeypatch.setenv("PATH", f"{stand_in.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("KUBECONFIG", raising=False)
        return stand_in

    return install
