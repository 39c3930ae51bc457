"""Restarts of the first `pulumi up` of the guide's homelab, host preparation
part, on the test stand-ins, driven the way the Pulumi engine runs a dynamic
provider: __main__.py runs under the mock engine (components/mockengine.py),
the host-preparation registration's serialized ``__provider`` is loaded with
dill in a fresh Python process started in the project root, and driven
check -> diff -> create against the simulated Proxmox host behind a real
OpenSSH sshd (tests/hostprep/simhost.py: sysfs binding, guests, reboots).

The host needs vfio (a T4 on nouveau) and runs two other guests (VM 101,
CT 200). Two hosts: the IOMMU already on (Intel, kernel 6.8) and off
(Intel, kernel 6.5); host.runningGuests is stop, so a
needed reboot is not refused. Every figure is counted from the simulated host's own
call log and guest states, never set here:

  host reboots        -- boots the simulated host recorded;
  other guests stopped -- guests running before that a `qm|pct shutdown|stop`
                         or a host reboot took down.

What is NOT driven yet: the VM adoption (components/vm/provider.py against
tests/stand_ins/proxmox_api.py) and the Talos walk (tests/stand_ins/
talosctl.py) with the kubectl drain, so node restarts and whether each was
drained are printed as "not driven", not counted.

    .venv/bin/python benchmarks/first_up.py

Needs /usr/sbin/sshd and ssh-keygen (apt-get install -y openssh-server).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hostprep import free_port, keys  # noqa: E402
from components.hostprep.transport import SshTarget  # noqa: E402
from components.mockengine import reveal  # noqa: E402
from tests.conftest import FAKE_SECRETS, run_main, stack_file_config  # noqa: E402
from tests.hostprep.simhost import SimGuest, SimHost, SimSpec, t4  # noqa: E402

HOSTS = {"iommu on": SimSpec(cpu="intel", kernel="6.8.12-4-pve"), "iommu off": SimSpec(cpu="intel", kernel="6.5.13-5-pve")}
OTHERS = [SimGuest(101, "k8s-cp-1"), SimGuest(200, "nas", type="lxc")]

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
    host = SimHost.create(work, dataclasses.replace(spec, devices=t4(), guests=list(OTHERS)))
    for name in ("host_ed25519", "host_rsa"):
        for suffix in ("", ".pub"):
            shutil.copy(key_dir / f"{name}{suffix}", host.sshd_dir / f"{name}{suffix}")
        (host.sshd_dir / name).chmod(0o600)
    (host.sshd_dir / "authorized_keys").write_text((key_dir / "client.pub").read_text())
    port = free_port()
    host.sshd_config(port)
    host.start_sshd()
    target = SshTarget("127.0.0.1", port, pwd.getpwuid(os.getuid()).pw_name, (key_dir / "client").read_text(),
                       f"[127.0.0.1]:{port} {(key_dir / 'host_ed25519.pub').read_text().strip()}")
    return host, target


def _registration(target: SshTarget) -> dict[str, Any]:
    raw = copy.deepcopy(stack_file_config())
    raw["host"] = {"enabled": True, "address": target.host, "port": target.port, "user": target.user,
                   "hostKey": target.host_key, "rebootTimeoutSeconds": 30,
                   "runningGuests": "stop"}  # the guide's user lets a needed reboot stop the other guests
    run = run_main(raw, {**FAKE_SECRETS, "sshPrivateKey": target.private_key})
    for reg in run.registrations:
        inputs = reveal(reg.inputs)
        provider = inputs.get("__provider")
        if provider and b"HostPrepProvider" in base64.b64decode(provider):
            inputs.pop("__provider")
            return {"urn": reg.urn, "provider": provider, "props": {k: v for k, v in inputs.items() if v is not None}}
    raise SystemExit("error: __main__.py registered no host-preparation resource")


def scenario(label: str, work: Path, key_dir: Path) -> dict[str, Any]:
    """One first `pulumi up` of host preparation on a fresh simulated host."""
    host, target = _host(work, key_dir, HOSTS[label])
    try:
        item = _registration(target)
        item["props"]["root"] = str(host.root)  # the simulated host's file tree (test-only input)
        running = {vmid for vmid, status in host.guest_status().items() if status == "running"}
        done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              input=json.dumps(item))
        if done.returncode != 0:
            raise SystemExit(f"error: the host-preparation provider failed: {done.stderr.strip().splitlines()[-1:]}")
        reboots = len(host.tool_calls("boot"))
        stopped = {int(args[1]) for tool in ("qm", "pct") for args in host.tool_calls(tool) if args[:1] in (["shutdown"], ["stop"])}
        if reboots:
            stopped |= running
        return {"host": label, "host_reboots": reboots, "other_guests_stopped": sorted(stopped & running),
                "gpu_driver": host.driver("0000:3b:00.0")}
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
                  f"{result['other_guests_stopped']}, GPU driver {result['gpu_driver']}, node restarts: not driven")


if __name__ == "__main__":
    main()
