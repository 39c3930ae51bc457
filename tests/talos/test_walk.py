"""From the guide's node (Talos 1.11.6 + the device plugin, installed by Helm
or by Flux) to Talos 1.13.9 and the GPU Operator in one `pulumi up`: the
Talos part of the graph run the engine's way, in graph order, against the
stand-in talosctl (a node that reboots into each version) and kubectl (the
cluster, with Flux's controllers)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from components.flux.objects import helm_release, helm_repository
from components.gpu_migration_facts import OWNER_LABEL
from components.talos.config_documents import load_documents
from tests.stand_ins.kubectl_objects import FakeKubectl, flux_device_plugin, installed_device_plugin, node, runtime_class
from tests.talos.conftest import TALOSCONFIG, FakeTalosctl
from tests.talos.engine import engine, registration
from tests.talos.running_configs import as_text, worker_documents
from tests.talos.test_component import CONFIG, UPGRADE, run_node
from tests.talos.test_flux_migration import plugin_cfg

PREFLIGHT = "pulumi-python:dynamic/talos:TalosUpgradePreflight"
MIGRATION = "pulumi-python:dynamic/migration:GpuModeMigration"
OLD = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"


class Stack:
    """The Talos resources of one stack, in graph order, and their state:
    `up` checks and creates (or diffs and updates) each in turn, as the
    engine does, and stops at the first failure, keeping the state of the
    resources that finished (what an interrupted `pulumi up` leaves)."""

    ORDER = (("preflight", PREFLIGHT, ""), ("config", CONFIG, ""), ("walk to 1.12", UPGRADE, "-upgrade-before-1.13"),
             ("migration", MIGRATION, ""), ("walk to 1.13", UPGRADE, "-talos-upgrade"))

    def __init__(self, homelab: dict[str, Any], env: dict[str, str], **props: Any):
        run, _ = run_node(homelab)
        self.resources = {name: registration(run, type_, suffix) for name, type_, suffix in self.ORDER}
        self.env = env
        self.props = props
        self.state: dict[str, dict[str, Any]] = {}
        self.log: list[str] = []

    def up(self) -> dict[str, Any] | None:
        """None when every resource succeeded, else the failed one's error."""
        for name, _, _ in self.ORDER:
            provider, props = self.resources[name]
            props = {**props, **(self.props if name.startswith("walk") else {})}
            if name.startswith("walk") and "config" in self.state:
                props["originals"] = self.state["config"]["originals"]  # the config's output feeds the walk
            olds = self.state.get(name)
            checked = engine(provider, "check", props, self.env, olds=olds)
            if "error" in checked or checked["ok"]["failures"]:
                return checked
            inputs = checked["ok"]["inputs"]
            if olds is None:
                result = engine(provider, "create", inputs, self.env)
            elif engine(provider, "diff", inputs, self.env, olds=olds)["ok"]["changes"]:
                result = engine(provider, "update", inputs, self.env, olds=olds)
            else:
                self.log.append(f"{name}: unchanged")
                continue
            self.log.append(f"{name}: {result.get('stderr', '')}")
            if "error" in result:
                return result
            self.state[name] = result["ok"]["outs"]
        return None


@pytest.fixture
def guides_node(fake_talosctl: FakeTalosctl, fake_kubectl: FakeKubectl) -> tuple[FakeTalosctl, FakeKubectl]:
    fake_talosctl.node("v1.11.6", OLD, config=as_text(worker_documents("v1.11.6")))
    fake_talosctl.publish(OLD)
    fake_kubectl.objects([*installed_device_plugin(), runtime_class(), node()])
    return fake_talosctl, fake_kubectl


def upgrades(fake: FakeTalosctl) -> list[str]:
    """The versions of the upgrades that took place (the node changed)."""
    return [call["argv"][call["argv"].index("--image") + 1].rpartition(":")[2] for call in fake.calls()
            if "upgrade" in call["argv"] and call["mutated"]]


def test_one_up_walks_1_11_to_1_13_with_the_mode_migration_in_between(homelab, guides_node) -> None:
    talos, kube = guides_node
    stack = Stack(homelab, talos.env(), pollSeconds=0.05, kubeconfig=KUBECONFIG)
    stack.resources["migration"][1]["adoptGuideObjects"] = True  # the guide's hand-made RuntimeClass
    assert stack.up() is None, stack.log
    assert talos.get("version") == "v1.13.9" and talos.reboots == 2, "one reboot per version step"
    assert upgrades(talos) == ["v1.12.11", "v1.13.9"]
    deletions = [call for call in kube.calls() if call["mutated"]]
    assert deletions and {call["talos_version"] for call in deletions} == {"v1.12.11"}, \
        "the device plugin and RuntimeClass go after the step to 1.12 and before the step to 1.13"
    assert not kube.has("DaemonSet", "nvidia-device-plugin") and not kube.has("RuntimeClass", "nvidia")
    machine = load_documents(talos.running_config())[0]["machine"]
    assert machine["install"]["wipe"] is False and "net.core.bpf_jit_harden" not in machine["sysctls"]
    assert not any(entry["path"] == "/etc/cri/conf.d/20-customization.part" for entry in machine["files"]), "the 1.13 guide sets no default runtime"
    walk_1_12 = next(line for line in stack.log if line.startswith("walk to 1.12"))
    for progress in ("answers with Talos v1.12.11", "lists the extensions nonfree-kmod-nvidia-production, nvidia-container-toolkit-production",
                     "Kubernetes node moody-good is Ready"):
        assert progress in walk_1_12, progress
    config = next(line for line in stack.log if line.startswith("config"))
    assert "machine.sysctls[net.core.bpf_jit_harden]: add '1'" in config and "--mode=staged" in config, "the 1.12 guide's sysctl, staged"
    walk_1_13 = next(line for line in stack.log if line.startswith("walk to 1.13"))
    assert "config: machine.sysctls[net.core.bpf_jit_harden]: remove '1'" in walk_1_13, "the step to 1.13 stages the 1.13 config"
    for call in talos.calls():
        assert not any("wipe" in arg for arg in call["argv"]) and "reset" not in call["argv"]

    calls = len(talos.calls())
    assert stack.up() is None, stack.log
    assert talos.reboots == 2 and upgrades(talos) == ["v1.12.11", "v1.13.9"], "a second run upgrades and reboots nothing"
    assert not any(call["mutated"] for call in talos.calls()[calls:])


def test_the_guides_runtime_class_stops_the_walk_before_1_13(homelab, guides_node) -> None:
    talos, kube = guides_node
    stack = Stack(homelab, talos.env(), pollSeconds=0.05)
    error = stack.up()
    assert error["error"] == "MigrationRefused" and "gpuStack.adoptGuideObjects" in error["message"]
    assert talos.get("version") == "v1.12.11", "stopped on the last 1.12, before the step to 1.13"
    assert kube.has("RuntimeClass", "nvidia") and kube.has("DaemonSet", "nvidia-device-plugin")


def test_one_up_with_the_device_plugin_from_flux_deletes_its_helmrelease_between_1_12_and_1_13(homelab, fake_talosctl: FakeTalosctl,
                                                                                                  fake_kubectl: FakeKubectl) -> None:
    """The stack ran in device-plugin mode with Flux delivery; now operator
    mode on 1.13.9: helm-controller uninstalls the device plugin while the
    node runs 1.12.11, and nothing brings it back."""
    talos, kube = fake_talosctl, fake_kubectl
    talos.node("v1.11.6", OLD, config=as_text(worker_documents("v1.11.6")))
    talos.publish(OLD)
    before = plugin_cfg(homelab)
    kube.install_flux()
    kube.objects([*flux_device_plugin(helm_release(before), helm_repository(before), "pulumi"), runtime_class(dict([OWNER_LABEL])), node()])
    homelab["gpuStack"]["delivery"] = "flux"
    stack = Stack(homelab, talos.env(), pollSeconds=0.05, kubeconfig=KUBECONFIG)
    stack.resources["migration"][1]["pollSeconds"] = 0.05
    assert stack.up() is None, stack.log
    assert talos.get("version") == "v1.13.9" and upgrades(talos) == ["v1.12.11", "v1.13.9"]
    changed = [call for call in kube.calls() if call["mutated"] or call["reconciled"]]
    assert any("helm-controller: uninstalled gpu-operator/nvidia-device-plugin" in event for call in changed for event in call["reconciled"])
    assert {call["talos_version"] for call in changed} == {"v1.12.11"}, "removed and uninstalled after the step to 1.12, before the step to 1.13"
    kube.settle()
    assert {(obj["kind"], obj["metadata"]["name"]) for obj in kube.objects()} == {("Node", "moody-good")}, "nothing came back"


@pytest.mark.parametrize(("misbehaviour", "says"), [
    ("never-returns", "did not answer within 2 s"),
    ("no-extensions", "came back on v1.12.11 without the extensions nonfree-kmod-nvidia-production, nvidia-container-toolkit-production"),
    ("boots-old", "came back on Talos v1.11.6, not v1.12.11: the new image did not boot"),
])
def test_a_step_that_goes_wrong_stops_naming_the_step_and_what_to_check(homelab, guides_node, misbehaviour, says) -> None:
    talos, _ = guides_node
    talos.misbehave(misbehaviour)
    stack = Stack(homelab, talos.env(), pollSeconds=0.05, timeoutSeconds=2)
    error = stack.up()
    assert error["error"] == "StepFailed", error
    assert "upgrade step 1 of 1, Talos v1.11.6 -> v1.12.11" in error["message"] and says in error["message"]
    assert "talosctl" in error["message"], "it says what to check"
    assert "migration" not in stack.state, "nothing after the failed step runs"


def test_interrupted_after_each_step_the_next_up_continues_and_never_repeats_one(homelab, guides_node) -> None:
    talos, kube = guides_node
    stack = Stack(homelab, talos.env(), pollSeconds=0.05, timeoutSeconds=1)
    stack.resources["migration"][1]["adoptGuideObjects"] = True
    # The step to 1.12: talosctl's --wait gives up while the node reboots, and
    # the node is still not back when the walk's own wait ends.
    talos.misbehave("timeout", down_calls=1000)
    first = stack.up()
    assert first["error"] == "StepFailed" and "did not answer within 1 s" in first["message"]
    assert "the next `pulumi up` continues from where the node is" in first["message"]
    talos.set(down_calls=0)  # ... and it came back later, on 1.12.11
    assert stack.up() is None, stack.log
    assert upgrades(talos) == ["v1.12.11", "v1.13.9"], "each step ran once"
    assert talos.reboots == 2 and not kube.has("RuntimeClass", "nvidia")
    # Interrupted after the step to 1.13 (the state lost the last walk): the
    # next up finds the node there and upgrades nothing.
    del stack.state["walk to 1.13"]
    assert stack.up() is None and upgrades(talos) == ["v1.12.11", "v1.13.9"] and talos.reboots == 2


def test_killed_mid_step_after_the_node_rebooted_the_next_up_takes_only_the_rest(homelab, guides_node) -> None:
    talos, _ = guides_node
    stack = Stack(homelab, talos.env(), pollSeconds=0.05)
    stack.resources["migration"][1]["adoptGuideObjects"] = True
    schematic = stack.resources["walk to 1.12"][1]["schematicId"]
    # An earlier up ran `talosctl upgrade` to 1.12.11 and was killed before it
    # saw the node come back: nothing of the walk is in the state.
    config = talos.state.parent / "talosconfig"
    config.write_text(TALOSCONFIG)
    subprocess.run([str(talos.bin_dir / "talosctl"), "--talosconfig", str(config), "upgrade", "-n", "192.168.8.123", "-e", "192.168.8.99",
                    "--image", f"factory.talos.dev/metal-installer/{schematic}:v1.12.11"], env=talos.env(), check=True, capture_output=True)
    assert stack.up() is None, stack.log
    assert upgrades(talos) == ["v1.12.11", "v1.13.9"] and talos.reboots == 2
