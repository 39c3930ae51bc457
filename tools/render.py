"""Write every artifact a stack would apply into a folder, offline and with no credentials.

The artifacts come from the same pure planners the program uses:

    python -m components.render --stack homelab --out render/homelab \
        [--host-facts facts.json]

Host files depend on the host (CPU vendor, kernel, bootloader, the GPU's
functions); without `--host-facts` (the JSON of
`python -m components.hostprep facts --json`) they are planned for an assumed
fresh Proxmox VE 8 host on Intel, which `host/plan.txt` says. The graph is
drawn from the program itself, run under Pulumi's mock engine with
placeholder secrets. The output folder holds only this render: render marks
it and empties it first, and refuses a folder it did not make.

    python -m components.render --stack homelab --flux DIR [--force]

writes instead only the GPU stack as Flux objects for a GitOps repository
(ks.yaml, app/, jellyfin-gpu-values.yaml; README, "GitOps with Flux").
"""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from components import cluster
from components.cli import PROJECT_ROOT, PlainParser, add_project_dir, add_stack, program, stack_from_args
from components.config import PROJECT, ConfigError, StackConfig, load_stack_file, read_stack_file
from components.consumers.jellyfin import encoding_wanted
from components.consumers.workload import gpu_workload_spec
from components.flux.tree import render_flux
from components.hostprep.facts import HostFacts
from components.hostprep.inputs import inputs_from_config
from components.hostprep.offline import OfflineFactsError, OfflineHost, load_facts_file, offline_facts
from components.hostprep.plan import plan_host
from components.hostprep.plan_model import HostPlan
from components.hostprep.results import host_outputs
from components.monitoring.artifacts import render_artifacts as monitoring_artifacts
from components.talos.machine_config import gpu_patch_yaml
from components.talos.schematic import planned_installer
from components.vm.adopt import owned_keys
from components.vm.create import pci_mappings, vm_args

Artifacts = dict[str, str]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a config file inside a ConfigMap) as block scalars."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def _yaml(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _manifest(kind: str, api_version: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def proxmox_artifacts(cfg: StackConfig, facts: HostFacts | None = None) -> Artifacts:
    """The PCI mappings and the VM. A mapping's IOMMU group and subsystem id
    come from the host's facts at `pulumi up` (as GpuVm takes them from
    HostVfioPrep); with ``facts`` they are filled in here the same way, and a
    comment says where each empty one comes from."""
    mappings = pci_mappings(cfg)
    found = host_outputs(facts, [gpu.address for gpu in cfg.gpus]) if facts is not None and cfg.host.enabled else None
    mapped = [gpu for gpu in cfg.gpus if gpu.passthrough == "mapping"]
    for mapping, gpu in zip(mappings, mapped, strict=True):
        for entry in mapping["maps"]:
            if found is not None:
                # Keyed by the GPU function's address, as GpuVm looks them up: with
                # allFunctions the mapping's path is the device without a function.
                entry["iommu_group"] = found["iommu_groups"].get(gpu.address, entry["iommu_group"])
                entry["subsystem_id"] = found["subsystem_ids"].get(gpu.address, entry["subsystem_id"])
    empty = any(entry["iommu_group"] is None or entry["subsystem_id"] is None for mapping in mappings for entry in mapping["maps"])
    if not empty:
        header = "# iommu_group and subsystem_id: " + ("from --host-facts (`pulumi up` reads them from the host the same way)\n"
                                                     if found is not None else "from gpus[].iommuGroup and gpus[].subsystemId\n")
    elif cfg.host.enabled:
        header = ("# iommu_group / subsystem_id null: not set in gpus[]; `pulumi up` takes them from the host's facts\n"
                  "# (HostVfioPrep reads them over SSH) before it creates the mapping. To see them here, render with\n"
                  "# --host-facts (the JSON of `python -m components.hostprep facts --json`).\n")
    else:
        header = ("# iommu_group / subsystem_id null: host.enabled is false, so nothing reads them from the host; set\n"
                  "# gpus[].iommuGroup and gpus[].subsystemId (Proxmox checks the mapping against the device at VM start;\n"
                  "# on the host: `lspci -nns <address>` and /sys/bus/pci/devices/<address>/iommu_group).\n")
    # vm.source: existing owns only these keys of the VM (docs/vm.md); create writes the whole VmLegacy.
    vm = vm_args(cfg) if cfg.vm.source == "create" else owned_keys(cfg)
    return {"proxmox/vm.yaml": header + _yaml({"pciMappings": mappings, "vm": vm})}


def kubernetes_artifacts(cfg: StackConfig) -> Artifacts:
    stack = cfg.gpu_stack
    out: Artifacts = {}
    if stack.owns_cluster_objects:
        out["kubernetes/namespace.yaml"] = _yaml(cluster.namespace_manifest(cfg))
        out["kubernetes/time-slicing-configmap.yaml"] = _yaml(cluster.time_slicing_config_map(cfg))
        chart = cluster.helm_chart(cfg)
        out["kubernetes/helm-release.yaml"] = _yaml({
            "release": chart.release_name, "namespace": stack.namespace,
            "chart": chart.chart, "repo": chart.repo, "version": chart.version,
        })
        out["kubernetes/helm-values.yaml"] = _yaml(chart.values)
        if stack.mode == "devicePlugin":
            out["kubernetes/runtimeclass.yaml"] = _yaml(cluster.runtime_class_manifest())
    else:
        out["kubernetes/time-slicing-configmap-patch.yaml"] = _yaml(cluster.time_slicing_config_map(
            cfg, {"pulumi.com/patchFieldManager": cluster.field_manager(cfg)}))
    out["kubernetes/node-label-patch.yaml"] = _yaml(_manifest(
        "Node", "v1", {"name": cfg.node_name, "labels": cluster.node_labels(cfg),
                       "annotations": {"pulumi.com/patchFieldManager": cluster.field_manager(cfg)}}))
    return out


def assumed_host_facts(cfg: StackConfig, host: OfflineHost | None = None) -> HostFacts:
    """Facts of the host ``host`` describes (default: the assumed fresh Proxmox
    VE 8 host on Intel with GRUB): each configured GPU alone in its IOMMU group."""
    return offline_facts(cfg.gpus, host or OfflineHost())


def host_plan(cfg: StackConfig, facts: HostFacts | None, owner: str, offline: OfflineHost | None = None) -> HostPlan | None:
    """What HostVfioPrep would do to the host (None when host.enabled is false)."""
    if not cfg.host.enabled:
        return None
    return plan_host(inputs_from_config(cfg), facts or assumed_host_facts(cfg, offline), owner)


def host_artifacts(cfg: StackConfig, facts: HostFacts | None, owner: str, offline: OfflineHost | None = None) -> Artifacts:
    """The host plan (changes with reasons, diffs, commands, reboot) and the
    full content of every file it would write. Without facts read from the
    host, the first line says what was assumed."""
    plan = host_plan(cfg, facts, owner, offline)
    if plan is None:
        return {"host/plan.txt": "host.enabled is false: the program does not touch the Proxmox host.\n"}
    header = ("# " + (offline or OfflineHost()).summary(cfg.gpus)
              + "\n# For your host's real plan: gpunode hostprep facts --json ... > facts.json, then render --host-facts facts.json"
              + " (or describe the host by hand: docs/hostprep.md, Planning offline)\n\n"
              ) if facts is None else "# Planned from the host facts given with --host-facts\n\n"
    out = {"host/plan.txt": header + plan.render()}
    for change in plan.files:
        if change.after is not None:
            out[f"host/files{change.path}"] = change.after
    return out


def talos_artifacts(cfg: StackConfig) -> Artifacts:
    """The schematic the Image Factory gets, its ID (computed offline exactly
    as the factory does), the installer image and the machine-config patch."""
    schematic_yaml, _, image = planned_installer(cfg.talos)
    return {
        "talos/schematic.yaml": schematic_yaml,
        "talos/installer-image.txt": image + "\n",
        "talos/gpu-patch.yaml": gpu_patch_yaml(cfg, image),
    }


def consumer_artifacts(cfg: StackConfig) -> Artifacts:
    """The GPU workload spec as bjw-s app-template values (for Flux users) and,
    when Jellyfin is managed, the transcoding settings the program owns."""
    out = {"consumers/app-template-gpu-values.yaml": _yaml(gpu_workload_spec(cfg).app_template_values())}
    if cfg.jellyfin.enabled:
        out["consumers/jellyfin-encoding.json"] = json.dumps(encoding_wanted(cfg).settings(), indent=2) + "\n"
    return out


def graph_mermaid(raw_config: dict[str, Any]) -> str:
    """The program's component graph, from a mock-engine run of __main__.py:
    one subgraph per component, one edge per component dependency."""
    from tools.mockengine import PLACEHOLDER_SECRETS, run_program

    run = run_program(lambda: runpy.run_path(str(PROJECT_ROOT / "__main__.py"), run_name="__main__"),
                      raw_config, secret_keys=PLACEHOLDER_SECRETS, preview=True)
    components = [reg for reg in run.registrations if reg.type.startswith("proxmox-talos-gpu:")]
    node_id = {reg.urn: f"c{index}" for index, reg in enumerate(components)}
    owner: dict[str, str] = {}
    for reg in run.registrations:
        urns = [reg.urn, *run.ancestors(reg)]
        owner[reg.urn] = next((urn for urn in urns if urn in node_id), "")
    lines = ["flowchart TD"]
    for reg in components:
        children = sorted({f"{child.type.split(':')[-1]} {child.name}" for child in run.registrations
                           if child.parent == reg.urn and child.urn not in node_id})
        label = "<br/>".join([f"<b>{reg.type.split(':')[-1]}</b> {reg.name}", *children])
        lines.append(f'  {node_id[reg.urn]}["{label}"]')
    edges = set()
    for reg in run.registrations:
        target = owner.get(reg.urn)
        for dependency in reg.dependencies + [urn for deps in reg.property_dependencies.values() for urn in deps]:
            source = owner.get(dependency)
            if source and target and source != target:
                edges.add((node_id[source], node_id[target]))
    lines += [f"  {source} --> {target}" for source, target in sorted(edges)]
    return "\n".join(lines) + "\n"


PRODUCERS: list[Callable[[StackConfig], Artifacts]] = [talos_artifacts, kubernetes_artifacts, consumer_artifacts]


def render(cfg: StackConfig, raw_config: dict[str, Any], *, stack: str = "homelab",
           host_facts: HostFacts | None = None, with_graph: bool = True, offline: OfflineHost | None = None) -> Artifacts:
    artifacts = host_artifacts(cfg, host_facts, owner=f"{PROJECT}/{stack}", offline=offline)
    artifacts.update(proxmox_artifacts(cfg, host_facts))
    for producer in PRODUCERS:
        artifacts.update(producer(cfg))
    artifacts.update(monitoring_artifacts(cfg, stack, _yaml))
    if with_graph:
        artifacts["graph.mmd"] = graph_mermaid(raw_config)
    return artifacts


class RenderInputError(Exception):
    """A file render was given cannot be used; the message names it and says what to do."""


def load_host_facts(path: Path) -> HostFacts | OfflineHost:
    """The host facts in ``path``: read from the host (the JSON of ``hostprep
    facts --json``) or written by hand (an OfflineHost); RenderInputError says what is wrong."""
    try:
        return load_facts_file(path)
    except OfflineFactsError as error:
        raise RenderInputError(str(error)) from None


# render marks the folders it writes, and empties only folders so marked.
MARKER = ".proxmox-talos-gpu-render"
_TOP_LEVEL = {"host", "proxmox", "talos", "kubernetes", "consumers", "graph.mmd"}


def _is_render_folder(out: Path) -> bool:
    """Marked by render, or written by a render from before the mark (the
    same top-level names, graph.mmd among them)."""
    names = {child.name for child in out.iterdir()}
    return MARKER in names or ("graph.mmd" in names and names <= _TOP_LEVEL)


def check_out(out: Path) -> None:
    """Refuse (RenderInputError) an output path render may not use: a file,
    or a folder that is not empty and not an earlier render's."""
    if out.exists() and not out.is_dir():
        raise RenderInputError(f"--out {out} is a file; give a folder (it is created if missing)")
    if out.is_dir() and not _is_render_folder(out) and any(out.iterdir()):
        raise RenderInputError(f"--out {out} is not empty and is not a folder render wrote (no {MARKER} in it); "
                               "render empties its folder first, so give a new or empty folder")


def write(artifacts: Artifacts, out: Path) -> list[Path]:
    """Write ``artifacts`` into ``out``, emptied first, so it holds this render
    only. A path :func:`check_out` refuses is refused here too, and nothing in
    it is touched."""
    check_out(out)
    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("Written by `python -m components.render`; the next render into this folder empties it first.\n")
        written = []
        for relative, text in sorted(artifacts.items()):
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    except OSError as error:
        raise RenderInputError(f"--out {out}: cannot write {error.filename or out}: {error.strerror or error}") from None
    return written


def main(argv: list[str] | None = None) -> int:
    parser = PlainParser(
        prog=program("render"), description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 rendered; 1 rendered, but the host plan is refused (see host/plan.txt); "
               "2 a bad stack file, --host-facts or --out (nothing written).")
    add_stack(parser)
    add_project_dir(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, metavar="DIR",
                        help="output folder, emptied first; a non-empty folder render did not write is refused "
                             "(default: render/<stack> in the project folder)")
    target.add_argument("--flux", type=Path, metavar="DIR",
                        help="write only the Flux GitOps tree (ks.yaml, app/, jellyfin-gpu-values.yaml) into DIR, e.g. your "
                             "repository's apps/base/nvidia-gpu-operator/ (default: not written); exit 1, writing nothing, "
                             "when a file there holds other content")
    parser.add_argument("--force", action="store_true", help="with --flux: replace files that hold other content (default: off)")
    parser.add_argument("--host-facts", type=Path, metavar="FILE",
                        help="the host's facts, to plan the host files for your host: the JSON of `hostprep facts --json`, or a "
                             "short file written by hand (docs/hostprep.md, Planning offline) (default: none; they are planned for "
                             "an assumed fresh Proxmox VE 8 host on Intel with GRUB, which host/plan.txt says in its first line)")
    parser.add_argument("--json", action="store_true", help="print the written files as a JSON list instead of one per line (default: off)")
    args = parser.parse_args(argv)
    chosen = stack_from_args(args, "render")
    if chosen is None:
        return 2
    args.stack = chosen.name
    try:
        path = chosen.path
        cfg = load_stack_file(path)
        raw = read_stack_file(path)
    except ConfigError as error:
        print(f"render: {error}", file=sys.stderr)
        return 2
    if args.flux:
        try:
            result = render_flux(cfg, args.stack, args.flux, dump=_yaml, force=args.force)
        except ConfigError as error:
            print(f"render: {error}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({key: [str(args.flux / path) for path in getattr(result, key)] for key in ("written", "unchanged", "refused")}
                             | {"notes": list(result.notes)}))
        else:
            print(result.report(), file=sys.stderr if result.refused else sys.stdout)
        return result.exit_code
    out = args.out or args.project_dir / "render" / args.stack
    owner = f"{PROJECT}/{args.stack}"
    try:
        check_out(out)  # before the work, so a bad --out fails at once
        loaded = load_host_facts(args.host_facts) if args.host_facts else None
        facts = loaded if isinstance(loaded, HostFacts) else None
        offline = loaded if isinstance(loaded, OfflineHost) else None
        plan = host_plan(cfg, facts, owner, offline)
        written = write(render(cfg, raw, stack=args.stack, host_facts=facts, offline=offline), out)
    except RenderInputError as error:
        print(f"render: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([str(path) for path in written]))
    else:
        for path in written:
            print(path)
    if plan is not None and plan.refused:
        print(f"render: the host plan is REFUSED ({plan.refusals[0]}); read {out / 'host' / 'plan.txt'}, "
              "fix that on the host or in the stack, and render again", file=sys.stderr)
        return 1
    print(f"render: wrote {len(written)} files to {out}; next: read {out / 'host' / 'plan.txt'} and {out / 'graph.mmd'}, "
          f"then `./setup.sh {args.stack} preview` (needs the Pulumi CLI, render does not)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from components.cli import run

    sys.exit(run("render", main))
