"""The steps of a plan, carried out over one connection: the write batch,
each command under the host lock (bounded; a hung one is stopped on the
host), then the live rebinding of the GPU's functions."""

from __future__ import annotations

from components.hostprep.binding import BIND_FAILED, bind_script
from components.hostprep.connections import EngineOptions
from components.hostprep.errors import HostPrepError
from components.hostprep.facts import HostFacts
from components.hostprep.plan_model import HostPlan
from components.hostprep.scripts import START_MARKER, batch_script, command_script, lock_lines, stop_script
from components.ssh.errors import CommandTimeoutError, HostKeyError, TransportError
from components.ssh.transport import SshTransport


class PlanSteps:
    """Writes and runs what a plan says; ``rebound`` lists the functions it
    moved between drivers live ("0000:3b:00.0 nouveau -> vfio-pci")."""

    def __init__(self, options: EngineOptions):
        self.options = options
        self.rebound: list[str] = []

    def execute(self, transport: SshTransport, plan: HostPlan, facts: HostFacts) -> tuple[list[str], list[str]]:
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
        self.rebound = [f"{parts[1]} {parts[2]} -> {parts[3]}" for parts in (line.split() for line in result.stdout.splitlines())
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
