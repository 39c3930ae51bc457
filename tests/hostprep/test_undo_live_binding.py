"""Undo of a GPU bound to vfio-pci live, in the pure planner: which stack's
functions go back to their host drivers, and what the plan says about it.
The engine's side (the bind script against the simulated sysfs) is in
tests/hostprep/test_live_binding.py."""

from __future__ import annotations

import dataclasses

from components.hostprep.binding import Rebind
from components.hostprep.facts import VFIO_FILE, HostFacts
from components.hostprep.inputs import GpuSpec, HostPrepInputs
from components.hostprep.plan import plan_host
from components.hostprep.plan_model import HostPlan
from components.hostprep.results import written
from components.hostprep.undo import plan_undo
from tests.hostprep.test_plan import OWNER, T4_INPUTS, host, t4, two_gpu_host

T4 = "0000:3b:00.0"
A100 = "0000:af:00.0"
GIVE_BACK = "give it back to nouveau as it was before proxmox-talos-gpu bound it live"
BACK_NOW = "note: {addresses} go back to their host drivers now (no reboot needed)"
UNDO_REFRESH = [
    "run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf, "
    "/etc/modprobe.d/proxmox-talos-gpu-vfio.conf, /etc/modules-load.d/proxmox-talos-gpu-vfio.conf changed",
    "run `update-grub`: grub-bios boot configuration: /etc/default/grub changed"]


def bound_live(facts: HostFacts, plan: HostPlan) -> HostFacts:
    """The host once ``plan``'s files are written and its functions bound live:
    each on its new driver, with the driver it had recorded (as the bind
    script records it under /var/lib/proxmox-talos-gpu/bound/)."""
    after = written(facts, plan)
    moved = {r.address: r for r in plan.rebinds if not r.forget}
    assert moved, "the plan binds something live"

    def rebound(fn):
        return dataclasses.replace(fn, driver=moved[fn.address].target) if fn.address in moved else fn

    return dataclasses.replace(after, functions={a: rebound(fn) for a, fn in after.functions.items()},
                               devices={a: rebound(fn) for a, fn in after.devices.items()},
                               bound={**after.bound, **{a: r.current for a, r in moved.items()}})


def one_stack() -> HostFacts:
    fresh = host(kernel="6.8.12-4-pve", iommu=True, gpu=[t4()])
    return bound_live(fresh, plan_host(T4_INPUTS, fresh, OWNER))


def two_stacks() -> HostFacts:
    """p/a bound the T4 live, p/b the A100."""
    facts = two_gpu_host()
    facts = bound_live(facts, plan_host(T4_INPUTS, facts, "p/a"))
    return bound_live(facts, plan_host(HostPrepInputs(gpus=(GpuSpec(A100, index=0),)), facts, "p/b"))


def lines(plan: HostPlan) -> list[str]:
    return plan.render(diffs=False).splitlines()


def test_the_last_stack_out_gives_its_live_bound_gpu_back_and_needs_no_reboot_for_it():
    plan = plan_undo(one_stack(), OWNER, reboot_on_destroy=True)
    assert plan.rebinds == (Rebind(T4, "vfio-pci", "nouveau", 30, GIVE_BACK),)
    assert not plan.reboot  # nothing is left on vfio-pci for a reboot to release
    assert lines(plan) == [
        "update /etc/default/grub: restore the original, byte for byte",
        "delete /etc/modprobe.d/proxmox-talos-gpu-blacklist.conf: created by proxmox-talos-gpu: remove it",
        "delete /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: created by proxmox-talos-gpu: remove it",
        "delete /etc/modules-load.d/proxmox-talos-gpu-vfio.conf: created by proxmox-talos-gpu: remove it",
        *UNDO_REFRESH,
        f"bind {T4} to nouveau now (vfio-pci -> nouveau): {GIVE_BACK}",
        BACK_NOW.format(addresses=T4)]
    assert plan.to_json()["rebinds"] == [{"address": T4, "from": "vfio-pci", "to": "nouveau", "reason": GIVE_BACK, "forget_only": False}]


def test_one_of_two_stacks_gives_back_only_the_functions_it_bound():
    facts = two_stacks()
    assert set(facts.bound) == {T4, A100}
    plan = plan_undo(facts, "p/a", reboot_on_destroy=True)
    assert plan.rebinds == (Rebind(T4, "vfio-pci", "nouveau", 30, GIVE_BACK),)
    assert not plan.reboot
    assert lines(plan) == [
        "update /etc/modprobe.d/proxmox-talos-gpu-vfio.conf: remove the block of p/a; 1 other stack(s) keep theirs",
        "run `update-initramfs -u -k all`: the initramfs loads vfio-pci early; /etc/modprobe.d/proxmox-talos-gpu-vfio.conf changed",
        f"bind {T4} to nouveau now (vfio-pci -> nouveau): {GIVE_BACK}",
        "ok: the kernel command line, blacklist and module list stay: stack(s) p/b still pass GPUs through",
        BACK_NOW.format(addresses=T4)]


def test_a_stack_without_a_block_gives_back_nothing_other_stacks_bound():
    plan = plan_undo(two_stacks(), "p/c", reboot_on_destroy=True)
    assert plan.rebinds == () and not plan.changes_host
    assert lines(plan) == ["ok: nothing to undo because /etc/modprobe.d/proxmox-talos-gpu-vfio.conf has no block for p/c (other stacks: p/a, p/b)"]


def test_with_the_vfio_file_gone_the_last_undo_gives_back_every_function_bound_live():
    # No block names the functions any more: every recorded live binding is this host's last stack's to give back.
    facts = one_stack()
    plan = plan_undo(dataclasses.replace(facts, files={**facts.files, VFIO_FILE: None}), OWNER)
    assert plan.rebinds == (Rebind(T4, "vfio-pci", "nouveau", 30, GIVE_BACK),)
    assert f"bind {T4} to nouveau now (vfio-pci -> nouveau): {GIVE_BACK}" in lines(plan)
    assert BACK_NOW.format(addresses=T4) in lines(plan)


def test_several_functions_given_back_are_named_in_one_note():
    facts = two_stacks()
    plan = plan_undo(dataclasses.replace(facts, files={**facts.files, VFIO_FILE: None}), "p/a")
    assert [r.address for r in plan.rebinds] == [T4, A100]
    assert lines(plan)[-1] == BACK_NOW.format(addresses=f"{T4}, {A100}")
