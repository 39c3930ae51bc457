"""Pulumi dynamic provider for host VFIO preparation.

The engine pickles the provider with dill, by reference to this module, and
runs it in a separate process. So: no state on the object, no import-time
side effects, SSH connections opened inside each method, secrets only ever
arrive as inputs. Progress and plans go to stderr, which the engine shows.
"""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components.dynamic import changed_keys, outputs, replacing, undecided
from components.hostprep.facts import FactsError
from components.hostprep.inputs import PlanError
from components.hostprep.results import OLD_OUTPUT_KEYS, host_outputs, state_outputs
from components.hostprep.spec import SPEC_KEYS, HostPrepSpec, canonical, get_key
from components.log import logger
from components.renamed_keys import old_names_held
from components.unknowns import UNKNOWN, known

OUTPUT_KEYS = ("drivers", "iommuGroups", "subsystemIds", "rebooted")  # state keys; earlier names: OLD_OUTPUT_KEYS
_REPLACE_KEYS = ("host", "port", "owner")  # another host or owner: undo the old one first
_UPDATE_KEYS = tuple(key for key in SPEC_KEYS if key not in _REPLACE_KEYS)


_say = logger("host-vfio")


def _engine(props: dict[str, Any]):
    """Build the engine for ``props``."""
    # Lazy: the engine and the transport load paramiko; unpickling this module stays cheap and side-effect free.
    from components.hostprep.connections import EngineOptions
    from components.hostprep.engine import HostPrepEngine
    from components.ssh.connect import SshTarget
    from components.ssh.transport import SshTransport

    spec = HostPrepSpec.from_dict(props)
    target = SshTarget(host=spec.host, port=spec.port, user=spec.user, private_key=get_key(props, "privateKey"), host_key=spec.host_key)
    options = EngineOptions(root=spec.root, reboot_timeout=spec.reboot_timeout_seconds, command_timeout=spec.command_timeout_seconds,
                            drain_timeout=spec.drain_timeout_seconds, guest_timeout=spec.guest_timeout_seconds,
                            kubeconfig=get_key(props, "kubeconfig") or None, progress=_say)

    def connect(timeout: float) -> SshTransport:
        return SshTransport.connect(target, timeout=timeout)

    return HostPrepEngine(connect, spec.inputs, spec.owner, options)


def validate(inputs: dict[str, Any]) -> list[CheckFailure]:
    """Shape checks that need no host; unknown (preview) values are skipped.
    Keys in either style (components/hostprep/spec.py); failures name the camelCase one."""
    from components.ssh.errors import TransportError  # lazy, as in _engine: paramiko
    from components.ssh.keys import load_private_key, parse_host_key_pin

    props = {**canonical(inputs), "privateKey": get_key(inputs, "privateKey")}
    failures = []
    for key in ("host", "user", "owner", "hostKey", "privateKey"):
        value = props.get(key)
        if value != UNKNOWN and (not isinstance(value, str) or not value.strip()):
            failures.append(CheckFailure(key, f"{key} is required (a non-empty string)"))
    port = props.get("port")
    if port != UNKNOWN and not (isinstance(port, int | float) and 1 <= int(port) <= 65535):
        failures.append(CheckFailure("port", f"port {port!r} must be 1-65535"))
    if isinstance(props.get("hostKey"), str) and props["hostKey"] != UNKNOWN and props["hostKey"].strip():
        try:
            parse_host_key_pin(props["hostKey"])
        except ValueError as error:
            failures.append(CheckFailure("hostKey", str(error)))
    if isinstance(props.get("privateKey"), str) and props["privateKey"] != UNKNOWN and props["privateKey"].strip():
        try:
            load_private_key(props["privateKey"])
        except TransportError as error:
            failures.append(CheckFailure("privateKey", str(error)))  # the message never contains the key
    gpus = props.get("gpus")
    if gpus != UNKNOWN and (not isinstance(gpus, list) or not gpus or not all(isinstance(g, dict) and g.get("address") for g in gpus)):
        failures.append(CheckFailure("gpus", "gpus must be a non-empty list of {address, id, ...}"))
    if props.get("intelIommu", "auto") not in ("auto", "on", UNKNOWN):
        failures.append(CheckFailure("intelIommu", f"intelIommu {props.get('intelIommu')!r} must be auto or on"))
    for key, allowed in (("runningGuests", ("refuse", "stop")), ("handEdits", ("refuse", "overwrite"))):
        if props.get(key) not in (None, UNKNOWN, *allowed):
            failures.append(CheckFailure(key, f"{key} {props.get(key)!r} must be one of {', '.join(allowed)}"))
    return failures


def _outputs(props: dict[str, Any], result_outputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs and a run's outputs under the state's keys, without the
    outputs' old names (a state written by an earlier version holds them)."""
    return outputs(props, drop=OLD_OUTPUT_KEYS.values(), **state_outputs(result_outputs))


def _old_outputs(olds: dict[str, Any]) -> list[str]:
    """The old output names the state still holds. The engine keeps the
    outputs as they are when diff reports no change (pulumi/pulumi
    pkg/resource/deploy/step.go SameStep.Apply), so ``iommuGroups`` would stay
    empty: they make an update, which rewrites the outputs and, when nothing
    else differs, finds nothing to do on the host."""
    held = old_names_held(olds, OLD_OUTPUT_KEYS)
    if held:
        _say(f"the state holds outputs under earlier names ({', '.join(held)}): an update rewrites them as "
             + ", ".join(new for new, old in OLD_OUTPUT_KEYS.items() if old in held))
    return held


class HostPrepProvider(ResourceProvider):
    """check / diff / create / update / delete / read for HostVfioPrep."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = validate(news)
        if not failures and not _olds and known(news):
            # A create: show what it would change, and refuse early what it cannot do.
            failures = self._preview(news)
        return CheckResult(news, failures)

    def _preview(self, props: dict[str, Any]) -> list[CheckFailure]:
        from components.hostprep.errors import HostPrepError  # lazy, as in _engine: paramiko
        from components.ssh.errors import HostKeyError, TransportError

        try:
            _, plan = _engine(props).plan()
        except HostKeyError as error:
            return [CheckFailure("hostKey", str(error))]
        except TransportError as error:
            _say(f"could not read the host to preview its changes ({error}); `up` will try again")
            return []
        except (FactsError, PlanError, HostPrepError) as error:
            return [CheckFailure("host", str(error))]
        if plan.refused:
            return [CheckFailure("gpus", str(refusal)) for refusal in plan.refusals]
        _say("planned host changes:\n" + plan.render())
        return []

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        from components.ssh.errors import HostKeyError, TransportError  # lazy, as in _engine: paramiko

        # What the keys mean, in either style: state from earlier versions holds snake_case keys.
        stored, wanted = canonical(olds), canonical(news)
        replaces = changed_keys(stored, wanted, _REPLACE_KEYS)
        changed = changed_keys(stored, wanted, _UPDATE_KEYS) + replaces
        if replaces:
            return replacing(replaces)
        changed += _old_outputs(olds)  # an update, though nothing on the host may differ
        if not known(news):
            return undecided(changed)
        try:
            _, plan = _engine(news).plan()
        except HostKeyError:
            raise
        except TransportError as error:
            _say(f"could not read the host to look for drift ({error})")
            return DiffResult(changes=bool(changed) or None)
        if plan.refused:
            raise RuntimeError("refusing to prepare the host; nothing will be written:\n" + "\n".join(f"  - {r}" for r in plan.refusals))
        if not plan.is_noop:
            _say("planned host changes:\n" + plan.render())
        return DiffResult(changes=bool(changed) or not plan.is_noop, replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        engine = _engine(props)
        result = engine.apply()
        _say(f"host ready: {len(result.wrote)} file(s) written, {len(result.ran)} command(s), rebooted: {result.rebooted}, {result.round_trips} SSH round trip(s)")
        for warning in result.warnings:
            _say(f"warning: {warning}")
        return CreateResult(id_=f"{props['host']}:{props['port']}/{props['owner']}", outs=_outputs(props, result.outputs(engine.addresses)))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        engine = _engine(news)
        result = engine.apply()
        _say(f"host ready: {len(result.wrote)} file(s) written, {len(result.ran)} command(s), rebooted: {result.rebooted}")
        for warning in result.warnings:
            _say(f"warning: {warning}")
        return UpdateResult(outs=_outputs(news, result.outputs(engine.addresses)))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        result = _engine(props).undo()
        _say(f"host changes undone: {len(result.wrote)} file(s) restored or removed, {len(result.ran)} command(s), rebooted: {result.rebooted}")

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        engine = _engine(props)
        facts = engine.facts(guests="never")
        values = host_outputs(facts, engine.addresses)
        if isinstance(props.get("restarts"), dict):
            values["restarts"] = props["restarts"]  # the last run's, under the state's keys (an old state's too)
        outs = _outputs(props, values)
        outs["rebooted"] = bool(props.get("rebooted", False))
        return ReadResult(id_=id_, outs=outs)
