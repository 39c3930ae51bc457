"""The host scripts (pure builders): the write batch and each command run
under the host lock, stopping a hung command, the cordon marker. A script
that cannot write exits 77 naming the file and the room left."""

from __future__ import annotations

import hashlib
import shlex

from components.hostprep.facts import STATE_DIR, HostFacts
from components.hostprep.plan_model import HostPlan
from components.hostprep.undo import KEPT_DIR
from components.ssh.atomic import atomic_write_snippet

START_MARKER = "ptg-started"  # a command script prints it once it holds the lock: its time limit starts then


def _sha(content: str | None) -> str:
    return "absent" if content is None else hashlib.sha256(content.encode("utf-8", "surrogateescape")).hexdigest()


def _bytes(content: str) -> bytes:
    return content.encode("utf-8", "surrogateescape")




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
