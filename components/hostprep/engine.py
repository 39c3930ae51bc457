"""Carries a host plan out: connect, read facts, plan, write atomically,
refresh, reboot when needed (only with consent for the guests it stops,
after draining this stack's Kubernetes node), wait, verify.

Decides nothing itself. Clock, sleep, temp-name tokens and the connection
factory are parameters, so tests and the benchmark can drive it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from components.hostprep import ha
from components.hostprep.binding import BIND_FAILED, bind_script
from components.hostprep.facts import STATE_DIR, FactsError, Guest, HostFacts, gather_facts, read_guests
from components.hostprep.plan import (
    KEPT_DIR,
    HostPlan,
    HostPrepInputs,
    RebootImpact,
    VerifyReport,
    plan_host,
    plan_undo,
    reboot_impact,
    verify_host,
)
from components.hostprep.transport import CommandTimeoutError, HostKeyError, SshTransport, TransportError, atomic_write_snippet

Connector = Callable[[float], SshTransport]  # connect timeout (s) -> open transport
START_MARKER = "ptg-started"  # a command script prints it once it holds the lock: its time limit starts then
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a Kubernetes node name (DNS subdomain)


class HostPrepError(RuntimeError):
    """Host preparation stopped; the message says why and what to do."""


class RefusedError(HostPrepError):
    """The plan refused: nothing was written."""


class RebootRequiredError(HostPrepError):
    """Files are in place but a reboot is needed and not allowed."""


class GuestsRunningError(RebootRequiredError):
    """Files are in place, but the reboot would stop other guests and host.runningGuests is refuse."""


class DrainError(HostPrepError):
    """This stack's Kubernetes node could not be drained (or the cluster reached); nothing was rebooted."""


class RebootFailedError(HostPrepError):
    """`reboot` failed, or the host never started rebooting."""


class HostTimeoutError(HostPrepError):
    """The host did not come back after the reboot."""


class VerifyError(HostPrepError):
    """The host came back but is not in the planned state."""


@dataclass
class EngineOptions:
    root: str = "/"  # test-only: prefix of every host path
    connect_timeout: float = 10.0
    command_timeout: float = 900.0  # each host command (update-initramfs, the bootloader refresh)
    reboot_timeout: float = 600.0
    reboot_start_grace: float = 30.0  # the old boot still running and not shutting down after this: the reboot never started
    drain_timeout: float = 300.0  # kubectl drain --timeout
    guest_timeout: float = 600.0  # after the host is back: guests with onboot, and this stack's node Ready again
    poll_initial: float = 0.25  # first wait between reconnect attempts
    poll_cap: float = 2.0  # backoff ceiling
    lock_timeout: float = 120.0
    progress_every: float = 10.0  # a line of progress while a host command runs
    kubeconfig: str | None = field(default=None, repr=False)  # secret: content or path; None = kubectl's own default
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
    warnings: list[str] = field(default_factory=list)  # guests that did not come back, a node left cordoned, ...
    rebound: list[str] = field(default_factory=list)  # functions moved between drivers live ("0000:3b:00.0 nouveau -> vfio-pci")
    restarts: dict[str, Any] = field(default_factory=lambda: no_restarts())

    def outputs(self, gpu_addresses: list[str]) -> dict[str, Any]:
        return host_outputs(self.facts, gpu_addresses) | {"rebooted": self.rebooted, "restarts": self.restarts}


def no_restarts() -> dict[str, Any]:
    """What a run restarted, machine-readable (the ``restarts`` output): host
    reboots, the guests a reboot stopped (this stack's VM apart), what HA did
    with its guests, and whether this stack's node was drained first."""
    return {"host_reboots": 0, "guests_stopped": [], "own_vms_stopped": [], "ha_guests": [], "node": None, "drained_first": None}


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
    records = dict(facts.written)
    for change in plan.files:
        files[change.path] = change.after
        originals.setdefault(change.path, change.before)
    for path in (*plan.forget_originals, *plan.archive_originals):
        originals.pop(path, None)
    for path, content in plan.records:
        records.pop(path + ".prev", None)
        if content is None:
            records.pop(path, None)
        else:
            records[path] = content
    return dataclasses.replace(facts, files=files, originals=originals, written=records, pending=(), stale_temps=())


def _sha(content: str | None) -> str:
    return "absent" if content is None else hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()


def _bytes(content: str) -> bytes:
    return content.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Host scripts (pure builders)
# --------------------------------------------------------------------------


def lock_lines(label: str, lock_timeout: float) -> list[str]:
    """Take the host lock (fd 9 on $S/lock). When it is busy and the run that
    holds it has lost its SSH session (its client died and left the command
    running), stop that run's processes and take the lock; otherwise wait at
    most ``lock_timeout`` seconds and exit 75 naming the holder."""
    return [
        'mkdir -p "$S/run"',
        'exec 9>"$S/lock"',
        # The SSH session a run belongs to: its nearest sshd ancestor.
        'ptg_session() { p=$PPID; while [ "${p:-1}" -gt 1 ]; do case "$(cat /proc/$p/comm 2>/dev/null)" in sshd*) echo "$p"; return;; esac; '
        'p=$(sed "s/.*) //" /proc/$p/stat 2>/dev/null | cut -d" " -f2); done; echo 0; }',
        "if ! flock -n 9; then",
        '  if read -r o_shell o_session o_pgid o_label < "$S/lock.owner" 2>/dev/null && [ "${o_session:-0}" -gt 0 ] '
        '&& ! kill -0 "$o_session" 2>/dev/null; then',
        '    echo "ptg-note: the host lock was held by a run whose SSH session is gone (${o_label:-?}, pid ${o_shell:-?}): stopped it"',
        '    [ "${o_pgid:-0}" -gt 0 ] && kill -TERM "-$o_pgid" 2>/dev/null; kill -TERM "$o_shell" 2>/dev/null; sleep 1',
        '    [ "${o_pgid:-0}" -gt 0 ] && kill -KILL "-$o_pgid" 2>/dev/null; kill -KILL "$o_shell" 2>/dev/null',
        "  fi",
        f'  flock -w {int(lock_timeout)} 9 || {{ read -r o_shell o_session o_pgid o_label < "$S/lock.owner" 2>/dev/null; '
        'echo "another run holds $S/lock (${o_label:-unknown}, pid ${o_shell:-?}, still connected); let it finish, then re-run" >&2; exit 75; }',
        "fi",
        "ptg_sess=$(ptg_session)",
        f'printf "%s %s 0 %s\\n" "$$" "$ptg_sess" {shlex.quote(label)} > "$S/lock.owner"',
    ]


def _touch(path: str) -> str:
    """Create an empty marker file, failing clearly (exit 77) when the disk is full."""
    q = shlex.quote(path)
    return (f"mkdir -p -- {shlex.quote(path.rpartition('/')[0])} && : > {q} || "
            f"{{ printf 'cannot write %s: %s\\n' {q} \"$(df -Pk -- {shlex.quote(path.rpartition('/')[0])} 2>/dev/null | "
            "awk 'NR==2 {print $4 \" KiB free on \" $6}')\" >&2; exit 77; }")


def batch_script(plan: HostPlan, facts: HostFacts, *, root: str, token: str, lock_timeout: float) -> str:
    """One sh script, run under the host lock: check that every file is still
    what the facts saw, save originals, mark the commands pending, then write
    each file atomically, recording what was written. A precondition failure
    exits before any write."""
    prefix = root.rstrip("/")
    q = shlex.quote
    state = prefix + STATE_DIR
    out = ["set -u", f"S={q(state)}", 'mkdir -p "$S/originals" "$S/pending" "$S/written" && chmod 700 "$S"',
           *lock_lines("write host files", lock_timeout),
           'sha() { if [ -e "$1" ]; then sha256sum < "$1" | cut -c1-64; else echo absent; fi; }']
    for change in plan.files:
        path = prefix + change.path
        out.append(f'[ "$(sha {q(path)})" = {_sha(change.before)} ] || {{ echo "{change.path} changed since the facts were read; re-run" >&2; exit 76; }}')
    out.append("set -e")
    for change in plan.files:
        if change.path in facts.originals or change.path in plan.forget_originals or change.path in plan.archive_originals:
            continue
        saved = f"{state}/originals{change.path}"
        if change.before is None:
            out.append(_touch(saved + ".absent"))
        else:
            out.append(atomic_write_snippet(saved, _bytes(change.before), token, mode="0600"))
    for command in plan.commands:
        out.append(_touch(f"{state}/pending/{command.name}"))
    for path in plan.cleanup:
        out.append(f"rm -f -- {q(prefix + path)}")
    records = dict(plan.records)
    for change in plan.files:
        record = f"{state}/written{change.path}"
        if change.path in records and records[change.path] is not None:
            # The new record before the file, the previous one kept until the file is in place:
            # an interrupted run leaves the file matching one of the two.
            out.append(f"if [ -f {q(record)} ]; then mv -f -- {q(record)} {q(record + '.prev')}; fi")
            out.append(atomic_write_snippet(record, _bytes(records[change.path] or ""), token, mode="0600"))
        if change.after is None:
            out.append(f"rm -f -- {q(prefix + change.path)}")
        else:
            out.append(atomic_write_snippet(prefix + change.path, _bytes(change.after), token))
        out.append(f"rm -f -- {q(record + '.prev')}")
        if records.get(change.path, "") is None:
            out.append(f"rm -f -- {q(record)}")
    for path, content in plan.records:
        if path not in {c.path for c in plan.files} and content is None:
            out.append(f"rm -f -- {q(f'{state}/written{path}')} {q(f'{state}/written{path}.prev')}")
    for path in plan.forget_originals:
        saved = f"{state}/originals{path}"
        out.append(f"rm -f -- {q(saved)} {q(saved + '.absent')}")
    for path in plan.archive_originals:
        saved, kept = f"{state}/originals{path}", f"{prefix}{KEPT_DIR}{path}"
        out.append(f"mkdir -p -- {q(kept.rpartition('/')[0])}")
        out.append(f"for f in {q(saved)} {q(saved + '.absent')}; do [ -e \"$f\" ] && mv -f -- \"$f\" {q(kept)}\"${{f#{q(saved)}}}\"; done; true")
    out.append("sync")
    return "\n".join(out) + "\n"


def command_script(name: str, argv: tuple[str, ...], *, root: str, lock_timeout: float, token: str = "cmd",
                   timeout: float = 900.0) -> str:
    """Run one command under the host lock, in its own process group (so a
    client that gives up can stop it, see :func:`stop_script`) and bounded on
    the host too (``timeout``, for a client that vanished); clear its pending
    mark only on success."""
    state = root.rstrip("/") + STATE_DIR
    pgid_file = f"$S/run/{token}.pgid"
    return "\n".join([
        f"S={shlex.quote(state)}",
        'mkdir -p "$S/pending"',
        *lock_lines(" ".join(argv), lock_timeout),
        f"setsid sh -c 'echo $$ > \"$0\"; exec \"$@\"' \"{pgid_file}\" timeout --kill-after=10 {int(timeout) + 5} {shlex.join(argv)} &",
        "child=$!",
        f"echo {START_MARKER}",
        f'printf "%s %s %s %s\\n" "$$" "$ptg_sess" "$child" {shlex.quote(" ".join(argv))} > "$S/lock.owner"',
        'wait "$child"; rc=$?',
        f'rm -f "{pgid_file}"',
        f'[ "$rc" -eq 124 ] && echo "stopped on the host after {int(timeout) + 5} s" >&2',
        '[ "$rc" -eq 0 ] || exit "$rc"',
        f'rm -f "$S/pending/{name}"',
        "sync",
    ]) + "\n"


def stop_script(*, root: str, token: str) -> str:
    """Stop a command started by :func:`command_script` (its whole process group)."""
    state = root.rstrip("/") + STATE_DIR
    return "\n".join([
        f"f={shlex.quote(f'{state}/run/{token}.pgid')}",
        '[ -f "$f" ] || { echo "already finished"; exit 0; }',
        'p=$(cat "$f")',
        'kill -TERM "-$p" 2>/dev/null',
        'for i in 1 2 3 4 5; do kill -0 "-$p" 2>/dev/null || break; sleep 1; done',
        'kill -KILL "-$p" 2>/dev/null; sleep 0.2',
        'if kill -0 "-$p" 2>/dev/null; then echo "process group $p is still running" >&2; exit 1; fi',
        'echo "stopped process group $p"',
    ]) + "\n"


def marker_script(*, root: str, node: str, present: bool) -> str:
    """Record (or forget) that this program cordoned ``node``, so a run that
    dies before the uncordon is finished by the next one."""
    path = f"{root.rstrip('/')}{STATE_DIR}/cordoned/{node}"
    return (_touch(path) if present else f"rm -f -- {shlex.quote(path)}") + "\n"


# --------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------


@dataclass
class _Drained:
    node: str
    cordoned_by_us: bool


class HostPrepEngine:
    """Facts -> plan -> changes for one host and one owner (project/stack)."""

    def __init__(self, connect: Connector, inputs: HostPrepInputs, owner: str, options: EngineOptions | None = None):
        self._connect = connect
        self.inputs = inputs
        self.owner = owner
        self.options = options or EngineOptions()
        self.round_trips = 0
        self._rebound: list[str] = []
        self.addresses = [gpu.address for gpu in inputs.gpus]
        if inputs.node_name and not _NODE_NAME.match(inputs.node_name):
            raise HostPrepError(f"{inputs.node_name!r} is not a Kubernetes node name (lowercase letters, digits, '-' and '.')")

    # -- read-only ---------------------------------------------------------

    def facts(self, *, guests: str = "always") -> HostFacts:
        with self._open() as transport:
            try:
                return self._facts(transport, guests)
            finally:
                self.round_trips += transport.round_trips

    def plan(self, *, guests: str = "auto") -> tuple[HostFacts, HostPlan]:
        facts = self.facts(guests=guests)
        return facts, plan_host(self.inputs, facts, self.owner)

    def plan_undo(self) -> tuple[HostFacts, HostPlan]:
        facts = self.facts(guests="never")
        return facts, self._undo_plan(facts)

    def verify(self, *, guests: str = "never") -> tuple[HostFacts, VerifyReport]:
        facts = self.facts(guests=guests)
        return facts, verify_host(self.inputs, facts, self.owner)

    # -- changing ------------------------------------------------------------

    def apply(self) -> RunResult:
        """Make the host ready; a converged host costs one round trip."""
        def decide(facts: HostFacts) -> HostPlan:
            plan = plan_host(self.inputs, facts, self.owner)
            if plan.refused:
                raise RefusedError("refusing to prepare the host; nothing was written:\n" + "\n".join(f"  - {r}" for r in plan.refusals))
            return plan

        plan, facts, wrote, ran = self._carry_out(decide, guests="auto")
        rebooted, wait, warnings, restarts = False, 0.0, [], no_restarts()
        if plan.reboot:
            if not self.inputs.allow_reboot:
                raise RebootRequiredError(
                    f"the host needs a reboot ({plan.reboot_reason}) and host.allowReboot is false; "
                    "the files are in place: reboot the host when convenient, then run again to verify")
            facts, wait, warnings, restarts = self._reboot(facts, plan.impact)
            rebooted = True
        else:
            warnings = self._finish_uncordon(facts)
        report = verify_host(self.inputs, facts, self.owner, booted=rebooted)
        if not report.ok:
            raise VerifyError("the host is not ready for passthrough:\n" + "\n".join(f"  - {p}" for p in report.problems))
        return RunResult(plan, facts, rebooted, self.round_trips, wrote, ran, list(report.checks), wait, warnings,
                         self._rebound, restarts)

    def undo(self) -> RunResult:
        """Take this owner's changes back (restoring originals when it is the last)."""
        def decide(facts: HostFacts) -> HostPlan:
            plan = self._undo_plan(facts)
            if plan.refused:
                raise RefusedError("refusing to undo; nothing was changed:\n" + "\n".join(f"  - {r}" for r in plan.refusals))
            return plan

        plan, facts, wrote, ran = self._carry_out(decide, guests="never")
        rebooted, wait, warnings, restarts = False, 0.0, [], no_restarts()
        if plan.reboot:
            facts, wait, warnings, restarts = self._reboot(facts, plan.impact)
            rebooted = True
        return RunResult(plan, facts, rebooted, self.round_trips, wrote, ran, [], wait, warnings, self._rebound, restarts)

    def _undo_plan(self, facts: HostFacts) -> HostPlan:
        return plan_undo(facts, self.owner, allow_reboot=self.inputs.allow_reboot, reboot_on_destroy=self.inputs.reboot_on_destroy,
                         hand_edits_policy=self.inputs.hand_edits, inputs=self.inputs)

    def _carry_out(self, decide: Callable[[HostFacts], HostPlan], *, guests: str) -> tuple[HostPlan, HostFacts, list[str], list[str]]:
        """One connection: read the facts, decide (pure), write and run what
        the plan says. Returns the plan and the facts as they now are."""
        transport = self._open()
        try:
            facts = self._facts(transport, guests)
            plan = decide(facts)
            wrote, ran = self._execute(transport, plan, facts)
            if self._rebound:  # the running state changed: read it back rather than assume it
                return plan, self._facts(transport), wrote, ran
        finally:
            self.round_trips += transport.round_trips
            transport.close()
        return plan, written(facts, plan), wrote, ran

    # -- steps ---------------------------------------------------------------

    def _open(self, timeout: float | None = None) -> SshTransport:
        return self._connect(timeout or self.options.connect_timeout)

    def _facts(self, transport: SshTransport, guests: str = "never") -> HostFacts:
        return gather_facts(transport, self.addresses, root=self.options.root, guests=guests)

    def _script(self, script: str, label: str, timeout: float = 60) -> str:
        """Run a short script on a fresh connection; its stdout."""
        transport = self._open()
        try:
            result = transport.run_script(script, label=label, timeout=timeout)
        finally:
            self.round_trips += transport.round_trips
            transport.close()
        if result.rc == 77:
            raise HostPrepError(f"the host ran out of room: {result.stderr.strip()}; free some space and re-run")
        if not result.ok:
            raise HostPrepError(f"{label} failed on the host (rc={result.rc}): {result.stderr.strip()[:300]}")
        return result.stdout

    def _execute(self, transport: SshTransport, plan: HostPlan, facts: HostFacts) -> tuple[list[str], list[str]]:
        try:
            return self._steps(transport, plan, facts)
        except (HostKeyError, CommandTimeoutError):
            raise
        except TransportError as error:
            raise TransportError(f"{error}. Files are written atomically (old or new, never half) and steps still owed are "
                                 "recorded on the host: run again to converge.") from None

    def _notes(self, stdout: str) -> None:
        for line in stdout.splitlines():
            if line.startswith("ptg-note: "):
                self.options.progress(line[len("ptg-note: "):])

    def _steps(self, transport: SshTransport, plan: HostPlan, facts: HostFacts) -> tuple[list[str], list[str]]:
        opts = self.options
        wrote: list[str] = []
        ran: list[str] = []
        if plan.changes_host:
            token = opts.token()
            opts.progress(f"writing {', '.join(c.path for c in plan.files) or 'state'} (atomic, originals kept)")
            result = transport.run_script(batch_script(plan, facts, root=opts.root, token=token, lock_timeout=opts.lock_timeout),
                                          label="write host files", timeout=opts.lock_timeout + 120)
            self._notes(result.stdout)
            if result.rc in (75, 76):
                raise HostPrepError(f"nothing was written: {result.stderr.strip()}")
            if result.rc == 77:
                raise HostPrepError(f"the host ran out of room: {result.stderr.strip().splitlines()[-1]}. Each file is replaced whole "
                                    "(old or new, never half), so nothing is half-written; free some space and re-run")
            if not result.ok:
                raise HostPrepError(f"writing host files failed (rc={result.rc}): {result.stderr.strip()[:500]}; re-run to converge")
            wrote = [c.path for c in plan.files]
        for command in plan.commands:
            shown = " ".join(command.argv)
            opts.progress(f"running {shown} (at most {opts.command_timeout:.0f} s)")
            token = opts.token()
            script = command_script(command.name, command.argv, root=opts.root, lock_timeout=opts.lock_timeout, token=token,
                                    timeout=opts.command_timeout)
            try:
                result = transport.run_script(script, label=shown, timeout=opts.command_timeout, progress=opts.progress,
                                              progress_every=opts.progress_every, start_marker=START_MARKER.encode(),
                                              wait_for_start=opts.lock_timeout + 30)
            except CommandTimeoutError as error:
                raise HostPrepError(self._stop_hung(transport, shown, token, error)) from None
            self._notes(result.stdout)
            if result.rc == 124:  # the host's own bound (the client lost track of it)
                raise HostPrepError(f"`{shown}` did not finish within {opts.command_timeout:.0f} s and was stopped on the host; "
                                    "the step stays marked pending, so the next run runs it again. "
                                    f"Find out why it hangs (run `{shown}` on the host by hand), then re-run.")
            if result.rc == 75:
                raise HostPrepError(f"`{shown}` did not run: {result.stderr.strip()}")
            if not result.ok:
                raise HostPrepError(f"`{shown}` failed (rc={result.rc}): {(result.stderr or result.stdout).strip()[-800:]}\n"
                                    "The files are written and the step is marked pending on the host; fix the cause and re-run.")
            ran.append(shown)
        if plan.rebinds:
            self._rebind(transport, plan)
        return wrote, ran

    def _rebind(self, transport: SshTransport, plan: HostPlan) -> None:
        """Move functions between drivers on the running host (after the files, so the next boot agrees)."""
        opts = self.options
        moving = [r for r in plan.rebinds if not r.forget]
        if moving:
            opts.progress("binding live: " + "; ".join(f"{r.address} {r.current or 'no driver'} -> {r.target or 'no driver'}" for r in moving))
        script = bind_script(plan.rebinds, root=opts.root, lock=lock_lines("bind GPU functions", opts.lock_timeout))
        try:
            result = transport.run_script(script, label="bind GPU functions", timeout=opts.command_timeout)
        except CommandTimeoutError:
            raise HostPrepError(f"binding the GPU's functions did not finish within {opts.command_timeout:.0f} s: a driver waits for its "
                                "device to be released (a process still uses it: `fuser -v /dev/nvidia* /dev/vfio/*`). The files are "
                                "written; stop that process and re-run, or reboot the host.") from None
        self._notes(result.stdout)
        self._rebound = [f"{parts[1]} {parts[2]} -> {parts[3]}" for parts in (line.split() for line in result.stdout.splitlines())
                         if len(parts) == 4 and parts[0] == "ptg-bound"]
        if result.rc == 75:
            raise HostPrepError(f"the GPU's functions were not rebound: {result.stderr.strip()}")
        if result.rc == BIND_FAILED or not result.ok:
            raise HostPrepError(f"binding the GPU's functions live failed (rc={result.rc}): {result.stderr.strip()[:500]}. "
                                "The files are written, so the next boot binds them; re-run, or reboot the host.")

    def _stop_hung(self, transport: SshTransport, shown: str, token: str, error: CommandTimeoutError) -> str:
        """The client gave up on a command: stop it on the host, say what happened."""
        limit = self.options.command_timeout
        try:
            stopped = transport.run_script(stop_script(root=self.options.root, token=token), label=f"stop {shown}", timeout=30)
            what = "it was stopped on the host" if stopped.ok else f"stopping it on the host failed ({stopped.stderr.strip()[:200]})"
        except TransportError as lost:
            what = f"it could not be stopped ({lost}); the host stops it itself after {int(limit) + 5} s"
        tail = (error.stdout + error.stderr).strip()[-300:]
        return (f"`{shown}` did not finish within {limit:.0f} s (host.commandTimeoutSeconds, CLI --command-timeout); {what}. "
                "The step stays marked pending on the host, so the next run runs it again. "
                f"Find out why it hangs (run `{shown}` on the host by hand), then re-run." + (f" Its last output: {tail}" if tail else ""))

    # -- the reboot ------------------------------------------------------------

    def _reboot(self, facts: HostFacts, impact: RebootImpact | None) -> tuple[HostFacts, float, list[str], dict[str, Any]]:
        """With consent for the guests it stops and this stack's node drained:
        reboot, wait for the new boot, the guests and the node."""
        if impact is None or (not impact.guests_known and not facts.guests_problem):
            transport = self._open()
            try:
                guests, problem, node = read_guests(transport, root=self.options.root)
            finally:
                self.round_trips += transport.round_trips
                transport.close()
            facts = dataclasses.replace(facts, guests=guests, guests_problem=problem, pve_node=node)
            impact = reboot_impact(self.inputs, facts)
        if impact.blocked:
            raise GuestsRunningError(impact.blocked)
        for line in impact.lines(self.inputs.running_guests):
            self.options.progress(line)
        warnings: list[str] = list(impact.notes)
        drained = self._drain(impact, warnings)
        started = self.options.clock()
        new_facts = self._reboot_and_wait(facts)
        wait = self.options.clock() - started
        warnings += self._after_boot(impact, drained, new_facts)
        restarts = no_restarts() | {
            "host_reboots": 1,
            "guests_stopped": [g.vmid for g in impact.others],
            "own_vms_stopped": [g.vmid for g in impact.own],
            "ha_guests": [{"vmid": g.vmid, "hastate": g.hastate, "policy": impact.ha_policy, "moved": g in impact.moved}
                          for g in (*impact.stops, *impact.moved) if ha.ha_managed(g)],
            "node": impact.drain_node,
            "drained_first": None if not impact.drain_node else drained is not None,
        }
        return new_facts, wait, warnings, restarts

    def _drain(self, impact: RebootImpact, warnings: list[str]) -> _Drained | None:
        """Cordon and drain this stack's node before the reboot stops its VM."""
        from components.kubectl import KubectlError, cordon_node, drain_node, get_node, uncordon_node

        node = impact.drain_node
        if not node:
            return None
        opts = self.options
        own = ", ".join(g.label for g in impact.own)
        opts.progress(f"draining Kubernetes node {node} (VM {own}) before the reboot")
        try:
            data = get_node(node, kubeconfig=opts.kubeconfig, timeout=30)
        except KubectlError as error:
            message = f"cannot reach the Kubernetes cluster to drain node {node} before the reboot stops VM {own}: {error}"
            if self.inputs.running_guests == "stop":
                warnings.append(f"{message}; host.runningGuests is stop, so the host was rebooted without draining it")
                opts.progress(warnings[-1])
                return None
            raise DrainError(f"{message}. host.runningGuests is refuse, so the host was not rebooted (its files are written and refreshed). "
                             "Make the cluster reachable (the stack's kubeconfig secret, or --kubeconfig), or re-run with "
                             "host.runningGuests: stop (CLI: --running-guests stop) to reboot without draining.") from None
        if data is None:
            opts.progress(f"node {node} is not in the cluster: nothing to drain")
            return None
        already = bool((data.get("spec") or {}).get("unschedulable"))
        try:
            if not already:
                self._script(marker_script(root=opts.root, node=node, present=True), label=f"remember that {node} is cordoned")
                cordon_node(node, kubeconfig=opts.kubeconfig)
            drain_node(node, timeout_seconds=int(opts.drain_timeout), kubeconfig=opts.kubeconfig)
        except KubectlError as error:
            undone = ""
            if not already:
                try:
                    uncordon_node(node, kubeconfig=opts.kubeconfig)
                    self._script(marker_script(root=opts.root, node=node, present=False), label=f"forget that {node} is cordoned")
                    undone = f" {node} was uncordoned again."
                except (KubectlError, HostPrepError, TransportError) as again:
                    undone = f" Uncordoning it failed too ({again}): run `kubectl uncordon {node}`."
            raise DrainError(
                f"draining Kubernetes node {node} failed: {error}. Nothing was rebooted; the host files are written and refreshed.{undone} "
                "Find what blocks the eviction (often a PodDisruptionBudget: `kubectl get pdb -A`), then raise host.drainTimeoutSeconds "
                f"(CLI --drain-timeout), or drain it yourself (`kubectl drain {node} --ignore-daemonsets --delete-emptydir-data`) and re-run."
            ) from None
        if already:
            warnings.append(f"node {node} was already cordoned before this run, so it stays cordoned afterwards")
        opts.progress(f"node {node} drained")
        return _Drained(node, cordoned_by_us=not already)

    def _reboot_and_wait(self, facts: HostFacts) -> HostFacts:
        opts = self.options
        opts.progress("rebooting the host")
        transport = self._open()
        result = None
        try:
            result = transport.run("reboot", timeout=60)
        except TransportError:
            pass  # the connection going down with the host is the expected outcome
        finally:
            self.round_trips += transport.round_trips
            transport.close()
        said = ""
        if result is not None:
            said = (result.stderr or result.stdout).strip()
            if result.rc not in (0, -1):
                raise RebootFailedError(
                    f"`reboot` failed on the host (exit {result.rc}): {said[:300] or 'no output'}. The host was not rebooted; "
                    "its files are written and refreshed. Reboot it yourself (its console, or the Proxmox GUI), then re-run to verify.")
        return self.wait_for_reboot(facts.boot_id, reboot_output=said)

    def wait_for_reboot(self, old_boot_id: str, *, reboot_output: str = "") -> HostFacts:
        """Reconnect with backoff (capped) until the host runs a new boot, or time out.
        If the old boot still runs and is not shutting down after the grace
        period, the reboot never started: say so at once."""
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
                except FactsError as error:  # the shutdown killed the read, or the boot is not far enough yet
                    last = f"host not ready: {error}"
                else:
                    if facts.boot_id and facts.boot_id != old_boot_id:
                        opts.progress(f"the host is back after {opts.clock() - started:.1f} s")
                        return facts
                    if facts.system_state == "stopping":
                        last = "shutting down"
                    elif opts.clock() - started >= opts.reboot_start_grace:
                        raise RebootFailedError(
                            f"the reboot never started: {opts.clock() - started:.0f} s after `reboot` the host still runs the same boot "
                            f"(boot id unchanged), sshd still answers and systemd says {facts.system_state or 'nothing'!r}. "
                            f"`reboot` said: {reboot_output[:300] or 'nothing'}. The host files are written and refreshed; reboot the host "
                            "yourself (its console, or the Proxmox GUI), then re-run to verify.")
                    else:
                        last = "still running the old boot"
                finally:
                    self.round_trips += transport.round_trips
                    transport.close()
            opts.sleep(min(delay, max(0.0, opts.reboot_timeout - (opts.clock() - started))))
            delay = min(delay * 2, opts.poll_cap)

    def _read_guests_now(self) -> tuple[Guest, ...] | None:
        """Every guest of the cluster (HA may have moved one to another node)."""
        try:
            transport = self._open()
        except TransportError:
            return None
        try:
            guests, _, _ = read_guests(transport, root=self.options.root, everywhere=True)
            return guests
        except TransportError:
            return None
        finally:
            self.round_trips += transport.round_trips
            transport.close()

    def _after_boot(self, impact: RebootImpact, drained: _Drained | None, facts: HostFacts) -> list[str]:
        """Wait (bounded) for the guests that ran with onboot=1 and for this
        stack's node to be Ready, then uncordon it; report what did not come back."""
        opts = self.options
        warnings: list[str] = []
        deadline = opts.clock() + opts.guest_timeout
        policy = impact.ha_policy
        # pve-guests starts the onboot ones; HA starts its own (wherever it put them), onboot or not.
        expected = [g for g in (*impact.stops, *impact.moved) if (ha.comes_back(g, policy) if ha.ha_managed(g) else g.onboot)]
        not_back = list(expected)
        delay = opts.poll_initial
        while not_back:
            current = self._read_guests_now()
            if current is not None:
                running = {g.vmid for g in current if g.running}
                not_back = [g for g in expected if g.vmid not in running]
            if not not_back or opts.clock() >= deadline:
                break
            opts.progress(f"waiting for guests to start again (onboot=1, or HA): {', '.join(g.label for g in not_back)}")
            opts.sleep(delay)
            delay = min(delay * 2, opts.poll_cap)
        for guest in not_back:
            if ha.ha_managed(guest):
                warnings.append(f"{guest.label} is HA-managed (ha: shutdown_policy={policy}) and HA has not started it again "
                                f"{opts.guest_timeout:.0f} s after the host came back: check `ha-manager status`")
                continue
            warnings.append(f"{guest.label} was running before the reboot and has onboot=1, but is not running {opts.guest_timeout:.0f} s "
                            f"after the host came back: check it (`{guest.tool} status {guest.vmid}`, `{guest.tool} start {guest.vmid}`)")
        for guest in impact.stops:
            if ha.ha_managed(guest):
                if not ha.comes_back(guest, policy):
                    warnings.append(f"{guest.label} is HA-managed with requested state {guest.hastate}: HA keeps it stopped after the reboot")
            elif not guest.onboot:
                warnings.append(f"{guest.label} was running before the reboot and has no onboot, so Proxmox did not start it again: "
                                f"`{guest.tool} start {guest.vmid}`")
        if drained and drained.cordoned_by_us:
            warnings += self._uncordon_when_ready(drained.node, deadline)
        for warning in warnings:
            opts.progress(f"warning: {warning}")
        return warnings

    def _uncordon_when_ready(self, node: str, deadline: float) -> list[str]:
        from components.facts.kubernetes import ParseError, parse_node
        from components.kubectl import KubectlError, get_node, uncordon_node

        opts = self.options
        delay = opts.poll_initial
        last = ""
        while True:
            try:
                data = get_node(node, kubeconfig=opts.kubeconfig, timeout=30)
                ready = data is not None and parse_node(data).ready
                last = "Ready" if ready else ("not in the cluster" if data is None else "not Ready")
            except (KubectlError, ParseError) as error:
                ready, last = False, str(error)
            if ready:
                try:
                    uncordon_node(node, kubeconfig=opts.kubeconfig)
                except KubectlError as error:
                    return [f"node {node} is Ready but uncordoning it failed ({error}): run `kubectl uncordon {node}`"]
                self._script(marker_script(root=opts.root, node=node, present=False), label=f"forget that {node} is cordoned")
                opts.progress(f"node {node} is Ready again: uncordoned")
                return []
            if opts.clock() >= deadline:
                return [f"Kubernetes node {node} is not Ready {opts.guest_timeout:.0f} s after the host came back ({last}), so it stays cordoned; "
                        f"the next run uncordons it once it is Ready (or run `kubectl uncordon {node}`)"]
            opts.progress(f"waiting for node {node} to be Ready ({last})")
            opts.sleep(delay)
            delay = min(delay * 2, opts.poll_cap)

    def _finish_uncordon(self, facts: HostFacts) -> list[str]:
        """An earlier run cordoned this stack's node and did not get to uncordon it."""
        node = self.inputs.node_name
        if not node or node not in facts.cordoned:
            return []
        warnings = self._uncordon_when_ready(node, self.options.clock())
        for warning in warnings:
            self.options.progress(f"warning: {warning}")
        return warnings
