"""The walk against the stand-in talosctl and kubectl when something goes
wrong: a step that failed its extension or Ready check is not done on the
next run, a lost staged config is reported, a missing kubectl stops the run
before the first change, a talosctl that failed before the node got the
request is not called a fallback, and output that is not the node's answer
is waited out or named."""

from __future__ import annotations

import json

from components.talos.upgrade_drain import needed_tools
from tests.stand_ins.kubectl_objects import FakeKubectl, installed_device_plugin, node, runtime_class
from tests.talos.conftest import NVIDIA_EXTENSIONS, FakeTalosctl
from tests.talos.engine import engine
from tests.talos.running_configs import as_text, worker_documents
from tests.talos.test_walk import KUBECONFIG, OLD, Stack, upgrades


def guide(talos: FakeTalosctl, kube: FakeKubectl, *, ready: bool = True) -> None:
    talos.node("v1.11.6", OLD, config=as_text(worker_documents("v1.11.6")))
    talos.publish(OLD)
    kube.objects([*installed_device_plugin(), runtime_class(), node(ready=ready)])


def stack_for(homelab, talos: FakeTalosctl, **props) -> Stack:
    stack = Stack(homelab, talos.env(), pollSeconds=0.05, kubeconfig=KUBECONFIG, **props)
    stack.resources["migration"][1]["adoptGuideObjects"] = True  # the guide's hand-made RuntimeClass
    return stack


def test_a_step_that_came_back_without_its_extensions_is_done_again_on_the_next_run(homelab, fake_talosctl, fake_kubectl) -> None:
    talos, kube = fake_talosctl, fake_kubectl
    guide(talos, kube)
    stack = stack_for(homelab, talos)
    talos.misbehave("no-extensions")
    first = stack.up()
    assert first["error"] == "StepFailed" and "without the extensions" in first["message"], first
    assert talos.get("version") == "v1.12.11" and talos.get("extensions") == []
    assert stack.up() is None, stack.log
    assert upgrades(talos) == ["v1.12.11", "v1.12.11", "v1.13.9"], "the step to 1.12.11 again, then on"
    assert talos.get("extensions") == NVIDIA_EXTENSIONS
    assert not kube.has("DaemonSet", "nvidia-device-plugin")


def test_a_node_on_the_target_without_the_nvidia_extensions_converges(homelab, fake_talosctl, fake_kubectl) -> None:
    """On 1.13 without a kubeconfig: talosctl drains through the homelab's
    control-plane endpoint (tests/talos/test_upgrade_route.py has the rest)."""
    talos, kube = fake_talosctl, fake_kubectl
    kube.objects([node()])
    stack = Stack(homelab, talos.env(), pollSeconds=0.05)
    assert stack.up() is None, stack.log
    calls = len(talos.calls())
    talos.set(extensions=[])  # e.g. an earlier step that failed its extension check
    assert stack.up() is None, stack.log
    assert upgrades(talos) == ["v1.13.9"] and talos.get("extensions") == NVIDIA_EXTENSIONS
    assert any("upgrading to it again" in line for line in stack.log), stack.log
    assert any(call["mutated"] for call in talos.calls()[calls:])


def test_a_notready_node_keeps_its_device_plugin_and_is_not_upgraded_on(homelab, fake_talosctl, fake_kubectl) -> None:
    talos, kube = fake_talosctl, fake_kubectl
    guide(talos, kube, ready=False)
    stack = stack_for(homelab, talos, timeoutSeconds=1)
    first = stack.up()
    assert first["error"] == "StepFailed" and "moody-good is NotReady" in first["message"], first
    assert talos.get("version") == "v1.12.11"
    second = stack.up()
    assert second is not None and second["error"] == "StepFailed" and "NotReady" in second["message"], stack.log
    assert talos.get("version") == "v1.12.11" and upgrades(talos) == ["v1.12.11"], "not upgraded on"
    assert kube.has("DaemonSet", "nvidia-device-plugin") and kube.has("RuntimeClass", "nvidia"), "the device plugin stays"
    kube.objects([*installed_device_plugin(), runtime_class(), node(ready=True)])
    assert stack.up() is None, stack.log
    assert upgrades(talos) == ["v1.12.11", "v1.13.9"] and not kube.has("DaemonSet", "nvidia-device-plugin")


def test_a_staged_config_lost_before_the_reboot_is_reported_not_called_upgraded(homelab, fake_talosctl, fake_kubectl) -> None:
    talos, kube = fake_talosctl, fake_kubectl
    guide(talos, kube)
    talos.misbehave("loses-staged")
    stack = stack_for(homelab, talos)
    error = stack.up()
    assert error is not None and error["error"] == "StepFailed", stack.log
    assert "does not run the machine config staged for it" in error["message"], error["message"]
    assert "walk to 1.12" not in stack.state and "migration" not in stack.state
    assert kube.has("DaemonSet", "nvidia-device-plugin")


def test_a_missing_kubectl_stops_the_run_before_the_first_change(homelab, fake_talosctl) -> None:
    talos = fake_talosctl
    talos.node("v1.11.6", OLD, config=as_text(worker_documents("v1.11.6")))
    talos.publish(OLD)
    stack = stack_for(homelab, talos)
    stack.env = {**talos.env(), "PATH": str(talos.bin_dir)}  # talosctl only: no kubectl anywhere
    stack.resources["preflight"][1]["tools"] = ["talosctl", "kubectl"]  # the program's, with a kubeconfig
    error = stack.up()
    assert error is not None and "kubectl not found on PATH" in str(error), error
    assert not any(call["mutated"] for call in talos.calls()), "nothing was changed"


def test_the_program_asks_the_preflight_for_kubectl_when_it_has_a_kubeconfig() -> None:
    assert needed_tools({"kubeconfig": True, "nodeName": "moody-good"}) == ["talosctl", "kubectl"]
    assert needed_tools({"kubeconfig": False, "nodeName": "moody-good"}) == ["talosctl"]


def test_a_talosctl_that_failed_before_the_node_got_the_request_says_no_reboot_was_seen(homelab, fake_talosctl, fake_kubectl) -> None:
    talos, kube = fake_talosctl, fake_kubectl
    guide(talos, kube)
    talos.misbehave("hangs-before")
    stack = stack_for(homelab, talos)
    error = stack.up()
    assert error["error"] == "StepFailed", error
    assert "no reboot was seen" in error["message"] and "did not act on the upgrade request" in error["message"], error["message"]
    assert "fell back" not in error["message"]
    assert talos.reboots == 0 and talos.get("version") == "v1.11.6"


def test_an_empty_version_right_after_the_reboot_is_waited_out(homelab, fake_talosctl, fake_kubectl) -> None:
    talos, kube = fake_talosctl, fake_kubectl
    guide(talos, kube)
    talos.misbehave("slow", down_calls=0, version_empty=2)
    stack = stack_for(homelab, talos)
    assert stack.up() is None, stack.log
    assert upgrades(talos) == ["v1.12.11", "v1.13.9"]
    walk = next(line for line in stack.log if line.startswith("walk to 1.12"))
    assert "printed no Server section" in walk, walk


def test_non_yaml_extensions_output_names_the_command(homelab, fake_talosctl, fake_kubectl) -> None:
    talos, kube = fake_talosctl, fake_kubectl
    kube.objects([node()])
    stack = stack_for(homelab, talos)
    assert stack.up() is None, stack.log
    (talos.state / "garbage.json").write_text(json.dumps({"command": "extensions", "output": "<html>: {{ proxy error"}))
    provider, props = stack.resources["walk to 1.13"]
    checked = engine(provider, "check", {**props, "kubeconfig": KUBECONFIG}, talos.env(), olds=stack.state["walk to 1.13"])
    pending = checked["ok"]["inputs"]["pendingSteps"]
    assert "error" not in checked and "`talosctl get extensions` printed something that is not YAML" in pending[0], checked
