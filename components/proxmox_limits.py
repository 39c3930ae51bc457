"""What Proxmox VE and its Pulumi provider accept, checked when the config is
read, so a value they refuse stops before anything is touched instead of at
`pulumi preview` (the provider's validators) or `pulumi up` (Proxmox itself).

| Rule | Where the real tool decides |
|---|---|
| ``vm.cpuType``: one of the listed types (case matters) or ``custom-<name>`` | bpg/terraform-provider-proxmox v0.111.1 ``proxmoxtf/resource/vm/validators.go`` ``CPUTypeValidator`` (``StringInSlice(standardTypes, false)``, ``^custom-.+$``); VmLegacy is that resource, bridged by pulumi-proxmoxve 8.x |
| ``vm.memoryMiB``: at most 268435456 | the same tag, ``proxmoxtf/resource/vm/vm.go`` ``memory.dedicated`` ``IntBetween(64, 268435456)`` |
| ``proxmox.username``: ``user@realm`` | the same tag, ``proxmox/api/credentials.go`` ``newUserCredentials``: no ``@`` is ``ErrInvalidUsernameFormat`` |
| ``gpus[].mappingName``: a letter, then letters, digits, ``-``, ``_``; 2 or more characters | proxmox/pve-common 9.2.1 ``src/PVE/JSONSchema.pm`` ``$CONFIGID_RE = qr/[a-z][a-z0-9_-]+/i`` (format ``pve-configid``) |
"""

from __future__ import annotations

import difflib
import re

CPU_TYPES: tuple[str, ...] = (
    "486", "Broadwell", "Broadwell-IBRS", "Broadwell-noTSX", "Broadwell-noTSX-IBRS",
    "Cascadelake-Server", "Cascadelake-Server-noTSX", "Cascadelake-Server-v2", "Cascadelake-Server-v4", "Cascadelake-Server-v5",
    "Conroe", "Cooperlake", "Cooperlake-v2",
    "EPYC", "EPYC-Genoa", "EPYC-IBPB", "EPYC-Milan", "EPYC-Rome", "EPYC-Rome-v2", "EPYC-Rome-v3", "EPYC-Rome-v4", "EPYC-v3", "EPYC-v4",
    "Haswell", "Haswell-IBRS", "Haswell-noTSX", "Haswell-noTSX-IBRS",
    "Icelake-Client", "Icelake-Client-noTSX", "Icelake-Server", "Icelake-Server-noTSX", "Icelake-Server-v3", "Icelake-Server-v4",
    "Icelake-Server-v5", "Icelake-Server-v6",
    "IvyBridge", "IvyBridge-IBRS", "KnightsMill", "Nehalem", "Nehalem-IBRS",
    "Opteron_G1", "Opteron_G2", "Opteron_G3", "Opteron_G4", "Opteron_G5", "Penryn",
    "SandyBridge", "SandyBridge-IBRS", "SapphireRapids",
    "Skylake-Client", "Skylake-Client-IBRS", "Skylake-Client-noTSX-IBRS", "Skylake-Client-v4",
    "Skylake-Server", "Skylake-Server-IBRS", "Skylake-Server-noTSX-IBRS", "Skylake-Server-v4", "Skylake-Server-v5",
    "Westmere", "Westmere-IBRS", "athlon", "core2duo", "coreduo", "host", "kvm32", "kvm64", "max",
    "pentium", "pentium2", "pentium3", "phenom", "qemu32", "qemu64",
    "x86-64-v2", "x86-64-v2-AES", "x86-64-v3", "x86-64-v4",
)
_CUSTOM_CPU = re.compile(r"^custom-.+$")
MEMORY_MIB_MAX = 268435456
_CONFIGID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]+$")
CONFIGID_MAX = 128


def _nearest(value: str, candidates: tuple[str, ...]) -> str:
    by_case = {candidate.lower(): candidate for candidate in candidates}
    match = by_case.get(value.lower()) or next(iter(difflib.get_close_matches(value, candidates, n=1, cutoff=0.75)), None)
    return f" did you mean {match!r}?" if match else ""


def check_cpu_type(value: str) -> str:
    if value in CPU_TYPES or _CUSTOM_CPU.match(value):
        return value
    raise ValueError(f"not a CPU type the Proxmox provider accepts (case matters);{_nearest(value, CPU_TYPES)} "
                     f"allowed: host (the default, what GPU passthrough usually wants), custom-<name> (a custom CPU model), or "
                     f"one of {', '.join(CPU_TYPES)}")


def check_username(value: str) -> str:
    user, at, realm = value.partition("@")
    if at and user and realm and not any(part.isspace() for part in value):
        return value
    raise ValueError("needs a realm: user@realm, e.g. root@pam (the host's Linux user) or admin@pve (a Proxmox VE user); "
                     "the Proxmox provider refuses a username without '@' at preview")


def check_config_id(value: str) -> str:
    if _CONFIGID.match(value) and len(value) <= CONFIGID_MAX:
        return value
    raise ValueError(f"not a Proxmox configuration id: a letter, then letters, digits, '-' or '_', 2 to {CONFIGID_MAX} characters "
                     "(e.g. gpu-t4); Proxmox refuses others when it creates the PCI mapping")
