"""Why host preparation stopped: each error's message says why and what to do."""

from __future__ import annotations


class HostPrepError(RuntimeError):
    """Host preparation stopped; the message says why and what to do."""


class RefusedError(HostPrepError):
    """The plan refused: nothing was written."""


class RebootRequiredError(HostPrepError):
    """Files are in place but a reboot is needed and not allowed."""


class GuestsRunningError(RebootRequiredError):
    """Files are in place, but the reboot would stop other guests and host.runningGuests is refuse."""


class DrainError(HostPrepError):
    """This stack's Kubernetes node could not be drained (or the cluster reached); nothing was rebooted."""


class RebootFailedError(HostPrepError):
    """`reboot` failed, or the host never started rebooting."""


class HostTimeoutError(HostPrepError):
    """The host did not come back after the reboot."""


class VerifyError(HostPrepError):
    """The host came back but is not in the planned state."""
