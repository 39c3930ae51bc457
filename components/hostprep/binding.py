"""Binding a GPU to vfio-pci on the running host, without a reboot.

Proxmox itself binds a passed-through device to vfio-pci when the VM starts
(qemu-server src/PVE/QemuServer/PCI.pm ``prepare_pci_device`` ->
pve-common src/PVE/SysFSTools.pm ``pci_dev_group_bind_to_vfio``: every
non-bridge device of the group, with ``modprobe vfio-pci`` first when the
driver is missing). So a host whose IOMMU is already on needs no reboot to
pass a GPU through: the files written for the next boot, the functions are
bound now. This module decides (pure) and builds the host script; the engine
runs it.

How: ``driver_override``, ``unbind``, ``drivers_probe`` (linux commit
782a985d7af2, "PCI: Introduce new device binding path using
pci_dev.driver_override"; Documentation/ABI/testing/sysfs-bus-pci). Proxmox's
pve-common writes the vendor:device pair to vfio-pci's ``new_id`` and then
``bind`` instead; ``new_id`` lets vfio-pci claim every device of that model
that probes meanwhile, including a second card of the same model that stays
with the host, so this program binds by address only.

A reboot stays needed when the IOMMU is off (it turns on only at boot), and
for a function that cannot be released live:

- the host's boot VGA device (sysfs ``boot_vga`` = 1): the host's console
  (efifb/simpledrm or vgacon) draws on it;
- a function the ``nvidia`` driver drives while a process holds
  ``/dev/nvidia*`` open: its unbind waits until the usage count drops
  (NVIDIA open-gpu-kernel-modules kernel-open/nvidia/nv-pci.c
  ``nv_pci_remove``: "Attempting to remove device ... with non-zero usage
  count!"), which would hang the host's sysfs write indefinitely.

Undo gives a function it bound live back to the driver it had (recorded on
the host under ``/var/lib/proxmox-talos-gpu/bound/``), as a careful admin
would; while a VM holds the device (``/dev/vfio/<group>`` open) it is left on
vfio-pci and the plan says so.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from components.hostprep.facts import STATE_DIR, HostFacts, PciFunction

VFIO = "vfio-pci"
BOUND_DIR = f"{STATE_DIR}/bound"  # <address>: the driver a function had before it was bound live


@dataclass(frozen=True)
class Rebind:
    """Move one function from ``current`` to ``target`` on the running host ("" = no driver)."""

    address: str
    current: str
    target: str
    group: int | None
    reason: str
    forget: bool = False  # only the host's record of an earlier live binding goes

    def line(self) -> str:
        if self.forget:
            return f"forget the record of {self.address}'s live binding: {self.reason}"
        return f"bind {self.address} to {self.target or 'no driver'} now ({self.current or 'no driver'} -> {self.target or 'none'}): {self.reason}"


@dataclass(frozen=True)
class LiveBinding:
    rebinds: tuple[Rebind, ...] = ()
    reboot_reasons: tuple[str, ...] = ()  # why the running state can only be reached by a reboot
    notes: tuple[str, ...] = ()


def _holders(facts: HostFacts, prefix: str) -> list[str]:
    return [f"{command or '?'} (pid {pid})" for pid, device, command in facts.holders if device.startswith(prefix)]


def release_problem(fn: PciFunction, facts: HostFacts) -> str | None:
    """Why ``fn`` cannot be taken from its host driver live; None when it can."""
    if fn.boot_vga:
        return (f"{fn.address} is the host's boot VGA device (sysfs boot_vga = 1): the host's console draws on it, so it is not "
                "taken from the host live; vfio-pci takes it at the next boot")
    users = _holders(facts, "/dev/nvidia") if fn.driver == "nvidia" else []
    if users:
        return (f"{fn.address} is driven by the nvidia driver and in use by {', '.join(users)}: the driver's unbind waits until every "
                "user closes the device (nv-pci.c nv_pci_remove), so it is not released live; stop them "
                "(e.g. `systemctl stop nvidia-persistenced`) and re-run to bind it without a reboot, or let the reboot bind it")
    return None


def plan_live_binding(gpus: list[list[PciFunction]], facts: HostFacts, tokens: list[str]) -> LiveBinding:
    """For each GPU (its functions): bind live, or say why only a reboot gets there."""
    running = facts.cmdline.split()
    missing = [t for t in tokens if t not in running]
    unbound = [fn for functions in gpus for fn in functions if fn.driver != VFIO]
    if not facts.iommu_active:
        turn_on = [t for t in missing if t.startswith("intel_iommu=")]
        how = f"{' '.join(turn_on)} turns it on" if turn_on else "it turns on"
        reasons = [f"the IOMMU is not active yet: {how} only at boot, and vfio-pci needs it to take the GPU"]
        return LiveBinding(reboot_reasons=tuple(reasons))
    notes = []
    if missing:
        notes.append(f"{' '.join(missing)} is written to the boot configuration and applies at the next boot; "
                     "the IOMMU is already on, so it does not need a reboot now")
    rebinds: list[Rebind] = []
    reasons: list[str] = []
    for functions in gpus:
        todo = [fn for fn in functions if fn.driver != VFIO]
        if not todo:
            continue
        problems = [p for p in (release_problem(fn, facts) for fn in todo) if p]
        if problems:
            reasons.extend(problems)
            continue
        for fn in todo:
            rebinds.append(Rebind(fn.address, fn.driver or "", VFIO, fn.iommu_group,
                                  "the IOMMU is on, so vfio-pci takes it without a reboot (driver_override, unbind, drivers_probe); "
                                  "the files bind it at every boot from now on"))
    if unbound and not reasons:
        notes.append("no host reboot: every function is bound to vfio-pci live and the written files do the same at the next boot")
    return LiveBinding(tuple(rebinds), tuple(reasons), tuple(notes))


def plan_unbinding(facts: HostFacts, addresses: set[str] | None) -> LiveBinding:
    """Undo: give each function this program bound live (``addresses``, or
    every recorded one when None) back to its former driver, unless a VM holds it."""
    rebinds, notes = [], []
    for address, original in sorted(facts.bound.items()):
        if addresses is not None and address not in addresses:
            continue
        fn = facts.devices.get(address)
        if fn is None or fn.driver != VFIO:
            notes.append(f"{address} is no longer on vfio-pci ({fn.driver or 'no driver'} now): its binding is left as it is"
                         if fn else f"{address} is gone from the host: nothing to give back")
            rebinds.append(Rebind(address, "", "", None, "it is no longer on vfio-pci", forget=True))
            continue
        users = _holders(facts, f"/dev/vfio/{fn.iommu_group}")
        if users:
            notes.append(f"{address} stays on vfio-pci: {', '.join(users)} holds it (a VM passes it through); once that VM is stopped, "
                         f"give it back with `echo {original or ''} > /sys/bus/pci/devices/{address}/driver_override; "
                         f"echo {address} > /sys/bus/pci/drivers/vfio-pci/unbind; echo {address} > /sys/bus/pci/drivers_probe`"
                         + (f" (it had {original})" if original else ""))
            rebinds.append(Rebind(address, "", "", None, "a VM holds it", forget=True))
            continue
        rebinds.append(Rebind(address, VFIO, original, fn.iommu_group,
                              f"give it back to {original} as it was before proxmox-talos-gpu bound it live" if original
                              else "it had no driver before proxmox-talos-gpu bound it live: release it"))
    return LiveBinding(tuple(rebinds), (), tuple(notes))


# --------------------------------------------------------------------------
# The host script (pure builder)
# --------------------------------------------------------------------------

BIND_FAILED = 79  # a function did not end up where the plan wanted it


def _sysfs_write(value: str, path: str) -> str:
    return f"printf '%s\\n' {shlex.quote(value)} | tee {path} > /dev/null"


def bind_script(rebinds: tuple[Rebind, ...], *, root: str, lock: list[str]) -> str:
    """sh run under the host lock: each rebind as the kernel documents it,
    checked right before (the driver and the users of the device may have
    changed since the facts were read) and verified after. Prints
    ``ptg-bound <address> <from> <to>`` per function moved and ``ptg-note: …``
    for one left alone."""
    prefix = root.rstrip("/")
    q = shlex.quote
    probe = '"$P/drivers_probe"'
    out = ["set -u", f"S={q(prefix + STATE_DIR)}", f"R={q(prefix)}", 'mkdir -p "$S/bound"', *lock,
           'P="$R/sys/bus/pci"',
           'drv() { l=$(readlink "$P/devices/$1/driver" 2>/dev/null) && echo "${l##*/}"; true; }',
           # Users of a device: the same scan as the facts (processes holding it open).
           "held() { find \"$R\"/proc/[0-9]*/fd -maxdepth 1 -lname \"$1\" -printf '%h\\n' 2>/dev/null | head -n 1; }"]
    for step in rebinds:
        a, record = step.address, f'"$S/bound/{step.address}"'
        dev = f'"$P/devices/{a}"'
        if step.forget:
            out.append(f"rm -f -- {record}")
            continue
        target = step.target
        out.append(f'cur=$(drv {q(a)}); if [ "$cur" != {q(step.current)} ]; then '
                   f'echo "ptg-note: {a} is on ${{cur:-no driver}} now, not {step.current or "no driver"}: left as it is"; else')
        if target:
            out.append(f'  [ -d "$P/drivers/{target}" ] || modprobe {q(target)} > /dev/null 2>&1; '
                       f'if [ ! -d "$P/drivers/{target}" ]; then echo "cannot load the {target} driver (modprobe {target}) for {a}" >&2; exit {BIND_FAILED}; fi')
        if step.current == "nvidia":
            out.append(f'  if [ -n "$(held "/dev/nvidia*")" ]; then echo "{a}: a process opened /dev/nvidia* since the facts were read; '
                       f'not unbinding it (the nvidia driver would wait for it); re-run" >&2; exit {BIND_FAILED}; fi')
        if step.current == VFIO:
            out.append(f'  if [ -n "$(held "/dev/vfio/{step.group}")" ]; then echo "ptg-note: {a} stays on vfio-pci: a VM opened it since the facts were read"; else')
        if target == VFIO:
            out.append(f'  [ -e {record} ] || {{ printf "%s\\n" {q(step.current)} > {record}.tmp && mv -f {record}.tmp {record}; }} || exit {BIND_FAILED}')
        out.append(f"  {_sysfs_write(target, dev + '/driver_override')} || exit {BIND_FAILED}")
        if step.current:
            out.append(f"  {_sysfs_write(a, dev + '/driver/unbind')} || exit {BIND_FAILED}")
        if target:
            out.append(f"  {_sysfs_write(a, probe)} || exit {BIND_FAILED}")
        out.append(f'  now=$(drv {q(a)}); if [ "$now" != {q(target)} ]; then echo "{a} is on ${{now:-no driver}} after the rebind, '
                   f'not {target or "no driver"} (see dmesg)" >&2; exit {BIND_FAILED}; fi')
        if target != VFIO:
            out.append(f"  {_sysfs_write('', dev + '/driver_override')}; rm -f -- {record}")
        out.append(f'  echo "ptg-bound {a} ${{cur:--}} {target or "-"}"')
        if step.current == VFIO:
            out.append("  fi")
        out.append("fi")
    out.append("sync")
    return "\n".join(out) + "\n"
