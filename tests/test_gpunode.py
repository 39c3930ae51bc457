"""The gpunode command: one entry point for every tool, with each tool's own
flags, help and exit codes, and plain-text help everywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from components import cli
from tests.conftest import HOMELAB_STACK, ROOT
from tools.gpunode import COMMANDS, dispatch

# Every tool and sub-command whose --help a user may ask for.
HELPS = [["render"], ["doctor"], ["stacks"], ["stacks", "check"], ["stacks", "which"], ["hostprep"], ["vm"], ["talos"],
         ["talos", "schematic-id"], ["talos", "schematic"], ["talos", "patch"], ["talos", "config"], ["talos", "upgrade-plan"]]


@pytest.fixture(autouse=True)
def _plain_invocation(monkeypatch):
    monkeypatch.setattr(cli, "INVOKED_AS", "")


def test_the_command_list_names_every_tool(capsys):
    assert dispatch(["--help"]) == 0
    text = capsys.readouterr().out
    for name in ("render", "stacks", "doctor", "hostprep", "talos", "vm"):
        assert f"\n  {name} " in text, name
    assert set(COMMANDS) == {"render", "stacks", "doctor", "hostprep", "talos", "vm"}
    assert "`" not in text


def test_no_command_prints_the_list_and_exits_2(capsys):
    assert dispatch([]) == 2
    assert "usage: gpunode COMMAND" in capsys.readouterr().err


def test_an_unknown_command_names_the_commands_and_exits_2(capsys):
    assert dispatch(["rendr", "--stack", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpunode: 'rendr' is not a command; the commands are render, stacks,") and "Traceback" not in err


@pytest.mark.parametrize("argv", HELPS, ids=" ".join)
def test_each_tools_help_names_gpunode_and_is_plain_text(argv, capsys):
    assert dispatch([*argv, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: gpunode {' '.join(argv)}"), text[:80]
    assert "`" not in text, [line for line in text.splitlines() if "`" in line]


@pytest.mark.parametrize("argv", HELPS, ids=" ".join)
def test_the_python_m_forms_are_plain_text_too(argv):
    module = {"doctor": "components.doctor", "hostprep": "components.hostprep", "talos": "components.talos", "vm": "components.vm"}.get(
        argv[0], f"components.{argv[0]}")
    done = subprocess.run([sys.executable, "-m", module, *argv[1:], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m components.{argv[0]}") and "`" not in done.stdout


def test_help_is_the_sub_commands_help(capsys):
    assert dispatch(["help", "render"]) == 0
    assert capsys.readouterr().out.startswith("usage: gpunode render")


def test_exit_codes_are_the_tools_own(tmp_path, capsys):
    """A usage error is argparse's 2; a stack that cannot be chosen is the
    tool's 2; a printed answer is 0."""
    assert dispatch(["render", "--no-such-flag"]) == 2
    assert dispatch(["stacks", "which", "--project-dir", str(tmp_path)]) == 2
    assert "no Pulumi.<stack>.yaml in" in capsys.readouterr().err
    (tmp_path / HOMELAB_STACK.name).write_text(HOMELAB_STACK.read_text())
    assert dispatch(["stacks", "which", "--project-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "homelab\n"
    assert dispatch(["stacks", "check", "--project-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"stacks": ["homelab"], "conflicts": [], "unreadable": []}
    assert dispatch(["talos", "schematic", "--stack", str(tmp_path / HOMELAB_STACK.name), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["installer"].endswith(f"/{printed['id']}:v1.13.9") and printed["schematic"].startswith("customization:")


def test_gpunode_runs_from_another_folder(tmp_path):
    """As the console script does: python -c 'components.gpunode.main()' with
    the cwd elsewhere and the project on the path only through the install
    (here: PYTHONPATH)."""
    (tmp_path / HOMELAB_STACK.name).write_text(HOMELAB_STACK.read_text())
    done = subprocess.run([sys.executable, "-c", "import sys; from components.gpunode import main; sys.exit(main())",
                           "stacks", "check", "--project-dir", "."], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("1 stack(s) checked (homelab), 0 conflict(s), 0 unreadable file(s)\n")
