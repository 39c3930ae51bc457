"""Both delivery paths carry the same monitoring objects: the program
registers the dashboard ConfigMap and the PrometheusRule (owner stack,
prometheusOperator: true, helm or flux delivery with Pulumi-made objects),
and `render --flux` lists them in app/kustomization.yaml, so the real
`kubectl kustomize` builds them into the same objects."""

from __future__ import annotations

import copy

import pytest

from components.config import parse_stack_config
from components.monitoring import dashboard, rules
from tests.conftest import run_main, stack_file_config
from tests.flux.crds import assert_valid
from tests.flux.test_render_flux import build, kubectl  # noqa: F401 - the kubectl fixture
from tools import render
from tools.mockengine import reveal

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def raw_config(**gpu_stack) -> dict:
    raw = copy.deepcopy(stack_file_config())
    raw["gpuStack"].update({"prometheusOperator": True, **gpu_stack})
    return raw


def registered(run, type_: str, suffix: str) -> list[dict]:
    return [reveal(reg.inputs) for reg in run.by_type(type_) if reg.name.endswith(suffix)]


@pytest.mark.parametrize("delivery", ["helm", "flux"])
def test_the_owner_stack_registers_the_dashboard_and_the_rules(delivery):
    raw = raw_config(delivery=delivery)
    cfg = parse_stack_config(raw)
    run = run_main(raw)
    (config_map,) = registered(run, CONFIG_MAP, "-gpu-dashboard")
    assert config_map["data"] == dashboard.dashboard_config_map(cfg)["data"]
    assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1"}
    (rule,) = registered(run, PROMETHEUS_RULE, "-gpu-alerts")
    wanted = rules.prometheus_rule(cfg, "test")
    assert rule["spec"] == wanted["spec"] and rule["metadata"]["labels"] == wanted["metadata"]["labels"]
    assert rule["metadata"]["namespace"] == "gpu-operator"


@pytest.mark.parametrize("changes", [{"prometheusOperator": False}, {"delivery": "flux", "flux": {"objects": "git",
                                     "gitRepository": "profmoo-home", "path": "./kubernetes/homelab/apps/base/nvidia-gpu-operator/app"}}])
def test_no_monitoring_objects_without_the_operator_or_when_git_holds_them(changes):
    run = run_main(raw_config(**changes))
    assert registered(run, CONFIG_MAP, "-gpu-dashboard") == [] and registered(run, PROMETHEUS_RULE, "-gpu-alerts") == []


def test_dashboard_off_leaves_only_the_rules():
    run = run_main(raw_config(monitoring={"dashboard": False}))
    assert registered(run, CONFIG_MAP, "-gpu-dashboard") == [] and len(registered(run, PROMETHEUS_RULE, "-gpu-alerts")) == 1


def test_render_flux_lists_them_and_kustomize_builds_them(tmp_path, kubectl):  # noqa: F811 - the fixture
    cfg = parse_stack_config(raw_config())
    result = render.render_flux(cfg, "homelab", tmp_path, dump=render._yaml)
    assert result.exit_code == 0 and {"app/gpu-dashboard.yaml", "app/gpu-alerts.yaml"} <= set(result.written)
    built = build(kubectl, tmp_path / "app")
    (rule,) = [document for document in built if document["kind"] == "PrometheusRule"]
    assert rule == rules.prometheus_rule(cfg, "homelab")
    assert_valid(rule, "built PrometheusRule")
    config_maps = {document["metadata"]["name"]: document for document in built if document["kind"] == "ConfigMap"}
    assert config_maps[dashboard.CONFIG_MAP_NAME] == dashboard.dashboard_config_map(cfg)
    assert "time-slicing-config" in config_maps
