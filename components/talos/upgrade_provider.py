"""Dynamic resource that upgrades the node to the wanted installer image
(pulumiverse-talos has no upgrade resource, DESIGN fact 9).

Pickled by reference with dill: no import-time side effects, no clients or
secrets held by the provider object. The talosconfig arrives as an input and
is never returned as an output."""

from __future__ import annotations

import shutil
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult
from pulumi.runtime.rpc import UNKNOWN

from components.talos.talosctl import TalosctlError, extensions_args, parse_schematic, parse_server_version, run_talosctl, version_args
from components.talos.upgrade import NodeFacts, UpgradePlan, plan_upgrade

# Inputs whose change means "the node must run something else".
_WANTED = ("node", "endpoint", "image", "version", "schematicId")
_REQUIRED = (*_WANTED, "talosconfig")


def read_node_facts(node: str, endpoint: str, talosconfig: str) -> NodeFacts:
    """Two read-only talosctl calls: the running version and schematic."""
    version = parse_server_version(run_talosctl(version_args(node, endpoint), talosconfig=talosconfig, timeout=120))
    schematic = parse_schematic(run_talosctl(extensions_args(node, endpoint), talosconfig=talosconfig, timeout=120))
    return NodeFacts(version=version, schematic=schematic)


class TalosUpgradeProvider(ResourceProvider):
    """check/diff are pure; create/update read the node, plan, upgrade, verify."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(name, f"{name} is required") for name in _REQUIRED if not news.get(name)]
        image = str(news.get("image", ""))
        # In a preview the factory's ID (so the image) may not be known yet.
        known = all(news.get(name) != UNKNOWN for name in ("image", "schematicId", "version"))
        if image and known and not image.endswith(f"/{news.get('schematicId')}:{news.get('version')}"):
            failures.append(CheckFailure("image", f"{image} does not name schematic {news.get('schematicId')} at {news.get('version')}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [name for name in _WANTED if olds.get(name) != news.get(name)]
        if olds.get("timeoutSeconds") != news.get("timeoutSeconds"):
            changed.append("timeoutSeconds")
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props["node"]), outs=self._converge(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._converge(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Nothing to undo: destroying the stack leaves the node on its Talos.
        return None

    def _converge(self, props: dict[str, Any]) -> dict[str, Any]:
        node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
        timeout = int(props.get("timeoutSeconds") or 1800)
        before = read_node_facts(node, endpoint, talosconfig)
        plan: UpgradePlan = plan_upgrade(
            before, image=str(props["image"]), version=str(props["version"]), schematic_id=str(props["schematicId"]),
            node=node, endpoint=endpoint, timeout_seconds=timeout,
        )
        if plan.upgrade:
            run_talosctl(plan.args, talosconfig=talosconfig, timeout=timeout + 120)
            after = read_node_facts(node, endpoint, talosconfig)
            if after.version != props["version"] or after.schematic != props["schematicId"]:
                raise RuntimeError(
                    f"after the upgrade {node} runs Talos {after.version} from schematic {after.schematic}, "
                    f"not {props['version']} from {props['schematicId']}; see `talosctl dmesg` on the node"
                )
        outs = {name: props[name] for name in _WANTED}
        outs.update(timeoutSeconds=timeout, previousVersion=before.version, previousSchematic=before.schematic or "",
                    upgraded=plan.upgrade, reason=plan.reason)
        return outs


class TalosUpgradePreflightProvider(TalosUpgradeProvider):
    """Runs before the new machine config is applied: reads the node and
    refuses, up front, an upgrade that would skip a minor release or go
    backwards, so a config for the wanted version never reaches a node that
    cannot be upgraded to it. Never upgrades anything."""

    def _converge(self, props: dict[str, Any]) -> dict[str, Any]:
        node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
        outs = {name: props[name] for name in _WANTED}
        outs.update(timeoutSeconds=int(props.get("timeoutSeconds") or 1800), upgraded=False)
        if shutil.which("talosctl") is None:
            run_talosctl(version_args(node, endpoint))  # raises the clear "not installed" error
        try:
            before = read_node_facts(node, endpoint, talosconfig)
        except TalosctlError as error:
            # A new VM booted from the ISO is in maintenance mode and does not
            # answer with the cluster's certificates: there is no running
            # version to check; the apply installs the wanted image.
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
            outs.update(previousVersion="", previousSchematic="",
                        reason=f"could not read {node} with the talosconfig ({first_line}); nothing to check before the apply")
            return outs
        plan = plan_upgrade(  # raises UpgradeRefused
            before, image=str(props["image"]), version=str(props["version"]), schematic_id=str(props["schematicId"]),
            node=node, endpoint=endpoint,
        )
        outs.update(previousVersion=before.version, previousSchematic=before.schematic or "", reason=plan.reason)
        return outs


def _props(node: pulumi.Input[str], endpoint: pulumi.Input[str], image: pulumi.Input[str], version: pulumi.Input[str],
           schematic_id: pulumi.Input[str], talosconfig: pulumi.Input[str], timeout_seconds: int) -> dict[str, Any]:
    return {
        "node": node, "endpoint": endpoint, "image": image, "version": version, "schematicId": schematic_id,
        "talosconfig": pulumi.Output.secret(talosconfig), "timeoutSeconds": timeout_seconds,
        "previousVersion": None, "previousSchematic": None, "upgraded": None, "reason": None,
    }


def _secret_talosconfig(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["talosconfig"]))


class TalosUpgrade(pulumi.dynamic.Resource):
    """Runs ``talosctl upgrade --image <installer>`` when the node's running
    image differs from the wanted one; refuses to skip a minor release."""

    previous_version: pulumi.Output[str]
    upgraded: pulumi.Output[bool]
    reason: pulumi.Output[str]

    def __init__(self, name: str, *, node: pulumi.Input[str], endpoint: pulumi.Input[str], image: pulumi.Input[str],
                 version: pulumi.Input[str], schematic_id: pulumi.Input[str], talosconfig: pulumi.Input[str],
                 timeout_seconds: int = 1800, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TalosUpgradeProvider(), name,
                         _props(node, endpoint, image, version, schematic_id, talosconfig, timeout_seconds),
                         _secret_talosconfig(opts))


class TalosUpgradePreflight(pulumi.dynamic.Resource, module="talos", name="TalosUpgradePreflight"):
    """The read-only check of the upgrade path, before the apply."""

    previous_version: pulumi.Output[str]
    reason: pulumi.Output[str]

    def __init__(self, name: str, *, node: pulumi.Input[str], endpoint: pulumi.Input[str], image: pulumi.Input[str],
                 version: pulumi.Input[str], schematic_id: pulumi.Input[str], talosconfig: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(TalosUpgradePreflightProvider(), name,
                         _props(node, endpoint, image, version, schematic_id, talosconfig, 1800),
                         _secret_talosconfig(opts))
