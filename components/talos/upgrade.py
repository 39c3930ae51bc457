"""One upgrade step of the node (pure): whether to run it and with which
``talosctl upgrade`` arguments.

The way there, one minor at a time, comes from components.talos.versions;
this module plans a single step of it and refuses one that would skip a
minor or go backwards (Talos docs, "Upgrading Talos Linux", Supported
upgrade paths). Since Talos 1.8 an upgrade never wipes the system disk and
``--preserve`` is implied (Talos 1.8 "What's new", Upgrades); talosctl 1.13
marks the flag deprecated. It is passed only to nodes older than 1.8, where
it is what keeps EPHEMERAL. No wipe flag is ever passed."""

from __future__ import annotations

from dataclasses import dataclass

from components.config import PROJECT, parse_version
from components.talos.versions import PathRefused, upgrade_steps


class UpgradeRefused(RuntimeError):
    """The upgrade would skip a minor release or go backwards."""


@dataclass(frozen=True)
class NodeFacts:
    version: str
    schematic: str | None


@dataclass(frozen=True)
class UpgradePlan:
    upgrade: bool
    reason: str
    args: tuple[str, ...] = ()


def plan_upgrade(facts: NodeFacts, *, image: str, version: str, schematic_id: str, node: str, endpoint: str,
                 timeout_seconds: int = 1800, extra_flags: tuple[str, ...] = (), again: str | None = None) -> UpgradePlan:
    """Decide one step from the node's facts; ``again``: why a node already on
    ``version`` and ``schematic_id`` is upgraded to them once more (its
    extensions are missing). Raises :class:`UpgradeRefused`."""
    running, wanted = parse_version(facts.version), parse_version(version)
    if running == wanted and facts.schematic == schematic_id and not again:
        return UpgradePlan(False, f"nothing to do because {node} already runs Talos {facts.version} from schematic {schematic_id}")
    if running > wanted or running[0] != wanted[0] or wanted[1] - running[1] > 1:
        try:
            path = " -> ".join([facts.version, *upgrade_steps(facts.version, version)])
        except PathRefused as error:
            raise UpgradeRefused(f"{node}: {error}") from None
        raise UpgradeRefused(
            f"{node} runs Talos {facts.version}; going to {version} in one step skips a minor release, and Talos supports "
            f"upgrades only between adjacent minors. The path is {path} (set {PROJECT}:talos.upgradePath to choose "
            "the intermediate releases)")
    if again:
        why = again
    elif running == wanted:
        why = f"{node} runs schematic {facts.schematic or '(none: not an Image Factory image)'}, wanted {schematic_id}"
    else:
        why = f"{node} runs Talos {facts.version}, wanted {version}"
    args = ["upgrade", "--nodes", node, "--endpoints", endpoint, "--image", image, "--wait",
            "--timeout", f"{timeout_seconds}s"]
    if running < (1, 8, 0):
        args.append("--preserve")
    args += list(extra_flags)  # the route's (components.talos.upgrade_route)
    return UpgradePlan(True, f"upgrade to {image} because {why}", tuple(args))
