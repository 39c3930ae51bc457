"""`python -m components.render` at its edges: every --host-facts and --out
problem is one message and exit 2 with nothing written; a refused host plan
exits 1; the output folder holds only the latest render and a folder render
did not write is never emptied; the YAML reads well; the last line says what
to do next."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.config import load_stack_file
from components.hostprep.facts import facts_to_json
from tests.conftest import HOMELAB_STACK, ROOT
from tools.render import MARKER, assumed_host_facts, main

HOMELAB = HOMELAB_STACK


def render(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "components.render", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def in_process(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def facts_json() -> dict:
    return facts_to_json(assumed_host_facts(load_stack_file(HOMELAB)))


def test_rerender_leaves_no_stale_files_and_ends_with_what_to_do_next(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = in_process(capsys, "--out", str(out))
    assert code == 0 and (out / MARKER).is_file()
    (out / "kubernetes" / "helm-release-from-an-old-render.yaml").write_text("stale\n")
    (out / "old-folder").mkdir()
    code, stdout, err = in_process(capsys, "--out", str(out))
    assert code == 0
    assert not (out / "kubernetes" / "helm-release-from-an-old-render.yaml").exists() and not (out / "old-folder").exists()
    assert sorted(stdout.split()) == sorted(str(path) for path in out.rglob("*") if path.is_file() and path.name != MARKER)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"render: wrote {len(stdout.split())} files to {out}; next: read {out}/host/plan.txt") and "./setup.sh homelab preview" in last


def test_a_folder_render_did_not_write_is_refused_and_untouched(tmp_path, capsys):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine\n")
    code, stdout, err = in_process(capsys, "--out", str(precious))
    assert code == 2 and stdout == ""
    assert f"render: --out {precious} is not empty and is not a folder render wrote (no {MARKER} in it)" in err
    assert [p.name for p in precious.iterdir()] == ["keep.txt"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x\n")
    code, _, err = in_process(capsys, "--out", str(a_file))
    assert code == 2 and f"--out {a_file} is a file" in err and a_file.read_text() == "x\n"


def test_a_render_folder_from_before_the_marker_is_still_recognised(tmp_path, capsys):
    out = tmp_path / "render" / "homelab"
    (out / "kubernetes").mkdir(parents=True)
    (out / "graph.mmd").write_text("flowchart TD\n")
    (out / "kubernetes" / "helm-release.yaml").write_text("stale\n")
    assert in_process(capsys, "--out", str(out))[0] == 0
    assert (out / MARKER).is_file()


@pytest.mark.parametrize(("content", "expected"), [
    (None, "no such file; write it with `python -m components.hostprep facts --json ... >"),
    ("{not json", "not JSON (line 1, column 2: Expecting property name enclosed in double quotes)"),
    (json.dumps({"error": "root@pve5.lan:22: connection refused: nothing listens on port 22", "exit_code": 3}, indent=2),
     "holds the error of a failed `hostprep facts` run (exit code 3): root@pve5.lan:22: connection refused"),
    ("[]", "holds a JSON list, not the object `hostprep facts --json` writes"),
    ('{"cpu_vendor": "intel"}', "missing kernel_release, bootloader, cmdline, iommu_active, functions, files"),
    ("FUNCTIONS-A-LIST", "AttributeError"),
    ("\xff", "not UTF-8 JSON text"),
])
def test_each_host_facts_problem_is_one_message(tmp_path, capsys, facts_json, content, expected):
    path = tmp_path / "facts.json"
    if content == "FUNCTIONS-A-LIST":
        content = json.dumps({**facts_json, "functions": []})
    if content == "\xff":
        path.write_bytes(b"\xff\xfe{}")
    elif content is not None:
        path.write_text(content)
    code, stdout, err = in_process(capsys, "--stack", "homelab", "--out", str(tmp_path / "out"), "--host-facts", str(path))
    assert code == 2 and stdout == "", err
    assert err.startswith(f"render: --host-facts {path}") and expected in err, err
    assert not (tmp_path / "out").exists()


def test_a_refused_host_plan_exits_1_after_writing_the_plan(tmp_path, capsys, facts_json):
    shared = json.loads(json.dumps(facts_json))
    nic = {**shared["functions"]["0000:3b:00.0"], "address": "0000:3b:00.1", "vendor_device": "8086:1521",
           "class_code": "0x020000", "driver": "igb"}
    shared["devices"]["0000:3b:00.1"] = nic
    shared["functions"]["0000:3b:00.0"]["group_members"] = ["0000:3b:00.1"]
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(shared))
    code, _, err = in_process(capsys, "--out", str(tmp_path / "out"), "--host-facts", str(path))
    plan = (tmp_path / "out" / "host" / "plan.txt").read_text()
    assert "REFUSED" in plan, plan
    assert code == 1 and "render: the host plan is REFUSED (" in err and f"{tmp_path / 'out' / 'host' / 'plan.txt'}" in err


def test_host_facts_fill_the_mapping_and_vm_yaml_says_where_values_come_from(tmp_path, capsys, facts_json):
    code, _, _ = in_process(capsys, "--out", str(tmp_path / "assumed"))
    text = (tmp_path / "assumed" / "proxmox" / "vm.yaml").read_text()
    assert code == 0 and text.startswith("# iommu_group / subsystem_id null: not set in gpus[]; `pulumi up` takes them from the host's facts")
    assert yaml.safe_load(text)["pciMappings"][0]["maps"][0]["iommu_group"] is None
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts_json))
    code, _, _ = in_process(capsys, "--out", str(tmp_path / "real"), "--host-facts", str(path))
    text = (tmp_path / "real" / "proxmox" / "vm.yaml").read_text()
    entry = yaml.safe_load(text)["pciMappings"][0]["maps"][0]
    assert code == 0 and text.startswith("# iommu_group and subsystem_id: from --host-facts")
    assert entry["iommu_group"] == facts_json["functions"]["0000:3b:00.0"]["iommu_group"]


def test_embedded_documents_are_block_scalars(tmp_path, capsys):
    assert in_process(capsys, "--out", str(tmp_path))[0] == 0
    text = (tmp_path / "kubernetes" / "time-slicing-configmap.yaml").read_text()
    assert "  moody-good: |\n    version: v1\n" in text and "\\n" not in text
    embedded = yaml.safe_load(yaml.safe_load(text)["data"]["moody-good"])
    assert embedded["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]


def test_a_missing_stack_file_is_named_and_nothing_is_written(tmp_path):
    done = render("--out", str(tmp_path / "out"), "--stack", "nope", "--project-dir", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == ""
    assert f"in {tmp_path / 'Pulumi.nope.yaml'}" in done.stderr and "no such file" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_config_map_data_is_unchanged_by_the_block_style(tmp_path, capsys):
    from components import cluster

    cfg = load_stack_file(HOMELAB)
    assert in_process(capsys, "--out", str(tmp_path))[0] == 0
    data = yaml.safe_load((tmp_path / "kubernetes" / "time-slicing-configmap.yaml").read_text())["data"]
    assert data == {cfg.config_key: cluster.device_plugin_config_yaml(cfg)}


def test_host_facts_fill_the_mapping_of_a_whole_device_with_all_functions(tmp_path, capsys, facts_json):
    """With allFunctions the mapping's path is the device (0000:3b:00); the
    facts are keyed by the GPU function (0000:3b:00.0), as GpuVm reads them."""
    text = HOMELAB.read_text().replace('      subsystemId: "10de:12a2"\n', "      allFunctions: true\n")
    assert "allFunctions: true" in text
    (tmp_path / "Pulumi.whole.yaml").write_text(text)
    facts = json.loads(json.dumps(facts_json))
    facts["functions"]["0000:3b:00.0"].update(iommu_group=17, subsystem_id="10de:1234")
    facts["devices"]["0000:3b:00.0"].update(iommu_group=17, subsystem_id="10de:1234")
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts))
    code, _, err = in_process(capsys, "--project-dir", str(tmp_path), "--stack", "whole", "--out", str(tmp_path / "out"),
                              "--host-facts", str(path))
    assert code == 0, err
    entry = yaml.safe_load((tmp_path / "out" / "proxmox" / "vm.yaml").read_text())["pciMappings"][0]["maps"][0]
    assert (entry["path"], entry["iommu_group"], entry["subsystem_id"]) == ("0000:3b:00", 17, "10de:1234")
