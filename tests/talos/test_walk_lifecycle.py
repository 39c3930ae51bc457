"""Patch upgrades on Talos 1.13 (LifecycleService) against the stand-in
talosctl: extraKernelArgs on a GRUB node survive (--legacy), and a drain by
talosctl that fails after the image is written says a reboot is pending."""

from __future__ import annotations

from tests.stand_ins.kubectl_objects import FakeKubectl, node
from tests.talos.conftest import FakeTalosctl
from tests.talos.running_configs import as_text, worker_documents
from tests.talos.test_walk import Stack, upgrades

OLD_PATCH = "v1.13.4"


def patch_node(talos: FakeTalosctl, stack: Stack, *, kernel_args: list[str] | None = None) -> None:
    documents = worker_documents("v1.13.9")
    if kernel_args:
        documents[0]["machine"]["install"]["extraKernelArgs"] = kernel_args
    schematic = stack.resources["walk to 1.13"][1]["schematicId"]
    talos.node(OLD_PATCH, schematic, config=as_text(documents))
    talos.set(kernel_args=list(kernel_args or []), bootloader="grub")


def test_extra_kernel_args_on_a_grub_node_survive_a_patch_upgrade_on_1_13(homelab, fake_talosctl: FakeTalosctl, fake_kubectl: FakeKubectl) -> None:
    talos = fake_talosctl
    fake_kubectl.objects([node()])  # a cluster without the device plugin
    stack = Stack(homelab, talos.env(), pollSeconds=0.05)
    patch_node(talos, stack, kernel_args=["pcie_aspm=off"])
    assert stack.up() is None, stack.log
    assert talos.get("version") == "v1.13.9" and upgrades(talos) == ["v1.13.9"]
    assert talos.get("kernel_args") == ["pcie_aspm=off"], "LifecycleService would have dropped them"
    upgrade = next(call["argv"] for call in talos.calls() if "upgrade" in call["argv"] and call["mutated"])
    assert "--legacy" in upgrade
    walk = next(line for line in stack.log if line.startswith("walk to 1.13"))
    assert "--legacy keeps machine.install.extraKernelArgs pcie_aspm=off" in walk


def test_talosctls_drain_failing_after_the_image_is_written_says_a_reboot_is_pending(homelab, fake_talosctl: FakeTalosctl, fake_kubectl: FakeKubectl) -> None:
    talos = fake_talosctl
    fake_kubectl.objects([node()])  # a cluster without the device plugin
    stack = Stack(homelab, talos.env(), pollSeconds=0.05)
    patch_node(talos, stack)
    talos.set(controlplanes=[])  # talos.endpoint set, but to a node that serves no kubeconfig
    error = stack.up()
    assert error is not None and error["error"] == "StepFailed", stack.log
    assert "a reboot is pending" in error["message"] and "reboot" in error["message"], error["message"]
    assert talos.get("version") == OLD_PATCH and talos.get("pending_image").endswith(":v1.13.9") and talos.reboots == 0


def test_a_worker_as_the_endpoint_without_a_kubeconfig_is_refused_before_the_config(homelab, fake_talosctl: FakeTalosctl,
                                                                                    fake_kubectl: FakeKubectl) -> None:
    talos = fake_talosctl
    fake_kubectl.objects([node()])
    homelab["talos"].pop("endpoint", None)  # talosctl's endpoint is the worker itself
    stack = Stack(homelab, talos.env(), pollSeconds=0.05)
    patch_node(talos, stack)
    error = stack.up()
    assert error is not None and "proxmox-talos-gpu:talos.endpoint is not set" in str(error), error
    assert "config" not in stack.state, "refused by the preflight, before the config"
    assert not any(call["mutated"] for call in talos.calls()), "nothing was changed"
