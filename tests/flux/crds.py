"""Validate Flux objects as the API server would, against the Flux CRDs
vendored in tests/data/upstream/flux/: the apiVersion must name a served
version of the kind's CRD, and the object must satisfy that version's
openAPIV3Schema with unknown fields refused (kubectl's default field
validation, Strict, refuses them too; the API server would otherwise prune
them silently, so a misspelt field would just vanish), and its CEL rules
(``x-kubernetes-validations``).

The CEL rules of these CRDs use only ``has(self.f)``, ``self.f``, string
literals, ``==``, ``!=``, ``!``, ``&&``, ``||`` and parentheses; they are
translated token by token, and a rule using anything else fails the
validation instead of being skipped."""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.conftest import reference

CRD_FILES = {
    "HelmRelease": "flux/helmreleases.helm-controller-v1.6.3.yaml",
    "HelmRepository": "flux/helmrepositories.source-controller-v1.9.1.yaml",
    "OCIRepository": "flux/ocirepositories.source-controller-v1.9.1.yaml",
    "Kustomization": "flux/kustomizations.kustomize-controller-v1.9.4.yaml",
    # Not Flux: the monitoring objects render --flux adds to app/.
    "PrometheusRule": "prometheus-operator/prometheusrules.v0.93.0.yaml",
}


@cache
def crd(kind: str) -> dict[str, Any]:
    document = yaml.safe_load(reference(*CRD_FILES[kind].split("/")).read_text())
    assert document["spec"]["names"]["kind"] == kind, CRD_FILES[kind]
    return document


def _strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that
    lists its properties and does not preserve unknown fields."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _validator(kind: str, version: str) -> jsonschema.Draft7Validator:
    (entry,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == version]
    return jsonschema.Draft7Validator(_strict(copy.deepcopy(entry["schema"]["openAPIV3Schema"])))


_CEL_TOKEN = re.compile(r"\s*(has\(self(?:\.\w+)+\)|self(?:\.\w+)+|'[^'\\]*'|&&|\|\||!=|==|!|\(|\))")


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _has(node: Any, path: tuple[str, ...]) -> bool:
    *parents, last = path
    parent = _get(node, tuple(parents))
    return isinstance(parent, dict) and last in parent


def cel_holds(rule: str, value: Any) -> bool:
    """Evaluate one CEL rule of the supported subset against ``value``."""
    python, position = [], 0
    while position < len(rule.rstrip()):
        match = _CEL_TOKEN.match(rule, position)
        if not match:
            raise ValueError(f"CEL rule outside the supported subset at {rule[position:]!r}: {rule}")
        token, position = match.group(1), match.end()
        if token.startswith("has("):
            python.append(f"_has(self, {tuple(token[len('has(self.'):-1].split('.'))!r})")
        elif token.startswith("self."):
            python.append(f"_get(self, {tuple(token[len('self.'):].split('.'))!r})")
        else:
            python.append({"&&": "and", "||": "or", "!": "not"}.get(token, token))
    return bool(eval(" ".join(python), {"__builtins__": {}}, {"self": value, "_get": _get, "_has": _has}))  # noqa: S307 - our own translation


def _cel_problems(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    found = [f"{path or '(root)'}: {rule.get('message') or rule['rule']}"
             for rule in schema.get("x-kubernetes-validations") or [] if not cel_holds(rule["rule"], value)]
    if isinstance(value, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key in value:
                found += _cel_problems(child, value[key], f"{path}.{key}" if path else key)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += _cel_problems(schema["items"], item, f"{path}[{index}]")
    return found


def problems(document: dict[str, Any]) -> list[str]:
    """Why the API server would refuse ``document``; empty when it would not."""
    kind = document.get("kind")
    if kind not in CRD_FILES:
        return [f"kind {kind!r} is not a kind with a vendored CRD ({', '.join(CRD_FILES)})"]
    spec = crd(kind)["spec"]
    group, _, version = str(document.get("apiVersion", "")).rpartition("/")
    served = [v["name"] for v in spec["versions"] if v.get("served")]
    if group != spec["group"]:
        return [f"apiVersion {document.get('apiVersion')!r}: {kind} belongs to {spec['group']}"]
    if version not in served:
        return [f"apiVersion {document.get('apiVersion')!r}: {spec['names']['plural']}.{spec['group']} serves only {', '.join(served)}"]
    validator = _validator(kind, version)
    found = [f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
             for error in validator.iter_errors(document)]
    if not found:
        found += _cel_problems(validator.schema, document, "")
    metadata = document.get("metadata") or {}
    if not metadata.get("name"):
        found.append("metadata.name: required")
    if spec["scope"] == "Namespaced" and not metadata.get("namespace"):
        found.append("metadata.namespace: required here (the objects are applied as they are)")
    return found


def assert_valid(document: dict[str, Any], where: str = "") -> None:
    found = problems(document)
    assert found == [], f"{where or document.get('kind')}: {found}"
