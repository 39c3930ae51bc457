"""setup.sh and Pulumi.yaml in a fresh clone: the state backend is named by
the project (so every README `pulumi` command in a fresh shell finds it),
the state folder exists, and a failed Pulumi CLI download says how to
install it by hand and that render works without it. Run in a copy of the
project in a temporary folder, never in the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import HOMELAB_STACK, ROOT
from tests.private_venv import private_venv


def project_copy(tmp_path: Path) -> Path:
    """The files setup.sh uses, copied; .venv is a private one that sees this
    checkout's packages (setup.sh installs the copy into it, editable)."""
    copy = tmp_path / "clone"
    copy.mkdir()
    for name in ("setup.sh", "requirements.txt", "Pulumi.yaml", "__main__.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, copy / name)
    shutil.copy2(HOMELAB_STACK, copy / HOMELAB_STACK.name)  # the tests' copy: the checkout's stack files are the user's
    for package in ("components", "tools"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    private_venv(copy / ".venv")
    return copy


def test_pulumi_yaml_names_the_local_state_backend_and_git_keeps_its_folder():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["backend"] == {"url": "file://./state"}
    tracked = subprocess.run(["git", "ls-files", "state"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert tracked == ["state/.gitignore"]
    ignored = subprocess.run(["git", "check-ignore", "-q", "state/.pulumi/stacks/proxmox-talos-gpu/homelab.json"], cwd=ROOT)
    assert ignored.returncode == 0, "Pulumi's state files must never be committed"


def test_a_failed_cli_download_says_how_to_install_by_hand_and_that_render_works(tmp_path):
    copy = project_copy(tmp_path)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    curl = fake_bin / "curl"
    curl.write_text("#!/bin/sh\necho 'curl: (6) Could not resolve host: get.pulumi.com' >&2\nexit 6\n")
    curl.chmod(0o755)
    path = os.pathsep.join([str(fake_bin)] + [part for part in os.environ.get("PATH", "").split(os.pathsep) if "pulumi" not in part])
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PULUMI_", "PROXMOX_", "KUBECONFIG", "TALOSCONFIG"))}
    env.update(PATH=path, HOME=str(tmp_path / "home"))
    done = subprocess.run(["bash", "setup.sh", "homelab"], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "setup.sh: could not install the Pulumi CLI" in done.stderr
    assert "Install it by hand" in done.stderr and "https://github.com/pulumi/pulumi/releases" in done.stderr
    assert "Without the CLI, render works: render/homelab/ already holds everything" in done.stderr
    assert (copy / "render" / "homelab" / "graph.mmd").is_file()
    assert "Traceback" not in done.stderr
