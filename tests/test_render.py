"""`render` writes, offline and with no credentials, what the program would
apply, and it matches what the program registers under the mock engine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from components.config import SECRETS, parse_stack_config
from components.talos.machine_config import NodeSpec
from tests.conftest import HOMELAB_STACK, ROOT, created_config, run_main, stack_file_config
from tools.mockengine import reveal
from tools.render import render


def _camel(value):
    """snake_case keys -> the camelCase Pulumi sends to the engine."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            head, *rest = key.split("_")
            out[head + "".join(part.title() for part in rest)] = _camel(item)
        return {key: item for key, item in out.items() if item is not None}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


@pytest.fixture(scope="module")
def homelab_render():
    raw = created_config()
    return render(parse_stack_config(raw), raw)


@pytest.fixture(scope="module")
def homelab_run():
    return run_main(created_config())


def test_render_cli_needs_no_credentials_and_no_engine(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in {spec.env for spec in SECRETS} and not key.startswith("PULUMI_")}
    result = subprocess.run([sys.executable, "-m", "components.render", "--stack", "homelab", "--out", str(tmp_path), "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "graph.mmd").read_text().startswith("flowchart TD")
    assert (tmp_path / "kubernetes" / "helm-values.yaml").exists()


def test_render_cli_reports_bad_config_without_traceback(tmp_path):
    bad = HOMELAB_STACK.read_text().replace("vmId: 1105", "vmId: 5")
    (tmp_path / "Pulumi.render-bad-test.yaml").write_text(bad)
    result = subprocess.run([sys.executable, "-m", "components.render", "--stack", "render-bad-test", "--project-dir", str(tmp_path),
                             "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert not (tmp_path / "out").exists()
    assert "proxmox-talos-gpu:vm.vmId = 5" in result.stderr and "Traceback" not in result.stderr


def test_rendered_helm_values_match_the_registered_release(homelab_render, homelab_run):
    release = homelab_run.one("kubernetes:helm.sh/v3:Release")
    assert yaml.safe_load(homelab_render["kubernetes/helm-values.yaml"]) == reveal(release.inputs["values"]), release.urn
    chart = yaml.safe_load(homelab_render["kubernetes/helm-release.yaml"])
    assert (chart["chart"], chart["version"], chart["repo"]) == (release.inputs["chart"], release.inputs["version"], release.inputs["repositoryOpts"]["repo"])


def test_rendered_config_map_matches_the_registered_one(homelab_render, homelab_run):
    config_map = homelab_run.one("kubernetes:core/v1:ConfigMap")
    rendered = yaml.safe_load(homelab_render["kubernetes/time-slicing-configmap.yaml"])
    assert rendered["data"] == config_map.inputs["data"], config_map.urn


def test_rendered_vm_matches_the_registered_vm(homelab_render, homelab_run):
    vm = homelab_run.one("proxmoxve:index/vmLegacy:VmLegacy")
    rendered = _camel(yaml.safe_load(homelab_render["proxmox/vm.yaml"])["vm"])
    registered = reveal(vm.inputs)
    for key, value in rendered.items():
        assert registered.get(key) == value, f"{vm.urn}: {key} rendered {value!r}, registered {registered.get(key)!r}"


def test_rendered_owned_keys_of_an_existing_vm_match_what_the_program_writes():
    raw = stack_file_config()
    rendered = yaml.safe_load(render(parse_stack_config(raw), raw)["proxmox/vm.yaml"])["vm"]
    (slots,) = [reg for reg in run_main(raw).registrations if reg.name.endswith("-gpu-slots")]
    spec = reveal(slots.inputs)["spec"]
    assert rendered["owned_keys"] == {"hostpci0": "mapping=moody-good-gpu0,pcie=1", "balloon": "0"}, rendered
    assert (rendered["vm_id"], rendered["node"]) == (spec["vmId"], spec["node"]) == (1105, "pve5"), slots.urn


def test_rendered_node_label_matches_the_registered_patch(homelab_render, homelab_run):
    patch = homelab_run.one("kubernetes:core/v1:NodePatch")
    rendered = yaml.safe_load(homelab_render["kubernetes/node-label-patch.yaml"])
    assert rendered["metadata"]["labels"] == patch.inputs["metadata"]["labels"], patch.urn


def _mermaid_edges(graph: str, label: str) -> set[tuple[str, str]]:
    """Edges of a mermaid flowchart as (component, component), each node named
    by the first word of its label matching ``label`` (a regex group)."""
    import re

    names = dict(re.findall(rf'^\s*(\w+)\["{label}', graph, re.MULTILINE))
    edges = re.findall(r"^\s*(\w+) -->(?:\|[^|]*\|)? (\w+)\s*$", graph, re.MULTILINE)
    assert edges and all(source in names and target in names for source, target in edges), graph
    return {(names[source], names[target]) for source, target in edges}


def test_graph_has_an_edge_for_every_component_dependency():
    """The rendered graph (Jellyfin on, every component present) has exactly
    the edges docs/layout.md draws, and each one is a real dependency in the program."""
    raw = stack_file_config()
    raw["jellyfin"]["enabled"] = True
    rendered = _mermaid_edges(render(parse_stack_config(raw), raw)["graph.mmd"], r"<b>(\w+)</b>")
    drawn = (ROOT / "docs" / "layout.md").read_text().split("## The graph", 1)[1].split("```mermaid", 1)[1].split("```", 1)[0]
    assert rendered == _mermaid_edges(drawn, r"(\w+)<br/>")
    run = run_main(raw)
    component = {reg.type.rsplit(":", 1)[-1]: reg for reg in run.registrations if reg.type.startswith("proxmox-talos-gpu:")}

    def members(name: str) -> list:
        return [reg for reg in run.registrations if reg.urn == component[name].urn or component[name].urn in run.ancestors(reg)]

    for source, target in sorted(rendered):
        assert any(run.depends_on(later, earlier) for later in members(target) for earlier in members(source)), \
            f"the graph draws {source} --> {target}, but nothing in {target} waits for {source}"


def test_rendered_schematic_and_patch_match_the_registered_talos_node(homelab_render, homelab_run):
    schematic = homelab_run.one("talos:imageFactory/schematic:Schematic")
    assert schematic.inputs["schematic"] == homelab_render["talos/schematic.yaml"], schematic.urn
    config = homelab_run.one("pulumi-python:dynamic/talos:TalosMachineConfig")
    owned = NodeSpec.from_dict(reveal(config.inputs["spec"])).target
    machine = yaml.safe_load(homelab_render["talos/gpu-patch.yaml"])["machine"]
    assert machine["install"]["image"] == owned.image, config.urn
    assert [module["name"] for module in machine["kernel"]["modules"]] == list(owned.modules), config.urn
    assert machine["nodeLabels"] == dict(owned.node_labels), config.urn
    assert machine.get("sysctls", {}) == owned.sysctls, config.urn
    assert ("files" in machine) is owned.default_runtime, config.urn
    image = homelab_render["talos/installer-image.txt"].strip()
    assert image.startswith("factory.talos.dev/metal-installer/") and image.endswith(":v1.13.9")
    assert homelab_run.outputs["installerImage"] == image


def test_rendered_jellyfin_settings_are_what_the_resource_applies(homelab_run):
    import json

    raw = stack_file_config()
    raw["jellyfin"]["enabled"] = True
    artifacts = render(parse_stack_config(raw), raw, with_graph=False)
    wanted = json.loads(artifacts["consumers/jellyfin-encoding.json"])
    assert wanted["HardwareAccelerationType"] == "nvenc" and "av1" not in wanted["HardwareDecodingCodecs"]
    run = run_main(raw)
    (resource,) = [reg for reg in run.registrations if reg.name.endswith("-jellyfin-encoding")]
    registered = reveal(resource.inputs)
    assert registered["settings"] == wanted, resource.urn


def test_rendered_host_plan_comes_from_the_inputs_the_program_registers(homelab_render, homelab_run):
    from components.hostprep.spec import host_prep_spec

    (prep,) = [reg for reg in homelab_run.registrations if reg.name.endswith("-vfio")]
    inputs = host_prep_spec(parse_stack_config(stack_file_config()), "proxmox-talos-gpu/test").to_dict()
    # Pulumi drops None values on the wire.
    assert reveal(prep.inputs["gpus"]) == [{key: value for key, value in gpu.items() if value is not None} for gpu in inputs["gpus"]], prep.urn
    assert prep.inputs["owner"] == "proxmox-talos-gpu/test", prep.urn
    assert "ASSUMED host" in homelab_render["host/plan.txt"]
    assert homelab_render["host/files/etc/modprobe.d/proxmox-talos-gpu-vfio.conf"].endswith("options vfio-pci ids=10de:1eb8\n")


def test_render_plans_host_files_from_given_facts(tmp_path):
    """An AMD host on systemd-boot: its kernel command line file, never
    intel_iommu, and the facts file named in the plan."""
    import dataclasses
    import json

    from components.hostprep.facts import KERNEL_CMDLINE, facts_to_json
    from tools.render import assumed_host_facts

    cfg = parse_stack_config(stack_file_config())
    facts = dataclasses.replace(assumed_host_facts(cfg), cpu_vendor="amd", kernel_release="6.5.13-6-pve", bootloader="systemd-boot",
                                files={**assumed_host_facts(cfg).files, KERNEL_CMDLINE: "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"})
    facts_file = tmp_path / "facts.json"
    facts_file.write_text(json.dumps(facts_to_json(facts)))
    result = subprocess.run([sys.executable, "-m", "components.render", "--stack", "homelab", "--out", str(tmp_path / "out"),
                             "--host-facts", str(facts_file)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    plan = (tmp_path / "out" / "host" / "plan.txt").read_text()
    assert "ASSUMED" not in plan and "proxmox-boot-tool refresh" in plan and "intel_iommu" not in plan
    assert (tmp_path / "out" / "host" / "files" / "etc" / "kernel" / "cmdline").read_text().startswith("root=ZFS=rpool/ROOT/pve-1 boot=zfs")
