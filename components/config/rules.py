"""The rules that span more than one key of the stack config, checked after
each section has validated its own keys. Each names the key to change, the
value and what is allowed. Some need a table kept elsewhere: the Talos
releases this program knows (components/talos/versions.py) and the GPUs'
video engines (components/gpu_capabilities.py)."""

from __future__ import annotations

from components.config.gpu_stack import OWNER_ONLY_KEYS, GpuStackConfig
from components.config.stack import StackConfig
from components.config.vm import vm_issues
from components.config_issues import MISSING, ConfigIssue
from components.gpu_capabilities import jellyfin_config_issues
from components.pci import pci_device
from components.proxmox_limits import check_config_id
from components.semver import parse_version
from components.talos.versions import LATEST_PATCH

RELEASES_URL = "https://github.com/siderolabs/talos/releases"


def cross_field_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """Rules that span more than one key. Each names the key to change."""
    issues: list[ConfigIssue] = [ConfigIssue(key, value, allowed) for key, value, allowed in vm_issues(cfg.vm)]
    talos = parse_version(cfg.talos.version)

    seen_slots: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    seen_mappings: dict[str, int] = {}
    for index, gpu in enumerate(cfg.gpus):
        slot = cfg.slot(index)
        if slot in seen_slots:
            issues.append(ConfigIssue(f"gpus[{index}].slot", slot, f"each GPU needs its own slot; {slot} is already used by gpus[{seen_slots[slot]}]"))
        seen_slots.setdefault(slot, index)
        if gpu.address in seen_addresses:
            issues.append(ConfigIssue(f"gpus[{index}].address", gpu.address, f"listed twice (also gpus[{seen_addresses[gpu.address]}])"))
        seen_addresses.setdefault(gpu.address, index)
        if gpu.passthrough == "mapping":
            name = cfg.mapping_name(index)
            if name in seen_mappings:
                issues.append(ConfigIssue(f"gpus[{index}].mappingName", name, f"PCI mapping names must be unique (also gpus[{seen_mappings[name]}])"))
            seen_mappings.setdefault(name, index)
        if gpu.passthrough == "raw" and not (cfg.proxmox.auth_method == "password" and cfg.proxmox.username == "root@pam"):
            issues.append(ConfigIssue(
                f"gpus[{index}].passthrough", gpu.passthrough,
                "a raw PCI id may only be set by root@pam with password auth (Proxmox refuses API tokens, even root@pam!x); "
                "use passthrough: mapping (a PCI resource mapping, works with a token that has Mapping.Use) "
                "or set proxmox.authMethod: password and proxmox.username: root@pam",
            ))
        if gpu.all_functions and not gpu.address.endswith(".0"):
            issues.append(ConfigIssue(
                f"gpus[{index}].address", gpu.address,
                f"with gpus[{index}].allFunctions: true the address must be the card's function 0 (e.g. {pci_device(gpu.address)}.0): "
                "Proxmox maps the whole device and checks it against function 0",
            ))
        if gpu.passthrough == "mapping" and not cfg.host.enabled:
            # Proxmox asserts a mapping against the device at VM start and refuses
            # one without these ("no 'iommugroup' for device", PVE/Mapping/PCI.pm
            # assert_valid); with `host` on they come from the host's facts.
            how = {
                "iommuGroup": f"read it on the Proxmox host: `basename $(readlink /sys/bus/pci/devices/{gpu.address}/iommu_group)`",
                "subsystemId": f"read it on the Proxmox host: `lspci -nn -s {gpu.address} -v` (the `Subsystem: ... [vvvv:dddd]` line, e.g. 10de:12a2 on a Tesla T4)",
            }
            for key, value in (("iommuGroup", gpu.iommu_group), ("subsystemId", gpu.subsystem_id)):
                if value is None:
                    issues.append(ConfigIssue(
                        f"gpus[{index}].{key}", MISSING,
                        f"required when the host section is off and gpus[{index}].passthrough is mapping: Proxmox checks the "
                        f"PCI mapping against the device at VM start and refuses it without {key}; {how[key]}",
                    ))
        if gpu.pcie and cfg.vm.machine != "q35":
            issues.append(ConfigIssue("vm.machine", cfg.vm.machine, f"gpus[{index}].pcie is true and PCIe passthrough needs machine q35 (Proxmox: 'q35 machine model is not enabled'); set vm.machine: q35 or gpus[{index}].pcie: false"))

    if cfg.proxmox.auth_method == "password" and not cfg.proxmox.username:
        issues.append(ConfigIssue("proxmox.username", None, "required with authMethod password, e.g. root@pam"))

    if cfg.host.enabled:
        if not cfg.host.address:
            issues.append(ConfigIssue("host.address", None, "required when host.enabled is true: the Proxmox host's SSH address"))
        if not cfg.host.host_key:
            issues.append(ConfigIssue("host.hostKey", None, "required when host.enabled is true: pin the host key (SHA256 fingerprint or known_hosts line); unknown keys are never accepted"))

    stack = cfg.gpu_stack
    if stack.mode == "operator":
        if talos < (1, 13, 0):
            issues.append(ConfigIssue("gpuStack.mode", stack.mode, f"the GPU Operator is not supported on Talos {cfg.talos.version} (its validator loops on driver validation); use gpuStack.mode: devicePlugin, or upgrade Talos one minor at a time to v1.13"))
        if parse_version(stack.operator_chart_version) < (26, 3, 1):
            issues.append(ConfigIssue("gpuStack.operatorChartVersion", stack.operator_chart_version, "Talos documents the GPU Operator from v26.3.1 (hostPaths.driverInstallDir=/usr/local); use v26.3.1 or newer, or gpuStack.mode: devicePlugin"))
    elif talos < (1, 9, 0):
        issues.append(ConfigIssue("talos.version", cfg.talos.version, "device-plugin mode needs Talos v1.9 or newer"))
    elif talos >= (1, 13, 0):
        # Talos 1.13 switched the NVIDIA toolkit to CDI and dropped
        # nvidia-container-cli; its upgrade notes tell NVIDIA users to remove
        # the device-plugin chart and RuntimeClass and use the GPU Operator
        # (docs/talos.md, "Device-plugin mode on Talos 1.13").
        issues.append(ConfigIssue("gpuStack.mode", stack.mode, f"the nvidia-device-plugin chart is not supported on Talos {cfg.talos.version}: from v1.13 the NVIDIA toolkit works through CDI and Talos documents only the GPU Operator; use gpuStack.mode: operator (the program removes the device plugin and RuntimeClass nvidia before the upgrade to 1.13)"))
    if stack.flux.objects == "git" and stack.delivery != "flux":
        issues.append(ConfigIssue("gpuStack.flux.objects", stack.flux.objects, "only with gpuStack.delivery: flux (the Flux objects come from Git); with delivery helm leave it at pulumi"))
    if not stack.owns_cluster_objects:
        fields = {GpuStackConfig.model_fields[name].alias or name: name for name in stack.model_fields_set}
        for key in OWNER_ONLY_KEYS:
            if key in fields:
                issues.append(ConfigIssue(
                    f"gpuStack.{key}", getattr(stack, fields[key]),
                    "only the stack that owns the cluster objects (gpuStack.ownsClusterObjects: true) sets this: it is a value "
                    "of the GPU Operator / device plugin release, which this stack does not install; set it in the owner's "
                    "stack file and remove it here",
                ))
    if stack.time_slicing.enabled and stack.time_slicing.replicas < 2:
        issues.append(ConfigIssue("gpuStack.timeSlicing.replicas", stack.time_slicing.replicas, "must be 2 or more (the device plugin rejects fewer); to give pods whole GPUs set gpuStack.timeSlicing.enabled: false"))
    if stack.time_slicing.replicas > 64:
        issues.append(ConfigIssue("gpuStack.timeSlicing.replicas", stack.time_slicing.replicas, "at most 64 replicas per GPU"))

    issues += talos_config_issues(cfg)

    if cfg.jellyfin.enabled and not cfg.jellyfin.url:
        issues.append(ConfigIssue("jellyfin.url", None, "required when jellyfin.enabled is true, e.g. http://jellyfin.media.svc:8096"))
    # The codec rules live with the capability table (components/gpu_capabilities.py).
    issues += jellyfin_config_issues(cfg)
    return issues


# NVIDIA dropped Maxwell, Pascal and Volta after the R580 driver branch: the
# production branch of Talos 1.13 (595.x) has no support for them, its lts
# branch (580.x) has (siderolabs/extensions v1.13.9 nvidia-gpu vars.yaml;
# NVIDIA's driver deprecation notes). The open kernel modules support Turing
# and newer only (NVIDIA/open-gpu-kernel-modules README).
_BEFORE_TURING = ("pascal", "volta")


def talos_config_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """Talos rules that span keys: the config source, the upgrade path and
    which NVIDIA driver the GPUs can use."""
    issues: list[ConfigIssue] = []
    t = cfg.talos
    target = parse_version(t.version)
    if t.config_patches and t.config_source != "generated":
        issues.append(ConfigIssue("talos.configPatches", list(t.config_patches), "patches apply to a generated config only (talos.configSource: generated); with configSource: running the node's own config is kept and only the GPU paths change"))
    seen: dict[int, int] = {}
    for index, version in enumerate(t.upgrade_path):
        step = parse_version(version)
        key = f"talos.upgradePath[{index}]"
        if step[0] != target[0] or step[1] >= target[1]:
            issues.append(ConfigIssue(key, version, f"an intermediate release must be an older minor of the same major as talos.version {t.version} (e.g. v{target[0]}.{target[1] - 1}.<patch>)"))
        elif step < (1, 8, 0):
            issues.append(ConfigIssue(key, version, "the NVIDIA extensions come in -lts/-production variants from Talos v1.8 on"))
        elif step[1] in seen:
            issues.append(ConfigIssue(key, version, f"one release per minor: v{step[0]}.{step[1]} is already upgradePath[{seen[step[1]]}]"))
        seen.setdefault(step[1], index)
    ext = t.extensions
    for index, gpu in enumerate(cfg.gpus):
        if gpu.generation not in _BEFORE_TURING:
            continue
        if ext.driver == "open":
            issues.append(ConfigIssue("talos.extensions.driver", ext.driver, f"gpus[{index}] is {gpu.generation}: NVIDIA's open kernel modules support Turing and newer only; use driver: proprietary"))
        elif ext.branch == "production" and target >= (1, 13, 0):
            issues.append(ConfigIssue("talos.extensions.branch", ext.branch, f"gpus[{index}] is {gpu.generation}: Talos {t.version}'s production driver (595) no longer supports it; R580 is the last branch for Maxwell, Pascal and Volta: use branch: lts with driver: proprietary"))
    return issues


def talos_release_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """``talos.version`` must be a release the table knows: a patch no newer
    than the latest one listed for its minor. An installer image for a
    release that does not exist fails only at `pulumi up`, when the node
    cannot pull it. ``talos.allowUnlistedVersion: true`` accepts a newer one
    the user has checked exists."""
    talos = cfg.talos
    if talos.allow_unlisted_version:
        return []
    wanted = parse_version(talos.version)
    latest = LATEST_PATCH.get(wanted[:2])
    if latest is not None and wanted <= parse_version(latest):
        return []
    first, last = min(LATEST_PATCH), max(LATEST_PATCH)
    known = f"v{first[0]}.{first[1]}.0 to {LATEST_PATCH[first]}, ..., v{last[0]}.{last[1]}.0 to {LATEST_PATCH[last]}"
    if latest is not None:
        why = f"newer than the latest v{wanted[0]}.{wanted[1]} release this program knows ({latest})"
    else:
        why = f"v{wanted[0]}.{wanted[1]} is not a minor this program knows"
    return [ConfigIssue("talos.version", talos.version,
                        f"{why}; the releases it knows: {known} (components/talos/versions.py). If {talos.version} exists "
                        f"({RELEASES_URL}/tag/{talos.version}), set talos.allowUnlistedVersion: true")]


def derived_mapping_name_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """A PCI mapping named after vm.name (``<vm.name>-gpu<N>``) must be a
    Proxmox configuration id too: a vm.name that starts with a digit is a
    DNS label but not one."""
    issues = []
    for index, gpu in enumerate(cfg.gpus):
        if gpu.passthrough != "mapping" or gpu.mapping_name:
            continue
        name = cfg.mapping_name(index)
        try:
            check_config_id(name)
        except ValueError as error:
            issues.append(ConfigIssue(f"gpus[{index}].mappingName", None,
                                      f"the default, {name!r} (from vm.name), is {error}; set gpus[{index}].mappingName"))
    return issues


def rule_issues(cfg: StackConfig) -> list[ConfigIssue]:
    return talos_release_issues(cfg) + derived_mapping_name_issues(cfg)
