"""The alert rules with Prometheus's own tool: the rule file passes
`promtool check rules`, and `promtool test rules` (data/gpu-alerts.test.yaml)
shows every alert firing on a synthetic series and quiet on a healthy one.
promtool comes from Debian's `prometheus` package (.ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.monitoring import rules
from tests.monitoring.conftest import monitoring_cfg
from tools.doctor.model import LAYERS
from tools.render import _yaml

DATA = Path(__file__).parent / "data"
UNIT_TESTS = DATA / "gpu-alerts.test.yaml"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed: apt-get install prometheus (Debian's package has it)")
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    print(f"$ promtool {' '.join(args)}\n{done.stdout}{done.stderr}")  # shown with pytest -s
    return done


def write_rules(folder: Path, cfg=None) -> Path:
    """The rule file render writes (kubernetes/monitoring/gpu-alerts.rules.yaml) for ``cfg``."""
    path = folder / "gpu-alerts.rules.yaml"
    path.write_text(_yaml(rules.rule_groups(cfg or monitoring_cfg(), "homelab")))
    shutil.copy(UNIT_TESTS, folder / UNIT_TESTS.name)
    return path


def test_promtool_check_rules_accepts_the_rule_file(tmp_path):
    write_rules(tmp_path)
    done = promtool("check", "rules", "gpu-alerts.rules.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules.alerts(monitoring_cfg(), 'homelab'))} rules found" in done.stdout


def test_promtool_check_rules_refuses_a_broken_expression(tmp_path):
    """The check is real: a rule with an expression that does not parse fails it."""
    path = write_rules(tmp_path)
    document = yaml.safe_load(path.read_text())
    document["groups"][0]["rules"][0]["expr"] = "max_over_time(DCGM_FI_DEV_XID_ERRORS[5m] > 0"
    path.write_text(_yaml(document))
    done = promtool("check", "rules", path.name, cwd=tmp_path)
    assert done.returncode == 1 and "FAILED" in done.stdout + done.stderr


def test_promtool_unit_tests_fire_and_stay_quiet(tmp_path):
    write_rules(tmp_path)
    done = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(("change", "broken"), [
    ({"monitoring": {"gpuTemperatureCelsius": 95}}, "GpuTemperatureHigh"),
    ({"timeSlicing": {"replicas": 1, "enabled": False}}, "GpuSharesNotAdvertised"),
])
def test_promtool_unit_tests_fail_when_a_rule_changes(tmp_path, change, broken):
    """The unit tests can fail: with the threshold at 95 °C the 86 °C series
    no longer fires; with one whole GPU expected, one advertised is healthy."""
    write_rules(tmp_path, monitoring_cfg(**change))
    done = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert done.returncode == 1 and f"alertname: {broken}" in done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    for alert in rules.alerts(monitoring_cfg(), "homelab"):
        mine = [check for check in checks if check["alertname"] == alert.name]
        assert any(check["exp_alerts"] for check in mine), f"{alert.name}: no unit test shows it firing"
        assert any(not check["exp_alerts"] for check in mine), f"{alert.name}: no unit test shows it quiet"


def test_every_alert_says_which_doctor_layer_to_check():
    for alert in rules.alerts(monitoring_cfg(), "homelab"):
        assert "python -m components.doctor --stack homelab --layer " in alert.description, alert.name
        layers = re.findall(r"--layer (\w+)", alert.description)
        assert layers and all(layer in LAYERS for layer in layers), (alert.name, layers)
        assert alert.summary and alert.severity in ("warning", "critical")


def test_the_exporter_job_follows_the_mode():
    """The operator's ServiceMonitor names the job after the Service's app label
    (jobLabel: app); the dcgm-exporter chart's has no jobLabel: the Service's
    name, the release name."""
    operator = {a.name: a.expr for a in rules.alerts(monitoring_cfg(), "homelab")}
    assert operator["DcgmExporterDown"] == 'up{job="nvidia-dcgm-exporter"} == 0'
    plugin = {a.name: a.expr for a in rules.alerts(monitoring_cfg(mode="devicePlugin"), "homelab")}
    assert plugin["DcgmExporterNotScraped"] == 'absent(up{job="dcgm-exporter"})'


def test_shares_rule_reads_the_renamed_resource():
    """With renameByDefault the node advertises nvidia.com/gpu.shared, which
    kube-state-metrics labels nvidia_com_gpu_shared."""
    expr = {a.name: a.expr for a in rules.alerts(monitoring_cfg(timeSlicing={"renameByDefault": True, "replicas": 8}), "homelab")}
    assert 'resource="nvidia_com_gpu_shared"' in expr["GpuSharesNotAdvertised"] and "< 8" in expr["GpuSharesNotAdvertised"]
