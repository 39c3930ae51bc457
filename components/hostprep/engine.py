"""Carry out a HostPlan over SSH: facts, plan, apply, wait, verify, undo.

Shared by the Pulumi dynamic provider and the CLI. It does what the plan
says and decides nothing itself. Clock, sleep, temp-name tokens and the
connection factory are parameters, so tests and the benchmark can drive it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from components.hostprep.facts import STATE_DIR, HostFacts, gather_facts
from components.hostprep.plan import HostPlan, HostPrepInputs, VerifyReport, plan_host, plan_undo, verify_host
from components.hostprep.transport import HostKeyError, SshTransport, TransportError, atomic_write_snippet

Connector = Callable[[float], SshTransport]  # connect timeout (s) -> open transport


class HostPrepError(RuntimeError):
    """Host preparation stopped; the message says why and what to do."""


class RefusedError(HostPrepError):
    """The plan refused: nothing was written."""


class RebootRequiredError(HostPrepError):
    """Files are in place but a reboot is needed and not allowed."""


class HostTimeoutError(HostPrepError):
    """The host did not come back after the reboot."""


class VerifyError(HostPrepError):
    """The host came back but is not in the planned state."""


@dataclass
class EngineOptions:
    root: str = "/"  # test-only: prefix of every host path
    connect_timeout: float = 10.0
    command_timeout: float = 900.0
    reboot_timeout: float = 600.0
    poll_initial: float = 0.25  # first wait between reconnect attempts
    poll_cap: float = 2.0  # backoff ceiling
    lock_timeout: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    token: Callable[[], str] = field(default=lambda: secrets.token_hex(6))
    progress: Callable[[str], None] = field(default=lambda message: None)


@dataclass
class RunResult:
    plan: HostPlan
    facts: HostFacts  # the host as last read (after the reboot, if any)
    rebooted: bool
    round_trips: int
    wrote: list[str]
    ran: list[str]
    verified: list[str]
    reboot_wait_seconds: float = 0.0

    def outputs(self, gpu_addresses: list[str]) -> dict[str, Any]:
        return host_outputs(self.facts, gpu_addresses) | {"rebooted": self.rebooted}


def host_outputs(facts: HostFacts, gpu_addresses: list[str]) -> dict[str, Any]:
    """drivers (every function), iommu_groups and subsystem_ids (per GPU)."""
    drivers = {}
    for address in gpu_addresses:
        for fn in facts.slot_functions(address):
            drivers[fn.address] = fn.driver or ""
    groups = {a: facts.functions[a].iommu_group for a in gpu_addresses if a in facts.functions and facts.functions[a].iommu_group is not None}
    subsystems = {a: facts.functions[a].subsystem_id for a in gpu_addresses if a in facts.functions and facts.functions[a].subsystem_id}
    return {"drivers": drivers, "iommu_groups": groups, "subsystem_ids": subsystems}


def written(facts: HostFacts, plan: HostPlan) -> HostFacts:
    """The facts as they are once ``plan``'s writes and commands succeeded
    (the running state is unchanged until a reboot)."""
    if not plan.changes_host:
        return facts
    files = dict(facts.files)
    originals = dict(facts.originals)
    for change in plan.files:
        files[change.path] = change.after
        originals.setdefault(change.path, change.before)
    for path in plan.forget_originals:
        originals.pop(path, None)
    return dataclasses.replace(facts, files=files, originals=originals, pending=(), stale_temps=())


def _sha(content: str | None) -> str:
    return "absent" if content is None else hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()


def batch_script(plan: HostPlan, facts: HostFacts, *, root: str, token: str, lock_timeout: float) -> str:
    """One sh script, run under the host lock: check that every file is still
    what the facts saw, save originals, mark the commands pending, then write
    each file atomically. A precondition failure exits before any write."""
    prefix = root.rstrip("/")
    q = shlex.quote
    state = prefix + STATE_DIR
    out = [
        "set -u",
        f"S={q(state)}",
        'mkdir -p "$S/originals" "$S/pending" && chmod 700 "$S"',
        'exec 9>"$S/lock"',
        f'flock -w {int(lock_timeout)} 9 || {{ echo "another run holds $S/lock" >&2; exit 75; }}',
        'sha() { if [ -e "$1" ]; then sha256sum < "$1" | cut -c1-64; else echo absent; fi; }',
    ]
    for change in plan.files:
        path = prefix + change.path
        out.append(f'[ "$(sha {q(path)})" = {_sha(change.before)} ] || {{ echo "{change.path} changed since the facts were read; re-run" >&2; exit 76; }}')
    out.append("set -e")
    for change in plan.files:
        if change.path in facts.originals or change.path in plan.forget_originals:
            continue
        saved = f"{state}/originals{change.path}"
        if change.before is None:
            out.append(f"mkdir -p {q(saved.rpartition('/')[0])} && : > {q(saved + '.absent')}")
        else:
            out.append(atomic_write_snippet(saved, change.before.encode("utf-8", "surrogateescape"), token, mode="0600"))
    for command in plan.commands:
        out.append(f': > "$S/pending/{command.name}"')
    for path in plan.cleanup:
        out.append(f"rm -f -- {q(prefix + path)}")
    for change in plan.files:
        if change.after is None:
            out.append(f"rm -f -- {q(prefix + change.path)}")
        else:
            out.append(atomic_write_snippet(prefix + change.path, change.after.encode("utf-8", "surrogateescape"), token))
    for path in plan.forget_originals:
        saved = f"{state}/originals{path}"
        out.append(f"rm -f -- {q(saved)} {q(saved + '.absent')}")
    out.append("sync")
    return "\n".join(out) + "\n"


def command_script(name: str, argv: tuple[str, ...], *, root: str, lock_timeout: float) -> str:
    """Run one command under the host lock; clear its pending mark on success."""
    state = root.rstrip("/") + STATE_DIR
    return "\n".join([
        f"S={shlex.quote(state)}",
        'mkdir -p "$S/pending"',
        'exec 9>"$S/lock"',
        f'flock -w {int(lock_timeout)} 9 || {{ echo "another run holds $S/lock" >&2; exit 75; }}',
        f"{shlex.join(argv)} || exit $?",
        f'rm -f "$S/pending/{name}"',
        "sync",
    ]) + "\n"


class HostPrepEngine:
    """Facts -> plan -> changes for one host and one owner (project/stack)."""

    def __init__(self, connect: Connector, inputs: HostPrepInputs, owner: str, options: EngineOptions | None = None):
        self._connect = connect
        self.inputs = inputs
        self.owner = owner
        self.options = options or EngineOptions()
        self.round_trips = 0
        self.addresses = [gpu.address for gpu in inputs.gpus]

    # -- read-only ---------------------------------------------------------

    def facts(self) -> HostFacts:
        with self._open() as transport:
            try:
                return self._facts(transport)
            finally:
                self.round_trips += transport.round_trips

    def plan(self) -> tuple[HostFacts, HostPlan]:
        facts = self.facts()
        return facts, plan_host(self.inputs, facts, self.owner)

    def plan_undo(self) -> tuple[HostFacts, HostPlan]:
        facts = self.facts()
        return facts, plan_undo(facts, self.owner, allow_reboot=self.inputs.allow_reboot, reboot_on_destroy=self.inputs.reboot_on_destroy)

    def verify(self) -> tuple[HostFacts, VerifyReport]:
        facts = self.facts()
        return facts, verify_host(self.inputs, facts, self.owner)

    # -- changing ------------------------------------------------------------

    def apply(self) -> RunResult:
        """Make the host ready; a converged host costs one round trip."""
        def decide(facts: HostFacts) -> HostPlan:
            plan = plan_host(self.inputs, facts, self.owner)
            if plan.refused:
                raise RefusedError("refusing to prepare the host; nothing was written:\n" + "\n".join(f"  - {r}" for r in plan.refusals))
            return plan

        plan, facts, wrote, ran = self._carry_out(decide)
        rebooted, wait = False, 0.0
        if plan.reboot:
            if not self.inputs.allow_reboot:
                raise RebootRequiredError(
                    f"the host needs a reboot ({plan.reboot_reason}) and host.allowReboot is false; "
                    "the files are in place: reboot the host when convenient, then run again to verify")
            facts, wait = self._reboot(facts)
            rebooted = True
        report = verify_host(self.inputs, facts, self.owner)
        if not report.ok:
            raise VerifyError("the host is not ready for passthrough:\n" + "\n".join(f"  - {p}" for p in report.problems))
        return RunResult(plan, facts, rebooted, self.round_trips, wrote, ran, list(report.checks), wait)

    def undo(self) -> RunResult:
        """Take this owner's changes back (restoring originals when it is the last)."""
        plan, facts, wrote, ran = self._carry_out(lambda facts: plan_undo(
            facts, self.owner, allow_reboot=self.inputs.allow_reboot, reboot_on_destroy=self.inputs.reboot_on_destroy))
        rebooted, wait = False, 0.0
        if plan.reboot:
            facts, wait = self._reboot(facts)
            rebooted = True
        return RunResult(plan, facts, rebooted, self.round_trips, wrote, ran, [], wait)

    def _carry_out(self, decide: Callable[[HostFacts], HostPlan]) -> tuple[HostPlan, HostFacts, list[str], list[str]]:
        """One connection: read the facts, decide (pure), write and run what
        the plan says. Returns the plan and the facts as they now are."""
        transport = self._open()
        try:
            facts = self._facts(transport)
            plan = decide(facts)
            wrote, ran = self._execute(transport, plan, facts)
        finally:
            self.round_trips += transport.round_trips
            transport.close()
        return plan, written(facts, plan), wrote, ran

    # -- steps ---------------------------------------------------------------

    def _open(self, timeout: float | None = None) -> SshTransport:
        return self._connect(timeout or self.options.connect_timeout)

    def _facts(self, transport: SshTransport) -> HostFacts:
        return gather_facts(transport, self.addresses, root=self.options.root)

    def _execute(self, transport: SshTransport, plan: HostPlan, facts: HostFacts) -> tuple[list[str], list[str]]:
        try:
            return self._steps(transport, plan, facts)
        except HostKeyError:
            raise
        except TransportError as error:
            raise TransportError(f"{error}. Files are written atomically (old or new, never half) and steps still owed are "
                                 "recorded on the host: run again to converge.") from None

    def _steps(self, transport: SshTransport, plan: HostPlan, facts: HostFacts) -> tuple[list[str], list[str]]:
        opts = self.options
        wrote: list[str] = []
        ran: list[str] = []
        if plan.files or plan.cleanup or plan.commands or plan.forget_originals:
            token = opts.token()
            opts.progress(f"writing {', '.join(c.path for c in plan.files) or 'state'} (atomic, originals kept)")
            result = transport.run_script(batch_script(plan, facts, root=opts.root, token=token, lock_timeout=opts.lock_timeout),
                                          label="write host files", timeout=opts.lock_timeout + 120)
            if result.rc in (75, 76):
                raise HostPrepError(f"nothing was written: {result.stderr.strip()}")
            if not result.ok:
                raise HostPrepError(f"writing host files failed (rc={result.rc}): {result.stderr.strip()[:500]}; re-run to converge")
            wrote = [c.path for c in plan.files]
        for command in plan.commands:
            opts.progress(f"running {' '.join(command.argv)}")
            result = transport.run_script(command_script(command.name, command.argv, root=opts.root, lock_timeout=opts.lock_timeout),
                                          label=" ".join(command.argv), timeout=opts.command_timeout)
            if not result.ok:
                raise HostPrepError(f"`{' '.join(command.argv)}` failed (rc={result.rc}): {(result.stderr or result.stdout).strip()[-800:]}\n"
                                    "The files are written and the step is marked pending on the host; fix the cause and re-run.")
            ran.append(" ".join(command.argv))
        return wrote, ran

    def _reboot(self, facts: HostFacts) -> tuple[HostFacts, float]:
        opts = self.options
        opts.progress("rebooting the host")
        transport = self._open()
        try:
            transport.run("reboot", timeout=60)
        except TransportError:
            pass  # the connection going down with the host is the expected outcome
        finally:
            self.round_trips += transport.round_trips
            transport.close()
        started = opts.clock()
        new_facts = self.wait_for_reboot(facts.boot_id)
        return new_facts, opts.clock() - started

    def wait_for_reboot(self, old_boot_id: str) -> HostFacts:
        """Reconnect with backoff (capped) until the host runs a new boot, or time out."""
        opts = self.options
        started = opts.clock()
        delay = opts.poll_initial
        last = "no attempt yet"
        while True:
            elapsed = opts.clock() - started
            if elapsed >= opts.reboot_timeout:
                raise HostTimeoutError(
                    f"the host did not come back within {opts.reboot_timeout:.0f} s after the reboot (last: {last}). "
                    "Check its console; the changes are on disk and undo works once it is reachable.")
            opts.progress(f"waiting for the host to come back: {elapsed:.1f} s of {opts.reboot_timeout:.0f} s ({last})")
            try:
                transport = self._open(max(0.5, min(opts.connect_timeout, opts.reboot_timeout - elapsed)))
            except HostKeyError:
                raise
            except TransportError as error:
                last = str(error).split(": ", 1)[-1]
            else:
                try:
                    facts = self._facts(transport)
                except TransportError as error:
                    last = f"connection dropped: {error}"
                else:
                    if facts.boot_id and facts.boot_id != old_boot_id:
                        opts.progress(f"the host is back after {opts.clock() - started:.1f} s")
                        return facts
                    last = "still running the old boot"
                finally:
                    self.round_trips += transport.round_trips
                    transport.close()
            opts.sleep(min(delay, max(0.0, opts.reboot_timeout - (opts.clock() - started))))
            delay = min(delay * 2, opts.poll_cap)
