"""`python -m components.vm` as a user runs it: a project folder with the
stack file, the token in the environment, the stand-in Proxmox API and
kubectl; exit codes 0/1/2/3, one line per error, JSON in every case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.vm.conftest import MOODY_GOOD, TOKEN


def _project(tmp_path: Path, endpoint: str, **vm: Any) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.homelab.yaml").read_text())
    config = document["config"]
    config["proxmox-talos-gpu:proxmox"].update(endpoint=endpoint, insecure=True)
    config["proxmox-talos-gpu:vm"].update(vm)
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "Pulumi.homelab.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return project


def _cli(project: Path, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXMOX_VE_")}
    if token is not None:
        env["PROXMOX_VE_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "components.vm", *args, "--stack", "homelab", "--project-dir", str(project)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if not line.startswith("... ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_plan_only_reads_and_shows_the_owned_keys_diff(pve, tmp_path) -> None:
    sim, server = pve
    done = _cli(_project(tmp_path, server.endpoint), "plan")
    assert done.returncode == 0, done.stderr
    assert "-   balloon: 16384\n+   balloon: 0" in done.stdout and "+   hostpci0: mapping=moody-good-gpu0,pcie=1" in done.stdout, done.stdout
    assert "scsi1" not in done.stdout and sim.vms[1105].raw == MOODY_GOOD
    assert {method for method, _ in sim.requests} == {"GET"}, "plan never writes"


def test_apply_then_undo_exit_zero_with_json_and_restore_the_file(pve, kube, tmp_path) -> None:
    sim, server = pve
    project = _project(tmp_path, server.endpoint, restartTimeoutSeconds=120)
    done = _cli(project, "apply", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["wrote"] and out["restarted"] and out["pending"] == [] and sim.vms[1105].starts == 1, out
    record = project / "state" / "vm-homelab.json"
    assert oct(record.stat().st_mode & 0o777) == "0o600" and json.loads(record.read_text())["previous"]["balloon"] == "16384"
    again = json.loads(_cli(project, "apply", "--json").stdout)
    assert not again["wrote"] and not again["restarted"], again
    undone = _cli(project, "undo", "--json")
    assert undone.returncode == 0 and json.loads(undone.stdout)["restarted"], undone.stderr
    assert sim.vms[1105].raw == MOODY_GOOD and not record.exists()


def test_no_restart_writes_and_says_the_change_is_pending(pve, kube, tmp_path) -> None:
    sim, server = pve
    done = _cli(_project(tmp_path, server.endpoint), "apply", "--no-restart")
    assert done.returncode == 0, done.stderr
    assert "pending until the next cold start: balloon, hostpci0" in done.stdout and sim.vms[1105].starts == 0 and kube.verbs() == []


def test_a_refusal_exits_1_with_one_line_and_json_error(pve, tmp_path) -> None:
    sim, server = pve
    sim.edit(1105, hostpci0="0000:af:00.0,pcie=1")
    project = _project(tmp_path, server.endpoint)
    assert "gpus[0].slot = 'hostpci0'" in _one_error_line(_cli(project, "apply"))
    done = _cli(project, "apply", "--json")
    out = json.loads(done.stdout)
    assert done.returncode == 1 and out["exit_code"] == 1 and out["error"].startswith("gpus[0].slot = 'hostpci0'"), out
    planned = _cli(project, "plan", "--json")
    assert planned.returncode == 1 and json.loads(planned.stdout)["exit_code"] == 1
    assert sim.writes == []


@pytest.mark.parametrize(("vm", "token", "code", "words"), [
    ({"source": "exsiting"}, TOKEN, 2, "vm.source"),
    ({"source": "create", "disks": [{"datastoreId": "disk3", "sizeGiB": 450}], "disk": None}, TOKEN, 2, "vm.source: existing"),
    ({}, None, 2, "PROXMOX_VE_API_TOKEN is not set"),
    ({}, "root@pam!pulumi=wrong", 3, "refused the credentials"),
    ({}, "not-a-token", 3, "user@realm!tokenid=secret"),
], ids=["bad-stack-key", "create-mode", "no-token", "wrong-token", "malformed-token"])
def test_usage_and_credential_errors_have_their_exit_codes(pve, tmp_path, vm, token, code, words) -> None:
    _, server = pve
    project = _project(tmp_path, server.endpoint, **vm)
    if vm.get("disk", 1) is None:
        document = yaml.safe_load((project / "Pulumi.homelab.yaml").read_text())
        document["config"]["proxmox-talos-gpu:vm"].pop("disk")
        (project / "Pulumi.homelab.yaml").write_text(yaml.safe_dump(document))
    done = _cli(project, "plan", token=token)
    assert done.returncode == code and words in _one_error_line(done), done.stderr
    as_json = json.loads(_cli(project, "plan", "--json", token=token).stdout)
    assert as_json["exit_code"] == code and words in as_json["error"]
    assert "wrong" not in done.stderr


def test_an_unreachable_endpoint_exits_3(tmp_path) -> None:
    done = _cli(_project(tmp_path, "https://127.0.0.1:9/"), "plan")
    assert done.returncode == 3 and "cannot reach Proxmox at https://127.0.0.1:9/" in _one_error_line(done)


def test_help_loads_neither_the_config_nor_the_http_client():
    """`--help` needs the parser only: the config (pydantic), requests and
    proxmoxer load when a verb reads a stack file or calls Proxmox."""
    code = ("import runpy, sys\n"
            "sys.argv = ['components.vm', '--help']\n"
            "try:\n"
            "    runpy.run_module('components.vm', run_name='__main__', alter_sys=True)\n"
            "except SystemExit:\n"
            "    pass\n"
            "heavy = ('components.config', 'pydantic', 'requests', 'proxmoxer', 'pulumi')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy[0])))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert "usage:" in done.stdout and done.stdout.strip().splitlines()[-1] == "[]", done.stdout
