"""Every dynamic provider of the program stores camelCase keys in the Pulumi
state, and every dynamic Resource class annotates the attributes the SDK
really gives it (its props' names: pulumi/runtime/rpc.py
transfer_properties), checked on the whole program under the mock engine
with every dynamic resource switched on."""

from __future__ import annotations

import base64
import copy
import inspect
import re
from collections.abc import Iterator
from typing import Any

import dill
import pulumi
import pulumi.dynamic
import pytest

from components.dynamic import PROVIDER_KEY
from tests.conftest import run_main, stack_file_config
from tools.mockengine import ProgramRun, reveal

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
DYNAMIC = "pulumi-python:dynamic"

# Inputs whose dict keys are someone else's names, not a structure of ours:
# checked no deeper. Anything else nested (host prep's gpus[], the VM's spec
# and its slots[], the Talos NodeSpec, the readiness gate's helmRelease) is
# ours and held to the style. No input is keyed by a GPU address: addresses
# are values there (gpus[].address); the maps keyed by them (drivers,
# iommuGroups) are outputs.
DATA_MAPS = {
    "spec.nodeLabels": "Kubernetes label names from talos.nodeLabels (`drmoo.io/role`)",
    "settings": "Jellyfin's own setting names (PascalCase, its EncodingOptions API)",
    "reasons": "keyed by the same Jellyfin setting names",
    "originals": "what the node or Jellyfin held before the first change, under the tool's own names",
}

# The providers this config must reach: the test cannot pass by registering nothing.
EXPECTED_PROVIDERS = {
    "HostPrepProvider", "VmAdoptProvider", "TalosUpgradePreflightProvider", "TalosMachineConfigProvider",
    "TalosUpgradeProvider", "GpuModeMigrationProvider", "FluxPreflightProvider", "GpuReadinessProvider",
    "JellyfinEncodingProvider",
}


def everything_on() -> dict[str, Any]:
    """The reference stack with every dynamic resource: host prep (host.enabled),
    the VM adopted (vm.source: existing), the node's running config
    (talos.configSource: running) with the preflight and the upgrade, the GPU
    mode migration (Talos 1.13, operator mode), Flux delivery (its preflight),
    readiness, and Jellyfin."""
    raw = copy.deepcopy(stack_file_config("homelab"))
    assert raw["host"]["enabled"] and raw["vm"]["source"] == "existing" and raw["talos"].get("configSource", "running") == "running"
    raw["gpuStack"]["delivery"] = "flux"
    raw["jellyfin"]["enabled"] = True
    return raw


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_main(everything_on())


def provider_class(inputs: dict[str, Any]) -> str:
    """The class of the provider the engine would run (the pickled ``__provider``)."""
    return type(dill.loads(base64.b64decode(inputs[PROVIDER_KEY]))).__name__


def keys(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, key) of every dict key in ``value``, into our own nested
    structures and lists of them, not into DATA_MAPS."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            yield where, key
            if where not in DATA_MAPS:
                yield from keys(item, where)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item, f"{path}[]")


def test_every_dynamic_provider_registers_camel_case_keys_only(run):
    seen: dict[str, str] = {}
    bad = []
    for reg in run.registrations:
        if not reg.type.startswith(DYNAMIC):
            continue
        inputs = reveal(reg.inputs)
        provider = provider_class(inputs)
        seen[reg.name] = f"{reg.type} ({provider})"
        for path, key in keys({k: v for k, v in inputs.items() if k != PROVIDER_KEY}):
            if not CAMEL.match(key):
                bad.append(f"{reg.name} ({provider}): {path}")
    covered = "\n  ".join(f"{name}: {what}" for name, what in sorted(seen.items()))
    assert bad == [], "snake_case or other keys in the state:\n  " + "\n  ".join(bad) + f"\ncovered:\n  {covered}"
    providers = {what.split(" (")[1].rstrip(")") for what in seen.values()}
    assert EXPECTED_PROVIDERS <= providers, f"not reached: {sorted(EXPECTED_PROVIDERS - providers)}; covered:\n  {covered}"


def test_the_key_walk_stops_at_data_maps_and_enters_lists_of_ours():
    found = [path for path, key in keys({"gpus": [{"iommuGroup": 1, "sub_key": 2}], "settings": {"EnableX": True},
                                         "spec": {"nodeLabels": {"drmoo.io/role": "w"}, "vmId": 1}})
             if not CAMEL.match(key)]
    assert found == ["gpus[].sub_key"]


def _dynamic_classes() -> list[type]:
    out, todo = [], list(pulumi.dynamic.Resource.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("components."):
            out.append(cls)
    return sorted(set(out), key=lambda c: c.__qualname__)


def test_every_dynamic_resource_annotates_only_the_props_it_registers(monkeypatch):
    registered: dict[type, set[str]] = {}
    original = pulumi.dynamic.Resource.__init__

    def record(self, provider, name, props, opts=None):
        registered.setdefault(type(self), set()).update(props)
        original(self, provider, name, props, opts)

    monkeypatch.setattr(pulumi.dynamic.Resource, "__init__", record)
    run_main(everything_on())
    classes = _dynamic_classes()
    assert {c.__name__ for c in classes} >= {"HostPrepResource", "TalosUpgrade", "TalosUpgradePreflight", "JellyfinEncoding"}
    wrong = []
    for cls in classes:
        assert cls in registered, f"{cls.__module__}.{cls.__qualname__} is not registered by this config"
        for name, annotation in inspect.get_annotations(cls).items():
            if "Output[" in str(annotation) and name not in registered[cls]:
                wrong.append(f"{cls.__module__}.{cls.__qualname__}.{name}: not a prop ({sorted(registered[cls])})")
    assert wrong == [], "annotations that no prop backs (the attribute would not exist):\n  " + "\n  ".join(wrong)
