"""The host-prep provider's inputs as one value: which host, whose block
(``owner``), what to plan (:class:`HostPrepInputs`) and how long each step
may take. ``to_dict()`` is the resource's inputs as Pulumi stores them;
``from_dict()`` reads them back, also from state written before a key
existed (each missing key takes the default the provider always used).

The two secrets, the SSH private key and the kubeconfig, are not part of it:
the component adds them as Pulumi secrets next to ``to_dict()``, and the
provider reads them from its inputs only to connect.

The keys are the snake_case ones the provider has always stored (not the
camelCase of the Talos ``NodeSpec``): the Pulumi state of every prepared
host holds them, and ``diff`` compares them key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.hostprep.inputs import HostPrepInputs, inputs_from_config

if TYPE_CHECKING:
    from components.config import StackConfig

SECRET_KEYS = ("private_key", "kubeconfig")  # carried next to the spec, never in it


@dataclass(frozen=True)
class HostPrepSpec:
    host: str
    port: int
    user: str
    host_key: str  # the pinned host key(s); public
    owner: str  # project/stack: the block this stack owns on the host
    inputs: HostPrepInputs
    reboot_timeout_seconds: float = 600.0
    command_timeout_seconds: float = 900.0
    drain_timeout_seconds: float = 300.0
    guest_timeout_seconds: float = 600.0
    root: str = "/"  # test-only: prefix of every host path (the simulated host's tree)

    def to_dict(self) -> dict[str, Any]:
        inputs = self.inputs.to_dict()
        out: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user, "host_key": self.host_key, "owner": self.owner,
            "gpus": inputs["gpus"], "intel_iommu": inputs["intel_iommu"], "iommu_passthrough": inputs["iommu_passthrough"],
            "allow_reboot": inputs["allow_reboot"], "reboot_on_destroy": inputs["reboot_on_destroy"],
            "reboot_timeout_seconds": self.reboot_timeout_seconds, "running_guests": inputs["running_guests"],
            "own_vmids": inputs["own_vmids"], "node_name": inputs["node_name"], "hand_edits": inputs["hand_edits"],
            "command_timeout_seconds": self.command_timeout_seconds, "drain_timeout_seconds": self.drain_timeout_seconds,
            "guest_timeout_seconds": self.guest_timeout_seconds,
        }
        if self.root != "/":
            out["root"] = self.root
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostPrepSpec:
        """The spec from the resource's inputs (outputs, secrets and the
        engine's own keys are ignored)."""
        return cls(
            host=data["host"], port=int(data["port"]), user=data["user"], host_key=data["host_key"], owner=data["owner"],
            inputs=HostPrepInputs.from_dict(data),
            reboot_timeout_seconds=float(data.get("reboot_timeout_seconds", 600)),
            command_timeout_seconds=float(data.get("command_timeout_seconds") or 900),
            drain_timeout_seconds=float(data.get("drain_timeout_seconds") or 300),
            guest_timeout_seconds=float(data.get("guest_timeout_seconds") or 600),
            root=data.get("root") or "/",
        )


# Every key of to_dict(): what the provider's diff compares.
SPEC_KEYS = ("host", "port", "user", "host_key", "owner", "gpus", "intel_iommu", "iommu_passthrough", "allow_reboot",
             "reboot_on_destroy", "reboot_timeout_seconds", "running_guests", "own_vmids", "node_name", "hand_edits",
             "command_timeout_seconds", "drain_timeout_seconds", "guest_timeout_seconds", "root")


def host_prep_spec(cfg: StackConfig, owner: str) -> HostPrepSpec:
    """The spec of the stack config's host, for ``owner``."""
    host = cfg.host
    return HostPrepSpec(host=host.address, port=host.port, user=host.user, host_key=host.host_key, owner=owner,
                        inputs=inputs_from_config(cfg), reboot_timeout_seconds=host.reboot_timeout_seconds,
                        command_timeout_seconds=host.command_timeout_seconds, drain_timeout_seconds=host.drain_timeout_seconds,
                        guest_timeout_seconds=host.guest_timeout_seconds)
