"""State written before the layout changed still loads: Pulumi state holds
each dynamic provider serialized with dill, by module path (pulumi
sdk/python/lib/pulumi/dynamic/dynamic.py ``serialize_provider``; loaded by
dynamic/__main__.py ``get_provider`` with ``dill.loads``). The blobs in
tests/data/old_layout/ were serialized that way from the layout before the
GPU capability table, the migration plan and the bounded wait moved
(tests/data/old_layout/README.md); each is loaded here and driven through
``delete``/``diff``/``update`` as the engine would."""

from __future__ import annotations

import base64
from pathlib import Path

import dill
import pytest

from tests.doctor.fakecli import FakeCli, answer, install_on_path, rule
from tests.doctor.samples import node_json

BLOBS = Path(__file__).resolve().parent / "data" / "old_layout"


def load(name: str):
    return dill.loads(base64.b64decode((BLOBS / f"{name}.b64").read_text().strip()))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    return install_on_path(tmp_path, monkeypatch)


def test_every_old_provider_blob_loads_as_the_provider_class_at_its_path():
    from components.consumers.provider import JellyfinEncodingProvider
    from components.gpu_migration import GpuModeMigrationProvider
    from components.readiness.provider import GpuReadinessProvider

    for name, cls in (("gpu_migration.GpuModeMigrationProvider", GpuModeMigrationProvider),
                      ("readiness.provider.GpuReadinessProvider", GpuReadinessProvider),
                      ("consumers.provider.JellyfinEncodingProvider", JellyfinEncodingProvider)):
        assert type(load(name)) is cls, name


def test_an_old_migration_provider_deletes_and_diffs():
    provider = load("gpu_migration.GpuModeMigrationProvider")
    assert provider.delete("gpu-mode-migration-gpu-operator", {"namespace": "gpu-operator"}) is None
    olds = {"namespace": "gpu-operator", "releaseName": "nvidia-device-plugin", "pendingChanges": []}
    assert not provider.diff("id", olds, dict(olds)).changes
    assert provider.diff("id", olds, {**olds, "pendingChanges": ["remove RuntimeClass nvidia (ours)"]}).changes


def test_an_old_jellyfin_provider_deletes_with_nothing_to_restore():
    assert load("consumers.provider.JellyfinEncodingProvider").delete("id", {"originals": {}}) is None


def test_an_old_readiness_gate_updates_through_the_bounded_wait(fake: FakeCli):
    fake.set_rules("kubectl", [rule(["get", "node", "moody-good", "-o", "json"],
                                    answer(node_json(allocatable={"nvidia.com/gpu": None})), answer(node_json()))])
    provider = load("readiness.provider.GpuReadinessProvider")
    slept: list[float] = []
    provider.clock, provider.sleep, provider.progress = (lambda: sum(slept)), slept.append, (lambda message: None)
    props = {"nodeName": "moody-good", "gpus": 1, "expectedGpus": 4, "configKey": "moody-good", "namespace": "gpu-operator",
             "timeoutSeconds": 900, "pollSeconds": 5.0, "maxPollSeconds": 30.0, "kubeconfig": "apiVersion: v1\nkind: Config\n"}
    outs = provider.update("moody-good-gpu-ready", props, props).outs
    assert outs["allocatable"] == 4 and slept == [5.0]
    assert provider.delete("moody-good-gpu-ready", props) is None
