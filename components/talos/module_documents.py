"""Kernel modules a node's machine config loads through ``KernelModuleConfig``
documents (pure).

From Talos 1.14 a module can be its own document next to v1alpha1::

    apiVersion: v1alpha1
    kind: KernelModuleConfig
    name: nvidia
    parameters: [...]

(pkg/machinery/config/types/runtime/kernel_module.go@v1.14.0-rc.1; the
v1.14 NVIDIA guide uses it). Talos merges these with the deprecated
``machine.kernel.modules`` and the document wins on a name both have
(pkg/machinery/config/container/container.go@v1.14.0-rc.1
``KernelModuleConfigs``), so a module a document loads is never added to
``machine.kernel.modules`` again: that copy would be ignored and would hide
the document's parameters from anyone reading the v1alpha1 document."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

KIND, API_VERSION = "KernelModuleConfig", "v1alpha1"


def document_modules(documents: Iterable[Any]) -> list[str]:
    """The names of the modules the ``KernelModuleConfig`` documents load."""
    return [str(document["name"]) for document in documents
            if isinstance(document, Mapping) and document.get("kind") == KIND and document.get("apiVersion") == API_VERSION
            and document.get("name")]
