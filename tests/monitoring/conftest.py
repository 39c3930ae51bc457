"""The reference stack (moody-good, one Tesla T4, 4 shares) with the
Prometheus Operator on: the stack the monitoring objects are made for."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import StackConfig, parse_stack_config
from tests.conftest import stack_file_config


def monitoring_cfg(**gpu_stack: Any) -> StackConfig:
    """The stack with ``gpu_stack`` set in gpuStack; device-plugin mode on
    Talos v1.12 (the chart is refused from 1.13); a non-owner stack without
    the owner-only prometheusOperator."""
    raw = copy.deepcopy(stack_file_config("homelab"))
    raw["gpuStack"].update({"prometheusOperator": True, **gpu_stack})
    if gpu_stack.get("ownsClusterObjects") is False:
        raw["gpuStack"].pop("prometheusOperator")  # an owner-only key
    if gpu_stack.get("mode") == "devicePlugin":
        raw["talos"]["version"] = "v1.12.11"
    return parse_stack_config(raw)


@pytest.fixture
def cfg() -> StackConfig:
    return monitoring_cfg()
