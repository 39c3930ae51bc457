"""Config rules that need a table kept elsewhere (the Talos releases this
program knows, in components/talos/versions.py) or a name derived from other
keys. They sit below components/config.py, whose ``parse_stack_config`` adds
their issues to its own; each names the key to change, the value and what is
allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.config_issues import ConfigIssue
from components.proxmox_limits import check_config_id
from components.semver import parse_version
from components.talos.versions import LATEST_PATCH

if TYPE_CHECKING:
    from components.config import StackConfig

RELEASES_URL = "https://github.com/siderolabs/talos/releases"


def talos_release_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """``talos.version`` must be a release the table knows: a patch no newer
    than the latest one listed for its minor. An installer image for a
    release that does not exist fails only at `pulumi up`, when the node
    cannot pull it. ``talos.allowUnlistedVersion: true`` accepts a newer one
    the user has checked exists."""
    talos = cfg.talos
    if talos.allow_unlisted_version:
        return []
    wanted = parse_version(talos.version)
    latest = LATEST_PATCH.get(wanted[:2])
    if latest is not None and wanted <= parse_version(latest):
        return []
    first, last = min(LATEST_PATCH), max(LATEST_PATCH)
    known = f"v{first[0]}.{first[1]}.0 to {LATEST_PATCH[first]}, ..., v{last[0]}.{last[1]}.0 to {LATEST_PATCH[last]}"
    if latest is not None:
        why = f"newer than the latest v{wanted[0]}.{wanted[1]} release this program knows ({latest})"
    else:
        why = f"v{wanted[0]}.{wanted[1]} is not a minor this program knows"
    return [ConfigIssue("talos.version", talos.version,
                        f"{why}; the releases it knows: {known} (components/talos/versions.py). If {talos.version} exists "
                        f"({RELEASES_URL}/tag/{talos.version}), set talos.allowUnlistedVersion: true")]


def derived_mapping_name_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """A PCI mapping named after vm.name (``<vm.name>-gpu<N>``) must be a
    Proxmox configuration id too: a vm.name that starts with a digit is a
    DNS label but not one."""
    issues = []
    for index, gpu in enumerate(cfg.gpus):
        if gpu.passthrough != "mapping" or gpu.mapping_name:
            continue
        name = cfg.mapping_name(index)
        try:
            check_config_id(name)
        except ValueError as error:
            issues.append(ConfigIssue(f"gpus[{index}].mappingName", None,
                                      f"the default, {name!r} (from vm.name), is {error}; set gpus[{index}].mappingName"))
    return issues


def rule_issues(cfg: StackConfig) -> list[ConfigIssue]:
    return talos_release_issues(cfg) + derived_mapping_name_issues(cfg)
