"""The documents of a Talos machine config as this program reads and writes
them (YAML as Talos' Go YAML does, :mod:`components.talos.goyaml`), the
v1alpha1 document among them, and the error every refusal to adopt a
running config raises."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from components.talos.goyaml import TalosDumper, TalosLoader


class AdoptError(ValueError):
    """The running config cannot be adopted safely; the message says which
    path and why. Nothing was applied."""


def load_documents(text: str) -> list[Any]:
    """The documents of a machine config, as ``talosctl read
    /system/state/config.yaml`` prints it (empty documents dropped)."""
    try:
        documents = [document for document in yaml.load_all(text, Loader=TalosLoader) if document is not None]
    except yaml.YAMLError as error:
        raise AdoptError(f"the machine config is not valid YAML: {error}") from None
    if not documents:
        raise AdoptError("the machine config is empty")
    for index, document in enumerate(documents):
        if not isinstance(document, dict):
            raise AdoptError(f"document {index} of the machine config is not a mapping")
    return documents


def dump_documents(documents: Iterable[Mapping[str, Any]]) -> str:
    return "---\n".join(yaml.dump(document, Dumper=TalosDumper, sort_keys=False, default_flow_style=False, width=1 << 16)
                        for document in documents)


def v1alpha1_index(documents: list[Any]) -> int:
    """The v1alpha1 document (``version: v1alpha1``, no ``kind``)."""
    for index, document in enumerate(documents):
        if document.get("version") == "v1alpha1" and "kind" not in document:
            return index
    raise AdoptError("the machine config has no v1alpha1 document (`version: v1alpha1`); is this a Talos machine config?")


def get_path(data: Mapping[str, Any], dotted: str) -> Any:
    current: Any = data
    for part in dotted.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current
