"""What a host reboot does to guests managed by Proxmox HA (pure).

pve-guests.service (``stopall`` on the way down, ``startall`` on the way
up) skips HA-managed guests: pve-manager PVE/API2/Nodes.pm
``get_start_stop_list`` -> ``get_filtered_vmlist`` drops every guest
``PVE::HA::Config::vm_is_ha_managed`` names, so ``onboot`` does not apply to
them. A resource in state ``ignored`` counts as not managed
(pve-ha-manager src/PVE/HA/Config.pm ``service_check_ha_state``), so
pve-guests handles it like any other guest.

The local resource manager does instead what the datacenter's
``ha: shutdown_policy`` says (pve-ha-manager src/PVE/HA/LRM.pm
``shutdown_request``; the values and the default ``conditional`` from
pve-cluster src/PVE/DataCenterConfig.pm ``pve-ha-shutdown-policy``):

- ``conditional`` (default) on a reboot, and ``freeze``: stop every service
  and freeze it; the manager starts it again on this node once the node is
  back (it is not recovered elsewhere meanwhile).
- ``failover``: stop every service without freezing; if the node stays away
  long enough to be fenced, HA recovers it on another node, else it starts
  again here.
- ``migrate``: the node goes into maintenance and the manager migrates every
  running service to another node before the reboot goes on; when the node is
  back it moves them back.

``/cluster/resources`` shows the manager's state of each service as
``hastate`` (pve-manager PVE/API2/Cluster.pm: ``service_status`` state, or
the configured state when the manager has none): ``started``, ``stopped``,
``freeze``, ``migrate``, ``ignored``, ...
"""

from __future__ import annotations

from components.hostprep.facts import Guest

UNMANAGED = ("", "ignored")  # hastate of a guest pve-guests handles itself
STAYS_DOWN = ("stopped", "request_stop", "disabled", "error")  # HA keeps these stopped


def ha_managed(guest: Guest) -> bool:
    return guest.hastate not in UNMANAGED


def moves_away(guest: Guest, policy: str) -> bool:
    """HA migrates it off the host before the reboot: the reboot does not stop it."""
    return ha_managed(guest) and policy == "migrate" and guest.running


def comes_back(guest: Guest, policy: str) -> bool:
    """HA starts it again after the reboot (here, or where failover recovered it)."""
    return ha_managed(guest) and guest.hastate not in STAYS_DOWN


def fate(guest: Guest, policy: str) -> str:
    """One line: what the reboot does to a running HA-managed guest."""
    where = f"HA-managed (hastate {guest.hastate}; ha: shutdown_policy={policy}): pve-guests and onboot do not apply"
    if policy == "migrate":
        return f"{where}; HA migrates it to another node before the reboot and back once the host is up"
    if guest.hastate in STAYS_DOWN:
        return f"{where}; HA stops it and keeps it stopped (requested state {guest.hastate})"
    if policy == "failover":
        return f"{where}; HA stops it; it starts again here once the host is back, or on another node if HA fences this one first"
    return f"{where}; HA stops and freezes it, then starts it again on this host once it is back"
