"""What can go wrong on an SSH connection, as the callers catch it."""

from __future__ import annotations


class TransportError(ConnectionError):
    """The host could not be reached, or the connection dropped."""


class HostKeyError(TransportError):
    """The host offered a key that does not match the pin; nothing was sent."""


class CommandTimeoutError(TransportError):
    """A command did not finish in time; the client stopped waiting (the
    connection is still up, so the caller can stop the command on the host)."""

    def __init__(self, message: str, *, elapsed: float, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.elapsed = elapsed
        self.stdout = stdout
        self.stderr = stderr

