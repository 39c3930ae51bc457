"""One SSH connection that runs commands: each bounded in time (on an
injected clock), its output collected, secrets masked in every log line;
round trips are counted for the benchmark and the tests.

Nothing here decides anything about the host: callers build the commands.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from components.masking import mask
from components.ssh.atomic import atomic_write_snippet
from components.ssh.connect import SshTarget, open_transport
from components.ssh.errors import CommandTimeoutError, TransportError
from components.wait import wait_until

log = logging.getLogger(__name__)

Idle = Callable[[paramiko.Channel, float], None]  # wait at most that long for the channel to have something


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


def until_readable(channel: paramiko.Channel, seconds: float) -> None:
    """Block until the channel has output, EOF or its close, at most ``seconds``."""
    select.select([channel], [], [], seconds)


class SshTransport:
    """One SSH connection. ``round_trips`` counts commands run over it.
    ``clock`` bounds each command; ``idle`` is how it waits for output in
    between (tests give both a fake that advances the clock)."""

    def __init__(self, target: SshTarget, transport: paramiko.Transport, *, command_timeout: float,
                 clock: Callable[[], float] = time.monotonic, idle: Idle = until_readable):
        self.target = target
        self._transport = transport
        self.command_timeout = command_timeout
        self.round_trips = 0
        self._secrets = [target.private_key]
        self._clock = clock
        self._idle = idle

    @classmethod
    def connect(cls, target: SshTarget, timeout: float = 10.0, *, command_timeout: float = 900.0) -> SshTransport:
        """Open a connection, accepting only the pinned host key
        (:func:`components.ssh.connect.open_transport` says how it fails)."""
        return cls(target, open_transport(target, timeout), command_timeout=command_timeout)

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def add_secret(self, value: str) -> None:
        """Mask ``value`` in every later log line."""
        if value:
            self._secrets.append(value)

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float | None = None, label: str | None = None,
            progress: Callable[[str], None] | None = None, progress_every: float = 10.0,
            start_marker: bytes | None = None, wait_for_start: float | None = None) -> CommandResult:
        """Run ``command`` (through the login shell), feed ``stdin``, wait for it
        at most ``timeout`` seconds, telling ``progress`` every ``progress_every``
        seconds that it still runs. With ``start_marker`` the ``timeout``
        counts from the moment stdout shows that line (e.g. once a lock is
        taken), and waiting for it is bounded by ``wait_for_start``. Raises
        CommandTimeoutError when it takes longer, TransportError when the
        connection drops."""
        self.round_trips += 1
        shown = mask(label or command, self._secrets)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        limit = timeout or self.command_timeout
        started = self._clock()
        out, err = bytearray(), bytearray()
        try:
            channel = self._transport.open_session(timeout=10)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()

            def finished() -> bool:
                """Take what the command has printed so far; True once it has ended (or the connection has)."""
                while channel.recv_ready() or channel.recv_stderr_ready():  # not a poll: takes what is buffered, never waits
                    if channel.recv_ready():
                        out.extend(channel.recv(65536))
                    else:
                        err.extend(channel.recv_stderr(65536))
                return (channel.exit_status_ready() and channel.eof_received) or channel.closed or not self._transport.is_active()

            def idle(seconds: float) -> None:
                self._idle(channel, seconds)

            def timed_out(what: str, waited: float) -> CommandTimeoutError:
                channel.close()
                return CommandTimeoutError(f"{self.target.label}: `{shown}` {what}", elapsed=waited,
                                           stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"))

            if start_marker is not None:
                bound = wait_for_start or limit
                begun = wait_until(finished, lambda ended: ended or start_marker in out, timeout=bound, interval=1.0,
                                   clock=self._clock, sleep=idle)
                if not begun.done:
                    raise timed_out(f"did not start within {bound:.0f} s", begun.waited)
                started = self._clock()  # the time limit counts from the marker

            reported = [progress_every]

            def still_running(_ended: bool, waited: float, remaining: float) -> None:
                if progress is not None and remaining > 0 and waited >= reported[0]:
                    progress(f"`{shown}` still running: {waited:.0f} s of at most {limit:.0f} s")
                    reported[0] = waited + progress_every

            ran = wait_until(finished, bool, timeout=limit, interval=min(1.0, progress_every), clock=self._clock, sleep=idle,
                             describe=still_running)
            if not ran.done:
                raise timed_out(f"did not finish within {limit:.0f} s", ran.waited)
            finished()  # what came with the exit status
            rc = channel.recv_exit_status() if channel.exit_status_ready() else -1
            eof = channel.eof_received
            channel.close()
        except TransportError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as error:
            log.info("run[%d] %s: %s -> connection lost (%s)", self.round_trips, self.target.label, shown, error)
            raise TransportError(f"{self.target.label}: connection lost while running `{shown}`: {error}") from None
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if rc == -1:
            if not eof or not self._transport.is_active():
                log.info("run[%d] %s: %s -> connection lost", self.round_trips, self.target.label, shown)
                raise TransportError(f"{self.target.label}: connection lost while running `{shown}`")
            # The connection is fine but no exit status came: sshd reports a signal instead.
            stderr += "\n(ended without an exit status: killed by a signal)"
        log.debug("run[%d] %s: %s -> rc=%d in %.3f s%s", self.round_trips, self.target.label, shown, rc,
                  self._clock() - started, f"; stderr: {mask(stderr.strip()[:300], self._secrets)}" if stderr.strip() else "")
        return CommandResult(rc, stdout, stderr)

    def run_script(self, script: str, *, label: str, timeout: float | None = None,
                   progress: Callable[[str], None] | None = None, progress_every: float = 10.0,
                   start_marker: bytes | None = None, wait_for_start: float | None = None) -> CommandResult:
        """Run a POSIX sh script fed on stdin (no length limit, nothing on the command line)."""
        return self.run("sh -s", stdin=script.encode(), timeout=timeout, label=label, progress=progress, progress_every=progress_every,
                        start_marker=start_marker, wait_for_start=wait_for_start)

    def write_atomic(self, path: str, content: bytes, *, token: str, mode: str = "0644") -> None:
        """Write one file atomically (temp file + fsync + rename in its directory)."""
        result = self.run_script("set -e\n" + atomic_write_snippet(path, content, token, mode=mode) + "\n", label=f"write {path} atomically")
        if not result.ok:
            raise TransportError(f"{self.target.label}: writing {path} failed: {mask(result.stderr.strip(), self._secrets)}")
