"""The GPU machine-config patch: contents, and conformance of the full worker
config built with it to the Talos machine-config JSON schema."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from components.talos.machine_config import (
    CRI_CUSTOMIZATION_PATH,
    NVIDIA_MODULES,
    gpu_patch,
    gpu_patch_yaml,
    nvidia_default_runtime_toml,
    patch_problems,
)
from components.talos.schematic import extensions_for, installer_image, render_schematic, schematic_id
from tests.conftest import reference
from tests.talos.conftest import make_cfg
from tests.talos.running_configs import worker_documents

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"


def image_for(cfg) -> str:
    return installer_image(schematic_id(render_schematic(extensions_for(cfg.talos))), cfg.talos.version, cfg.talos.platform)


def merge(base: Any, patch: Any) -> Any:
    """Talos strategic merge for these documents: maps merge, lists append."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        return base + copy.deepcopy(patch)
    return copy.deepcopy(patch)


def load_schema(version: str) -> dict[str, Any]:
    return json.loads(reference("talos", f"config.schema.{version}.json").read_text())


def document_schema(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The one branch of the schema's oneOf meant for this document, so that
    errors name the offending field instead of "not valid under any"."""
    if "version" in document:
        name = "v1alpha1.Config"
    else:
        name = next(key for key, value in schema["$defs"].items()
                    if document.get("kind") in value.get("properties", {}).get("kind", {}).get("enum", []))
    return {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{name}"}


def schema_errors(version: str, documents: list[dict[str, Any]]) -> list[str]:
    schema = load_schema(version)
    root = jsonschema.Draft202012Validator(schema)
    errors = []
    for document in documents:
        if root.is_valid(document):
            continue
        branch = jsonschema.Draft202012Validator(document_schema(schema, document))
        found = [f"{list(error.absolute_path)}: {error.message}" for error in branch.iter_errors(document)]
        errors += found or [f"{document.get('kind', 'v1alpha1')}: not valid under the schema"]
    return errors


def patched(version: str, patch: dict[str, Any]) -> list[dict[str, Any]]:
    documents = worker_documents(version)
    return [merge(documents[0], patch), *documents[1:]]


@pytest.mark.parametrize(("talos_version", "schema"), [("v1.13.9", "v1.13.9"), ("v1.11.6", "v1.11.6")])
def test_worker_config_with_gpu_patch_validates_against_talos_schema(homelab, talos_version: str, schema: str) -> None:
    cfg = make_cfg(homelab, version=talos_version)
    patch = yaml.safe_load(gpu_patch_yaml(cfg, image_for(cfg)))
    assert schema_errors(schema, worker_documents(talos_version)) == [], "the base worker config itself must be valid"
    assert schema_errors(schema, patched(talos_version, patch)) == []


def test_patch_for_1_13_follows_its_guide_modules_only(cfg) -> None:
    machine = gpu_patch(cfg, image_for(cfg))["machine"]
    assert [item["name"] for item in machine["kernel"]["modules"]] == ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]
    assert "sysctls" not in machine, "the v1.13 NVIDIA guide (CDI toolkit) sets no bpf_jit_harden"
    assert "files" not in machine, "the v1.13 NVIDIA guide sets no default runtime"


def test_patch_for_1_12_sets_the_toolkit_sysctl_and_default_runtime(homelab) -> None:
    cfg = make_cfg(homelab, version="v1.12.11")
    machine = gpu_patch(cfg, image_for(cfg))["machine"]
    assert machine["sysctls"] == {"net.core.bpf_jit_harden": "1"}
    assert [entry["path"] for entry in machine["files"]] == [CRI_CUSTOMIZATION_PATH]


def test_explicit_overrides_win_over_the_guide_of_the_version(homelab) -> None:
    on_1_13 = make_cfg(homelab, bpfJitHarden=True, nvidiaDefaultRuntime=True)
    machine = gpu_patch(on_1_13, image_for(on_1_13))["machine"]
    assert machine["sysctls"] == {"net.core.bpf_jit_harden": "1"} and machine["files"][0]["path"] == CRI_CUSTOMIZATION_PATH
    off_1_12 = make_cfg(homelab, version="v1.12.11", bpfJitHarden=False, nvidiaDefaultRuntime=False)
    machine = gpu_patch(off_1_12, image_for(off_1_12))["machine"]
    assert "sysctls" not in machine and "files" not in machine


def test_patch_installs_the_factory_image_without_wiping(cfg) -> None:
    image = image_for(cfg)
    install = gpu_patch(cfg, image)["machine"]["install"]
    assert install == {"disk": "/dev/sda", "image": image, "wipe": False}
    assert image.startswith("factory.talos.dev/metal-installer/") and image.endswith(":v1.13.9")


def test_patch_carries_the_guides_node_labels(cfg) -> None:
    labels = gpu_patch(cfg, image_for(cfg))["machine"]["nodeLabels"]
    assert labels["drmoo.io/gpu"] == "nvidia-t4"
    assert labels["drmoo.io/storage"] == "rook-osd-node"


def test_patch_makes_nvidia_the_default_runtime_with_containerd2_plugin_key(homelab) -> None:
    cfg = make_cfg(homelab, nvidiaDefaultRuntime=True)
    files = gpu_patch(cfg, image_for(cfg))["machine"]["files"]
    assert files == [{"op": "create", "path": CRI_CUSTOMIZATION_PATH, "permissions": 0o644,
                      "content": nvidia_default_runtime_toml("v1.13.9")}]
    assert '[plugins."io.containerd.cri.v1.runtime".containerd]' in files[0]["content"]
    assert 'default_runtime_name = "nvidia"' in files[0]["content"]


def test_default_runtime_and_bpf_sysctl_can_be_turned_off(homelab) -> None:
    cfg = make_cfg(homelab, version="v1.12.11", nvidiaDefaultRuntime=False, bpfJitHarden=False, nodeLabels={})
    machine = gpu_patch(cfg, image_for(cfg))["machine"]
    assert "files" not in machine and "sysctls" not in machine and "nodeLabels" not in machine
    assert [item["name"] for item in machine["kernel"]["modules"]] == list(NVIDIA_MODULES)


def test_containerd1_plugin_key_before_talos_1_8() -> None:
    assert '[plugins."io.containerd.grpc.v1.cri".containerd]' in nvidia_default_runtime_toml("v1.7.7")


def test_patch_yaml_round_trips_to_the_patch(cfg) -> None:
    image = image_for(cfg)
    assert yaml.safe_load(gpu_patch_yaml(cfg, image)) == gpu_patch(cfg, image)


def test_sound_patch_has_no_problems(cfg) -> None:
    assert patch_problems(gpu_patch(cfg, image_for(cfg)), cfg) == []


# --- wrong patches: caught by the schema where it can, by patch_problems where it cannot


def test_schema_catches_bpf_sysctl_written_as_a_number(cfg) -> None:
    patch = gpu_patch(cfg, image_for(cfg))
    patch["machine"]["sysctls"] = {"net.core.bpf_jit_harden": 1}  # the guide's bare 1
    assert any("sysctls" in error and "not of type 'string'" in error for error in schema_errors("v1.13.9", patched("v1.13.9", patch)))


def test_schema_catches_modules_listed_as_bare_names(cfg) -> None:
    patch = gpu_patch(cfg, image_for(cfg))
    patch["machine"]["kernel"]["modules"] = list(NVIDIA_MODULES)
    errors = schema_errors("v1.13.9", patched("v1.13.9", patch))
    assert any("modules" in error and "'nvidia' is not of type 'object'" in error for error in errors)


def test_schema_catches_a_misspelt_module_key(cfg) -> None:
    patch = gpu_patch(cfg, image_for(cfg))
    patch["machine"]["kernel"]["modules"] = [{"module": name} for name in NVIDIA_MODULES]
    assert any("Additional properties are not allowed ('module'" in error for error in schema_errors("v1.13.9", patched("v1.13.9", patch)))


def test_schema_catches_guides_features_and_network_on_talos_1_13(cfg) -> None:
    patch = gpu_patch(cfg, image_for(cfg))
    patch["machine"]["features"] = {"rbac": True, "stableHostname": True}
    patch["machine"]["network"] = {"hostname": "moody-good"}
    errors = schema_errors("v1.13.9", patched("v1.13.9", patch))
    assert any("'network' was unexpected" in error for error in errors)
    assert any("'rbac'" in error for error in errors)


def test_schema_catches_guides_boolean_kubelet_extra_arg(cfg) -> None:
    patch = gpu_patch(cfg, image_for(cfg))
    patch["machine"]["kubelet"] = {"extraArgs": {"rotate-server-certificates": True}}
    assert any("rotate-server-certificates" in error for error in schema_errors("v1.13.9", patched("v1.13.9", patch)))


def test_guides_generic_installer_image_passes_schema_but_is_caught(homelab) -> None:
    # The guide: install.image factory.talos.dev/installer/<id>:v1.11.6 and
    # extensions "via apply". The schema sees only a string.
    cfg = make_cfg(homelab, version="v1.13.9")
    patch = gpu_patch(cfg, f"factory.talos.dev/installer/{SID}:v1.13.9")
    assert schema_errors("v1.13.9", patched("v1.13.9", patch)) == []
    assert any("not the metal-installer form" in problem for problem in patch_problems(patch, cfg))


def test_plain_installer_without_schematic_is_caught(cfg) -> None:
    patch = gpu_patch(cfg, "ghcr.io/siderolabs/installer:v1.13.9")
    assert any("not an Image Factory installer" in problem for problem in patch_problems(patch, cfg))


def test_version_mismatch_between_image_and_config_is_caught(cfg) -> None:
    patch = gpu_patch(cfg, f"factory.talos.dev/metal-installer/{SID}:v1.11.6")
    assert any("row 16: versions must agree" in problem for problem in patch_problems(patch, cfg))


def test_wipe_and_missing_modules_are_caught(cfg) -> None:
    patch = gpu_patch(cfg, image_for(cfg))
    patch["machine"]["install"]["wipe"] = True
    patch["machine"]["kernel"]["modules"] = [{"name": "nbd"}]
    problems = patch_problems(patch, cfg)
    assert any("wipe must be false" in problem for problem in problems)
    assert any("lacks nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset" in problem for problem in problems)


@pytest.mark.parametrize(("version", "key"), [("v1.7.9", "io.containerd.grpc.v1.cri"), ("v1.8.0", "io.containerd.cri.v1.runtime"),
                                              ("v1.8.1", "io.containerd.cri.v1.runtime")])
def test_default_runtime_toml_is_containerds_table_for_the_talos_version(version: str, key: str) -> None:
    import tomllib

    assert tomllib.loads(nvidia_default_runtime_toml(version)) == {"plugins": {key: {"containerd": {"default_runtime_name": "nvidia"}}}}


def test_each_problem_is_reported_whole(cfg) -> None:
    patch = gpu_patch(cfg, image_for(cfg))
    del patch["machine"]["install"]["image"]
    patch["machine"]["install"]["wipe"] = True
    assert patch_problems(patch, cfg)[:2] == [
        "install.image '' is not an Image Factory installer: the NVIDIA extensions would not be installed",
        "install.wipe must be false: this node's disks may hold Ceph OSDs",
    ]


@pytest.mark.parametrize(("version", "caught"), [("v1.9.6", False), ("v1.10.0", True), ("v1.10.1", True)])
def test_generic_installer_form_is_refused_from_talos_1_10(homelab, version: str, caught: bool) -> None:
    cfg = make_cfg(homelab, version=version)
    image = f"factory.talos.dev/installer/{SID}:{version}"
    expected = [f"install.image {image!r} is not the metal-installer form; from Talos v1.10 the generic installer/ form loses "
                "the platform's kernel arguments"]
    assert patch_problems(gpu_patch(cfg, image), cfg) == (expected if caught else [])


