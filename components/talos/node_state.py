"""The node's state through talosctl, for both Talos providers: its version
and schematic, its running and next-boot machine configs (as its version
serves them: components.talos.node_config), and the apply that refuses a
config someone changed since it was read. No Pulumi SDK: the providers
(config_provider, upgrade_provider) import this, never each other."""

from __future__ import annotations

from components.facts.talos import parse_schematic, parse_server_version
from components.log import logger
from components.talos.adopt import NodeState
from components.talos.config_documents import load_documents
from components.talos.node_config import how_to_read, read_configs
from components.talos.talosctl import apply_config, extensions_args, run_talosctl, version_args
from components.talos.upgrade import NodeFacts

_say = logger("talos-config")


def read_node_facts(node: str, endpoint: str, talosconfig: str) -> NodeFacts:
    """Two read-only talosctl calls: the running version and schematic."""
    version = parse_server_version(run_talosctl(version_args(node, endpoint), talosconfig=talosconfig, timeout=120))
    schematic = parse_schematic(run_talosctl(extensions_args(node, endpoint), talosconfig=talosconfig, timeout=120))
    return NodeFacts(version=version, schematic=schematic)


def read_node_state(node: str, endpoint: str, talosconfig: str):
    """Read-only talosctl calls: version and schematic, the running machine
    config and the one the node boots next (as its version serves them)."""
    facts = read_node_facts(node, endpoint, talosconfig)
    configs = read_configs(node, endpoint, talosconfig, facts.version)
    return NodeState(version=facts.version, schematic=facts.schematic, stored=configs.next_boot, running=configs.running)


def unchanged_since(state, node: str, endpoint: str, talosconfig: str) -> None:
    """Read the node again just before an apply and refuse when its configs
    are no longer the ones the plan was made from: Talos has no
    compare-and-swap, and an apply replaces the whole config."""
    now = read_configs(node, endpoint, talosconfig, state.version)
    changed = [name for name, before, after in (("running", state.running, now.running), ("next-boot", state.stored, now.next_boot))
               if load_documents(before) != load_documents(after)]
    if changed:
        raise RuntimeError(
            f"not applying: {node}'s {' and '.join(changed)} machine config changed since it was read a moment ago "
            f"(someone else applied a config); nothing was applied. See what it is now with {how_to_read(state.version)} "
            "and run `pulumi up` again to merge into it")


def apply_plan(plan, state, node: str, endpoint: str, talosconfig: str) -> str:
    """Carry out an adoption plan made from ``state``: Talos checks the
    config first (dry run; nothing is applied if it refuses), the node is read
    again (a change by someone else since ``state`` is refused), then the
    config is applied in the plan's mode and read back as the node's version
    serves it. Returns what Talos said ("" when nothing changed)."""
    if not plan.changed:
        return ""
    apply_config(plan.merged.text(), node, endpoint, mode=plan.mode, talosconfig=talosconfig, dry_run=True)
    unchanged_since(state, node, endpoint, talosconfig)
    said = apply_config(plan.merged.text(), node, endpoint, mode=plan.mode, talosconfig=talosconfig).strip()
    _say(said)
    stored = load_documents(read_configs(node, endpoint, talosconfig, state.version).next_boot)
    if stored != plan.merged.documents:
        raise RuntimeError(f"{node} accepted the config but does not hold it as applied for its next boot; read it with "
                           f"{how_to_read(state.version)} and compare with `python -m components.talos config`")
    return said
