"""MigrationSpec: the GPU mode migration's inputs as one value, in the keys
the state already holds."""

from __future__ import annotations

from components.cluster import DEVICE_PLUGIN_CHART
from components.config import parse_stack_config
from components.gpu_migration_plan import UNINSTALL_POLL_SECONDS, UNINSTALL_TIMEOUT_SECONDS, MigrationSpec, migration_spec

# What GpuModeMigration stores today (without the kubeconfig and its outputs).
STORED = {"namespace": "gpu-operator", "releaseName": "nvidia-device-plugin", "adoptGuideObjects": True,
          "fluxObjects": "git", "gitDevicePlugin": "suspend", "stack": "homelab", "uninstallTimeoutSeconds": 1200}


def test_to_dict_writes_the_stored_keys_and_from_dict_reads_them_back():
    spec = MigrationSpec.from_dict({**STORED, "kubeconfig": "secret", "pendingChanges": [], "removed": None})
    assert spec.to_dict() == STORED
    assert MigrationSpec.from_dict(spec.to_dict()) == spec
    assert (spec.uninstall_timeout_seconds, spec.poll) == (1200, UNINSTALL_POLL_SECONDS)


def test_a_poll_override_is_carried_and_an_absent_one_is_not_written():
    spec = MigrationSpec.from_dict({**STORED, "pollSeconds": 0.05})
    assert spec.poll == 0.05 and spec.to_dict() == {**STORED, "pollSeconds": 0.05}
    assert "pollSeconds" not in MigrationSpec.from_dict(STORED).to_dict()


def test_a_migration_stored_before_the_flux_keys_reads_with_the_old_defaults():
    spec = MigrationSpec.from_dict({"namespace": "gpu-operator", "releaseName": "nvidia-device-plugin"})
    assert spec == MigrationSpec("gpu-operator", "nvidia-device-plugin", adopt_guide_objects=False, flux_objects="pulumi",
                                 git_device_plugin="refuse", stack="<stack>", uninstall_timeout_seconds=UNINSTALL_TIMEOUT_SECONDS)


def test_the_spec_of_a_stack_names_its_device_plugin_and_flux_policy(homelab):
    cfg = parse_stack_config(homelab)
    spec = migration_spec(cfg, "homelab")
    assert spec.to_dict() == {"namespace": cfg.gpu_stack.namespace, "releaseName": DEVICE_PLUGIN_CHART,
                              "adoptGuideObjects": cfg.gpu_stack.adopt_guide_objects, "fluxObjects": cfg.gpu_stack.flux.objects,
                              "gitDevicePlugin": cfg.gpu_stack.flux.git_device_plugin, "stack": "homelab",
                              "uninstallTimeoutSeconds": UNINSTALL_TIMEOUT_SECONDS}
    assert "kubeconfig" not in spec.to_dict()
