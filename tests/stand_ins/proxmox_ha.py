"""Proxmox HA on the simulated host: what a reboot does to HA-managed guests.

| behaviour | source |
|---|---|
| pve-guests' stopall/startall skip HA-managed guests (``onboot`` does not apply to them); a resource in state ``ignored`` is not managed | pve-manager PVE/API2/Nodes.pm ``get_start_stop_list``/``get_filtered_vmlist``; pve-ha-manager src/PVE/HA/Config.pm ``service_check_ha_state`` |
| ``ha: shutdown_policy`` from /etc/pve/datacenter.cfg, default ``conditional``; an unknown value falls back to ``conditional`` | pve-cluster src/PVE/DataCenterConfig.pm; pve-ha-manager src/PVE/HA/LRM.pm ``shutdown_request`` |
| on a reboot, ``conditional`` and ``freeze`` stop and freeze every service (``hastate`` ``freeze``), which starts again on the same node once it is back | LRM.pm ``shutdown_request`` (``freeze_all = $reboot``), src/PVE/HA/Manager.pm (``freeze`` state) |
| ``failover`` stops every service without freezing; back quickly, it starts again here | LRM.pm, DataCenterConfig.pm's description |
| ``migrate`` moves every running service to another node before the reboot goes on, and back once the node is up | LRM.pm (maintenance mode), DataCenterConfig.pm's description |
| ``/cluster/resources`` shows the manager's state as ``hastate`` | pve-manager PVE/API2/Cluster.pm |

Standard library only: the stand-ins import this module.
"""

from __future__ import annotations

import json
from pathlib import Path

POLICIES = ("freeze", "failover", "conditional", "migrate")


def policy(root: Path) -> str:
    cfg = root / "etc/pve/datacenter.cfg"
    for line in cfg.read_text().splitlines() if cfg.exists() else ():
        key, _, value = line.partition(":")
        if key.strip() == "ha":
            settings = dict(item.partition("=")[::2] for item in value.strip().split(",") if item)
            found = settings.get("shutdown_policy", "conditional").strip()
            return found if found in POLICIES else "conditional"
    return "conditional"


def managed(guest: object) -> bool:
    return getattr(guest, "ha", "") not in ("", "ignored")


def _path(base: Path) -> Path:
    return base / "guests-ha.json"


def state(base: Path) -> dict[int, dict[str, str]]:
    path = _path(base)
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


def _save(base: Path, states: dict[int, dict[str, str]]) -> None:
    tmp = base / "guests-ha.json.tmp"
    tmp.write_text(json.dumps({str(k): v for k, v in states.items()}))
    tmp.replace(_path(base))


def hastate(base: Path, guest: object) -> str:
    """What /cluster/resources shows: the manager's state, else the configured one."""
    if not getattr(guest, "ha", ""):
        return ""
    return state(base).get(guest.vmid, {}).get("hastate", guest.ha)  # type: ignore[attr-defined]


def location(base: Path, guest: object, default: str) -> str:
    return state(base).get(guest.vmid, {}).get("node", default)  # type: ignore[attr-defined]


def shutdown(host: object) -> None:
    """The LRM on the way down (before pve-guests' stopall, which skips these)."""
    base, spec = host.base, host.spec  # type: ignore[attr-defined]
    what = policy(host.root)  # type: ignore[attr-defined]
    states = state(base)
    for guest in host.local_guests():  # type: ignore[attr-defined]
        if not managed(guest) or host.guest_status().get(guest.vmid) != "running":  # type: ignore[attr-defined]
            continue
        if what == "migrate" and spec.ha_peer:
            states[guest.vmid] = {"hastate": "started", "node": spec.ha_peer}  # running on the peer meanwhile
            continue
        host.set_guest_status(guest.vmid, "stopped")  # type: ignore[attr-defined]
        states[guest.vmid] = {"hastate": "freeze" if what in ("conditional", "freeze") else guest.ha}
    _save(base, states)


def after_boot(host: object) -> None:
    """The HA manager once the node is back: unfreeze, start, move back."""
    base = host.base  # type: ignore[attr-defined]
    states = state(base)
    for guest in host.local_guests():  # type: ignore[attr-defined]
        if not managed(guest) or guest.vmid not in states:
            continue
        if guest.ha == "started" and guest.starts:
            host.set_guest_status(guest.vmid, "running")  # type: ignore[attr-defined]
        states.pop(guest.vmid)
    _save(base, states)
