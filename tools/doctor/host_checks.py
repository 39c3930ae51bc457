"""The host and Proxmox layers: IOMMU on and the GPUs on vfio-pci (the host's
facts over SSH); the VM's hostpci entries, q35 and ballooning off (`qm
config`). Pure: (observation, config) -> results."""

from __future__ import annotations

from components.config import StackConfig, pci_device
from components.facts.proxmox import parse_qm_config
from tools.doctor import remedies
from tools.doctor.model import CheckResult, HostObservation, ProxmoxObservation
from tools.doctor.verdicts import failed, parsed, passed


def check_host(obs: HostObservation, cfg: StackConfig) -> list[CheckResult]:
    """IOMMU active; every function of every configured GPU on vfio-pci."""
    results = []
    if obs.iommu_active:
        results.append(passed("host", "iommu", f"IOMMU active on {obs.host}"))
    else:
        results.append(failed("host", "iommu", f"IOMMU not active on {obs.host} (no IOMMU groups)", remedies.iommu_off(cfg)))
    for index, gpu in enumerate(cfg.gpus):
        name = f"vfio-pci gpus[{index}]"
        if gpu.address not in obs.functions:
            found = ", ".join(f"{address} ({ident})" for address, ident in sorted(obs.nvidia_devices.items())) or "none"
            results.append(failed("host", name, f"no PCI device at {gpu.address}; NVIDIA functions on the host: {found}", remedies.wrong_address(cfg, index)))
            continue
        functions = {address: state for address, state in sorted(obs.functions.items()) if pci_device(address) == pci_device(gpu.address)}
        wrong = {address: state for address, state in functions.items() if state.driver != "vfio-pci"}
        if not wrong:
            results.append(passed("host", name, f"{', '.join(functions)} on vfio-pci"))
            continue
        shown = "; ".join(
            f"{address}: {state.driver or 'no driver'}" + (f" (modules: {', '.join(state.kernel_modules)})" if state.kernel_modules else "")
            for address, state in wrong.items()
        )
        ids = sorted({state.vendor_device or gpu.id for state in functions.values()} | {gpu.id})
        modules = sorted({module for state in wrong.values() for module in state.kernel_modules if module not in ("vfio-pci", "vfio_pci")})
        results.append(failed("host", name, f"not on vfio-pci: {shown}", remedies.not_vfio(cfg, gpu.address, ids, modules)))
    return results


# -- proxmox ----------------------------------------------------------------


def check_proxmox(obs: ProxmoxObservation, cfg: StackConfig) -> list[CheckResult]:
    """The VM carries one hostpci entry per GPU (mapping or raw id as
    configured, pcie=1), machine q35 and ballooning off."""
    vmid = cfg.vm.vm_id
    qm = parsed(obs.qm_config, parse_qm_config,
                 lambda detail, reason: failed("proxmox", f"vm {vmid}", detail, remedies.vm_missing(cfg, reason)),
                 unreadable=f"qm config {vmid} failed", unparseable=f"unparseable `qm config {vmid}` output")
    if isinstance(qm, CheckResult):
        return [qm]
    results = []
    for index, gpu in enumerate(cfg.gpus):
        slot, name = cfg.slot(index), f"hostpci gpus[{index}]"
        entry = qm.hostpci.get(slot)
        problems = []
        if entry is None:
            others = ", ".join(f"{key}: {qm.options[key]}" for key in sorted(qm.hostpci)) or "no hostpci entries"
            problems.append(f"{slot} missing ({others})")
        else:
            if gpu.passthrough == "mapping" and entry.mapping != cfg.mapping_name(index):
                problems.append(f"{slot} is {qm.options[slot]!r}, expected mapping={cfg.mapping_name(index)}")
            if gpu.passthrough == "raw" and not entry.covers(gpu.address):
                problems.append(f"{slot} is {qm.options[slot]!r}, expected {gpu.address}")
            if gpu.pcie and entry.options.get("pcie") != "1":
                problems.append(f"{slot} lacks pcie=1")
        if problems:
            results.append(failed("proxmox", name, "; ".join(problems), remedies.hostpci_missing(cfg, index)))
        else:
            results.append(passed("proxmox", name, f"{slot}: {qm.options[slot]}"))
    if any(gpu.pcie for gpu in cfg.gpus):
        machine = qm.options.get("machine", "")
        if "q35" in machine:
            results.append(passed("proxmox", "machine q35", f"machine: {machine}"))
        else:
            results.append(failed("proxmox", "machine q35", f"machine: {machine or '(default i440fx)'}", remedies.machine_not_q35(cfg)))
    balloon = qm.options.get("balloon")
    if balloon == "0":
        results.append(passed("proxmox", "ballooning off", "balloon: 0"))
    else:
        results.append(failed("proxmox", "ballooning off", f"balloon: {balloon or '(unset: balloon device on)'}", remedies.ballooning_on(cfg)))
    return results
