"""components/ssh/transport.py: a command's time limit, its start marker and
its progress lines, on an injected clock (a scripted channel whose output
appears at given times), so no test waits for real time or depends on how
fast the machine is."""

from __future__ import annotations

import pytest

from components.ssh.connect import SshTarget
from components.ssh.errors import CommandTimeoutError
from components.ssh.transport import SshTransport

TARGET = SshTarget("pve5", 22, "root", "not-a-key", "SHA256:x")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.idles: list[float] = []

    def __call__(self) -> float:
        return self.now

    def idle(self, _channel: object, seconds: float) -> None:
        self.idles.append(seconds)
        self.now += seconds


class ScriptedChannel:
    """What the command prints, and when (seconds on the clock); ``exit_at`` None: it never ends."""

    def __init__(self, clock: Clock, out: list[tuple[float, bytes]], err: list[tuple[float, bytes]] = (), exit_at: float | None = None,
                 rc: int = 0):
        self.clock, self.out, self.err, self.exit_at, self.rc = clock, list(out), list(err), exit_at, rc
        self.closed = False

    def _due(self, items: list[tuple[float, bytes]]) -> bool:
        return bool(items) and items[0][0] <= self.clock.now

    def exec_command(self, command: str) -> None: ...
    def sendall(self, data: bytes) -> None: ...
    def shutdown_write(self) -> None: ...
    def recv_ready(self) -> bool: return self._due(self.out)
    def recv_stderr_ready(self) -> bool: return self._due(self.err)
    def recv(self, _n: int) -> bytes: return self.out.pop(0)[1]
    def recv_stderr(self, _n: int) -> bytes: return self.err.pop(0)[1]
    def exit_status_ready(self) -> bool: return self.exit_at is not None and self.exit_at <= self.clock.now
    def recv_exit_status(self) -> int: return self.rc
    def close(self) -> None: self.closed = True

    @property
    def eof_received(self) -> bool:
        return self.exit_status_ready()


class FakeTransport:
    def __init__(self, channel: ScriptedChannel) -> None:
        self.channel = channel

    def open_session(self, timeout: float | None = None) -> ScriptedChannel: return self.channel
    def is_active(self) -> bool: return True
    def close(self) -> None: ...


def transport(clock: Clock, channel: ScriptedChannel) -> SshTransport:
    return SshTransport(TARGET, FakeTransport(channel), command_timeout=900, clock=clock, idle=clock.idle)  # type: ignore[arg-type]


def test_a_command_that_never_ends_stops_at_its_limit_with_progress_on_the_way():
    clock, progress = Clock(), []
    channel = ScriptedChannel(clock, out=[(3.0, b"building initramfs\n")])
    with pytest.raises(CommandTimeoutError, match=r"`update-initramfs -u -k all` did not finish within 30 s") as error:
        transport(clock, channel).run("update-initramfs -u -k all", timeout=30, progress=progress.append, progress_every=10)
    assert error.value.elapsed == 30 and clock.now == 30 and channel.closed
    assert error.value.stdout == "building initramfs\n"
    assert progress == ["`update-initramfs -u -k all` still running: 10 s of at most 30 s",
                        "`update-initramfs -u -k all` still running: 20 s of at most 30 s"]
    assert max(clock.idles) <= 1.0, "between reads it waits at most a second for output"


def test_a_command_that_ends_in_time_returns_its_output_and_status():
    clock = Clock()
    channel = ScriptedChannel(clock, out=[(1.0, b"a\n"), (2.0, b"b\n")], err=[(2.5, b"warn\n")], exit_at=4.0, rc=3)
    result = transport(clock, channel).run("sh -s", timeout=30)
    assert (result.rc, result.stdout, result.stderr) == (3, "a\nb\n", "warn\n")
    assert clock.now == 4.0


def test_the_limit_counts_from_the_start_marker():
    clock = Clock()
    channel = ScriptedChannel(clock, out=[(0.0, b"waiting for the host lock\n"), (50.0, b"ptg-started\n")], exit_at=75.0)
    result = transport(clock, channel).run("sh -s", timeout=30, start_marker=b"ptg-started", wait_for_start=100)
    assert result.ok and clock.now == 75.0 and "ptg-started" in result.stdout


def test_after_the_start_marker_the_limit_still_holds():
    clock = Clock()
    channel = ScriptedChannel(clock, out=[(50.0, b"ptg-started\n")], exit_at=90.0)
    with pytest.raises(CommandTimeoutError, match="did not finish within 30 s") as error:
        transport(clock, channel).run("sh -s", timeout=30, start_marker=b"ptg-started", wait_for_start=100)
    assert error.value.elapsed == 30 and clock.now == 80.0


def test_a_start_marker_that_never_comes_is_bounded_by_wait_for_start():
    clock = Clock()
    channel = ScriptedChannel(clock, out=[(0.0, b"waiting for the host lock\n")])
    with pytest.raises(CommandTimeoutError, match="did not start within 40 s") as error:
        transport(clock, channel).run("sh -s", timeout=30, start_marker=b"ptg-started", wait_for_start=40)
    assert clock.now == 40 and error.value.stdout == "waiting for the host lock\n" and channel.closed
