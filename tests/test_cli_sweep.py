"""Every command-line tool, run as a user runs it (a subprocess), over a corpus
of bad input files and hostile endpoints: a stack file with a YAML error, a
tab, a list or a string at the top, empty, a stray or mis-namespaced key, a
plain-text secret, not UTF-8, a folder in its place, absent (through render,
doctor, talos, hostprep --stack and stacks check); unusable --host-facts,
--out, --identity and schematic files; a node config for `talos config
--running` that is absent, a folder, not YAML, a list or without its
v1alpha1 document; a --running-version that is no version or is newer than
talos.version; a closed port, a port
that says nothing, one that stops after the SSH banner, an HTTP server, an
sshd with another host key, the example's placeholder pin; a Kubernetes API
that refuses, says nothing or speaks plain HTTP; a talosctl that hangs.

Each run must end with a non-zero exit code, no Python traceback, the file
or endpoint named, within a bounded time. The runs go in parallel; each case
is its own test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.conftest import HOMELAB_STACK, ROOT
from tests.hostile import banner_only_port, closed_port, http_port, silent_port

HOMELAB = HOMELAB_STACK.read_text()
# A valid ed25519 public key that is no host's here.
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
TIMEOUT = "2"  # --timeout / --connect-timeout for the endpoint cases
BOUND = 40.0  # seconds any one run may take (startup on a busy 2-core machine included)


@dataclass
class Case:
    argv: list[str]
    named: list[str]  # at least one of these must appear in the output
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    result: subprocess.CompletedProcess | None = None
    took: float = 0.0


def _replaced(old: str, new: str) -> str:
    assert old in HOMELAB, old
    return HOMELAB.replace(old, new, 1)


BAD_STACKS = {
    "yaml-error": _replaced("    vmId: 1105\n", "    vmId: [1105\n"),
    "tab": _replaced("    vmId: 1105\n", "\tvmId: 1105\n"),
    "list": "- proxmox-talos-gpu:vm\n",
    "string": "just a string\n",
    "empty": "",
    "confg": _replaced("config:", "confg:"),
    "vm-no-namespace": _replaced("proxmox-talos-gpu:vm:", "vm:"),
    "wrong-namespace": _replaced("proxmox-talos-gpu:vm:", "proxmox-talos-gpus:vm:"),
    "plain-secret": HOMELAB + '  proxmox-talos-gpu:sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----"\n',
    "bad-value": _replaced("    vmId: 1105\n", "    vmId: 5\n"),
}


RENDER_STACKS = ("yaml-error", "list", "confg", "plain-secret", "a-folder")
DOCTOR_STACKS = ("tab", "string", "vm-no-namespace", "absent")
TALOS_STACKS = ("empty", "wrong-namespace", "not-utf8", "bad-value")
HOSTPREP_STACKS = ("yaml-error", "confg", "a-folder", "absent")
UPGRADE_PLAN_STACKS = ("tab", "plain-secret")
RUNNING_CONFIGS = ("absent", "a folder", "tab", "a list", "no v1alpha1")
RUNNING_VERSIONS = ("banana", "1.11.6", "v2.0.0")


def _sshd_with_another_key(base: Path) -> tuple[int, Any]:
    """A real OpenSSH server on loopback with freshly made host keys (no pin
    here matches them): (port, the SimHost that runs it)."""
    from tests.hostprep.conftest import _require_sshd, free_port
    from tests.stand_ins.proxmox_host import SimHost
    from tests.stand_ins.proxmox_host_spec import SimSpec, t4

    _require_sshd()
    host = SimHost.create(base, SimSpec(devices=t4()))
    for name, kind in (("host_ed25519", "ed25519"), ("host_rsa", "rsa")):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(host.sshd_dir / name)], check=True)
    (host.sshd_dir / "authorized_keys").write_text("")
    port = free_port()
    host.sshd_config(port)
    host.start_sshd()
    return port, host


def build_cases(base: Path, stack: ExitStack) -> dict[str, Case]:
    project = base / "project"
    project.mkdir()
    for name, text in BAD_STACKS.items():
        (project / f"Pulumi.{name}.yaml").write_bytes(text.encode())
    (project / "Pulumi.not-utf8.yaml").write_bytes(HOMELAB.encode().replace(b"moody-good", b"moody-\xe9good", 1))
    (project / "Pulumi.a-folder.yaml").mkdir()
    identity = base / "id_rsa"
    paramiko.RSAKey.generate(2048).write_private_key_file(str(identity))
    garbage_key = base / "garbage_key"
    garbage_key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n")
    files = {name: base / name for name in ("facts-bad.json", "facts-error.json", "facts-list.json", "a-file", "schematic-bad.yaml")}
    files["facts-bad.json"].write_text("{\"cpu_vendor\": ")
    files["facts-error.json"].write_text('{"error": "root@pve5.lan:22: connection refused", "exit_code": 3}\n')
    files["facts-list.json"].write_text("[]\n")
    files["a-file"].write_text("x\n")
    files["schematic-bad.yaml"].write_text("customization:\n\tsystemExtensions: {}\n")
    notes = base / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine\n")
    absent = base / "absent"

    ports = {
        "closed": closed_port(),
        "silent": stack.enter_context(silent_port()),
        "banner-only": stack.enter_context(banner_only_port()),
        "http": stack.enter_context(http_port()),
    }
    sshd_port, sshd_host = _sshd_with_another_key(base / "sshd")
    stack.callback(sshd_host.stop_sshd)
    ports["wrong-key"] = sshd_port
    known_hosts = base / "known_hosts"
    known_hosts.write_text("".join(f"[127.0.0.1]:{port} {OTHER_KEY}\n" for port in ports.values()))

    cases: dict[str, Case] = {}

    def render(name: str, *argv: str, named: list[str]) -> None:
        cases[f"render {name}"] = Case([sys.executable, "-m", "components.render", "--project-dir", str(project), *argv], named)

    def doctor(name: str, *argv: str, named: list[str], env: dict[str, str] | None = None) -> None:
        cases[f"doctor {name}"] = Case([sys.executable, "-m", "components.doctor", "--project-dir", str(project), *argv], named, env=env or {})

    def talos(name: str, command: str, *argv: str, named: list[str]) -> None:
        cases[f"talos {name}"] = Case([sys.executable, "-m", "components.talos", command, "--project-dir", str(project), *argv], named)

    def hostprep(name: str, port: int, *, identity_file: Path = identity, hosts: Path = known_hosts, named: list[str]) -> None:
        cases[f"hostprep {name}"] = Case([sys.executable, "-m", "components.hostprep", "facts", "--host", "127.0.0.1", "--port", str(port),
                                          "--identity", str(identity_file), "--known-hosts", str(hosts), "--gpu", "3b:00.0",
                                          "--connect-timeout", TIMEOUT], named)

    # Stack files: each bad one through one of the three tools that read them (the
    # loader they share is tested case by case in test_stack_file.py).
    for name in RENDER_STACKS:
        render(f"stack {name}", "--stack", name, "--out", str(base / f"out-{name}"), named=[f"Pulumi.{name}.yaml"])
    for name in DOCTOR_STACKS:
        doctor(f"stack {name}", "--stack", name, named=[f"Pulumi.{name}.yaml"])
    for name in TALOS_STACKS:
        talos(f"schematic {name}", "schematic", name, named=[f"Pulumi.{name}.yaml"])
    # Other files.
    (project / "Pulumi.good.yaml").write_text(HOMELAB)
    for name in ("facts-bad.json", "facts-error.json", "facts-list.json"):
        render(f"host-facts {name}", "--stack", "good", "--out", str(base / "out-facts"), "--host-facts", str(files[name]), named=[str(files[name])])
    render("host-facts absent", "--stack", "good", "--out", str(base / "out-facts"), "--host-facts", str(absent), named=[str(absent)])
    render("out is a file", "--stack", "good", "--out", str(files["a-file"]), named=[str(files["a-file"])])
    render("out is someone's folder", "--stack", "good", "--out", str(notes), named=[str(notes)])
    doctor("identity absent", "--stack", "good", "--identity", str(absent), named=[str(absent)])
    doctor("identity a folder", "--stack", "good", "--identity", str(base), named=[str(base)])
    for name, path in (("absent", absent), ("a folder", base), ("tab", files["schematic-bad.yaml"])):
        cases[f"talos schematic-id {name}"] = Case([sys.executable, "-m", "components.talos", "schematic-id", str(path)], [str(path)])
    hostprep("identity absent", ports["closed"], identity_file=absent, named=[str(absent)])
    hostprep("known-hosts absent", ports["closed"], hosts=absent, named=[str(absent)])
    for name in HOSTPREP_STACKS:
        cases[f"hostprep stack {name}"] = Case([sys.executable, "-m", "components.hostprep", "plan", "--stack", name, "--project-dir", str(project),
                                                "--identity", str(identity)], [f"Pulumi.{name}.yaml"])
    # talos config --running: the node's config file, unusable each way.
    running = {"absent": absent, "a folder": base, "tab": base / "running-tab.yaml", "a list": base / "running-list.yaml",
               "no v1alpha1": base / "running-other.yaml"}
    running["tab"].write_text("version: v1alpha1\nmachine:\n\ttype: worker\n")
    running["a list"].write_text("- version: v1alpha1\n")
    running["no v1alpha1"].write_text("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\n")
    for name in RUNNING_CONFIGS:
        talos(f"config running {name}", "config", "--stack", "good", "--running", str(running[name]), "--diff", named=[str(running[name])])
    for name in UPGRADE_PLAN_STACKS:
        talos(f"upgrade-plan stack {name}", "upgrade-plan", "--stack", name, "--running-version", "v1.11.6", named=[f"Pulumi.{name}.yaml"])
    for version in RUNNING_VERSIONS:
        talos(f"upgrade-plan running {version}", "upgrade-plan", "--stack", "good", "--running-version", version, named=[version])

    # SSH endpoints, through doctor (host and proxmox layers) and hostprep.
    for name, port in ports.items():
        stack_text = _replaced("    address: pve5.lan\n", f"    address: 127.0.0.1\n    port: {port}\n")
        (project / f"Pulumi.ssh-{name}.yaml").write_text(stack_text)
        doctor(f"ssh {name}", "--stack", f"ssh-{name}", "--layer", "host", "--timeout", TIMEOUT,
               "--identity", str(identity), "--known-hosts", str(known_hosts), named=[f"127.0.0.1:{port}"])
        hostprep(f"ssh {name}", port, named=[f"127.0.0.1:{port}"])
    (project / "Pulumi.ssh-placeholder.yaml").write_text(_replaced("    address: pve5.lan\n", f"    address: 127.0.0.1\n    port: {sshd_port}\n"))
    doctor("ssh placeholder host key", "--stack", "ssh-placeholder", "--layer", "host", "--timeout", TIMEOUT, "--identity", str(identity),
           named=[f"127.0.0.1:{sshd_port}"])
    hostprep("garbage identity", sshd_port, identity_file=garbage_key, named=[f"127.0.0.1:{sshd_port}"])

    # The Kubernetes API: refused, silent, plain HTTP (a real kubectl where there is one).
    for name in ("closed", "silent", "http"):
        config = base / f"kubeconfig-{name}"
        config.write_text(f"apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{ports[name]}'}}\n"
                          "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\nusers:\n- name: u\n  user: {token: t}\n")
        named = [f"127.0.0.1:{ports[name]}"] if shutil.which("kubectl") else ["kubectl not found on PATH"]
        doctor(f"kubernetes {name}", "--stack", "good", "--layer", "kubernetes", "--timeout", TIMEOUT,
               named=named, env={"KUBECONFIG": str(config)})

    # The stacks check over the project folder full of bad stack files, and a folder that is not there.
    cases["stacks check bad stack files"] = Case([sys.executable, "-m", "components.stacks", "check", "--project-dir", str(project)],
                                                 [f"Pulumi.{name}.yaml" for name in ("yaml-error", "list", "plain-secret")])
    cases["stacks check absent folder"] = Case([sys.executable, "-m", "components.stacks", "check", "--project-dir", str(absent)], [str(absent)])

    # A talosctl that never answers.
    fake_bin = base / "bin"
    fake_bin.mkdir()
    (fake_bin / "talosctl").write_text("#!/bin/sh\nexec /bin/sleep 60\n")
    (fake_bin / "talosctl").chmod(0o755)
    (base / "talosconfig").write_text("context: homelab\ncontexts:\n  homelab:\n    endpoints: [192.168.8.99]\n")
    doctor("talosctl hangs", "--stack", "good", "--layer", "talos", "--timeout", TIMEOUT, named=["192.168.8.123"],
           env={"PATH": f"{fake_bin}:{os.environ.get('PATH', '')}", "TALOSCONFIG": str(base / "talosconfig")})
    return cases


def _run(case: Case, home: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "TALOSCONFIG", "PTG_DEBUG")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), **case.env)
    started = time.monotonic()
    case.result = subprocess.run(case.argv, cwd=case.cwd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    case.took = time.monotonic() - started


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("sweep")
    home = base / "home"
    home.mkdir()
    with ExitStack() as stack:
        cases = build_cases(base, stack)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda case: _run(case, home), cases.values()))
        yield cases


NAMES = [
    *(f"render stack {name}" for name in RENDER_STACKS),
    *(f"doctor stack {name}" for name in DOCTOR_STACKS),
    *(f"talos schematic {name}" for name in TALOS_STACKS),
    *(f"render host-facts {name}" for name in ("facts-bad.json", "facts-error.json", "facts-list.json", "absent")),
    "render out is a file", "render out is someone's folder",
    "doctor identity absent", "doctor identity a folder",
    *(f"talos schematic-id {name}" for name in ("absent", "a folder", "tab")),
    "hostprep identity absent", "hostprep known-hosts absent",
    *(f"hostprep stack {name}" for name in HOSTPREP_STACKS),
    *(f"talos config running {name}" for name in RUNNING_CONFIGS),
    *(f"talos upgrade-plan stack {name}" for name in UPGRADE_PLAN_STACKS),
    *(f"talos upgrade-plan running {version}" for version in RUNNING_VERSIONS),
    *(f"{tool} ssh {name}" for name in ("closed", "silent", "banner-only", "http", "wrong-key") for tool in ("doctor", "hostprep")),
    "doctor ssh placeholder host key", "hostprep garbage identity",
    *(f"doctor kubernetes {name}" for name in ("closed", "silent", "http")),
    "doctor talosctl hangs",
    "stacks check bad stack files", "stacks check absent folder",
]


@pytest.mark.parametrize("name", NAMES)
def test_no_traceback_a_nonzero_exit_the_culprit_named_in_bounded_time(swept, name):
    case = swept[name]
    assert case.result is not None
    output = case.result.stdout + case.result.stderr
    shown = f"{' '.join(case.argv[1:])}\nexit {case.result.returncode} after {case.took:.1f} s\n{output}"
    assert "Traceback" not in output, shown
    assert "unexpected error" not in output, f"only components.cli's last line of defence caught it:\n{shown}"
    assert case.result.returncode != 0, shown
    # doctor's progress lines name the endpoint it is about to try; the verdict must name it too.
    verdict = "\n".join(line for line in output.splitlines() if not line.startswith("doctor: ["))
    assert any(text in verdict for text in case.named), f"none of {case.named} named:\n{shown}"
    assert case.took < BOUND, shown


def test_the_sweep_covers_every_case_built(swept):
    assert sorted(swept) == sorted(NAMES)
