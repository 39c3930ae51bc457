"""GpuWorkloadSpec: the pod fragments for Pulumi-managed apps and the Helm
values for bjw-s app-template."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.config import parse_stack_config
from components.consumers.workload import gpu_workload_spec
from tests.consumers.conftest import homelab_cfg, homelab_raw
from tools.mockengine import run_program

# The GPU-related part of the guide's Jellyfin HelmRelease values (Phase 5.1,
# kubernetes/homelab/apps/media/jellyfin/app/helm-release.yaml), with enough
# of its surroundings to show where each key lives.
GUIDE_VALUES = yaml.safe_load("""
controllers:
  jellyfin:
    annotations:
      reloader.stakater.com/auto: "true"
    containers:
      app:
        image:
          repository: ghcr.io/jellyfin/jellyfin
          tag: 10.11.6
        env:
          TZ: America/New_York
          NVIDIA_VISIBLE_DEVICES: all
          NVIDIA_DRIVER_CAPABILITIES: all
        resources:
          requests:
            cpu: 4
            memory: 6Gi
            nvidia.com/gpu: 1
          limits:
            cpu: 16
            memory: 12Gi
            nvidia.com/gpu: 1
defaultPodOptions:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
  nodeSelector:
    drmoo.io/gpu: nvidia-t4
  tolerations:
    - key: nvidia.com/gpu
      operator: Exists
      effect: NoSchedule
""")

# The keys app-template knows where these values go. From bjw-s-labs/helm-charts
# charts/library/common (common-5.3.0): values.schema.json (top level),
# schemas/controllers.json ($defs.instance), schemas/containers.json
# (container), schemas/pod.json ($defs.options: the keys of defaultPodOptions
# and controllers.<name>.pod). Each of those objects refuses other keys there
# (additionalProperties / unevaluatedProperties: false).
TOP_KEYS = ["global", "defaultPodOptionsStrategy", "defaultPodOptions", "controllers", "serviceAccount", "configMaps", "configMapsFromFolder",
            "secrets", "defaultExternalSecretStoreRef", "externalSecrets", "secretsFromFolder", "ingress", "route", "listenerSets", "service",
            "serviceMonitor", "podMonitor", "networkpolicies", "persistence", "rbac", "rawResources"]
CONTROLLER_KEYS = ["enabled", "type", "annotations", "labels", "extraSelectorLabels", "pod", "replicas", "revisionHistoryLimit",
                   "applyDefaultContainerOptionsToInitContainers", "defaultContainerOptionsStrategy", "defaultContainerOptions",
                   "initContainers", "containers", "serviceAccount", "podDisruptionBudget", "strategy", "rollingUpdate",
                   "horizontalPodAutoscaler", "statefulset", "cronjob", "job"]
CONTAINER_KEYS = ["enabled", "args", "command", "dependsOn", "env", "envFrom", "image", "lifecycle", "nameOverride", "ports", "probes",
                  "resources", "restartPolicy", "securityContext", "stdin", "terminationMessagePath", "terminationMessagePolicy", "tty", "workingDir"]
POD_KEYS = ["affinity", "annotations", "automountServiceAccountToken", "dnsConfig", "dnsPolicy", "enableServiceLinks", "hostAliases", "hostIPC",
            "hostNetwork", "hostPID", "hostUsers", "hostname", "imagePullSecrets", "labels", "nodeSelector", "priorityClassName", "resources",
            "resourceClaims", "resizePolicy", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates", "securityContext",
            "shareProcessNamespace", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints"]
# core.v1.ResourceRequirements and core.v1.Toleration (Kubernetes API).
QUANTITIES = {"type": "object", "additionalProperties": {"type": ["string", "integer", "number"]}}
RESOURCES = {"type": "object", "additionalProperties": False, "properties": {"limits": QUANTITIES, "requests": QUANTITIES, "claims": {"type": "array"}}}
TOLERATION = {"type": "object", "additionalProperties": False,
              "properties": {key: {"type": ["string", "integer"]} for key in ("effect", "key", "operator", "tolerationSeconds", "value")}}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _object(keys: list[str], **typed: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": {**{key: {} for key in keys}, **typed}}


POD_OPTIONS = _object(POD_KEYS, nodeSelector=STRING_MAP, tolerations={"type": "array", "items": TOLERATION}, runtimeClassName={"type": "string"})
CONTAINER = _object(CONTAINER_KEYS, env=STRING_MAP, resources=RESOURCES)
CONTROLLER = _object(CONTROLLER_KEYS, containers={"type": "object", "additionalProperties": CONTAINER}, pod=POD_OPTIONS)
APP_TEMPLATE_SCHEMA = _object(TOP_KEYS, controllers={"type": "object", "additionalProperties": CONTROLLER}, defaultPodOptions=POD_OPTIONS)


def _paths(tree: Any, prefix: tuple = ()) -> set[tuple]:
    if isinstance(tree, dict):
        found: set[tuple] = set()
        for key, value in tree.items():
            found |= {prefix + (key,)} | _paths(value, prefix + (key,))
        return found
    return set()


def _merge(base: dict, extra: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else copy.deepcopy(value)
    return merged


def _without_gpu(values: dict) -> dict:
    """The guide's values with everything the spec provides taken out."""
    stripped = copy.deepcopy(values)
    app = stripped["controllers"]["jellyfin"]["containers"]["app"]
    for name in ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"):
        del app["env"][name]
    for part in ("requests", "limits"):
        del app["resources"][part]["nvidia.com/gpu"]
    for key in ("nodeSelector", "tolerations"):
        del stripped["defaultPodOptions"][key]
    return stripped


# -- the spec itself ---------------------------------------------------------


@pytest.fixture
def guide_cfg():
    """The reference stack with nvidia as containerd's default runtime, as on
    the guide's node (its values set no runtimeClassName)."""
    raw = homelab_raw()
    raw["talos"]["nvidiaDefaultRuntime"] = True
    return parse_stack_config(raw)


def test_homelab_spec_asks_for_one_gpu_share_on_the_t4_node(cfg):
    spec = gpu_workload_spec(cfg)
    assert spec.resources() == {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}
    assert spec.node_selector == {"drmoo.io/gpu": "nvidia-t4"}
    assert spec.tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    assert spec.env == {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,video,utility"}
    assert spec.runtime_class_name == "nvidia", "Talos 1.13's NVIDIA guide sets no default runtime: pods ask for RuntimeClass nvidia"


def test_no_runtime_class_where_nvidia_is_the_default_runtime():
    raw = homelab_raw()
    raw["talos"]["nvidiaDefaultRuntime"] = True
    assert gpu_workload_spec(parse_stack_config(raw)).runtime_class_name is None
    raw = homelab_raw()
    raw["talos"]["version"] = "v1.12.11"  # the 1.12 guide makes nvidia the default runtime
    raw["gpuStack"]["mode"] = "devicePlugin"
    assert gpu_workload_spec(parse_stack_config(raw)).runtime_class_name is None


def test_runtime_class_is_set_where_nvidia_is_not_the_default_runtime():
    raw = homelab_raw()
    raw["talos"]["nvidiaDefaultRuntime"] = False
    spec = gpu_workload_spec(parse_stack_config(raw))
    assert spec.runtime_class_name == "nvidia"
    assert spec.pod_spec_fragment()["runtimeClassName"] == "nvidia"
    assert spec.app_template_values()["defaultPodOptions"]["runtimeClassName"] == "nvidia"


def test_renamed_time_slices_are_requested_as_gpu_shared():
    raw = homelab_raw()
    raw["gpuStack"]["timeSlicing"]["renameByDefault"] = True
    spec = gpu_workload_spec(parse_stack_config(raw))
    assert spec.resources()["limits"] == {"nvidia.com/gpu.shared": 1}


def test_requests_above_what_the_node_advertises_are_refused(cfg):
    assert cfg.advertised_gpus == 4
    assert gpu_workload_spec(cfg, gpus=4).count == 4
    with pytest.raises(ValueError, match="advertises only 4"):
        gpu_workload_spec(cfg, gpus=5)
    with pytest.raises(ValueError, match="1 or more"):
        gpu_workload_spec(cfg, gpus=0)


def test_more_than_one_share_is_refused_when_the_plugin_fails_such_requests():
    raw = homelab_raw()
    raw["gpuStack"]["timeSlicing"]["failRequestsGreaterThanOne"] = True
    with pytest.raises(ValueError, match="failRequestsGreaterThanOne"):
        gpu_workload_spec(parse_stack_config(raw), gpus=2)


def test_without_a_gpu_label_the_node_is_picked_by_hostname():
    raw = homelab_raw()
    raw["talos"]["nodeLabels"] = {"drmoo.io/role": "worker"}
    assert gpu_workload_spec(parse_stack_config(raw)).node_selector == {"kubernetes.io/hostname": "moody-good"}


def test_two_gpu_node_leaves_visible_devices_to_the_device_plugin():
    raw = homelab_raw()
    raw["gpus"].append({"address": "af:00.0", "id": "10de:1eb8", "slot": "hostpci1", "generation": "turing"})
    spec = gpu_workload_spec(parse_stack_config(raw))
    assert "NVIDIA_VISIBLE_DEVICES" not in spec.env
    assert any("NVIDIA_VISIBLE_DEVICES" in note for note in spec.notes)


# -- Helm values for app-template --------------------------------------------


def test_app_template_values_reproduce_the_guides_gpu_settings(guide_cfg):
    cfg = guide_cfg
    values = gpu_workload_spec(cfg).app_template_values()
    merged = _merge(_without_gpu(GUIDE_VALUES), values)
    app = merged["controllers"]["jellyfin"]["containers"]["app"]
    guide_app = GUIDE_VALUES["controllers"]["jellyfin"]["containers"]["app"]
    assert app["resources"] == guide_app["resources"], "GPU request/limit next to the app's own cpu/memory"
    assert merged["defaultPodOptions"] == GUIDE_VALUES["defaultPodOptions"]
    assert app["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert app["env"]["TZ"] == "America/New_York", "the app's own env survives the merge"
    # Narrower than the guide's "all" on purpose: video + compute + utility.
    assert set(app["env"]["NVIDIA_DRIVER_CAPABILITIES"].split(",")) == {"compute", "video", "utility"}


def test_app_template_values_use_only_paths_the_guides_values_have(guide_cfg):
    cfg = guide_cfg
    values = gpu_workload_spec(cfg).app_template_values()
    assert _paths(values) <= _paths(GUIDE_VALUES), sorted(_paths(values) - _paths(GUIDE_VALUES))


def test_app_template_values_use_only_keys_app_template_knows(cfg):
    raw = homelab_raw()
    raw["talos"]["nvidiaDefaultRuntime"] = False
    for spec in (gpu_workload_spec(cfg), gpu_workload_spec(parse_stack_config(raw))):
        jsonschema.validate(spec.app_template_values(), APP_TEMPLATE_SCHEMA)
        jsonschema.validate(spec.app_template_values(controller="main", container="main"), APP_TEMPLATE_SCHEMA)
    jsonschema.validate(GUIDE_VALUES, APP_TEMPLATE_SCHEMA)


def test_key_check_refuses_a_key_app_template_does_not_know(cfg):
    values = gpu_workload_spec(cfg).app_template_values()
    values["defaultPodOptions"]["nodeSelectors"] = values["defaultPodOptions"].pop("nodeSelector")
    with pytest.raises(jsonschema.ValidationError, match="nodeSelectors"):
        jsonschema.validate(values, APP_TEMPLATE_SCHEMA)


def test_values_render_as_yaml_helm_reads_back_unchanged(cfg):
    values = gpu_workload_spec(cfg).app_template_values()
    assert yaml.safe_load(yaml.safe_dump(values, sort_keys=False)) == values


# -- fragments for Pulumi-managed apps ---------------------------------------


def test_pod_spec_fragment_puts_scheduling_on_the_pod_and_gpu_on_the_container(guide_cfg):
    cfg = guide_cfg
    fragment = gpu_workload_spec(cfg).pod_spec_fragment(container="jellyfin")
    assert fragment["nodeSelector"] == {"drmoo.io/gpu": "nvidia-t4"}
    assert fragment["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert fragment["containers"] == [{
        "name": "jellyfin",
        "resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}},
        "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}, {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,video,utility"}],
    }]
    assert "runtimeClassName" not in fragment


def _deployment_with(spec, own_env: list | None = None):
    def program():
        k8s.apps.v1.Deployment(
            "jellyfin",
            spec=k8s.apps.v1.DeploymentSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": "jellyfin"}),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels={"app": "jellyfin"}),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[k8s.core.v1.ContainerArgs(name="app", image="ghcr.io/jellyfin/jellyfin:10.11.6",
                                                              **spec.container_options(env=own_env))],
                        **spec.pod_options(),
                    ),
                ),
            ),
        )
    return run_program(program, {}).one("kubernetes:apps/v1:Deployment")


def test_pulumi_deployment_built_from_the_spec_carries_every_gpu_setting():
    raw = homelab_raw()
    raw["talos"]["nvidiaDefaultRuntime"] = False
    spec = gpu_workload_spec(parse_stack_config(raw))
    reg = _deployment_with(spec, own_env=[k8s.core.v1.EnvVarArgs(name="NVIDIA_DRIVER_CAPABILITIES", value="all"),
                                          k8s.core.v1.EnvVarArgs(name="TZ", value="UTC")])
    pod = reg.inputs["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"drmoo.io/gpu": "nvidia-t4"}, reg.urn
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], reg.urn
    assert pod["runtimeClassName"] == "nvidia", reg.urn
    container = pod["containers"][0]
    assert container["resources"] == {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}, reg.urn
    # The app's own NVIDIA_DRIVER_CAPABILITIES wins; the spec adds what is missing.
    assert container["env"] == [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "all"}, {"name": "TZ", "value": "UTC"},
                                {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}], reg.urn


def test_pulumi_deployment_without_runtime_class_when_nvidia_is_default(guide_cfg):
    cfg = guide_cfg
    pod = _deployment_with(gpu_workload_spec(cfg)).inputs["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod


def test_spec_is_built_from_config_alone(cfg):
    assert gpu_workload_spec(cfg) == gpu_workload_spec(homelab_cfg())
