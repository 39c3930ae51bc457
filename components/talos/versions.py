"""The way from the Talos a node runs to ``talos.version`` (pure).

Talos tests upgrades only between adjacent minor releases and recommends
"the latest patch release of all intermediate minor releases" (Talos docs,
"Upgrading Talos Linux", Supported upgrade paths): v1.0.x -> latest v1.0 ->
latest v1.1 -> ... -> the target. The latest patch of each minor comes from
the table below, or from ``talos.upgradePath`` (one release per minor).
Downgrades and major jumps are refused."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from components.config_issues import PROJECT
from components.semver import parse_version

# The latest patch release of each minor, from the tags of
# https://github.com/siderolabs/talos/releases (tag date). Add a row when a
# minor is released; update a row when a newer patch of it comes out.
LATEST_PATCH: dict[tuple[int, int], str] = {
    (1, 8): "v1.8.4",      # 2024-12-12
    (1, 9): "v1.9.6",      # 2025-05-05
    (1, 10): "v1.10.9",    # 2025-12-23
    (1, 11): "v1.11.6",    # 2025-12-16
    (1, 12): "v1.12.11",   # 2026-08-05
    (1, 13): "v1.13.9",    # 2026-08-18
}

# The first Talos minor each official extension this program asks for is
# published for: siderolabs/extensions, the manifest names under nvidia-gpu/
# and guest-agents/ at the tags v1.8.4 .. v1.13.9 (the -lts/-production
# split came with Talos 1.8).
PUBLISHED_FROM: dict[str, tuple[int, int]] = {
    **{f"siderolabs/{name}-{branch}": (1, 8) for name in ("nonfree-kmod-nvidia", "nvidia-open-gpu-kernel-modules",
                                                          "nvidia-container-toolkit", "nvidia-fabricmanager")
       for branch in ("lts", "production")},
    "siderolabs/nvidia-gdrdrv-device": (1, 12),
    "siderolabs/qemu-guest-agent": (1, 8),
}

# The first release whose NVIDIA support is the GPU Operator (CDI toolkit):
# the device plugin and RuntimeClass nvidia go before the step to it.
OPERATOR_FROM = (1, 13, 0)


class PathRefused(ValueError):
    """No supported way from the running version to the target."""


def _override(upgrade_path: Iterable[str]) -> dict[tuple[int, int], str]:
    return {parse_version(version)[:2]: version for version in upgrade_path}


def upgrade_steps(running: str, target: str, upgrade_path: Sequence[str] = ()) -> list[str]:
    """The releases to upgrade to, in order, ending with ``target``; empty
    when the node already runs it. Raises :class:`PathRefused`."""
    have, want = parse_version(running), parse_version(target)
    first, last = min(LATEST_PATCH), max(LATEST_PATCH)
    if want[:2] > last and want[0] == have[0] == 1 and want > have:
        raise PathRefused(f"talos.version {target}: Talos v{want[0]}.{want[1]} is not in this program's version table "
                          f"(LATEST_PATCH in components/talos/versions.py covers v{first[0]}.{first[1]} to v{last[0]}.{last[1]}); "
                          f"set {PROJECT}:talos.version to v{last[0]}.{last[1]}.x or older. Supporting a new minor means adding "
                          "its row to that table once the program writes what that release needs (Talos 1.14 moves "
                          "machine.install, kernel, sysctls, files and nodeLabels into documents such as KernelModuleConfig)")
    if have == want:
        return []
    if have > want and have[0] != 1:
        raise PathRefused(f"the node runs Talos {running}, a major release this program does not support (it manages Talos "
                          f"v1.x, its table covers v{first[0]}.{first[1]} to v{last[0]}.{last[1]}); it cannot manage this node")
    if have > want and have[:2] > last:
        raise PathRefused(f"the node runs Talos {running}, newer than every minor in this program's version table (LATEST_PATCH in "
                          f"components/talos/versions.py, up to v{last[0]}.{last[1]}); this program does not downgrade to {PROJECT}:talos.version "
                          f"{target} and cannot manage the node until that table has its minor")
    if have > want:
        raise PathRefused(f"the node runs Talos {running}, newer than talos.version {target}; this program does not downgrade. "
                          f"Set {PROJECT}:talos.version to {running} or newer")
    if have[0] != want[0]:
        raise PathRefused(f"the node runs Talos {running}; {target} is another major release, which Talos has no tested upgrade to")
    chosen = {**LATEST_PATCH, **_override(upgrade_path)}
    steps: list[str] = []
    for minor in range(have[1], want[1]):
        version = chosen.get((have[0], minor))
        if version is None:
            raise PathRefused(f"no release of Talos v{have[0]}.{minor} is known to this program (its table covers "
                              f"v{first[0]}.{first[1]} to v{last[0]}.{last[1]}); add the latest v{have[0]}.{minor}.z to {PROJECT}:talos.upgradePath")
        if parse_version(version) > have:
            steps.append(version)
    return [*steps, target]


def path_problems(steps: Sequence[str], extensions: Iterable[str]) -> list[str]:
    """Why the installer of a step could lack an extension: it is published
    only from a later Talos minor (an unknown name cannot be checked offline
    and is not refused)."""
    problems = []
    for step in steps:
        minor = parse_version(step)[:2]
        for name in extensions:
            first = PUBLISHED_FROM.get(name)
            if first is not None and minor < first:
                problems.append(f"{name} is published for Talos v{first[0]}.{first[1]} and newer, not for the step to {step}")
    return problems


def crosses_to_operator(running: str, target: str) -> bool:
    """Whether the walk from ``running`` to ``target`` enters Talos 1.13."""
    return parse_version(running) < OPERATOR_FROM <= parse_version(target)


def next_boot_version(running: str, target: str, upgrade_path: Sequence[str] = ()) -> str:
    """The version the node boots next: the first step of its path, or the
    target when it only needs another schematic (or nothing)."""
    steps = upgrade_steps(running, target, upgrade_path)
    return steps[0] if steps else target


def plan_walk(running: str, schematic: str | None, target: str, schematic_id: str, upgrade_path: Sequence[str] = (),
              stop_before: str | None = None) -> list[str]:
    """The steps a walk still has to do from where the node is: the path to
    ``target`` (a same-version upgrade when only the schematic differs),
    without the steps at or above ``stop_before`` (a walk that ends before
    the NVIDIA mode boundary)."""
    steps = upgrade_steps(running, target, upgrade_path)
    if not steps and schematic != schematic_id:
        steps = [target]
    if stop_before is not None:
        steps = [step for step in steps if parse_version(step) < parse_version(stop_before)]
    return steps
