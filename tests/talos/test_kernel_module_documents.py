"""A node whose machine config loads the NVIDIA modules through
``KernelModuleConfig`` documents (Talos 1.14's form,
pkg/machinery/config/types/runtime/kernel_module.go@v1.14.0-rc.1) does not
get them added again to ``machine.kernel.modules``."""

from __future__ import annotations

from typing import Any

from components.talos.adopt import merge, plan_adoption, restore
from components.talos.config_documents import load_documents
from components.talos.machine_config import NVIDIA_MODULES
from components.talos.module_documents import document_modules
from tests.talos.running_configs import as_text, worker_documents
from tests.talos.test_adopt import owned, state


def module_document(name: str, parameters: list[str] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {"apiVersion": "v1alpha1", "kind": "KernelModuleConfig", "name": name}
    if parameters:
        document["parameters"] = parameters
    return document


def with_module_documents(names: list[str]) -> list[dict[str, Any]]:
    documents = worker_documents("v1.13.9")
    params = {"nvidia": ["NVreg_OpenRmEnableUnsupportedGpus=1"]}
    return load_documents(as_text([*documents, *(module_document(name, params.get(name)) for name in names)]))


def v1alpha1_modules(documents: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in ((documents[0]["machine"].get("kernel") or {}).get("modules") or [])]


def test_modules_in_documents_are_not_added_again() -> None:
    before = with_module_documents(list(NVIDIA_MODULES))
    merged = merge(before, owned())
    assert not set(NVIDIA_MODULES) & set(v1alpha1_modules(merged.documents)), v1alpha1_modules(merged.documents)
    assert merged.documents[1:] == before[1:], "the documents pass through as they are"
    assert not any(change.path.startswith("machine.kernel.modules") for change in merged.changes)


def test_only_the_modules_no_document_loads_are_added() -> None:
    before = with_module_documents(["nvidia", "nvidia_uvm"])
    merged = merge(before, owned())
    assert [name for name in v1alpha1_modules(merged.documents) if name in NVIDIA_MODULES] == ["nvidia_drm", "nvidia_modeset"]
    back = restore(merged.documents, merged.originals, owned())
    assert back.documents == before, "destroy takes back only what adoption added"


def test_a_node_whose_documents_load_everything_needs_no_change_for_the_modules() -> None:
    documents = with_module_documents(list(NVIDIA_MODULES))
    plan = plan_adoption(state("v1.13.9", documents), owned(), upgrade_follows=False)
    assert not any("kernel.modules" in line for line in plan.lines()), plan.lines()


def test_only_kernel_module_config_documents_of_v1alpha1_count() -> None:
    assert document_modules([{"apiVersion": "v1alpha1", "kind": "KernelModuleConfig", "name": "nvidia"},
                             {"apiVersion": "v1alpha2", "kind": "KernelModuleConfig", "name": "nvidia_uvm"},
                             {"apiVersion": "v1alpha1", "kind": "SysctlConfig", "name": "nvidia_drm"}, "text"]) == ["nvidia"]
