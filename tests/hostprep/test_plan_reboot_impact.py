"""What the pure planner says about a host reboot: every reason it needs
one, and what it does to guests Proxmox HA manages (the datacenter's
``ha: shutdown_policy``, components/hostprep/ha.py). The engine's side,
against the simulated host, is in tests/hostprep/test_ha_guests.py."""

from __future__ import annotations

import dataclasses

from components.hostprep.facts import Guest, HostFacts
from components.hostprep.facts_guests import parse_ha_policy
from components.hostprep.inputs import GpuSpec, HostPrepInputs
from components.hostprep.plan import plan_host
from components.hostprep.plan_model import HostPlan
from tests.hostprep.test_plan import A100, OWNER, T4_INPUTS, host, t4

OWN = Guest(1105, "moody-good", "qemu", "running", True)
PIHOLE = Guest(120, "pihole", "qemu", "running", False, "started")  # HA starts it, not onboot
MINE = dataclasses.replace(T4_INPUTS, own_vmids=(1105,), node_name="moody-good")  # host.runningGuests: refuse
HA_WHERE = "HA-managed (hastate started; ha: shutdown_policy={policy}): pve-guests and onboot do not apply"
REBOOT_OFF = "reboot: the IOMMU is not active yet: intel_iommu=on turns it on only at boot, and vfio-pci needs it to take the GPU"
STOPS = "the reboot stops these running guests (Proxmox shuts them down; those with onboot=1 start again):"
DRAIN = "before the reboot: cordon and drain Kubernetes node moody-good; uncordon it once it is Ready again"
DEFER = ("note: IOMMU is not active yet: expected on Intel with kernel 6.5.13-5-pve without intel_iommu=on; this plan turns it on, "
         "and IOMMU group isolation is checked right after the reboot")


def with_ha(policy: str, note: str = "") -> HostFacts:
    """A host whose IOMMU is off (so the plan reboots) with this stack's VM and an HA-managed guest running."""
    return dataclasses.replace(host(), guests=(OWN, PIHOLE), ha_policy=policy, ha_policy_note=note)


def reboot_lines(plan: HostPlan) -> list[str]:
    out = plan.render(diffs=False).splitlines()
    return out[out.index(REBOOT_OFF):]


def test_under_the_migrate_policy_an_ha_guest_moves_away_and_does_not_withhold_the_reboot():
    plan = plan_host(MINE, with_ha("migrate"), OWNER)
    assert plan.impact is not None and plan.impact.moved == (PIHOLE,) and plan.impact.stops == (OWN,)
    migrates = f"{HA_WHERE.format(policy='migrate')}; HA migrates it to another node before the reboot and back once the host is up"
    assert reboot_lines(plan) == [REBOOT_OFF, STOPS, "  - 1105 moody-good (qemu), onboot, this stack's VM",
                                  f"  - 120 pihole (qemu) is not stopped: {migrates}", DRAIN, DEFER]
    assert plan.to_json()["reboot_moves"] == [{"vmid": 120, "name": "pihole", "ha": migrates}]
    assert plan.to_json()["reboot_withheld"] == ""


def test_under_the_freeze_policy_an_ha_guest_is_stopped_and_withholds_the_reboot_named_with_the_policy():
    plan = plan_host(MINE, with_ha("freeze"), OWNER)
    assert plan.impact is not None and plan.impact.moved == () and plan.impact.stops == (OWN, PIHOLE)
    lines = reboot_lines(plan)
    assert lines[:4] == [REBOOT_OFF, STOPS, "  - 1105 moody-good (qemu), onboot, this stack's VM",
                         f"  - 120 pihole (qemu), {HA_WHERE.format(policy='freeze')}; HA stops and freezes it, then starts it again on this host once it is back"]
    assert lines[5].startswith("reboot withheld (host.runningGuests: refuse): the reboot would stop 1 running guest(s) besides this stack's VM 1105: "
                               "120 pihole (qemu).")
    assert plan.to_json()["reboot_moves"] == []


def test_an_ha_policy_that_could_not_be_used_as_it_is_is_noted_with_the_reboot():
    policy, note = parse_ha_policy(0, "ha: shutdown_policy=reboot-all\n")
    plan = plan_host(dataclasses.replace(MINE, running_guests="stop"), with_ha(policy, note), OWNER)
    assert reboot_lines(plan)[-2:] == [f"note: {note}", DEFER]


def test_every_reason_a_reboot_is_needed_is_named_one_after_the_other():
    # The IOMMU is on, but neither GPU can be bound live: the T4 draws the host's console, the A100 is held by nvidia-persistenced.
    facts = host(kernel="6.8.12-4-pve", iommu=True, gpu=[dataclasses.replace(t4(), boot_vga=True), dataclasses.replace(A100, driver="nvidia")],
                 holders=((2210, "/dev/nvidia0", "nvidia-persistenced"),))
    plan = plan_host(HostPrepInputs(gpus=(GpuSpec("0000:3b:00.0", index=0), GpuSpec("0000:af:00.0", index=1))), facts, OWNER)
    assert plan.reboot and plan.rebinds == ()
    assert plan.reboot_reason == (
        "0000:3b:00.0 is the host's boot VGA device (sysfs boot_vga = 1): the host's console draws on it, so it is not taken from the host "
        "live; vfio-pci takes it at the next boot; "
        "0000:af:00.0 is driven by the nvidia driver and in use by nvidia-persistenced (pid 2210): the driver's unbind waits until every user "
        "closes the device (nv-pci.c nv_pci_remove), so it is not released live; stop them (e.g. `systemctl stop nvidia-persistenced`) and "
        "re-run to bind it without a reboot, or let the reboot bind it")
    assert f"reboot: {plan.reboot_reason}" in plan.render(diffs=False).splitlines()
