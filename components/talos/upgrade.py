"""Whether and how to upgrade the node to the wanted installer image (pure).

Talos tests upgrades only between adjacent minor releases and recommends the
latest patch of every intermediate minor (Talos docs, upgrading-talos,
"Supported upgrade paths"; DESIGN fact 16): a jump of two minors is refused
with the path to take. Since Talos 1.8 an upgrade never wipes the system disk
and ``--preserve`` is implied (Talos 1.8 "What's new", Upgrades); newer
talosctl marks the flag deprecated. It is passed only to nodes older than 1.8,
where it is what keeps EPHEMERAL. No wipe flag is ever passed."""

from __future__ import annotations

from dataclasses import dataclass

from components.config import parse_version


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


def upgrade_path(running: str, wanted: str) -> list[str]:
    """The releases to go through, one minor at a time."""
    major, minor, _ = parse_version(running)
    _, wanted_minor, _ = parse_version(wanted)
    path = [running]
    path += [f"v{major}.{step}.<latest patch>" for step in range(minor + 1, wanted_minor)]
    return [*path, wanted]


def plan_upgrade(facts: NodeFacts, *, image: str, version: str, schematic_id: str, node: str, endpoint: str,
                 timeout_seconds: int = 1800) -> UpgradePlan:
    """Decide from the node's facts. Raises :class:`UpgradeRefused`."""
    running, wanted = parse_version(facts.version), parse_version(version)
    if running == wanted and facts.schematic == schematic_id:
        return UpgradePlan(False, f"nothing to do because {node} already runs Talos {facts.version} from schematic {schematic_id}")
    if running > wanted:
        raise UpgradeRefused(
            f"{node} runs Talos {facts.version}, newer than talos.version {version}; this program does not downgrade. "
            f"Set proxmox-talos-gpu:talos.version to {facts.version} (or newer)"
        )
    if running[0] != wanted[0] or wanted[1] - running[1] > 1:
        path = " -> ".join(upgrade_path(facts.version, version))
        raise UpgradeRefused(
            f"{node} runs Talos {facts.version}; going to {version} skips a minor release, and Talos supports upgrades "
            f"only between adjacent minors. Take the path {path}: set proxmox-talos-gpu:talos.version to each step "
            "in turn (the latest patch of each intermediate minor, https://github.com/siderolabs/talos/releases) "
            "and run `pulumi up` after each"
        )
    if running == wanted:
        why = f"{node} runs schematic {facts.schematic or '(none: not an Image Factory image)'}, wanted {schematic_id}"
    else:
        why = f"{node} runs Talos {facts.version}, wanted {version}"
    args = ["upgrade", "--nodes", node, "--endpoints", endpoint, "--image", image, "--wait",
            "--timeout", f"{timeout_seconds}s"]
    if running < (1, 8, 0):
        args.append("--preserve")
    return UpgradePlan(True, f"upgrade to {image} because {why}", tuple(args))
