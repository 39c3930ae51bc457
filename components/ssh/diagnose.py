"""Connection failures in words, and where paramiko's own log goes.

A failed connect reaches the caller as one line that says what answered
(nothing, a non-SSH server, an sshd that stopped half-way) and what to
check; paramiko's records, tracebacks left out, become debug lines of this
module's log."""

from __future__ import annotations

import logging
import socket

import paramiko

log = logging.getLogger(__name__)

_PORT_HINT = "check proxmox-talos-gpu:host.port (SSH is usually 22)"


class _ParamikoLog(logging.Handler):
    """Where paramiko's records go: this module's debug log, one line each,
    without the tracebacks its transport thread logs at ERROR (the failure
    reaches the caller as one TransportError instead). The lines a server
    sent before (instead of) its SSH banner are kept per transport thread, so
    a failed handshake can say what answered."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._banners: dict[int, list[str]] = {}
        self._in_traceback: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        thread = record.thread or 0
        if message.startswith("Traceback (most recent call last)"):
            self._in_traceback.add(thread)
            return
        if thread in self._in_traceback:
            if message and not message[0].isspace():  # the exception's own line ends it
                self._in_traceback.discard(thread)
            return
        if not message.strip() or message.startswith("During handling of the above exception"):
            return
        if message.startswith("Banner: "):
            lines = self._banners.setdefault(thread, [])
            if len(lines) < 3:
                lines.append(message[len("Banner: "):].strip()[:80])
            while len(self._banners) > 32:  # threads that never asked for theirs
                self._banners.pop(next(iter(self._banners)))
        log.debug("paramiko: %s", message)

    def take_banner_lines(self, transport: paramiko.Transport) -> list[str]:
        return self._banners.pop(transport.ident or 0, [])


PARAMIKO_LOG = _ParamikoLog()


def route_paramiko_logging() -> None:
    """paramiko logs only to :data:`PARAMIKO_LOG` (so, at most, to this
    module's debug log), never to the terminal through the root logger or
    Python's last-resort handler. Idempotent."""
    logger = logging.getLogger("paramiko")
    if PARAMIKO_LOG not in logger.handlers:
        logger.addHandler(PARAMIKO_LOG)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)  # the banner lines are debug records


def reason(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def tcp_failure(error: OSError, host: str, port: int, timeout: float) -> str:
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name {host!r} ({error.strerror}); check proxmox-talos-gpu:host.address"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused: nothing listens on port {port} (is sshd running?); {_PORT_HINT}"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s (the host is down, or a firewall drops the connection)"
    return f"cannot connect: {error.strerror or reason(error)}"


def handshake_failure(error: BaseException, transport: paramiko.Transport, timeout: float) -> str:
    lines = PARAMIKO_LOG.take_banner_lines(transport)
    if lines:
        return f"not an SSH server: it answered {lines[0]!r} instead of an SSH banner; {_PORT_HINT}"
    text = reason(error)
    if "banner" in text.lower() or isinstance(error, EOFError):
        return f"the server closed the connection without an SSH banner (not an SSH server, or sshd turned the connection away); {_PORT_HINT}"
    if isinstance(error, paramiko.IncompatiblePeer):
        return f"the server and this client share no SSH algorithm ({text}); is its sshd very old?"
    if isinstance(error, TimeoutError):
        return f"the SSH handshake did not finish within {timeout:g} s"
    return f"SSH handshake failed: {text}"


def handshake_timeout(transport: paramiko.Transport, timeout: float) -> str:
    """Why ``start_client`` ran out of time (it returns silently then)."""
    lines = PARAMIKO_LOG.take_banner_lines(transport)
    if lines:
        return f"not an SSH server: it answered {lines[0]!r} instead of an SSH banner; {_PORT_HINT}"
    if not transport.remote_version:
        return (f"no SSH banner within {timeout:g} s: the port accepts connections but sends nothing "
                "(not the SSH port, a stuck sshd, or a firewall); check proxmox-talos-gpu:host.address and host.port")
    return f"the SSH key exchange did not finish within {timeout:g} s (the server announced {transport.remote_version!r})"
