"""Dynamic resources that take the node to ``talos.version`` one minor at a
time (pulumiverse-talos has no upgrade resource; README row 9), and the
read-only preflight that checks the way before any config reaches the node.

A walk reads the node first and does only the steps still to do, so a run
interrupted anywhere (the program killed, the node rebooting, a step that
timed out) continues where the node is and never repeats a finished step.
Each step: stage the adopted config for that version (adopt mode; the
upgrade's reboot applies it), ``talosctl upgrade --image <the same
schematic at that version> --wait``, then wait, bounded, with progress lines,
until the Talos API answers with the new version, the NVIDIA extensions are
listed and (with a kubeconfig) the Kubernetes node is Ready. Nothing wipes:
``install.wipe`` stays false, no reset, no wipe flag (``run_talosctl``
refuses them).

Pickled by reference with dill: no import-time side effects, no clients or
secrets held by the provider object; talosctl and kubectl run inside the
methods. ``check`` and ``diff`` only read the node. The talosconfig and
kubeconfig arrive as inputs and are never returned as outputs."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.dynamic import NOT_KNOWN_YET, changed_keys, says, updating
from components.log import logger
from components.talos.adopt import plan_adoption
from components.talos.adopt_originals import Originals
from components.talos.machine_config import NodeSpec
from components.talos.node_config import read_configs
from components.talos.node_state import apply_plan, read_node_facts, read_node_state
from components.talos.schematic import installer_image
from components.talos.talosctl import TalosctlError, TalosctlTimeout, run_talosctl, version_args
from components.talos.upgrade import NodeFacts, plan_upgrade
from components.talos.upgrade_drain import WalkRefused, check_routes, check_tools, drain_first, pending_reboot_hint, routes, uncordon_after
from components.talos.upgrade_evidence import read_boot_id, staged_lost, unfinished
from components.talos.upgrade_waits import StepFailed, answer, arrive, first_line, ready
from components.talos.versions import PathRefused, path_problems, plan_walk
from components.unknowns import UNKNOWN

# Inputs whose change means "the node must run something else".
_WANTED = ("node", "endpoint", "image", "version", "schematicId")
_REQUIRED = (*_WANTED, "talosconfig")
_OUTPUTS = ("node", "endpoint", "image", "version", "schematicId", "platform", "upgradePath", "stopBefore", "extensions",
            "nodeName", "timeoutSeconds")
# talosctl upgrade --wait failing only because the node was not back in time.
_STILL_REBOOTING = ("deadline exceeded", "connection refused", "code = Unavailable", "did not finish within")


_say = logger("talos-upgrade")


class TalosUpgradeProvider(ResourceProvider):
    """Walks the node; check/diff read it, create/update walk it."""

    # The clock and the sleep of every bounded wait: a test sets fake ones on
    # the instance; a provider loaded from state uses these.
    clock: Callable[[], float] = staticmethod(time.monotonic)
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [CheckFailure(name, f"{name} is required") for name in _REQUIRED if not news.get(name)]
        image = str(news.get("image", ""))
        # In a preview the factory's ID (so the image) may not be known yet.
        known = all(news.get(name) != UNKNOWN for name in (*_REQUIRED, "upgradePath", "stopBefore"))
        if image and known and not image.endswith(f"/{news.get('schematicId')}:{news.get('version')}"):
            failures.append(CheckFailure("image", f"{image} does not name schematic {news.get('schematicId')} at {news.get('version')}"))
        inputs = dict(news)
        if failures or not known:
            inputs["pendingSteps"] = [] if failures else [NOT_KNOWN_YET]
            return CheckResult(inputs, failures)
        try:
            facts = read_node_facts(str(news["node"]), str(news["endpoint"]), str(news["talosconfig"]))
            steps = plan_walk(facts.version, facts.schematic, str(news["version"]), str(news["schematicId"]),
                              list(news.get("upgradePath") or []), news.get("stopBefore") or None)
        except PathRefused as error:
            return CheckResult(inputs, [CheckFailure("version", str(error))])
        except (TalosctlError, ValueError) as error:
            inputs["pendingSteps"] = [f"not known: cannot read {news['node']} ({first_line(error)})"]
            return CheckResult(inputs, failures)
        inputs["pendingSteps"] = [f"upgrade to {step}" for step in steps]
        if not steps:
            try:
                # A step whose extension or Ready check failed is not done.
                inputs["pendingSteps"] = unfinished(news, facts.version)
            except (TalosctlError, ValueError) as error:
                inputs["pendingSteps"] = [f"not known: cannot read {news['node']}'s extensions ({first_line(error)})"]
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = changed_keys(olds, news, (*_WANTED, "upgradePath", "stopBefore", "timeoutSeconds"))
        # A node that is not where it should be (upgraded back, rolled back,
        # an earlier walk interrupted) is a change.
        drift = says(news.get("pendingSteps"), ("upgrade to", "wait for"))
        return updating(bool(changed) or drift)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['node']}-{props.get('stopBefore') or props['version']}", outs=self._converge(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._converge(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Nothing to undo: destroying the stack leaves the node on its Talos.
        return None

    # ------------------------------------------------------------------

    def _converge(self, props: dict[str, Any]) -> dict[str, Any]:
        say = _say
        node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
        timeout = int(props.get("timeoutSeconds") or 1800)
        # The node may still be rebooting from its config (a change Talos
        # applies with a reboot, a new node installing itself).
        before = self._answer(props, "before the walk", say)
        steps = plan_walk(before.version, before.schematic, str(props["version"]), str(props["schematicId"]),
                          list(props.get("upgradePath") or []), props.get("stopBefore") or None)
        extensions = [str(name) for name in props.get("extensions") or []]
        problems = path_problems(steps, extensions)
        if problems:
            raise StepFailed(f"{node}: the installer of a step would lack an extension: {'; '.join(problems)}")
        outs = {key: props[key] for key in _OUTPUTS if key in props}
        again = None
        if not steps:
            # Version and schematic match; the step that got here may still
            # have failed its extension or Ready check.
            try:
                check_tools(props)
            except WalkRefused as error:
                raise StepFailed(f"{node}: {error}") from None
            left = unfinished(props, before.version)
            if left and left[0].startswith("upgrade to"):
                steps, again = [before.version], left[0].partition(": ")[2]
                say(f"{node} runs Talos {before.version} from schematic {before.schematic}, but {again}: upgrading to it again")
            else:
                if left:
                    say(f"{node}: {left[0]}")
                    self._wait_ready(props, f"{node} on Talos {before.version}", say, self.clock() + timeout)
                where = f" (this walk stops before {props['stopBefore']})" if props.get("stopBefore") else ""
                outs.update(previousVersion=before.version, previousSchematic=before.schematic or "", upgraded=False, stepsDone=[],
                            reason=f"nothing to do because {node} already runs Talos {before.version} from schematic "
                                   f"{before.schematic}, lists its extensions and is Ready{where}")
                return outs

        try:
            check_tools(props)
            configs = read_configs(node, endpoint, talosconfig, before.version)
            planned = routes(props, before.version, steps, configs.running, configs.next_boot)
        except WalkRefused as error:
            raise StepFailed(f"{node}: {error}") from None
        say(f"{node} runs Talos {before.version}; steps: {' -> '.join(steps)}")
        facts, done, staged = before, [], None
        for index, (step, route) in enumerate(zip(steps, planned, strict=True), 1):
            where = f"upgrade step {index} of {len(steps)}, Talos {facts.version} -> {step}"
            image = installer_image(str(props["schematicId"]), step, str(props["platform"]))
            if props.get("stage"):
                staged = self._stage(props, step, where, say)
            plan = plan_upgrade(facts, image=image, version=step, schematic_id=str(props["schematicId"]), node=node,
                                endpoint=endpoint, timeout_seconds=timeout, extra_flags=route.flags, again=again)
            say(f"{where}: {plan.reason}; {route.line()}")
            try:
                drain_first(route, props, where, say)
            except WalkRefused as error:
                raise StepFailed(str(error)) from None
            timed_out, boot_before = False, read_boot_id(node, endpoint, talosconfig)
            try:
                run_talosctl(plan.args, talosconfig=talosconfig, timeout=timeout + 120)
            except TalosctlError as error:
                hint = pending_reboot_hint(error, node)
                if hint:
                    raise StepFailed(f"{where}: {hint} ({first_line(error)})") from None
                if not any(marker in str(error) for marker in _STILL_REBOOTING):
                    raise StepFailed(f"{where}: talosctl upgrade failed: {error}") from None
                timed_out = isinstance(error, TalosctlTimeout)
                say(f"{where}: talosctl stopped waiting ({first_line(error)}); waiting for the node myself")
            facts = self._wait(props, step, where, say, timed_out=timed_out, boot_before=boot_before)
            uncordon_after(route, props, where, say)
            done.append(step)
        now = read_configs(node, endpoint, talosconfig, facts.version)
        lost = staged_lost(node, facts.version, staged, now.running, now.next_boot, now.source)
        if lost:
            raise StepFailed(f"after {' -> '.join(done)}: {lost}")
        outs.update(previousVersion=before.version, previousSchematic=before.schematic or "", upgraded=True, stepsDone=done,
                    reason=f"upgraded {node} from Talos {before.version} to {facts.version}: {' -> '.join(done)}")
        return outs

    def _stage(self, props: dict[str, Any], step: str, where: str, say: Callable[[str], None]) -> list[Any]:
        """Stage the adopted config for ``step`` so its reboot applies it;
        returns the documents that reboot should run."""
        node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
        state = read_node_state(node, endpoint, talosconfig)
        plan = plan_adoption(state, NodeSpec.from_dict(props["spec"]).owned(step), upgrade_follows=True,
                             originals=Originals.from_dict(props.get("originals")) if props.get("originals") else None)
        for line in plan.lines():
            say(f"{where}: config: {line}")
        apply_plan(plan, state, node, endpoint, talosconfig)
        return list(plan.merged.documents)

    def _answer(self, props: dict[str, Any], where: str, say: Callable[[str], None]) -> NodeFacts:
        """The node's facts, once its Talos API answers (bounded, with a
        progress line for each poll)."""
        return answer(props, where, say, clock=self.clock, sleep=self.sleep)

    def _wait(self, props: dict[str, Any], step: str, where: str, say: Callable[[str], None], *, timed_out: bool = False,
              boot_before: str | None = None) -> NodeFacts:
        """Bounded wait until the node answers with ``step``, lists the
        extensions and (with a kubeconfig) is Ready."""
        return arrive(props, step, where, say, timed_out=timed_out, boot_before=boot_before, clock=self.clock, sleep=self.sleep)

    def _wait_ready(self, props: dict[str, Any], where: str, say: Callable[[str], None], deadline: float) -> None:
        """Bounded wait, until ``deadline`` on the provider's clock, until the
        stack's Kubernetes node is Ready (nothing to wait for without a kubeconfig)."""
        ready(props, where, say, deadline, clock=self.clock, sleep=self.sleep)


class TalosUpgradePreflightProvider(TalosUpgradeProvider):
    """Runs before any config reaches the node: reads it and refuses, up
    front, a downgrade, a major jump, a minor the program knows no release
    of, or a step whose installer would lack an extension. Never changes
    anything."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Also every tool the run needs, on every preview and up (this
        resource is not updated when nothing about it changed)."""
        result = super().check(olds, news)
        try:
            check_tools(news, tools=[str(tool) for tool in news.get("tools") or ["talosctl"]])
        except WalkRefused as error:
            return CheckResult(result.inputs, [*(result.failures or []), CheckFailure("tools", str(error))])
        return result

    def _converge(self, props: dict[str, Any]) -> dict[str, Any]:
        node, endpoint, talosconfig = str(props["node"]), str(props["endpoint"]), str(props["talosconfig"])
        outs = {key: props[key] for key in _OUTPUTS if key in props}
        outs.update(upgraded=False)
        if shutil.which("talosctl") is None:
            run_talosctl(version_args(node, endpoint))  # raises the clear "not installed" error
        try:
            # Every tool the run needs (kubectl for the drain, the Ready wait
            # and the mode migration), before the config reaches the node.
            check_tools(props, tools=[str(tool) for tool in props.get("tools") or ["talosctl"]])
        except WalkRefused as error:
            raise StepFailed(f"{node}: {error}") from None
        try:
            before = read_node_facts(node, endpoint, talosconfig)
        except TalosctlError as error:
            # A new VM booted from the ISO is in maintenance mode and does not
            # answer with the cluster's certificates: there is no running
            # version to check; the apply installs the wanted image.
            outs.update(previousVersion="", previousSchematic="", steps=[],
                        reason=f"could not read {node} with the talosconfig ({first_line(error)}); nothing to check before the apply")
            return outs
        try:
            steps = plan_walk(before.version, before.schematic, str(props["version"]), str(props["schematicId"]),
                              list(props.get("upgradePath") or []))
        except PathRefused as error:
            raise StepFailed(f"{node}: {error}") from None
        problems = path_problems(steps, [str(name) for name in props.get("extensions") or []])
        if problems:
            raise StepFailed(f"{node}: the installer of a step would lack an extension: {'; '.join(problems)}")
        try:
            # The route of each step (who drains, --legacy), before the config.
            check_routes(props, before.version, steps)
        except WalkRefused as error:
            raise StepFailed(f"{node}: {error}") from None
        reason = f"path {' -> '.join([before.version, *steps])}" if steps else f"{node} already runs Talos {before.version}"
        outs.update(previousVersion=before.version, previousSchematic=before.schematic or "", steps=steps, reason=reason)
        return outs


def _props(node: pulumi.Input[str], endpoint: pulumi.Input[str], image: pulumi.Input[str], version: pulumi.Input[str],
           schematic_id: pulumi.Input[str], talosconfig: pulumi.Input[str], timeout_seconds: int, **extra: Any) -> dict[str, Any]:
    return {
        "node": node, "endpoint": endpoint, "image": image, "version": version, "schematicId": schematic_id,
        "talosconfig": pulumi.Output.secret(talosconfig), "timeoutSeconds": timeout_seconds,
        "previousVersion": None, "previousSchematic": None, "upgraded": None, "reason": None, "pendingSteps": None,
        **extra,
    }


def _secret_inputs(opts: pulumi.ResourceOptions | None, *names: str) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["talosconfig", *names]))


class TalosUpgrade(pulumi.dynamic.Resource, module="talos", name="TalosUpgrade"):
    """Walks the node to ``version`` (or to the last step before
    ``stop_before``), one minor at a time."""

    previousVersion: pulumi.Output[str]  # noqa: N815 - the provider's output name
    upgraded: pulumi.Output[bool]
    reason: pulumi.Output[str]

    def __init__(self, name: str, *, node: pulumi.Input[str], endpoint: pulumi.Input[str], image: pulumi.Input[str],
                 version: pulumi.Input[str], schematic_id: pulumi.Input[str], talosconfig: pulumi.Input[str],
                 timeout_seconds: int = 1800, platform: str = "metal", upgrade_path: list[str] | None = None,
                 stop_before: str | None = None, extensions: list[str] | None = None, node_name: str | None = None,
                 kubeconfig: pulumi.Input[str] | None = None, spec: dict[str, Any] | None = None,
                 originals: pulumi.Input[Any] | None = None, opts: pulumi.ResourceOptions | None = None):
        extra: dict[str, Any] = {
            "platform": platform, "upgradePath": list(upgrade_path or []), "stopBefore": stop_before,
            "extensions": list(extensions or []), "nodeName": node_name, "stepsDone": None,
            # Secret end to end; read per call, never kept.
            "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig is not None else None,
            # Adopt mode: stage the config of each step before its upgrade.
            "stage": spec is not None, "spec": spec,
            "originals": pulumi.Output.secret(originals) if originals is not None else None,
        }
        # Stacks made before this type had a name knew it as a plain dynamic
        # Resource: the alias keeps their state instead of replacing it.
        aliases = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="pulumi-python:dynamic:Resource")])
        super().__init__(TalosUpgradeProvider(), name,
                         _props(node, endpoint, image, version, schematic_id, talosconfig, timeout_seconds, **extra),
                         pulumi.ResourceOptions.merge(_secret_inputs(opts, "kubeconfig", "originals"), aliases))


class TalosUpgradePreflight(pulumi.dynamic.Resource, module="talos", name="TalosUpgradePreflight"):
    """The read-only check of the upgrade path, before the config."""

    previousVersion: pulumi.Output[str]  # noqa: N815 - the provider's output name
    reason: pulumi.Output[str]

    def __init__(self, name: str, *, node: pulumi.Input[str], endpoint: pulumi.Input[str], image: pulumi.Input[str],
                 version: pulumi.Input[str], schematic_id: pulumi.Input[str], talosconfig: pulumi.Input[str],
                 upgrade_path: list[str] | None = None, extensions: list[str] | None = None,
                 tools: list[str] | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TalosUpgradePreflightProvider(), name,
                         _props(node, endpoint, image, version, schematic_id, talosconfig, 1800,
                                upgradePath=list(upgrade_path or []), extensions=list(extensions or []), steps=None,
                                tools=list(tools or ["talosctl"])),
                         _secret_inputs(opts))
