"""SSH round trips and wall time of host preparation against the simulated
Proxmox host (a real sshd on loopback, tests/stand_ins/proxmox_host.py):

  (a) plan: connect, read facts, plan;
  (b) first apply with reboot, excluding the wait for the simulated reboot
      (the sim's reboot delay plus reconnect polling) and reporting it apart;
  (c) a no-op re-run on the prepared host.

Each figure is the median of N runs, each on a fresh simulated host.

    .venv/bin/python benchmarks/hostprep.py [--runs 5] [--json]

Needs /usr/sbin/sshd and ssh-keygen (apt-get install -y openssh-server).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.hostprep.connections import EngineOptions  # noqa: E402
from components.hostprep.engine import HostPrepEngine  # noqa: E402
from components.hostprep.inputs import GpuSpec, HostPrepInputs  # noqa: E402
from components.ssh.connect import SshTarget  # noqa: E402
from components.ssh.transport import SshTransport  # noqa: E402
from tests.stand_ins.proxmox_host import SSHD, SimHost  # noqa: E402
from tests.stand_ins.proxmox_host_spec import SimSpec, t4  # noqa: E402

INPUTS = HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", "10de:1eb8", "10de:12a2", None, 0),))


def keys(directory: Path) -> None:
    for name, kind in (("client", "ed25519"), ("host_ed25519", "ed25519"), ("host_rsa", "rsa")):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(directory / name)], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_over_ssh(host: SimHost, key_dir: Path) -> SshTarget:
    """Start a real sshd for the simulated host with the keys of :func:`keys`;
    the target that reaches it, its host key pinned."""
    for name in ("host_ed25519", "host_rsa"):
        for suffix in ("", ".pub"):
            shutil.copy(key_dir / f"{name}{suffix}", host.sshd_dir / f"{name}{suffix}")
        (host.sshd_dir / name).chmod(0o600)
    (host.sshd_dir / "authorized_keys").write_text((key_dir / "client.pub").read_text())
    port = free_port()
    host.sshd_config(port)
    host.start_sshd()
    return SshTarget("127.0.0.1", port, pwd.getpwuid(os.getuid()).pw_name, (key_dir / "client").read_text(),
                     f"[127.0.0.1]:{port} {(key_dir / 'host_ed25519.pub').read_text().strip()}")


def one_run(work: Path, key_dir: Path, index: int) -> dict[str, float]:
    host = SimHost.create(work / f"sim{index}", SimSpec(cpu="intel", kernel="6.5.13-5-pve", bootloader="grub-bios", devices=t4()))
    target = serve_over_ssh(host, key_dir)

    def engine() -> HostPrepEngine:
        options = EngineOptions(root=str(host.root), connect_timeout=2.0, reboot_timeout=30.0, poll_initial=0.05, poll_cap=0.25)
        return HostPrepEngine(lambda timeout: SshTransport.connect(target, timeout=timeout), INPUTS, "bench/hostprep", options)

    try:
        planner = engine()
        started = time.perf_counter()
        _, plan = planner.plan()
        plan_time = time.perf_counter() - started
        assert plan.reboot and plan.files

        applier = engine()
        started = time.perf_counter()
        result = applier.apply()
        apply_total = time.perf_counter() - started
        assert result.rebooted

        rerun = engine()
        started = time.perf_counter()
        again = rerun.apply()
        noop_time = time.perf_counter() - started
        assert not again.wrote and not again.rebooted
        return {
            "plan_s": plan_time, "plan_round_trips": planner.round_trips,
            "apply_s_excluding_reboot_wait": apply_total - result.reboot_wait_seconds, "apply_reboot_wait_s": result.reboot_wait_seconds,
            "apply_round_trips": applier.round_trips, "noop_s": noop_time, "noop_round_trips": rerun.round_trips,
            "sim_reboot_delay_s": host.spec.reboot_delay,
        }
    finally:
        host.stop_helpers()
        host.stop_sshd()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        print("needs the OpenSSH server: apt-get install -y openssh-server", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hostprep-bench-") as tmp:
        work = Path(tmp)
        (work / "keys").mkdir()
        keys(work / "keys")
        runs = [one_run(work, work / "keys", index) for index in range(args.runs)]
    summary = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    if args.json:
        print(json.dumps({"runs": args.runs, "median": summary, "all": runs}, indent=2))
        return 0
    print(f"host preparation against the simulated host, median of {args.runs} run(s)")
    print(f"  (a) plan:                      {summary['plan_s'] * 1000:7.0f} ms  {summary['plan_round_trips']:.0f} SSH round trip(s)")
    print(f"  (b) first apply with reboot:   {summary['apply_s_excluding_reboot_wait'] * 1000:7.0f} ms  {summary['apply_round_trips']:.0f} SSH round trip(s)"
          f"  (+ {summary['apply_reboot_wait_s'] * 1000:.0f} ms waiting for the simulated reboot, {summary['sim_reboot_delay_s']:.1f} s delay)")
    print(f"  (c) no-op re-run:              {summary['noop_s'] * 1000:7.0f} ms  {summary['noop_round_trips']:.0f} SSH round trip(s), no write, no reboot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
