"""gpuStack.monitoring is validated at the edge: bad values name the key,
the value and what is allowed; only the owner stack may set it."""

from __future__ import annotations

import copy

import pytest

from components.config import ConfigError, parse_stack_config
from tests.conftest import stack_file_config


def raw_with(**monitoring) -> dict:
    raw = copy.deepcopy(stack_file_config())
    raw["gpuStack"]["monitoring"] = monitoring
    return raw


@pytest.mark.parametrize(("monitoring", "key", "says"), [
    ({"gpuTemperatureCelsius": 200}, "gpuStack.monitoring.gpuTemperatureCelsius", "110"),
    ({"dashboardNamespace": "Monitoring"}, "gpuStack.monitoring.dashboardNamespace", "DNS"),
    ({"dashboardLabel": "grafana dashboard"}, "gpuStack.monitoring.dashboardLabel", "label key"),
    ({"prometheusLabels": {"release": "kube prometheus"}}, "gpuStack.monitoring.prometheusLabels", "label value"),
    ({"dashbord": True}, "gpuStack.monitoring.dashbord", "dashboard"),
])
def test_a_bad_monitoring_value_names_the_key(monitoring, key, says):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw_with(**monitoring))
    assert key in str(caught.value) and says in str(caught.value)


def test_a_non_owner_stack_may_not_set_monitoring():
    raw = raw_with(gpuTemperatureCelsius=80)
    raw["gpuStack"].pop("prometheusOperator")
    raw["gpuStack"]["ownsClusterObjects"] = False
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    assert "gpuStack.monitoring" in str(caught.value) and "ownsClusterObjects: true" in str(caught.value)
