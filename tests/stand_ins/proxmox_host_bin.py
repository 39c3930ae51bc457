"""The simulated Proxmox host's bin/ (tests/stand_ins/proxmox_host.py): the
commands sshd's PATH finds first. The Python tools are wrappers that run
tests/stand_ins/proxmox_host_tools.py's ``tool_main`` in a fresh process;
``tee`` into sysfs runs tests/stand_ins/proxmox_sysfs.py's ``tee_main``;
``systemctl is-system-running``, the read-only probes and a ``base64`` that
fills the disk are sh (no Python start-up).

Standard library only: the wrappers import the stand-ins in fresh processes.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.stand_ins.proxmox_host import SimHost
    from tests.stand_ins.proxmox_host_spec import SimSpec

TOOLS = ("update-grub", "update-initramfs", "proxmox-boot-tool", "efibootmgr", "reboot", "pvesh", "qm", "pct", "modprobe")
REPO = Path(__file__).resolve().parents[2]


def install(host: SimHost, spec: SimSpec) -> None:
    """Every stand-in of ``spec``'s host into ``host.bin``."""
    for tool in TOOLS:
        _install_tool(host, tool)
    _install_shell_tools(host, spec)
    _install_probes(host, spec)
    if "mv" in spec.drop_on:
        _install_tool(host, "mv")


def _install_tool(host: SimHost, tool: str) -> None:
    script = host.bin / tool
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
        f"from tests.stand_ins.proxmox_host_tools import tool_main\nsys.exit(tool_main({str(host.base)!r}, {tool!r}, sys.argv[1:]))\n")
    script.chmod(0o755)


def _install_shell_tools(host: SimHost, spec: SimSpec) -> None:
    """Stand-ins every facts read runs, as sh (no Python start-up)."""
    state = shlex.quote(str(host.base / "sysstate"))
    (host.bin / "systemctl").write_text("\n".join([
        "#!/bin/sh",
        'if [ "$*" = is-system-running ]; then',
        f"  read -r s < {state}; echo \"$s\"; [ \"$s\" = running ]; exit $?",
        "fi",
        'echo "Unknown command verb $1." >&2; exit 1', ""]))
    (host.bin / "systemctl").chmod(0o755)
    # tee into the simulated sysfs goes through the kernel's rules (proxmox_sysfs.py); anything else is coreutils' tee.
    (host.bin / "tee").write_text("\n".join([
        "#!/bin/sh",
        f'case "$*" in {shlex.quote(str(host.root / "sys"))}/*)',
        f"  exec {shlex.quote(sys.executable)} -c {shlex.quote(f'import sys; sys.path.insert(0, {str(REPO)!r}); from tests.stand_ins.proxmox_sysfs import tee_main; sys.exit(tee_main({str(host.base)!r}, sys.argv[1:]))')} \"$@\";;",
        "esac",
        'exec /usr/bin/tee "$@"', ""]))
    (host.bin / "tee").chmod(0o755)
    if not spec.enospc:
        return
    # base64 writing into a file whose path starts with root + spec.enospc (while
    # <base>/enospc holds that): part of the data, then ENOSPC (GNU coreutils' message).
    enospc = host.base / "enospc"
    enospc.write_text(f"{host.root}{spec.enospc}")
    (host.bin / "base64").write_text("\n".join([
        "#!/bin/sh",
        f"read -r full < {shlex.quote(str(enospc))} 2>/dev/null",
        'if [ -n "$full" ]; then case "$(readlink /proc/$$/fd/1 2>/dev/null)" in "$full"*)',
        "  /usr/bin/base64 \"$@\" | head -c 7",
        "  echo 'base64: write error: No space left on device' >&2; exit 1;;",
        "esac; fi",
        'exec /usr/bin/base64 "$@"', ""]))
    (host.bin / "base64").chmod(0o755)


def _install_probes(host: SimHost, spec: SimSpec) -> None:
    """The read-only probes every facts read runs, as sh (no Python start-up):
    their output comes from the same tool_main, captured once."""
    calls = host.base / "calls.jsonl"
    for tool, args in (("efibootmgr", ["-v"]), ("proxmox-boot-tool", ["status"])):
        if tool in spec.probe_output:
            stdout, rc = spec.probe_output[tool]
            out = subprocess.CompletedProcess([], rc, stdout, "")
        else:
            out = subprocess.run([str(host.bin / tool), *args], capture_output=True, text=True)
        calls.unlink(missing_ok=True)
        real = host.bin / f".{tool}.py"
        (host.bin / tool).rename(real)
        probe = host.bin / tool
        probe.write_text("\n".join([
            "#!/bin/sh",
            f'if [ "$*" = {shlex.quote(" ".join(args))} ]; then',
            f"  printf '%s\\n' {shlex.quote(json.dumps({'tool': tool, 'args': args}))} >> {shlex.quote(str(calls))}",
            f"  printf '%s' {shlex.quote(out.stdout)}; printf '%s' {shlex.quote(out.stderr)} >&2; exit {out.returncode}",
            "fi",
            f'exec {shlex.quote(str(real))} "$@"', ""]))
        probe.chmod(0o755)
