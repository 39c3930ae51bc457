"""Engine pieces without a server: the reboot wait (fake clock) and the
write batch, run by a local sh against a file tree."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from components.hostprep import node_drain
from components.hostprep.connections import EngineOptions
from components.hostprep.engine import HostPrepEngine
from components.hostprep.errors import HostTimeoutError
from components.hostprep.facts import GRUB_DEFAULT, STATE_DIR, VFIO_FILE, Guest, HostFacts
from components.hostprep.inputs import GpuSpec, HostPrepInputs
from components.hostprep.node_drain import NodeDrain
from components.hostprep.plan_model import Command, FileChange, HostPlan, RebootImpact
from components.hostprep.reboot import HostReboot
from components.hostprep.scripts import batch_script, command_script
from components.ssh.errors import HostKeyError, TransportError
from tests.doctor.samples import node_json
from tests.stand_ins.clock import FakeClock

INPUTS = HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0"),))


def engine(connect, clock: FakeClock, progress: list[str], timeout: float = 30.0) -> HostPrepEngine:
    options = EngineOptions(reboot_timeout=timeout, poll_initial=0.25, poll_cap=2.0, sleep=clock.sleep, clock=clock.clock, progress=progress.append)
    return HostPrepEngine(connect, INPUTS, "p/s", options)


def test_reboot_wait_backs_off_capped_at_two_seconds_and_times_out_clearly():
    clock, progress = FakeClock(), []

    def refuse(timeout: float):
        clock.now += 0.01
        raise TransportError("root@pve5:22: cannot connect: [Errno 111] Connection refused")

    with pytest.raises(HostTimeoutError, match=r"did not come back within 30 s after the reboot \(last: cannot connect"):
        engine(refuse, clock, progress).reboot.wait_for_reboot("old")
    assert clock.sleeps[:5] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert max(clock.sleeps) == 2.0 and 29 <= clock.now <= 31
    assert progress and all("waiting for the host to come back" in line for line in progress)


def test_reboot_wait_refuses_a_changed_host_key_at_once():
    clock = FakeClock()

    def wrong_key(timeout: float):
        raise HostKeyError("host key not accepted")

    with pytest.raises(HostKeyError):
        engine(wrong_key, clock, []).reboot.wait_for_reboot("old")
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


# -- the waits after the reboot, on the fake clock ----------------------------


class FakeConnections:
    """Stands in for HostConnections where a test needs no host: records the scripts."""

    def __init__(self, options: EngineOptions):
        self.options = options
        self.scripts: list[str] = []

    def script(self, script: str, label: str, timeout: float = 60) -> str:
        self.scripts.append(label)
        return ""


def _node(ready: bool) -> dict:
    document = json.loads(node_json())
    for condition in document["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["status"] = "True" if ready else "False"
    return document


def _options(clock: FakeClock, progress: list[str], **changes) -> EngineOptions:
    return EngineOptions(poll_initial=0.25, poll_cap=2.0, guest_timeout=10.0, sleep=clock.sleep, clock=clock.clock,
                         progress=progress.append, **changes)


def test_the_node_is_uncordoned_once_ready_asking_with_a_capped_backoff(monkeypatch):
    clock, progress, uncordoned = FakeClock(), [], []
    answers = iter([None, _node(False), _node(False), _node(True)])
    monkeypatch.setattr(node_drain, "get_node", lambda node, **_: next(answers))
    monkeypatch.setattr(node_drain, "uncordon_node", lambda node, **_: uncordoned.append(node))
    connections = FakeConnections(_options(clock, progress))
    warnings = NodeDrain(connections, INPUTS).uncordon_when_ready("moody-good", deadline=10.0)  # type: ignore[arg-type]
    assert warnings == [] and uncordoned == ["moody-good"] and connections.scripts == ["forget that moody-good is cordoned"]
    assert clock.sleeps == [0.25, 0.5, 1.0]
    assert progress[:3] == ["waiting for node moody-good to be Ready (not in the cluster)",
                            "waiting for node moody-good to be Ready (not Ready)", "waiting for node moody-good to be Ready (not Ready)"]


def test_a_node_that_never_gets_ready_stays_cordoned_at_the_deadline(monkeypatch):
    clock, progress, uncordoned = FakeClock(), [], []
    monkeypatch.setattr(node_drain, "get_node", lambda node, **_: _node(False))
    monkeypatch.setattr(node_drain, "uncordon_node", lambda node, **_: uncordoned.append(node))
    connections = FakeConnections(_options(clock, progress))
    warnings = NodeDrain(connections, INPUTS).uncordon_when_ready("moody-good", deadline=10.0)  # type: ignore[arg-type]
    assert clock.now == 10.0 and max(clock.sleeps) == 2.0, clock.sleeps
    assert uncordoned == [] and connections.scripts == []
    assert len(warnings) == 1 and "moody-good is not Ready 10 s after the host came back (not Ready), so it stays cordoned" in warnings[0]


def test_a_deadline_already_passed_asks_once(monkeypatch):
    clock, asked = FakeClock(), []
    monkeypatch.setattr(node_drain, "get_node", lambda node, **_: asked.append(node) or _node(False))
    warnings = NodeDrain(FakeConnections(_options(clock, [])), INPUTS).uncordon_when_ready("moody-good", deadline=0.0)  # type: ignore[arg-type]
    assert asked == ["moody-good"] and clock.sleeps == [] and "stays cordoned" in warnings[0]


def test_guests_that_do_not_come_back_are_named_once_the_guest_timeout_passes(monkeypatch):
    clock, progress = FakeClock(), []
    web = Guest(101, "web", "qemu", "running", onboot=True)
    db = Guest(102, "db", "qemu", "running", onboot=True)
    reboot = HostReboot(FakeConnections(_options(clock, progress)), INPUTS)  # type: ignore[arg-type]
    reads = iter([(dataclasses.replace(web, status="stopped"), dataclasses.replace(db, status="stopped")),
                  None,  # the read failed: the last answer stands
                  (web, dataclasses.replace(db, status="stopped"))])
    monkeypatch.setattr(reboot, "_read_guests_now", lambda: next(reads, (web, dataclasses.replace(db, status="stopped"))))
    facts = facts_for_guests()
    warnings = reboot._after_boot(RebootImpact(guests_known=True, stops=(web, db)), None, facts)
    assert clock.now == 10.0 and clock.sleeps[:4] == [0.25, 0.5, 1.0, 2.0]
    assert len(warnings) == 1 and warnings[0].startswith(f"{db.label} was running before the reboot and has onboot=1, but is not running 10 s")
    assert progress[0] == f"waiting for guests to start again (onboot=1, or HA): {web.label}, {db.label}"
    assert progress[2] == f"waiting for guests to start again (onboot=1, or HA): {db.label}"


def facts_for_guests() -> HostFacts:
    return HostFacts(cpu_vendor="amd", kernel_release="6.8.12-4-pve", bootloader="grub-uefi", cmdline="", iommu_active=True,
                     functions={}, files={}, boot_id="new")
