"""Node stacks that agree: ``python -m components.stacks check``.

One Pulumi stack per GPU node (``Pulumi.<stack>.yaml``); one of them owns the
cluster-wide objects (namespace, time-slicing ConfigMap, the Helm release),
the others add their entry and label their node. This checks, offline, that
the stacks of one project fit together, and names every conflict:

- exactly one stack owns the cluster objects;
- no non-owner stack sets an owner-only key (``config.OWNER_ONLY_KEYS``; the
  program refuses those too);
- the keys every stack must set alike (``config.SHARED_KEYS``: mode,
  delivery, namespace, ConfigMap name, chart versions) agree;
- no VMID is used twice on one Proxmox cluster (VMIDs are cluster-wide);
- no GPU (PCI address, or the whole device with ``allFunctions``) is claimed
  by two stacks on one Proxmox node;
- no two stacks share a ConfigMap key, a node name or a PCI mapping name
  (mappings are cluster-wide too).

Pure planning (:func:`conflicts`) apart from reading the files
(:func:`load_stacks`). Exit codes: 0 all agree, 1 conflicts, 2 a file that
cannot be read or validated, or no stack file at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from components.cli import (
    STACK_GLOB,
    PlainParser,
    Stack,
    StackChoiceError,
    add_project_dir,
    add_stack,
    choose_stack,
    program,
    stack_files,
    stack_from_args,
    stack_name,
)
from components.config import OWNER_ONLY_KEYS, PROJECT, SHARED_KEYS, ConfigError, StackConfig, parse_stack_config, pci_device, read_stack_file


@dataclass(frozen=True)
class Conflict:
    """One disagreement between stacks, naming the stacks and the key; or,
    with the file's name as ``kind``, a stack file that cannot be checked."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


_OWNER_ONLY_PATHS = {f"gpuStack.{key}" for key in OWNER_ONLY_KEYS}


def _parse(raw: dict) -> tuple[StackConfig, list[Conflict]]:
    """Validate one stack's config as the program does. When the only
    problems are owner-only keys in a non-owner stack, those become conflicts
    and the stack is validated without them, so the other checks still run."""
    try:
        return parse_stack_config(raw), []
    except ConfigError as error:
        owner_only = [issue for issue in error.issues if issue.key in _OWNER_ONLY_PATHS]
        if not owner_only or len(owner_only) != len(error.issues):
            raise
    flagged = {issue.key for issue in owner_only}
    stack = {key: value for key, value in (raw.get("gpuStack") or {}).items() if f"gpuStack.{key}" not in flagged}
    found = [Conflict("owner-only key", f"{issue}") for issue in owner_only]
    return parse_stack_config({**raw, "gpuStack": stack}), found


def load_stacks(directory: Path, chosen: Sequence[Stack] | None = None) -> tuple[dict[str, StackConfig], list[Conflict], list[Conflict]]:
    """Every ``Pulumi.<stack>.yaml`` in ``directory`` (or only the ``chosen``
    stacks), validated as the program validates it; the owner-only keys set
    in non-owner stacks (named per stack); the files that fail otherwise,
    each with one message."""
    stacks: dict[str, StackConfig] = {}
    owner_only: list[Conflict] = []
    problems: list[Conflict] = []
    named = [(stack.name, stack.path) for stack in chosen] if chosen is not None else \
        [(stack_name(path), path) for path in stack_files(directory)]
    for name, path in named:
        try:
            stacks[name], found = _parse(read_stack_file(path))
            owner_only += [Conflict(conflict.kind, f"{name}: {conflict.message}") for conflict in found]
        except ConfigError as error:  # read_stack_file names the file and line of every problem
            problems.append(Conflict(path.name, str(error)))
    return stacks, owner_only, problems


def _key(path: str) -> str:
    return f"{PROJECT}:{path}"


def _listed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _cluster(cfg: StackConfig, by_endpoint: bool) -> str:
    """The Proxmox cluster a stack's VM lives on: one for the whole project,
    or, with ``by_endpoint``, one per ``proxmox.endpoint`` host."""
    if not by_endpoint:
        return "the Proxmox cluster"
    return f"the Proxmox cluster at {urlparse(cfg.proxmox.endpoint).hostname}"


def _duplicates(values: Mapping[str, object], kind: str, describe: str) -> list[Conflict]:
    """A conflict for each value two or more stacks share."""
    seen: dict[object, list[str]] = defaultdict(list)
    for stack, value in values.items():
        seen[value].append(stack)
    return [Conflict(kind, describe.format(value=value, stacks=_listed(stacks)))
            for value, stacks in seen.items() if len(stacks) > 1]


def _shared_values(cfg: StackConfig) -> dict[str, str]:
    """The SHARED_KEYS values of one stack: every one of them is a string."""
    stack = cfg.gpu_stack
    return {key: getattr(stack, name) for name, field in type(stack).model_fields.items()
            for key in [field.alias or name] if key in SHARED_KEYS}


def conflicts(stacks: Mapping[str, StackConfig], *, clusters_by_endpoint: bool = False) -> list[Conflict]:
    """Every conflict between ``stacks`` (stack name -> validated config)."""
    found: list[Conflict] = []
    owners = sorted(name for name, cfg in stacks.items() if cfg.gpu_stack.owns_cluster_objects)
    if len(owners) != 1:
        found.append(Conflict(
            "owner",
            f"{len(owners)} stacks own the cluster objects ({_listed(owners) or 'none'}); exactly one must set "
            f"{_key('gpuStack.ownsClusterObjects')}: true (the default) and every other stack false",
        ))

    shared = {name: _shared_values(cfg) for name, cfg in stacks.items()}
    for key in SHARED_KEYS:
        values: dict[str, list[str]] = defaultdict(list)
        for name, keys in shared.items():
            values[keys[key]].append(name)
        if len(values) > 1:
            shown = "; ".join(f"{value!s} in {_listed(names)}" for value, names in sorted(values.items()))
            found.append(Conflict("must match", f"{_key('gpuStack.' + key)} differs: {shown}"))

    found += _duplicates({name: (_cluster(cfg, clusters_by_endpoint), cfg.vm.vm_id) for name, cfg in stacks.items()},
                         "vmId", f"{_key('vm.vmId')} {{value[1]}} is used by {{stacks}} on {{value[0]}} (VMIDs are cluster-wide)")
    found += _gpu_claims(stacks, clusters_by_endpoint)
    found += _duplicates({name: cfg.config_key for name, cfg in stacks.items()}, "configKey",
                         f"{_key('gpuStack.configKey')} {{value!r}} (default: vm.name) is used by {{stacks}}: "
                         "each node needs its own key in the shared ConfigMap")
    found += _duplicates({name: cfg.node_name for name, cfg in stacks.items()}, "node name",
                         f"{_key('vm.name')} {{value!r}} (the Kubernetes node) is used by {{stacks}}")
    users: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)  # (cluster, mapping) -> (stack, gpus[] index)
    for name, cfg in stacks.items():
        for index, gpu in enumerate(cfg.gpus):
            if gpu.passthrough == "mapping":
                users[(_cluster(cfg, clusters_by_endpoint), cfg.mapping_name(index))].append((name, index))
    found += [Conflict("mappingName", f"PCI mapping {mapping!r} ({_key('gpus[].mappingName')}) is used by "
                                      f"{_listed(f'{name} (gpus[{index}])' for name, index in used_by)} on {cluster}")
              for (cluster, mapping), used_by in users.items() if len({name for name, _ in used_by}) > 1]
    return found


def _gpu_claims(stacks: Mapping[str, StackConfig], by_endpoint: bool) -> list[Conflict]:
    """Two stacks passing the same PCI function (or, with allFunctions, any
    function of the same device) on the same Proxmox node."""
    claims = [(name, index, (_cluster(cfg, by_endpoint), cfg.proxmox.node), gpu)
              for name, cfg in sorted(stacks.items()) for index, gpu in enumerate(cfg.gpus)]
    found = []
    for position, (name, index, host, gpu) in enumerate(claims):
        for other, other_index, other_host, other_gpu in claims[position + 1:]:
            if other == name or other_host != host:
                continue
            same_device = pci_device(gpu.address) == pci_device(other_gpu.address)
            if gpu.address == other_gpu.address or (same_device and (gpu.all_functions or other_gpu.all_functions)):
                found.append(Conflict(
                    "gpu", f"{name} ({_key(f'gpus[{index}].address')} {gpu.device_path}) and {other} "
                           f"({_key(f'gpus[{other_index}].address')} {other_gpu.device_path}) claim the same GPU on node {host[1]}",
                ))
    return found


def _parser() -> argparse.ArgumentParser:
    parser = PlainParser(
        prog=program("stacks"),
        description="Check that the node stacks of this project agree with each other (offline, no Pulumi CLI).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="read every Pulumi.<stack>.yaml (or the --stack ones) and name each conflict",
        description="Read every Pulumi.<stack>.yaml in the project folder (or only the stacks given with --stack), validate each as the program does, and name "
                    "each conflict between them: not exactly one owner of the cluster objects; owner-only keys "
                    f"({', '.join(OWNER_ONLY_KEYS)}) in a non-owner stack; gpuStack keys that must match "
                    f"({', '.join(SHARED_KEYS)}) differing; a VMID used twice on one Proxmox cluster; two stacks "
                    "claiming the same GPU on one Proxmox node; a ConfigMap key, node name or PCI mapping name used twice.",
        epilog="Exit codes: 0 the stacks agree; 1 conflicts (each printed); 2 a stack file that cannot be read or "
               "validated, or no stack file in the folder.",
    )
    add_project_dir(check)
    check.add_argument("--stack", action="append", metavar="STACK",
                       help="check only this stack: a name (Pulumi.<STACK>.yaml in the project folder) or a path to a "
                            "Pulumi.<name>.yaml file; repeat for more, e.g. the stacks of one cluster "
                            "(default: every Pulumi.<name>.yaml in the project folder)")
    check.add_argument("--clusters-by-endpoint", action="store_true",
                       help="treat stacks whose proxmox.endpoint names different hosts as different Proxmox clusters "
                            "(default: off, every stack is on one Proxmox cluster, so VMIDs and PCI mapping names "
                            "must be unique across all of them)")
    check.add_argument("--json", action="store_true",
                       help="print one JSON object {stacks, conflicts, unreadable} instead of text (default: off)")
    which = sub.add_parser(
        "which", help="print the name of the stack --stack chooses (or the folder's only stack file)",
        description="Print the name of the stack a tool would work on: --stack (a name or a Pulumi.<name>.yaml path), or, "
                    "without it, the folder's only Pulumi.<name>.yaml. setup.sh uses it.",
        epilog="Exit codes: 0 printed; 2 no stack file, several without --stack, or the named file is not there.",
    )
    add_project_dir(which)
    add_stack(which)
    return parser


def print_which(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    stack = stack_from_args(args, "stacks", err)
    if stack is None:
        return 2
    if not stack.path.is_file():
        print(f"stacks: no {stack.path}: copy Pulumi.homelab.yaml to {stack.path.name} and describe your node "
              "(README, Quick start)", file=err)
        return 2
    print(stack.name, file=out)
    return 0


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    if args.command == "which":
        return print_which(args, out, err)
    directory: Path = args.project_dir
    chosen = None
    if args.stack:
        try:
            chosen = [choose_stack(directory, name) for name in args.stack]
        except StackChoiceError as error:
            print(f"stacks: {error}", file=err)
            return 2
        if len({stack.name for stack in chosen}) < len(chosen):
            print(f"stacks: a stack is given twice ({', '.join(args.stack)})", file=err)
            return 2
    elif not directory.is_dir():
        print(f"stacks: {directory} is not a folder", file=err)
        return 2
    stacks, owner_only, problems = load_stacks(directory, chosen)
    if not stacks and not problems:
        print(f"stacks: no {STACK_GLOB} in {directory}", file=err)
        return 2
    for problem in problems:
        print(f"stacks: cannot check {problem}", file=err)
    found = owner_only + conflicts(stacks, clusters_by_endpoint=args.clusters_by_endpoint)
    if args.json:
        print(json.dumps({"stacks": sorted(stacks), "conflicts": [str(c) for c in found], "unreadable": [str(p) for p in problems]},
                         indent=2), file=out)
        return 2 if problems else 1 if found else 0
    for conflict in found:
        print(f"conflict: {conflict}", file=out)
    names = ", ".join(sorted(stacks)) or "none"
    print(f"{len(stacks)} stack(s) checked ({names}), {len(found)} conflict(s), {len(problems)} unreadable file(s)", file=out)
    if problems:
        return 2
    return 1 if found else 0


if __name__ == "__main__":
    from components.cli import run

    sys.exit(run("stacks", main))
