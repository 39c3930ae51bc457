"""The host-prep provider's inputs as one value: which host, whose block
(``owner``), what to plan (:class:`HostPrepInputs`) and how long each step
may take. ``to_dict()`` is the resource's inputs as Pulumi stores them;
``from_dict()`` reads them back, also from state written before a key
existed (each missing key takes the default the provider always used).

The two secrets, the SSH private key and the kubeconfig, are not part of it:
the component adds them as Pulumi secrets next to ``to_dict()``, and the
provider reads them from its inputs only to connect (:func:`get_key`).

The keys are camelCase, as in every other provider of this program (the
Talos ``NodeSpec``). Earlier versions stored snake_case keys (``host_key``,
``reboot_timeout_seconds``, ``private_key``, ...), and the Pulumi state of
every host they prepared holds them: ``from_dict()`` and :func:`canonical`
read both, so the provider's ``diff`` compares what the keys mean, not how
they were spelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.hostprep.inputs import GpuSpec, HostPrepInputs, inputs_from_config
from components.renamed_keys import canonical_keys
from components.renamed_keys import get_key as renamed_key

if TYPE_CHECKING:
    from components.config import StackConfig

SECRET_KEYS = ("privateKey", "kubeconfig")  # carried next to the spec, never in it

# Each key as earlier versions stored it (only the keys whose spelling changed).
OLD_KEYS = {
    "hostKey": "host_key", "intelIommu": "intel_iommu", "iommuPassthrough": "iommu_passthrough",
    "allowReboot": "allow_reboot", "rebootOnDestroy": "reboot_on_destroy", "rebootTimeoutSeconds": "reboot_timeout_seconds",
    "runningGuests": "running_guests", "ownVmids": "own_vmids", "nodeName": "node_name", "handEdits": "hand_edits",
    "commandTimeoutSeconds": "command_timeout_seconds", "drainTimeoutSeconds": "drain_timeout_seconds",
    "guestTimeoutSeconds": "guest_timeout_seconds", "privateKey": "private_key",
}
_OLD_GPU_KEYS = {"subsystemId": "subsystem_id", "iommuGroup": "iommu_group"}
_GPU_KEYS = ("address", "id", "subsystemId", "iommuGroup", "index")

# What a key absent from the state means: the value the provider used before the key existed.
DEFAULTS: dict[str, Any] = {
    "intelIommu": "auto", "iommuPassthrough": True, "allowReboot": True, "rebootOnDestroy": False,
    "rebootTimeoutSeconds": 600, "runningGuests": "refuse", "ownVmids": [], "nodeName": None, "handEdits": "refuse",
    "commandTimeoutSeconds": 900, "drainTimeoutSeconds": 300, "guestTimeoutSeconds": 600, "root": "/",
}


def get_key(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``key`` of the inputs or the state, under its camelCase name or the
    snake_case one earlier versions stored."""
    return renamed_key(data, key, OLD_KEYS, default)


def _gpu(gpu: Any) -> Any:
    if not isinstance(gpu, Mapping):
        return gpu  # unknown during a preview
    return canonical_keys(gpu, _GPU_KEYS, _OLD_GPU_KEYS)


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
        i = self.inputs
        out: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user, "hostKey": self.host_key, "owner": self.owner,
            "gpus": [{"address": g.address, "id": g.id, "subsystemId": g.subsystem_id, "iommuGroup": g.iommu_group, "index": g.index}
                     for g in i.gpus],
            "intelIommu": i.intel_iommu, "iommuPassthrough": i.iommu_passthrough, "allowReboot": i.allow_reboot,
            "rebootOnDestroy": i.reboot_on_destroy, "rebootTimeoutSeconds": self.reboot_timeout_seconds,
            "runningGuests": i.running_guests, "ownVmids": list(i.own_vmids), "nodeName": i.node_name, "handEdits": i.hand_edits,
            "commandTimeoutSeconds": self.command_timeout_seconds, "drainTimeoutSeconds": self.drain_timeout_seconds,
            "guestTimeoutSeconds": self.guest_timeout_seconds,
        }
        if self.root != "/":
            out["root"] = self.root
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostPrepSpec:
        """The spec from the resource's inputs or state, in either key style
        (outputs, secrets and the engine's own keys are ignored)."""
        d = canonical(data)
        gpus = tuple(GpuSpec(address=g["address"], id=g.get("id"), subsystem_id=g.get("subsystemId"),
                             iommu_group=None if g.get("iommuGroup") is None else int(g["iommuGroup"]),
                             index=None if g.get("index") is None else int(g["index"])) for g in d["gpus"])
        inputs = HostPrepInputs(gpus=gpus, intel_iommu=d["intelIommu"] or "auto", iommu_passthrough=bool(d["iommuPassthrough"]),
                                allow_reboot=bool(d["allowReboot"]), reboot_on_destroy=bool(d["rebootOnDestroy"]),
                                running_guests=d["runningGuests"] or "refuse", own_vmids=tuple(int(v) for v in d["ownVmids"] or ()),
                                node_name=d["nodeName"] or None, hand_edits=d["handEdits"] or "refuse")
        return cls(
            host=d["host"], port=int(d["port"]), user=d["user"], host_key=d["hostKey"], owner=d["owner"], inputs=inputs,
            reboot_timeout_seconds=float(d["rebootTimeoutSeconds"] if d["rebootTimeoutSeconds"] is not None else 600),
            command_timeout_seconds=float(d["commandTimeoutSeconds"] or 900),
            drain_timeout_seconds=float(d["drainTimeoutSeconds"] or 300),
            guest_timeout_seconds=float(d["guestTimeoutSeconds"] or 600),
            root=d["root"] or "/",
        )


# Every key of to_dict(): what the provider's diff compares.
SPEC_KEYS = ("host", "port", "user", "hostKey", "owner", "gpus", "intelIommu", "iommuPassthrough", "allowReboot",
             "rebootOnDestroy", "rebootTimeoutSeconds", "runningGuests", "ownVmids", "nodeName", "handEdits",
             "commandTimeoutSeconds", "drainTimeoutSeconds", "guestTimeoutSeconds", "root")


def canonical(data: Mapping[str, Any]) -> dict[str, Any]:
    """Every spec key of the inputs or the state under its camelCase name,
    read from either spelling, a missing one as its default. Values are not
    converted (a preview's unknown marker stays as it is)."""
    out = canonical_keys(data, SPEC_KEYS, OLD_KEYS, DEFAULTS)
    gpus = out["gpus"]
    out["gpus"] = [_gpu(g) for g in gpus] if isinstance(gpus, list) else gpus
    return out


def host_prep_spec(cfg: StackConfig, owner: str) -> HostPrepSpec:
    """The spec of the stack config's host, for ``owner``."""
    host = cfg.host
    return HostPrepSpec(host=host.address, port=host.port, user=host.user, host_key=host.host_key, owner=owner,
                        inputs=inputs_from_config(cfg), reboot_timeout_seconds=host.reboot_timeout_seconds,
                        command_timeout_seconds=host.command_timeout_seconds, drain_timeout_seconds=host.drain_timeout_seconds,
                        guest_timeout_seconds=host.guest_timeout_seconds)
