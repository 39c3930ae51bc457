"""`python -m components.hostprep` against the simulated host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stand_ins.proxmox_host_spec import SimSpec, t4

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


def test_facts_plan_and_verify_show_the_guests_and_apply_exits_6_when_others_run(make_sim, tmp_path):
    from tests.stand_ins.proxmox_host_spec import SimGuest

    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(1105, "moody-good"), SimGuest(200, "nas", type="lxc", onboot=False)]))
    facts = json.loads(cli(sim, tmp_path, "facts", "--json").stdout)
    assert facts["guests"] == [{"vmid": 200, "name": "nas", "type": "lxc", "status": "running", "onboot": False, "hastate": "", "node": "pve5"},
                               {"vmid": 1105, "name": "moody-good", "type": "qemu", "status": "running", "onboot": True, "hastate": "",
                                "node": "pve5"}]
    assert facts["ha_policy"] == "conditional"  # no datacenter.cfg: pve-cluster's default
    assert facts["pve_node"] == "pve5"
    for action in ("facts", "plan", "verify"):
        shown = cli(sim, tmp_path, action, "--own-vmid", "1105").stdout
        assert "200 nas (lxc): running" in shown and "1105 moody-good (qemu): running, onboot" in shown, (action, shown)
    plan = json.loads(cli(sim, tmp_path, "plan", "--json", "--own-vmid", "1105").stdout)
    assert [g["vmid"] for g in plan["reboot_stops"]] == [200, 1105] and "`pct shutdown 200`" in plan["reboot_withheld"]
    applied = cli(sim, tmp_path, "apply", "--own-vmid", "1105")
    assert applied.returncode == 6 and "200 nas (lxc)" in applied.stderr and "--running-guests stop" in applied.stderr
    assert sim.host.tool_calls("reboot") == [] and "Traceback" not in applied.stderr


def test_every_flag_says_what_it_is_and_its_default():
    from tools.hostprep import build_parser

    parser = build_parser()
    for action in parser._actions:
        if action.help in (None, "==SUPPRESS==") and action.dest != "root":
            pytest.fail(f"{action.option_strings or action.dest} has no help")
        if action.option_strings and action.dest not in ("help", "root"):
            assert "default" in action.help or "required" in action.help, f"{action.option_strings}: {action.help}"
            assert len(action.help.split()) >= 5, f"{action.option_strings}: {action.help}"
    text = parser.format_help()
    assert "Exit codes" in text and "6 a" in text


def _stack_file(sim, directory: Path, **host: object) -> None:
    import yaml

    from tests.conftest import HOMELAB_STACK

    document = yaml.safe_load(HOMELAB_STACK.read_text())
    config = document["config"]
    config["proxmox-talos-gpu:host"] = {"enabled": True, "address": "127.0.0.1", "port": sim.target.port, "user": sim.target.user,
                                        "hostKey": sim.target.host_key, **host}
    config["proxmox-talos-gpu:gpus"][0]["address"] = "3b:00.0"
    (directory / "Pulumi.sim.yaml").write_text(yaml.safe_dump(document))


def test_stack_file_gives_host_port_user_key_gpus_and_settings_and_flags_override(make_sim, tmp_path, monkeypatch, capsys):
    import tools.hostprep as hostprep_cli
    from tests.stand_ins.proxmox_host_spec import SimGuest

    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(1105, "moody-good"), SimGuest(101, "k8s-cp-1")]))
    _stack_file(sim, tmp_path, runningGuests="refuse", commandTimeoutSeconds=77)
    project = ["--project-dir", str(tmp_path)]
    identity = tmp_path / "id"
    identity.write_text(sim.target.private_key)
    assert hostprep_cli.main(["plan", "--stack", "sim", *project, "--identity", str(identity), "--root", sim.root, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["owner"] == "proxmox-talos-gpu/sim" and plan["drain_node"] == "moody-good"  # vm.name
    assert [g["vmid"] for g in plan["reboot_stops"] if g["own"]] == [1105]  # vm.vmId
    assert "101 k8s-cp-1 (qemu)" in plan["reboot_withheld"]
    args = hostprep_cli.build_parser().parse_args(["plan", "--stack", "sim", *project, "--identity", "x", "--running-guests", "stop", "--port", "1"])
    merged = hostprep_cli.settings(args)
    assert (merged["port"], merged["running_guests"], merged["command_timeout"], merged["host"]) == (1, "stop", 77, "127.0.0.1")
    assert hostprep_cli.main(["plan", "--stack", "sim", *project, "--identity", str(identity), "--root", sim.root, "--port", "1"]) == 3
    assert "127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "named"), [("config: [", "Pulumi.bad.yaml"), ("config:\n  proxmox-talos-gpu:vm: 3\n", "proxmox-talos-gpu:vm")])
def test_bad_stack_file_is_a_usage_error_naming_it(tmp_path, monkeypatch, capsys, content, named):
    import tools.hostprep as hostprep_cli

    (tmp_path / "Pulumi.bad.yaml").write_text(content)
    project = ["--project-dir", str(tmp_path)]
    assert hostprep_cli.main(["facts", "--stack", "bad", *project, "--identity", "x"]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert hostprep_cli.main(["facts", "--stack", "missing", *project, "--identity", "x"]) == 2
    err = capsys.readouterr().err
    assert "Pulumi.missing.yaml" in err and "no such file: copy Pulumi.homelab.yaml to Pulumi.missing.yaml" in err


def test_render_host_facts_plan_lists_the_guests_the_reboot_stops(make_sim, tmp_path, homelab):
    """`hostprep facts --json` > facts.json, then render --host-facts: host/plan.txt names them."""
    from components.config import parse_stack_config
    from components.hostprep.facts import facts_from_json
    from tests.stand_ins.proxmox_host_spec import SimGuest
    from tools.render import host_artifacts

    sim = make_sim(SimSpec(devices=t4(), guests=[SimGuest(1105, "moody-good"), SimGuest(101, "k8s-cp-1")]))
    facts = facts_from_json(json.loads(cli(sim, tmp_path, "facts", "--json").stdout))
    homelab["gpus"][0]["address"] = T4
    plan = host_artifacts(parse_stack_config(homelab), facts, owner="proxmox-talos-gpu/homelab")["host/plan.txt"]
    assert "1105 moody-good (qemu), onboot, this stack's VM" in plan and "101 k8s-cp-1 (qemu), onboot" in plan
    assert "reboot withheld (host.runningGuests: refuse)" in plan and "`qm shutdown 101`" in plan
