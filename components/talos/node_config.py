"""Read a node's machine configs the way its Talos version serves them
(thin transport over components.talos.talosctl).

- What runs now: the MachineConfig resource ``v1alpha1`` (every version).
- What the next boot runs: from Talos 1.10 the resource ``persistent`` (set
  by every apply since the last boot, ahead of ``v1alpha1`` after
  ``--mode=staged``; NotFound when nothing was applied since the node booted
  from STATE, so the next boot runs ``v1alpha1``); before 1.10 the STATE
  partition's file, which only those versions serve
  (pkg/machinery/resources/config/machine_config.go; internal/app/machined/
  pkg/controllers/config/acquire.go; commits d4aacb0d8, 9db6dc06c).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.config import parse_version
from components.facts.talos import parse_machine_config
from components.talos.talosctl import (
    PERSISTENT_FROM,
    PERSISTENT_ID,
    RUNNING_ID,
    STATE_CONFIG,
    TalosctlError,
    is_not_found,
    machine_config_args,
    read_config_args,
    run_talosctl,
)


@dataclass(frozen=True)
class NodeConfigs:
    running: str     # v1alpha1
    next_boot: str   # persistent (1.10+), the STATE file (before 1.10), or v1alpha1
    source: str      # where next_boot came from, for messages

    @property
    def staged(self) -> bool:
        """A config waits for the next boot (someone applied --mode=staged)."""
        return self.source != RUNNING_ID and self.next_boot != self.running


def next_boot_source(version: str) -> str:
    """Where a node on ``version`` serves the config it boots with next."""
    return PERSISTENT_ID if parse_version(version) >= PERSISTENT_FROM else STATE_CONFIG


def how_to_read(version: str) -> str:
    """The talosctl command a person runs to see what the node boots next."""
    if next_boot_source(version) == STATE_CONFIG:
        return f"`talosctl read {STATE_CONFIG}`"
    return (f"`talosctl get machineconfig {PERSISTENT_ID} -o jsonpath='{{.spec}}'` (NotFound: nothing applied since the "
            f"last boot, so `talosctl get machineconfig {RUNNING_ID} -o jsonpath='{{.spec}}'`)")


def read_configs(node: str, endpoint: str, talosconfig: str, version: str, *, timeout: float = 120) -> NodeConfigs:
    """The running and the next-boot config of a node running ``version``.
    Raises TalosctlError (the node did not answer) or ValueError (output
    that is not a MachineConfig)."""
    running = parse_machine_config(run_talosctl(machine_config_args(node, endpoint, RUNNING_ID), talosconfig=talosconfig,
                                                timeout=timeout), RUNNING_ID)
    source = next_boot_source(version)
    if source == STATE_CONFIG:
        return NodeConfigs(running, run_talosctl(read_config_args(node, endpoint), talosconfig=talosconfig, timeout=timeout), source)
    try:
        output = run_talosctl(machine_config_args(node, endpoint, PERSISTENT_ID), talosconfig=talosconfig, timeout=timeout)
    except TalosctlError as error:
        if not is_not_found(error):
            raise
        return NodeConfigs(running, running, RUNNING_ID)
    return NodeConfigs(running, parse_machine_config(output, PERSISTENT_ID), source)
