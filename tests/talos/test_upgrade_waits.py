"""The upgrade's own bounded waits (components/talos/upgrade_waits.py) on a
fake clock: the node's Talos API, then its Kubernetes node. Each poll that is
not the answer says what it saw; the bound, counted on the injected clock
only, ends in StepFailed naming the step and what to check. The provider
passes its ``clock``/``sleep`` through."""

from __future__ import annotations

from typing import Any

import pytest

from components.talos.upgrade_provider import TalosUpgradeProvider
from components.talos.upgrade_waits import StepFailed, answer, ready
from tests.stand_ins.clock import FakeClock
from tests.talos.conftest import TALOSCONFIG, FakeTalosctl

NODE, ENDPOINT = "192.168.8.123", "192.168.8.99"


def props(**extra: Any) -> dict[str, Any]:
    return {"node": NODE, "endpoint": ENDPOINT, "talosconfig": TALOSCONFIG, "timeoutSeconds": 30, "pollSeconds": 10, **extra}


def test_the_api_wait_returns_once_the_node_answers_with_a_line_per_refused_poll(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.set(down_calls=2)
    clock, said = FakeClock(), []
    facts = answer(props(), "before the walk", said.append, clock=clock, sleep=clock.sleep)
    assert facts.version == "v1.13.9"
    assert clock.sleeps == [10, 10]
    assert len(said) == 2 and all(line.startswith(f"before the walk: waiting for {NODE}'s Talos API (") for line in said)


def test_a_node_that_never_answers_stops_at_the_bound_on_the_injected_clock(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.set(down_calls=-1)
    clock, said = FakeClock(), []
    with pytest.raises(StepFailed) as error:
        answer(props(timeoutSeconds=25), "upgrade step 1 of 1", said.append, clock=clock, sleep=clock.sleep)
    message = str(error.value)
    assert message.startswith(f"upgrade step 1 of 1: {NODE} did not answer within 25 s (")
    assert f"`talosctl -n {NODE} dmesg`" in message and "the next `pulumi up` continues from where the node is" in message
    assert clock.sleeps == [10, 10, 5], "never sleeps past the bound"
    assert len(said) == 3


def test_the_ready_wait_reports_each_state_and_stops_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    states = iter(["NotReady", "NotReady", "Ready"])
    monkeypatch.setattr("components.talos.upgrade_waits.kubernetes_state", lambda _props: next(states))
    clock, said = FakeClock(), []
    ready(props(kubeconfig="k", nodeName="moody-good"), "step", said.append, 30, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [10, 10]
    assert said == ["step: waiting for Kubernetes node moody-good (NotReady)"] * 2 + ["step: Kubernetes node moody-good is Ready"]

    monkeypatch.setattr("components.talos.upgrade_waits.kubernetes_state", lambda _props: "NotReady")
    clock = FakeClock()
    with pytest.raises(StepFailed, match=r"^step: Kubernetes node moody-good is NotReady after 30 s; check `kubectl describe node"):
        ready(props(kubeconfig="k", nodeName="moody-good"), "step", said.append, 15, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [10, 5]


def test_without_a_kubeconfig_there_is_nothing_to_wait_for() -> None:
    clock = FakeClock()
    ready(props(), "step", pytest.fail, 30, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_the_provider_waits_on_its_own_clock(fake_talosctl: FakeTalosctl) -> None:
    fake_talosctl.set(down_calls=-1)
    provider, clock = TalosUpgradeProvider(), FakeClock()
    provider.clock, provider.sleep = clock, clock.sleep
    with pytest.raises(StepFailed, match="did not answer within 20 s"):
        provider._answer(props(timeoutSeconds=20), "before the walk", lambda line: None)
    assert clock.sleeps == [10, 10]
