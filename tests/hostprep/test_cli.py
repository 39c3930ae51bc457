"""`python -m components.hostprep` against the simulated host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostprep.simhost import SimSpec, t4

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parents[2]
T4 = "0000:3b:00.0"


def cli(sim, tmp_path: Path, action: str, *extra: str, known_hosts: str | None = None) -> subprocess.CompletedProcess:
    identity = tmp_path / "id"
    identity.write_text(sim.target.private_key)
    identity.chmod(0o600)
    hosts = tmp_path / "known_hosts"
    hosts.write_text(known_hosts if known_hosts is not None else sim.target.host_key + "\n")
    argv = [sys.executable, "-m", "components.hostprep", action, "--host", "127.0.0.1", "--port", str(sim.target.port), "--user", sim.target.user,
            "--identity", str(identity), "--known-hosts", str(hosts), "--gpu", "3b:00.0", "--root", sim.root, "--owner", "proxmox-talos-gpu/cli", *extra]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_facts_plan_and_verify_change_nothing(make_sim, tmp_path):
    sim = make_sim(SimSpec(devices=t4()))
    before, boot_id = sim.host.snapshot(), sim.host.boot_id()
    facts = cli(sim, tmp_path, "facts", "--json")
    assert facts.returncode == 0, facts.stderr
    data = json.loads(facts.stdout)
    assert data["cpu_vendor"] == "intel" and data["functions"][T4]["driver"] == "nouveau"
    plan = cli(sim, tmp_path, "plan")
    assert plan.returncode == 0 and "update /etc/default/grub" in plan.stdout and "+GRUB_CMDLINE_LINUX_DEFAULT" in plan.stdout
    verify = cli(sim, tmp_path, "verify", "--json")
    assert verify.returncode == 1 and not json.loads(verify.stdout)["ok"]
    assert sim.host.snapshot() == before and sim.host.boot_id() == boot_id
    assert {(c["tool"], c["args"][0]) for c in sim.host.calls()} == {("proxmox-boot-tool", "status"), ("efibootmgr", "-v"), ("pvesh", "get")}
    assert not (sim.host.root / "var").exists()


def test_apply_then_verify_then_undo(make_sim, tmp_path):
    sim = make_sim(SimSpec(devices=t4()))
    before = sim.host.snapshot()
    applied = cli(sim, tmp_path, "apply", "--json")
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert result["rebooted"] and result["outputs"]["drivers"] == {T4: "vfio-pci"}
    assert "waiting for the host to come back" in applied.stderr
    assert cli(sim, tmp_path, "verify").returncode == 0
    again = json.loads(cli(sim, tmp_path, "apply", "--json").stdout)
    assert again["round_trips"] == 1 and not again["rebooted"] and not again["wrote"]
    assert cli(sim, tmp_path, "undo").returncode == 0
    assert sim.host.snapshot() == before


def test_unknown_or_wrong_host_key_exits_3(make_sim, tmp_path):
    sim = make_sim(SimSpec(devices=t4()))
    missing = cli(sim, tmp_path, "facts", known_hosts="otherhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    assert missing.returncode == 3 and "has no key for [127.0.0.1]" in missing.stderr
    kind, key = (sim.keys.host_dir / "other.pub").read_text().split()[:2]
    wrong = cli(sim, tmp_path, "facts", known_hosts=f"[127.0.0.1]:{sim.target.port} {kind} {key}\n")
    assert wrong.returncode == 3 and "host key not accepted" in wrong.stderr
    assert sim.host.calls() == []


def test_bad_gpu_address_is_a_usage_error(make_sim, tmp_path):
    sim = make_sim(SimSpec(devices=t4()))
    result = cli(sim, tmp_path, "plan", "--gpu", "3b:00")
    assert result.returncode == 2 and "--gpu" in result.stderr


def test_refused_plan_exits_1_with_the_reason(make_sim, tmp_path):
    sim = make_sim(SimSpec(cpu="amd", kernel="6.8.12-4-pve", iommu_firmware=False, devices=t4()))
    result = cli(sim, tmp_path, "apply")
    assert result.returncode == 1 and "switched off in the firmware" in result.stderr
