"""The gate's pure evaluation on node JSON samples and its bounded wait with an
injected clock (no real sleeping)."""

from __future__ import annotations

import pytest

from components.facts.kubernetes import parse_node
from components.kubectl import KubectlError
from components.readiness.gate import Expectation, GateError, evaluate, wait_for_gpu
from tests.doctor.samples import node_json
from tests.stand_ins.clock import FakeClock

WANT = Expectation(node_name="moody-good", gpus=1, advertised=4, config_key="moody-good", namespace="gpu-operator")


def node(**changes):
    return parse_node(node_json(**changes))


def test_ready_node_yields_count_product_and_driver() -> None:
    state = evaluate(node(), WANT)
    assert (state.ready, state.allocatable, state.product, state.driver_version) == (True, 4, "Tesla-T4-SHARED", "595.91.07")


@pytest.mark.parametrize(("observed", "layer", "says"), [
    (None, "Talos/VM", "not registered"),
    ({"allocatable": {"nvidia.com/gpu": None}}, "device plugin/driver", "advertises no nvidia.com/gpu"),
    ({"allocatable": {"nvidia.com/gpu": "0"}}, "device plugin/driver", "/proc/driver/nvidia/version"),
    ({"allocatable": {"nvidia.com/gpu": "1"}, "labels": {"nvidia.com/device-plugin.config": None}}, "time-slicing config",
     "nvidia.com/gpu=1, expected 4: the time-slicing config is not applied (node label nvidia.com/device-plugin.config=(unset), expected moody-good"),
    ({"allocatable": {"nvidia.com/gpu": "8"}}, "time-slicing config", "expected 4"),
    ({"labels": {"nvidia.com/gpu.product": None}}, "GPU Feature Discovery", "no nvidia.com/gpu.product label"),
])
def test_not_ready_names_the_missing_layer(observed, layer: str, says: str) -> None:
    state = evaluate(None if observed is None else node(**observed), WANT)
    assert not state.ready
    assert state.layer == layer
    assert says in state.message


SHARED = Expectation(node_name="moody-good", gpus=2, advertised=8, config_key="moody-good", resource="nvidia.com/gpu.shared")


def test_rename_by_default_counts_the_shared_resource() -> None:
    renamed = node(allocatable={"nvidia.com/gpu": None, "nvidia.com/gpu.shared": "8"})
    state = evaluate(renamed, SHARED)
    assert (state.ready, state.allocatable) == (True, 8)
    assert "advertises nvidia.com/gpu.shared=8" in state.message
    # The same node is not ready for a stack that counts the plain name.
    assert evaluate(renamed, WANT).layer == "time-slicing config"


@pytest.mark.parametrize(("allocatable", "layer", "says"), [
    ({"nvidia.com/gpu": "8"}, "time-slicing config", "advertises nvidia.com/gpu=8 but no nvidia.com/gpu.shared"),
    ({"nvidia.com/gpu": None, "nvidia.com/gpu.shared": "4"}, "time-slicing config", "nvidia.com/gpu.shared=4, expected 8"),
    ({"nvidia.com/gpu": None}, "device plugin/driver", "advertises no nvidia.com/gpu.shared"),
])
def test_rename_by_default_not_ready_names_the_layer(allocatable, layer: str, says: str) -> None:
    state = evaluate(node(allocatable=allocatable), SHARED)
    assert (state.ready, state.layer) == (False, layer)
    assert says in state.message


def test_driver_version_falls_back_to_major_minor_rev_and_may_be_unknown() -> None:
    older = node(labels={"nvidia.com/cuda.driver-version.full": None})
    assert evaluate(older, WANT).driver_version == "595.91.07"
    bare = node(labels={key: None for key in ("nvidia.com/cuda.driver-version.full", "nvidia.com/cuda.driver.major")})
    state = evaluate(bare, WANT)
    assert state.ready and state.driver_version == ""


def test_wait_polls_until_ready_with_capped_backoff_and_progress() -> None:
    clock = FakeClock(1000.0)
    answers = iter([None, node(allocatable={"nvidia.com/gpu": None}), node(allocatable={"nvidia.com/gpu": "1"}),
                    node(labels={"nvidia.com/gpu.product": None}), node(labels={"nvidia.com/gpu.product": None}), node()])
    messages: list[str] = []
    state = wait_for_gpu(lambda: next(answers), WANT, 900, poll=5, max_poll=30, clock=clock, sleep=clock.sleep, progress=messages.append)
    assert state.ready and state.allocatable == 4
    assert clock.sleeps == [5, 10, 20, 30, 30]
    assert [m.split("(")[1].split(")")[0] for m in messages[:5]] == [
        "Talos/VM", "device plugin/driver", "time-slicing config", "GPU Feature Discovery", "GPU Feature Discovery"]
    assert messages[-1].startswith("node moody-good advertises nvidia.com/gpu=4")
    assert "s left" in messages[0]


def test_timeout_fails_naming_the_last_missing_layer() -> None:
    clock = FakeClock(1000.0)
    with pytest.raises(GateError) as caught:
        wait_for_gpu(lambda: node(allocatable={"nvidia.com/gpu": "1"}), WANT, 60, poll=5, max_poll=30, clock=clock, sleep=clock.sleep,
                     progress=lambda message: None)
    message = str(caught.value)
    assert "not ready after 60 s" in message and "Missing layer: time-slicing config" in message
    assert sum(clock.sleeps) == pytest.approx(60), "the last sleep is cut to the deadline"
    assert max(clock.sleeps) <= 30


def test_unreachable_api_server_is_waited_out() -> None:
    clock = FakeClock(1000.0)
    calls = {"n": 0}

    def fetch():
        calls["n"] += 1
        if calls["n"] < 3:
            raise KubectlError("`kubectl get node moody-good -o json` failed: connection refused", kind="unreachable")
        return node()

    messages: list[str] = []
    assert wait_for_gpu(fetch, WANT, 300, clock=clock, sleep=clock.sleep, progress=messages.append).ready
    assert "(Kubernetes API)" in messages[0] and "connection refused" in messages[0]


def test_missing_kubectl_fails_at_once() -> None:
    clock = FakeClock(1000.0)

    def fetch():
        raise KubectlError("kubectl not found on PATH: install kubectl", kind="missing")

    with pytest.raises(GateError, match="kubectl not found on PATH"):
        wait_for_gpu(fetch, WANT, 300, clock=clock, sleep=clock.sleep, progress=lambda message: None)
    assert clock.sleeps == []
