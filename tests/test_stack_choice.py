"""No silent default stack: every tool, and setup.sh, takes the stack named
with --stack (a name or a Pulumi.<name>.yaml path), or the folder's only
stack file (and says so), and with several stack files asks for --stack,
listing them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.cli import StackChoiceError, choose_stack
from tests.conftest import HOMELAB_STACK
from tests.test_setup import project_copy


def folder(tmp_path: Path, *names: str) -> Path:
    for name in names:
        shutil.copy2(HOMELAB_STACK, tmp_path / f"Pulumi.{name}.yaml")
    (tmp_path / "Pulumi.yaml").write_text("name: proxmox-talos-gpu\nruntime: python\n")  # the project file is not a stack
    return tmp_path


def test_the_only_stack_file_is_used_and_named(tmp_path: Path) -> None:
    stack = choose_stack(folder(tmp_path, "mynode"), None)
    assert (stack.name, stack.path) == ("mynode", tmp_path / "Pulumi.mynode.yaml")
    assert stack.chosen.startswith("using stack mynode (") and "the only stack file in" in stack.chosen


def test_several_stack_files_need_stack_and_the_message_lists_them(tmp_path: Path) -> None:
    with pytest.raises(StackChoiceError) as error:
        choose_stack(folder(tmp_path, "homelab", "mynode"), None)
    assert str(error.value).startswith("--stack is required:") and "2 stack files (homelab, mynode)" in str(error.value)


def test_no_stack_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StackChoiceError, match="no Pulumi.<stack>.yaml in .*copy Pulumi.homelab.yaml"):
        choose_stack(folder(tmp_path), None)


def test_a_path_given_to_stack_is_understood(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = folder(tmp_path, "homelab", "mynode")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert choose_stack(elsewhere, str(project / "Pulumi.mynode.yaml")).path == project / "Pulumi.mynode.yaml"
    assert choose_stack(elsewhere, str(project / "Pulumi.mynode.yaml")).name == "mynode"
    monkeypatch.chdir(elsewhere)
    assert choose_stack(project, "Pulumi.mynode.yaml").path == project / "Pulumi.mynode.yaml"  # never Pulumi.Pulumi.mynode.yaml.yaml
    monkeypatch.chdir(project)
    assert choose_stack(elsewhere, "./Pulumi.homelab.yaml").path == Path("./Pulumi.homelab.yaml")
    with pytest.raises(StackChoiceError, match="a stack file is named Pulumi.<stack>.yaml"):
        choose_stack(project, "mynode.yaml")
    with pytest.raises(StackChoiceError, match="not a stack name"):
        choose_stack(project, "my node")


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=120, check=False,
                          cwd=cwd or Path(__file__).resolve().parents[1])


TOOLS = {
    "render": ["components.render", "--out", "{out}"],
    "doctor": ["components.doctor", "--layer", "talos"],
    "talos schematic": ["components.talos", "schematic"],
    "talos patch": ["components.talos", "patch"],
    "talos config": ["components.talos", "config", "--running", "{out}", "--diff"],
    "talos upgrade-plan": ["components.talos", "upgrade-plan", "--running-version", "v1.13.9"],
    "stacks which": ["components.stacks", "which"],
    "hostprep plan offline": ["components.hostprep", "plan", "--offline"],
    "vm plan": ["components.vm", "plan"],
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_asks_for_stack_when_the_folder_holds_several(tmp_path: Path, tool: str) -> None:
    project = tmp_path / "p"
    project.mkdir()
    folder(project, "homelab", "mynode")
    argv = [part.format(out=tmp_path / "out") for part in TOOLS[tool]]
    done = run(*argv, "--project-dir", str(project))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--stack is required" in done.stderr and "(homelab, mynode)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tool", ["render", "talos schematic", "talos patch", "talos upgrade-plan", "stacks which", "hostprep plan offline"])
def test_every_tool_uses_the_only_stack_file_and_says_so(tmp_path: Path, tool: str) -> None:
    project = tmp_path / "p"
    project.mkdir()
    folder(project, "mynode")
    argv = [part.format(out=tmp_path / "out") for part in TOOLS[tool]]
    done = run(*argv, "--project-dir", str(project))
    assert done.returncode == 0, done.stderr
    assert "using stack mynode (" in done.stderr.splitlines()[0], done.stderr


def test_the_positional_stack_of_schematic_and_a_stack_path_agree(tmp_path: Path) -> None:
    project = folder(tmp_path, "homelab", "mynode")
    by_name = run("components.talos", "schematic", "mynode", "--project-dir", str(project))
    by_path = run("components.talos", "schematic", "--stack", str(project / "Pulumi.mynode.yaml"))
    assert by_name.returncode == by_path.returncode == 0, by_name.stderr + by_path.stderr
    assert by_name.stdout == by_path.stdout and "# installer: factory.talos.dev/" in by_name.stdout
    both = run("components.talos", "schematic", "homelab", "--stack", "mynode", "--project-dir", str(project))
    assert both.returncode == 2 and "two stacks given" in both.stderr


def setup_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PULUMI_", "PROXMOX_", "KUBECONFIG", "TALOSCONFIG", "PTG_"))}
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if "pulumi" not in part)
    env["HOME"] = str(tmp_path / "home")
    return env


def test_setup_help_prints_the_usage_and_looks_for_no_stack(tmp_path: Path) -> None:
    copy = project_copy(tmp_path)
    done = subprocess.run(["bash", "setup.sh", "--help"], cwd=copy, env=setup_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: ./setup.sh [STACK] [render|preview|up]"), done.stderr
    assert "Pulumi.--help.yaml" not in done.stdout + done.stderr
    assert not (copy / "render").exists()


def test_setup_with_two_stacks_and_none_named_lists_them_and_renders_nothing(tmp_path: Path) -> None:
    copy = project_copy(tmp_path)
    shutil.copy2(HOMELAB_STACK, copy / "Pulumi.mynode.yaml")
    done = subprocess.run(["bash", "setup.sh", "render"], cwd=copy, env=setup_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--stack is required" in done.stderr and "(homelab, mynode)" in done.stderr
    assert not (copy / "render").exists()


def test_setup_render_takes_the_only_stack_file_or_a_path(tmp_path: Path) -> None:
    copy = project_copy(tmp_path)
    (copy / "Pulumi.homelab.yaml").rename(copy / "Pulumi.mynode.yaml")
    done = subprocess.run(["bash", "setup.sh", "render"], cwd=copy, env=setup_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "using stack mynode" in done.stderr and (copy / "render" / "mynode" / "graph.mmd").is_file()
    done = subprocess.run(["bash", "setup.sh", "./Pulumi.mynode.yaml", "render"], cwd=copy, env=setup_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "using stack" not in done.stderr
