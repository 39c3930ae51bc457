"""Pulumi dynamic provider for ``vm.source: existing``: own the GPU slots and
the balloon of a VM someone else made.

The engine pickles the provider with dill, by reference to this module, and
runs it in a separate process: no state on the object, no import-time side
effects, the API client made inside each method, secrets only as inputs.
``check`` and ``diff`` (which preview runs) only read; ``create``, ``update``
and ``delete`` write. The values the owned keys held before are kept in the
state (``previous``) so that ``delete`` restores them.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.dynamic import changed_keys, outputs, replacing, undecided, updating
from components.log import logger
from components.unknowns import UNKNOWN, known
from components.vm.adopt import AdoptSpec
from components.vm.api import ApiTarget, ProxmoxApiError, ProxmoxUnreachable, connect
from components.vm.engine import AdoptEngine
from components.vm.inputs import canonical
from components.vm.restart import RestartOptions

OUTPUT_KEYS = ("previous", "written", "restarted", "pending")
_REPLACE_KEYS = ("endpoint",)
_UPDATE_KEYS = ("spec", "restart", "restartTimeoutSeconds", "drainTimeoutSeconds", "nodeName", "insecure")


_say = logger("gpu-vm")


def _engine(inputs: dict[str, Any]):
    props = canonical(inputs)  # either key style: state from earlier versions holds snake_case keys
    target = ApiTarget(endpoint=props["endpoint"], insecure=bool(props["insecure"]), api_token=props["apiToken"] or None,
                       username=props["username"] or None, password=props["password"] or None)
    options = RestartOptions(node_name=props["nodeName"] or None, kubeconfig=props["kubeconfig"] or None,
                             drain_timeout=float(props["drainTimeoutSeconds"] or 300),
                             timeout=float(props["restartTimeoutSeconds"] or 900), progress=_say)
    return AdoptEngine(lambda: connect(target), AdoptSpec.from_dict(props["spec"]), inputs.get("restart", "drained"), options)


def validate(inputs: dict[str, Any]) -> list[CheckFailure]:
    props = canonical(inputs)
    failures = []
    endpoint = props.get("endpoint")
    if endpoint != UNKNOWN and (not isinstance(endpoint, str) or not endpoint.startswith("https://")):
        failures.append(CheckFailure("endpoint", f"endpoint {endpoint!r} must be an https:// URL"))
    if props.get("restart") not in ("drained", "never", UNKNOWN):
        failures.append(CheckFailure("restart", f"restart {props.get('restart')!r} must be drained or never"))
    spec = props.get("spec")
    if spec != UNKNOWN and (not isinstance(spec, dict) or not spec.get("slots")):
        failures.append(CheckFailure("spec", "spec must name the VM and at least one GPU slot"))
    if not (props.get("apiToken") or (props.get("username") and props.get("password"))):
        failures.append(CheckFailure("apiToken", "Proxmox credentials are required: proxmoxApiToken, or proxmox.username with proxmoxPassword"))
    return failures


def _waiting(engine: Any) -> list[str]:
    """Owned keys pending on the VM as it runs now (from the plan's read)."""
    facts = engine.last_facts
    if facts is None or not facts.exists or facts.status != "running":
        return []
    return sorted(facts.pending & set(engine.spec.owned))


class VmAdoptProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = validate(news)
        if not failures and known(news):
            failures = self._preview(news, (olds or {}).get("previous"))
        return CheckResult(news, failures)

    def _preview(self, props: dict[str, Any], previous: dict[str, Any] | None) -> list[CheckFailure]:
        try:
            plan = _engine(props).plan(previous)
        except ProxmoxUnreachable as error:
            return [CheckFailure("endpoint", str(error))]
        except ProxmoxApiError as error:
            return [CheckFailure("spec", str(error))]
        if plan.refused:
            return [CheckFailure("spec", refusal) for refusal in plan.refusals]
        if not plan.is_noop:
            _say("planned VM changes:\n" + plan.render())
        return []

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # What the keys mean, in either style: state from earlier versions holds snake_case keys.
        stored, wanted = canonical(olds), canonical(news)
        replaces = changed_keys(stored, wanted, _REPLACE_KEYS)
        old_spec, new_spec = stored["spec"] or {}, wanted["spec"] or {}
        if new_spec != UNKNOWN and (old_spec.get("vmId") != new_spec.get("vmId") or old_spec.get("node") != new_spec.get("node")):
            replaces.append("spec")
        if replaces:
            return replacing(replaces)
        changed = changed_keys(stored, wanted, _UPDATE_KEYS)
        if not known(news):
            return undecided(changed)
        engine = _engine(news)
        plan = engine.plan(olds.get("previous"))  # drift: someone took a slot or the balloon back
        # A change still pending on the running VM is one only when this
        # program restarts it (drained); with restart: never it stays
        # pending until the user's cold start, and a rerun changes nothing.
        waiting = _waiting(engine)
        if waiting and news.get("restart") == "never":
            _say(f"VM {engine.spec.vm_id}: {', '.join(waiting)} pending until its next cold start (vm.restart: never)")
        return updating(bool(changed) or not plan.is_noop or (bool(waiting) and news.get("restart") != "never"))

    def create(self, props: dict[str, Any]) -> CreateResult:
        engine = _engine(props)
        result = engine.apply(None)
        for warning in result.warnings:
            _say(f"warning: {warning}")
        spec = engine.spec  # typed: the engine sends numbers as floats (1105.0)
        return CreateResult(id_=f"{spec.node}/{spec.vm_id}", outs=self._outs(props, result, None))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        engine = _engine(news)
        previous = dict(olds.get("previous") or {})
        dropped = {k: v for k, v in (olds.get("written") or {}).items() if k not in engine.spec.owned}
        if dropped:  # a slot no longer configured: put back what it held
            engine.undo(previous, dropped, restart=False)
        result = engine.apply({k: v for k, v in previous.items() if k in engine.spec.owned}, also=tuple(dropped))
        for warning in result.warnings:
            _say(f"warning: {warning}")
        return UpdateResult(outs=self._outs(news, result, previous))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        result = _engine(props).undo(dict(props.get("previous") or {}), dict(props.get("written") or {}))
        for note in result.plan.notes:
            _say(note)

    @staticmethod
    def _outs(props: dict[str, Any], result: Any, previous: dict[str, Any] | None) -> dict[str, Any]:
        return outputs(props, previous=result.plan.previous or dict(previous or {}), written=result.plan.written,
                       restarted=result.restarted, pending=result.pending)
