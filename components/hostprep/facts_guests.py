"""Host facts, the guests: the VMs and containers of this node (pvesh),
which start on boot, and what HA does with its guests on a reboot."""

from __future__ import annotations

import json
import re

from components.hostprep.facts import (
    Guest,
    shown,
)

HA_POLICIES = ("freeze", "failover", "conditional", "migrate")  # pve-cluster src/PVE/DataCenterConfig.pm pve-ha-shutdown-policy


def parse_ha_policy(rc: int, text: str) -> tuple[str, str]:
    """(policy, note) from /etc/pve/datacenter.cfg's ``ha: shutdown_policy=…``
    (a property string, pve-cluster DataCenterConfig.pm). No file or no
    setting: ``conditional``, the schema's default; an unknown value: pve-ha-manager's
    LRM.pm logs an error and falls back to ``conditional`` too."""
    if rc != 0:
        return "conditional", ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "ha":
            settings = dict(item.partition("=")[::2] for item in value.strip().split(",") if item)
            policy = settings.get("shutdown_policy", "").strip()
            if not policy:
                return "conditional", ""
            if policy not in HA_POLICIES:
                return "conditional", (f"/etc/pve/datacenter.cfg sets ha: shutdown_policy={shown(policy, 30)}, which pve-ha-manager does not know; "
                                       "it falls back to conditional")
            return policy, ""
    return "conditional", ""


_GUEST_TYPES = ("qemu", "lxc")


def parse_guests(node_rc: int, node_text: str, rc: int, text: str, onboot_text: str, root: str = "/",
                 *, everywhere: bool = False) -> tuple[tuple[Guest, ...] | None, str, str]:
    """(guests on this node, problem, node name) from ``readlink /etc/pve/local``
    (``nodes/<name>``, pmxcfs), ``pvesh get /cluster/resources --type vm
    --output-format json`` and the ``onboot:`` lines of the guests' configs.
    ``everywhere``: the guests of every node (where HA moved one to)."""
    node = node_text.strip().rstrip("/").rsplit("/", 1)[-1] if node_rc == 0 else ""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", node):
        return None, f"cannot tell this node's name (/etc/pve/local: {shown(node_text.strip())!r}); is this a Proxmox VE host?", ""
    if rc != 0:
        return None, f"`pvesh get /cluster/resources --type vm` failed (rc={rc}): {shown(text.strip(), 200)}", node
    try:
        data = json.loads(text)
    except ValueError:
        return None, f"`pvesh get /cluster/resources` printed something that is not JSON: {shown(text.strip(), 120)!r}", node
    if not isinstance(data, list):
        return None, f"`pvesh get /cluster/resources` printed a JSON {type(data).__name__}, expected a list", node
    prefix = root.rstrip("/")
    onboot: set[tuple[str, int]] = set()
    for line in onboot_text.splitlines():
        match = re.match(rf"^{re.escape(prefix)}/etc/pve/(qemu-server|lxc)/(\d+)\.conf: onboot:\s*(\S+)\s*$", line)
        if match and match.group(3) == "1":
            onboot.add(("qemu" if match.group(1) == "qemu-server" else "lxc", int(match.group(2))))
    guests = []
    for item in data:
        if not isinstance(item, dict) or item.get("type") not in _GUEST_TYPES or (item.get("node") != node and not everywhere):
            continue
        if item.get("template") in (1, True, "1"):
            continue  # a template never runs
        vmid = item.get("vmid")
        if isinstance(vmid, str) and vmid.isdigit():
            vmid = int(vmid)
        if not isinstance(vmid, int) or isinstance(vmid, bool) or not 100 <= vmid <= 999_999_999:
            return None, f"`pvesh get /cluster/resources` lists a guest with vmid {shown(str(vmid))!r}", node
        status, name = item.get("status"), item.get("name", "")
        if not isinstance(status, str) or not re.fullmatch(r"[a-z]{1,20}", status) or not isinstance(name, str):
            return None, f"`pvesh get /cluster/resources` lists guest {vmid} with status {shown(str(status))!r}", node
        hastate = item.get("hastate", "")
        if not isinstance(hastate, str) or not re.fullmatch(r"[a-z_]{0,30}", hastate):
            return None, f"`pvesh get /cluster/resources` lists guest {vmid} with hastate {shown(str(hastate))!r}", node
        guests.append(Guest(vmid, shown(name, 64), item["type"], status, (item["type"], vmid) in onboot, hastate,
                            shown(str(item.get("node", "")), 64)))
    return tuple(sorted(guests, key=lambda g: g.vmid)), "", node
