"""Write every artifact a stack would apply into a folder, offline and with no
credentials, from the same pure planners the program uses:

    python -m components.render --stack homelab --out render/homelab \
        [--host-facts facts.json]

Host files depend on the host (CPU vendor, kernel, bootloader, the GPU's
functions); without `--host-facts` (the JSON of
`python -m components.hostprep facts --json`) they are planned for an assumed
fresh Proxmox VE 8 host on Intel, which `host/plan.txt` says. The graph is drawn from the program itself, run
under Pulumi's mock engine with placeholder secrets.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from components import cluster
from components.config import PROJECT, ConfigError, StackConfig, parse_stack_config, read_stack_file
from components.consumers.jellyfin import encoding_wanted
from components.consumers.workload import gpu_workload_spec
from components.hostprep.facts import ETC_MODULES, GRUB_DEFAULT, READ_FILES, HostFacts, PciFunction, facts_from_json
from components.hostprep.plan import inputs_from_config, plan_host
from components.talos.machine_config import gpu_patch_yaml
from components.talos.schematic import planned_installer
from components.vm import pci_mappings, vm_args

ROOT = Path(__file__).resolve().parents[1]

Artifacts = dict[str, str]


def _yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _manifest(kind: str, api_version: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def proxmox_artifacts(cfg: StackConfig) -> Artifacts:
    return {"proxmox/vm.yaml": _yaml({"pciMappings": pci_mappings(cfg), "vm": vm_args(cfg)})}


def kubernetes_artifacts(cfg: StackConfig) -> Artifacts:
    stack = cfg.gpu_stack
    out: Artifacts = {}
    config_data = {cfg.config_key: cluster.device_plugin_config_yaml(cfg)}
    if stack.owns_cluster_objects:
        out["kubernetes/namespace.yaml"] = _yaml(_manifest(
            "Namespace", "v1", {"name": stack.namespace, "labels": cluster.PRIVILEGED_NAMESPACE_LABELS}))
        out["kubernetes/time-slicing-configmap.yaml"] = _yaml(_manifest(
            "ConfigMap", "v1", {"name": stack.config_map_name, "namespace": stack.namespace}, data=config_data))
        chart = cluster.helm_chart(cfg)
        out["kubernetes/helm-release.yaml"] = _yaml({
            "release": chart.release_name, "namespace": stack.namespace,
            "chart": chart.chart, "repo": chart.repo, "version": chart.version,
        })
        out["kubernetes/helm-values.yaml"] = _yaml(chart.values)
        if stack.mode == "devicePlugin":
            out["kubernetes/runtimeclass.yaml"] = _yaml(_manifest(
                "RuntimeClass", "node.k8s.io/v1", {"name": cluster.RUNTIME_CLASS}, handler=cluster.RUNTIME_CLASS))
    else:
        out["kubernetes/time-slicing-configmap-patch.yaml"] = _yaml(_manifest(
            "ConfigMap", "v1", {"name": stack.config_map_name, "namespace": stack.namespace,
                                "annotations": {"pulumi.com/patchFieldManager": cluster.field_manager(cfg)}},
            data=config_data))
    out["kubernetes/node-label-patch.yaml"] = _yaml(_manifest(
        "Node", "v1", {"name": cfg.node_name, "labels": cluster.node_labels(cfg),
                       "annotations": {"pulumi.com/patchFieldManager": cluster.field_manager(cfg)}}))
    return out


# A fresh Proxmox VE 8 host on an Intel Xeon (the guide's pve5), for planning
# host files offline when no real facts are given. Written into the output.
ASSUMED_HOST = {
    "cpu_vendor": "intel",
    "kernel_release": "6.8.12-4-pve",
    "bootloader": "grub-uefi",
    "cmdline": "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=/dev/mapper/pve-root ro quiet",
    "etc_default_grub": 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="Proxmox VE"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n',
    "etc_modules": "# /etc/modules: kernel modules to load at boot time.\n",
}


def assumed_host_facts(cfg: StackConfig) -> HostFacts:
    """Facts of the assumed fresh host: each configured GPU as one function on
    nouveau, alone in its IOMMU group."""
    functions = {
        gpu.address: PciFunction(
            address=gpu.address, vendor_device=gpu.id, class_code="0x030200",
            subsystem_id=gpu.subsystem_id or "", driver="nouveau",
            iommu_group=gpu.iommu_group if gpu.iommu_group is not None else 40 + index,
        )
        for index, gpu in enumerate(cfg.gpus)
    }
    files: dict[str, str | None] = {path: None for path in READ_FILES}
    files[GRUB_DEFAULT] = ASSUMED_HOST["etc_default_grub"]
    files[ETC_MODULES] = ASSUMED_HOST["etc_modules"]
    return HostFacts(
        cpu_vendor=ASSUMED_HOST["cpu_vendor"], kernel_release=ASSUMED_HOST["kernel_release"],
        bootloader=ASSUMED_HOST["bootloader"], cmdline=ASSUMED_HOST["cmdline"], iommu_active=True,
        functions=functions, files=files, devices=dict(functions),
    )


def host_artifacts(cfg: StackConfig, facts: HostFacts | None, owner: str) -> Artifacts:
    """The host plan (changes with reasons, diffs, commands, reboot) and the
    full content of every file it would write."""
    if not cfg.host.enabled:
        return {"host/plan.txt": "host.enabled is false: the program does not touch the Proxmox host.\n"}
    assumed = facts is None
    plan = plan_host(inputs_from_config(cfg), facts or assumed_host_facts(cfg), owner)
    header = ("# Planned for an ASSUMED host (not read from yours): "
              + json.dumps({key: value for key, value in ASSUMED_HOST.items() if not key.startswith("etc_")})
              + "\n# For your host's real plan: python -m components.hostprep facts --json ... > facts.json,"
              + " then render --host-facts facts.json\n\n") if assumed else "# Planned from the host facts given with --host-facts\n\n"
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
    from components.mockengine import PLACEHOLDER_SECRETS, run_program

    run = run_program(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"),
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


PRODUCERS: list[Callable[[StackConfig], Artifacts]] = [proxmox_artifacts, talos_artifacts, kubernetes_artifacts, consumer_artifacts]


def render(cfg: StackConfig, raw_config: dict[str, Any], *, stack: str = "homelab",
           host_facts: HostFacts | None = None, with_graph: bool = True) -> Artifacts:
    artifacts = host_artifacts(cfg, host_facts, owner=f"{PROJECT}/{stack}")
    for producer in PRODUCERS:
        artifacts.update(producer(cfg))
    if with_graph:
        artifacts["graph.mmd"] = graph_mermaid(raw_config)
    return artifacts


def write(artifacts: Artifacts, out: Path) -> list[Path]:
    written = []
    for relative, text in sorted(artifacts.items()):
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.render", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="homelab", help="reads Pulumi.<stack>.yaml (default: homelab)")
    parser.add_argument("--out", type=Path, help="output folder (default: render/<stack>)")
    parser.add_argument("--host-facts", type=Path, help="JSON of `python -m components.hostprep facts --json` (default: an assumed fresh host)")
    parser.add_argument("--json", action="store_true", help="print the list of written files as JSON")
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="folder holding Pulumi.<stack>.yaml (default: the project root)")
    args = parser.parse_args(argv)
    stack_file = args.project_dir / f"Pulumi.{args.stack}.yaml"
    if not stack_file.exists():
        print(f"render: no {stack_file.name} in {args.project_dir}", file=sys.stderr)
        return 2
    raw = read_stack_file(stack_file)
    try:
        cfg = parse_stack_config(raw)
    except ConfigError as error:
        print(f"render: {error}", file=sys.stderr)
        return 2
    out = args.out or ROOT / "render" / args.stack
    facts = facts_from_json(json.loads(args.host_facts.read_text())) if args.host_facts else None
    written = write(render(cfg, raw, stack=args.stack, host_facts=facts), out)
    if args.json:
        print(json.dumps([str(path) for path in written]))
    else:
        for path in written:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
