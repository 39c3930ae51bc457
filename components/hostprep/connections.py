"""The engine's knobs, and its connections to the host: each one opened
with the connect timeout, its round trips counted when it is closed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from components.hostprep.errors import HostPrepError
from components.hostprep.facts import HostFacts
from components.hostprep.facts_read import gather_facts
from components.ssh.transport import SshTransport

Connector = Callable[[float], SshTransport]  # connect timeout (s) -> open transport


@dataclass
class EngineOptions:
    root: str = "/"  # test-only: prefix of every host path
    connect_timeout: float = 10.0
    command_timeout: float = 900.0  # each host command (update-initramfs, the bootloader refresh)
    reboot_timeout: float = 600.0
    reboot_start_grace: float = 30.0  # the old boot still running and not shutting down after this: the reboot never started
    drain_timeout: float = 300.0  # kubectl drain --timeout
    guest_timeout: float = 600.0  # after the host is back: guests with onboot, and this stack's node Ready again
    poll_initial: float = 0.25  # first wait between reconnect attempts
    poll_cap: float = 2.0  # backoff ceiling
    lock_timeout: float = 120.0
    progress_every: float = 10.0  # a line of progress while a host command runs
    kubeconfig: str | None = field(default=None, repr=False)  # secret: content or path; None = kubectl's own default
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    token: Callable[[], str] = field(default=lambda: secrets.token_hex(6))
    progress: Callable[[str], None] = field(default=lambda message: None)


class HostConnections:
    """Opens connections to one host and counts their round trips."""

    def __init__(self, connect: Connector, options: EngineOptions, addresses: list[str]):
        self._connect = connect
        self.options = options
        self.addresses = addresses
        self.round_trips = 0

    def open(self, timeout: float | None = None) -> SshTransport:
        return self._connect(timeout or self.options.connect_timeout)

    def release(self, transport: SshTransport) -> None:
        """Count the connection's round trips and close it."""
        self.round_trips += transport.round_trips
        transport.close()

    def facts(self, transport: SshTransport, guests: str = "never") -> HostFacts:
        return gather_facts(transport, self.addresses, root=self.options.root, guests=guests)

    def script(self, script: str, label: str, timeout: float = 60) -> str:
        """Run a short script on a fresh connection; its stdout."""
        transport = self.open()
        try:
            result = transport.run_script(script, label=label, timeout=timeout)
        finally:
            self.release(transport)
        if result.rc == 77:
            raise HostPrepError(f"the host ran out of room: {result.stderr.strip()}; free some space and re-run")
        if not result.ok:
            raise HostPrepError(f"{label} failed on the host (rc={result.rc}): {result.stderr.strip()[:300]}")
        return result.stdout
