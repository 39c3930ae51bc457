"""The README's commands, verbatim, in a fresh copy of the repository with a
second stack file added (the README's minimal stack, as its step 1 says):
no network, no Pulumi CLI, no credentials. The copy gets its own .venv
(tests/private_venv.py) that sees this interpreter's packages, so setup.sh
installs gpunode there, and the checkout and the shared .venv stay as they were."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import HOMELAB_STACK, ROOT
from tests.private_venv import private_venv

README = (ROOT / "README.md").read_text()
# Commands of the README not run here, and why.
NOT_RUN = {"./test.sh": "the test suite itself"}


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def commands(title: str) -> list[str]:
    """The lines of the section's ```bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", section(title), re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def fresh_copy(tmp_path: Path) -> Path:
    """The files git would clone (tracked, plus new ones not ignored), copied."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    copy = tmp_path / "clone"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not name.startswith("Pulumi.") or name == "Pulumi.yaml":
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    shutil.copy2(HOMELAB_STACK, copy / HOMELAB_STACK.name)  # the clone's reference stack: the tests' copy of it
    private_venv(copy / ".venv")
    return copy


def test_the_readmes_commands_run_verbatim_in_a_fresh_clone_with_a_second_stack(tmp_path):
    copy = fresh_copy(tmp_path)
    minimal = section("A minimal stack for a new node").split("```yaml\n", 1)[1].split("```", 1)[0]
    saved_as = re.search(r"Saved as `(Pulumi\.[\w-]+\.yaml)`", section("A minimal stack for a new node")).group(1)
    (copy / saved_as).write_text(minimal)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PULUMI_", "PROXMOX_", "KUBECONFIG", "TALOSCONFIG", "PTG_"))}
    env.update(PATH=os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if "pulumi" not in part),
               HOME=str(tmp_path / "home"))
    ran = []
    for title in ("Quick start", "A minimal stack for a new node"):
        for line in commands(title):
            command = line.split("  #", 1)[0].strip()
            if command in NOT_RUN:
                continue
            done = subprocess.run(["bash", "-c", command], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            assert "Traceback" not in done.stderr, command
            ran.append((command, done.stdout))
    assert [command for command, _ in ran][:3] == ["./setup.sh homelab render", ".venv/bin/gpunode stacks check", ".venv/bin/gpunode --help"]
    outputs = dict(ran)
    assert outputs[".venv/bin/gpunode stacks check"].endswith("2 stack(s) checked (gpu-node, homelab), 0 conflict(s), 0 unreadable file(s)\n")
    plan = next(out for command, out in ran if command.startswith(".venv/bin/gpunode hostprep plan"))
    assert plan.startswith("Planned for an ASSUMED host (not read from yours): CPU amd (--cpu-vendor); bootloader systemd-boot")
    assert "bind 10de:228e,10de:2504 to vfio-pci" in plan and "/etc/kernel/cmdline" in plan
    assert (copy / "render" / "homelab" / "graph.mmd").is_file() and (copy / "render" / "gpu-node" / "host" / "plan.txt").is_file()

    # The installed command works from any folder, on the clone's stacks.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([str(copy / ".venv" / "bin" / "gpunode"), "stacks", "which", "--stack", "gpu-node"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "gpu-node\n"), done.stderr
    done = subprocess.run([str(copy / ".venv" / "bin" / "gpunode"), "render"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--stack is required: " in done.stderr and "(gpu-node, homelab)" in done.stderr
