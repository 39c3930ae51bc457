"""CPU time of a host-prep no-op apply, as a whole process: the command-line
tool (``python -m components.hostprep apply``, interpreter start, imports,
SSH, facts, plan, verify) against the simulated Proxmox host
(tests/stand_ins/proxmox_host.py: a real sshd on loopback) that an earlier apply
already prepared. Only the client process is counted (user + sys of the
child, from ``os.wait4``), as a user's ``time`` would show it; the sshd side
is the simulated host's.

    .venv/bin/python benchmarks/hostprep_cpu.py [--runs 5] [--json]

Needs /usr/sbin/sshd and ssh-keygen (apt-get install -y openssh-server).
Target: at most 0.35 s CPU (median).

With ``--ansible PATH`` (the ``ansible-playbook`` of an ansible-core
install, e.g. ``python3 -m venv /tmp/ansible && /tmp/ansible/bin/pip install
ansible-core``) the same host is also brought to the same state by an Ansible
peer, turn about (A B A B ...): a playbook written from what the first apply
left on the host (the three vfio/blacklist files with ``copy``, the GRUB line
with ``lineinfile`` and its ``update-grub``/``update-initramfs`` handlers, and
the verify reads of /proc/cmdline and the GPU's driver), so it changes
nothing either. Ansible's figure counts its forks and its ssh clients
(ControlPersist off, so no ssh master outlives the run; pipelining on, facts
not gathered: the cheapest way to run it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hostprep import INPUTS, keys, serve_over_ssh  # noqa: E402
from components.hostprep.connections import EngineOptions  # noqa: E402
from components.hostprep.engine import HostPrepEngine  # noqa: E402
from components.ssh.connect import SshTarget  # noqa: E402
from components.ssh.transport import SshTransport  # noqa: E402
from tests.stand_ins.proxmox_host import SSHD, SimHost  # noqa: E402
from tests.stand_ins.proxmox_host_spec import SimSpec, t4  # noqa: E402

OWNER = "proxmox-talos-gpu/cli"
TARGET_CPU_S = 0.35


def prepared_host(work: Path, key_dir: Path) -> tuple[SimHost, SshTarget]:
    """A simulated host that one apply (with its reboot) has prepared."""
    host = SimHost.create(work / "sim", SimSpec(cpu="intel", kernel="6.5.13-5-pve", bootloader="grub-bios", devices=t4()))
    target = serve_over_ssh(host, key_dir)
    options = EngineOptions(root=str(host.root), connect_timeout=2.0, reboot_timeout=30.0, poll_initial=0.05, poll_cap=0.25)
    result = HostPrepEngine(lambda timeout: SshTransport.connect(target, timeout=timeout), INPUTS, OWNER, options).apply()
    assert result.rebooted, "the first apply prepares the host"
    return host, target


def noop_command(host: SimHost, target: SshTarget, key_dir: Path) -> list[str]:
    hosts = key_dir / "known_hosts"
    hosts.write_text(target.host_key + "\n")
    return [sys.executable, "-m", "components.hostprep", "apply", "--host", target.host, "--port", str(target.port),
            "--user", target.user, "--identity", str(key_dir / "client"), "--known-hosts", str(hosts), "--gpu", "3b:00.0",
            "--owner", OWNER, "--root", str(host.root), "--json"]


def ansible_peer(host: SimHost, target: SshTarget, key_dir: Path, work: Path, playbook_bin: str) -> tuple[list[str], dict[str, str]]:
    """The Ansible peer's command and environment, its playbook written
    from the prepared host (its desired state is what our apply left)."""
    root = host.root
    files = ["/etc/modprobe.d/proxmox-talos-gpu-blacklist.conf", "/etc/modules-load.d/proxmox-talos-gpu-vfio.conf",
             "/etc/modprobe.d/proxmox-talos-gpu-vfio.conf"]
    grub = next(line for line in (root / "etc/default/grub").read_text().splitlines() if line.startswith("GRUB_CMDLINE_LINUX_DEFAULT="))
    play = [{
        "hosts": "sim", "gather_facts": False,
        "tasks": [
            {"name": "vfio and blacklist files", "ansible.builtin.copy": {"dest": f"{root}{{{{ item.path }}}}", "content": "{{ item.content }}", "mode": "0644"},
             "loop": [{"path": path, "content": (root / path.lstrip("/")).read_text()} for path in files],
             "notify": "update-initramfs"},
            {"name": "kernel command line", "ansible.builtin.lineinfile": {"path": f"{root}/etc/default/grub", "regexp": "^GRUB_CMDLINE_LINUX_DEFAULT=", "line": grub},
             "notify": "update-grub"},
            {"name": "IOMMU on the running command line", "ansible.builtin.command": f"cat {root}/proc/cmdline", "register": "cmdline", "changed_when": False},
            {"name": "verify the command line", "ansible.builtin.assert": {"that": ["'intel_iommu=on' in cmdline.stdout"]}},
            {"name": "GPU driver", "ansible.builtin.stat": {"path": f"{root}/sys/bus/pci/devices/0000:3b:00.0/driver"}, "register": "driver"},
            {"name": "verify the driver", "ansible.builtin.assert": {"that": ["driver.stat.lnk_target is search('vfio-pci')"]}},
        ],
        "handlers": [
            {"name": "update-initramfs", "ansible.builtin.command": "update-initramfs -u -k all"},
            {"name": "update-grub", "ansible.builtin.command": "update-grub"},
        ],
    }]
    (work / "peer.yml").write_text(json.dumps(play, indent=1))  # JSON is YAML
    hosts = key_dir / "known_hosts"
    (work / "inventory").write_text(
        f"sim ansible_host={target.host} ansible_port={target.port} ansible_user={target.user} "
        f"ansible_ssh_private_key_file={key_dir / 'client'} ansible_python_interpreter=/usr/bin/python3\n")
    env = {**os.environ, "ANSIBLE_SSH_ARGS": f"-o ControlMaster=no -o UserKnownHostsFile={hosts}", "ANSIBLE_PIPELINING": "True",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1"}
    return [playbook_bin, "-i", str(work / "inventory"), str(work / "peer.yml")], env


def ansible_cpu(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if process.returncode != 0 or "changed=0" not in text or "failed=0" not in text:
        raise RuntimeError(f"the Ansible peer did not end unchanged ({process.returncode}): {text[-1500:]}")
    return {"user_s": usage.ru_utime, "sys_s": usage.ru_stime, "cpu_s": usage.ru_utime + usage.ru_stime}


def cpu_of(argv: list[str]) -> dict[str, float]:
    """Run once; the child's user and sys CPU seconds (its output checked)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"no-op apply failed ({process.returncode}): {err.read().decode()[-500:]}")
        result = json.loads(out.read())
    assert not result.get("wrote") and not result.get("rebooted"), result
    return {"user_s": usage.ru_utime, "sys_s": usage.ru_stime, "cpu_s": usage.ru_utime + usage.ru_stime}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ansible", metavar="ANSIBLE_PLAYBOOK", help="also time the Ansible peer with this ansible-playbook")
    args = parser.parse_args()
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        print("needs the OpenSSH server: apt-get install -y openssh-server", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hostprep-cpu-") as tmp:
        work = Path(tmp)
        (work / "keys").mkdir()
        keys(work / "keys")
        host, target = prepared_host(work, work / "keys")
        try:
            argv = noop_command(host, target, work / "keys")
            peer = ansible_peer(host, target, work / "keys", work, args.ansible) if args.ansible else None
            cpu_of(argv)  # warm-up: the page cache, .pyc files
            if peer:
                ansible_cpu(*peer)
            runs, peer_runs = [], []
            for _ in range(args.runs):  # A B A B ...: both see the same drift of the machine
                runs.append(cpu_of(argv))
                if peer:
                    peer_runs.append(ansible_cpu(*peer))
        finally:
            host.stop_helpers()
            host.stop_sshd()
    summary = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    peer_summary = {key: statistics.median(run[key] for run in peer_runs) for key in peer_runs[0]} if peer_runs else None
    ratios = [b["cpu_s"] / a["cpu_s"] for a, b in zip(runs, peer_runs, strict=False)]
    if args.json:
        print(json.dumps({"runs": args.runs, "median": summary, "all": runs, "target_cpu_s": TARGET_CPU_S,
                          "ansible_median": peer_summary, "ansible_all": peer_runs,
                          "ansible_over_ours_median": statistics.median(ratios) if ratios else None}, indent=2))
        return 0
    print(f"host-prep no-op apply (python -m components.hostprep apply on a prepared simulated host), {args.runs} run(s) after a warm-up")
    print(f"  CPU (user+sys) median {summary['cpu_s']:.3f} s  (user {summary['user_s']:.3f} s, sys {summary['sys_s']:.3f} s); "
          f"min {min(r['cpu_s'] for r in runs):.3f} s, max {max(r['cpu_s'] for r in runs):.3f} s; target <= {TARGET_CPU_S} s")
    if peer_summary:
        print(f"  Ansible peer (ansible-playbook, changed=0): CPU median {peer_summary['cpu_s']:.3f} s (user {peer_summary['user_s']:.3f} s, "
              f"sys {peer_summary['sys_s']:.3f} s); min {min(r['cpu_s'] for r in peer_runs):.3f} s, max {max(r['cpu_s'] for r in peer_runs):.3f} s")
        print(f"  Ansible / ours, pair by pair: median {statistics.median(ratios):.1f}x (min {min(ratios):.1f}x, max {max(ratios):.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
