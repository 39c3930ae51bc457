"""Engine pieces without a server: the reboot wait (fake clock) and the
write batch, run by a local sh against a file tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.hostprep.engine import EngineOptions, HostPrepEngine, HostTimeoutError, batch_script, command_script
from components.hostprep.facts import GRUB_DEFAULT, STATE_DIR, VFIO_FILE, HostFacts
from components.hostprep.inputs import GpuSpec, HostPrepInputs
from components.hostprep.plan_model import Command, FileChange, HostPlan
from components.hostprep.transport import HostKeyError, TransportError

INPUTS = HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0"),))


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def engine(connect, clock: FakeClock, progress: list[str], timeout: float = 30.0) -> HostPrepEngine:
    options = EngineOptions(reboot_timeout=timeout, poll_initial=0.25, poll_cap=2.0, sleep=clock.sleep, clock=clock.clock, progress=progress.append)
    return HostPrepEngine(connect, INPUTS, "p/s", options)


def test_reboot_wait_backs_off_capped_at_two_seconds_and_times_out_clearly():
    clock, progress = FakeClock(), []

    def refuse(timeout: float):
        clock.now += 0.01
        raise TransportError("root@pve5:22: cannot connect: [Errno 111] Connection refused")

    with pytest.raises(HostTimeoutError, match=r"did not come back within 30 s after the reboot \(last: cannot connect"):
        engine(refuse, clock, progress).wait_for_reboot("old")
    assert clock.sleeps[:5] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert max(clock.sleeps) == 2.0 and 29 <= clock.now <= 31
    assert progress and all("waiting for the host to come back" in line for line in progress)


def test_reboot_wait_refuses_a_changed_host_key_at_once():
    clock = FakeClock()

    def wrong_key(timeout: float):
        raise HostKeyError("host key not accepted")

    with pytest.raises(HostKeyError):
        engine(wrong_key, clock, []).wait_for_reboot("old")
    assert clock.sleeps == []


def facts_for(root: Path, files: dict[str, str | None]) -> HostFacts:
    return HostFacts("intel", "6.5.13-5-pve", "grub-bios", "quiet", False, {}, files, boot_id="b")


def run_sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True)


def test_batch_writes_files_saves_originals_and_marks_commands_pending(tmp_path):
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/grub").write_bytes(b'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n')
    files = {GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', VFIO_FILE: None}
    plan = HostPlan(owner="p/s", files=(
        FileChange(GRUB_DEFAULT, files[GRUB_DEFAULT], 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n', "r"),
        FileChange(VFIO_FILE, None, "options vfio-pci ids=10de:1eb8\n", "r")),
        commands=(Command("update-initramfs", "r"), Command("update-grub", "r")))
    result = run_sh(batch_script(plan, facts_for(tmp_path, files), root=str(tmp_path), token="t1", lock_timeout=5))
    assert result.returncode == 0, result.stderr
    state = tmp_path / STATE_DIR.lstrip("/")
    assert (tmp_path / "etc/default/grub").read_text() == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n'
    assert (tmp_path / VFIO_FILE.lstrip("/")).read_text() == "options vfio-pci ids=10de:1eb8\n"
    assert (state / "originals/etc/default/grub").read_text() == 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    assert (state / f"originals{VFIO_FILE}.absent").exists()
    assert sorted(p.name for p in (state / "pending").iterdir()) == ["update-grub", "update-initramfs"]
    assert not list(tmp_path.rglob("*.ptg-tmp-*"))
    # A command clears its own pending mark only when it succeeds.
    assert run_sh(command_script("update-grub", ("false",), root=str(tmp_path), lock_timeout=5)).returncode == 1
    assert (state / "pending/update-grub").exists()
    assert run_sh(command_script("update-grub", ("true",), root=str(tmp_path), lock_timeout=5)).returncode == 0
    assert not (state / "pending/update-grub").exists()


def test_batch_writes_nothing_when_a_file_changed_since_the_facts(tmp_path):
    (tmp_path / "etc/default").mkdir(parents=True)
    (tmp_path / "etc/default/grub").write_text("changed by someone else\n")
    files = {GRUB_DEFAULT: 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', VFIO_FILE: None}
    plan = HostPlan(owner="p/s", files=(
        FileChange(VFIO_FILE, None, "options vfio-pci ids=10de:1eb8\n", "r"),
        FileChange(GRUB_DEFAULT, files[GRUB_DEFAULT], "new\n", "r")), commands=(Command("update-grub", "r"),))
    result = run_sh(batch_script(plan, facts_for(tmp_path, files), root=str(tmp_path), token="t1", lock_timeout=5))
    assert result.returncode == 76 and "changed since the facts were read" in result.stderr
    assert not (tmp_path / VFIO_FILE.lstrip("/")).exists()
    assert (tmp_path / "etc/default/grub").read_text() == "changed by someone else\n"
    assert not list((tmp_path / STATE_DIR.lstrip("/") / "pending").iterdir())
