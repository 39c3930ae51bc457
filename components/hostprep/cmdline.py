"""Kernel command-line edits (pure): GRUB_CMDLINE_LINUX_DEFAULT in
/etc/default/grub and /etc/default/grub.d/*.cfg, and /etc/kernel/cmdline
(systemd-boot), each parameter added or replaced in place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.hostprep.facts import GRUB_D, GRUB_DEFAULT, KERNEL_CMDLINE, HostFacts, shown
from components.hostprep.inputs import PlanError

MANAGED_KEYS = ("intel_iommu", "iommu")  # kernel parameters this program may set
OUR_TOKENS = ("intel_iommu=on", "iommu=pt")  # the values it sets


def token_key(token: str) -> str:
    return token.partition("=")[0]


def edit_tokens(value: str, wanted: list[str]) -> str:
    """Add each ``key=value`` to a space-separated command line, replacing a
    different value of the same key in place; everything else untouched."""
    tokens = value.split()
    for token in wanted:
        if token in tokens and all(t == token for t in tokens if token_key(t) == token_key(token)):
            continue
        positions = [i for i, t in enumerate(tokens) if token_key(t) == token_key(token)]
        if positions:
            tokens[positions[0]] = token
            tokens = [t for i, t in enumerate(tokens) if i not in positions[1:]]
        else:
            tokens.append(token)
    return " ".join(tokens)


def is_grub_file(path: str) -> bool:
    return path == GRUB_DEFAULT or (path.startswith(GRUB_D + "/") and path.endswith(".cfg"))


def is_cmdline_file(path: str) -> bool:
    return path == KERNEL_CMDLINE or is_grub_file(path)


_GRUB_LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?GRUB_CMDLINE_LINUX_DEFAULT=)(?P<rest>.*)$")
_GRUB_OTHER = re.compile(r"^\s*(?:export\s+|readonly\s+|unset\s+)?GRUB_CMDLINE_LINUX_DEFAULT\s*(\+=|$|\s)")
_SELF = r"\$(?:\{GRUB_CMDLINE_LINUX_DEFAULT\}|GRUB_CMDLINE_LINUX_DEFAULT\b)"
_APPEND = re.compile(rf"^{_SELF}(?:\s+(?P<x>.*))?$")
_PREPEND = re.compile(rf"^(?P<x>.*?)\s+{_SELF}$")


@dataclass(frozen=True)
class GrubAssignment:
    """One ``GRUB_CMDLINE_LINUX_DEFAULT=`` line, as update-grub's shell reads it."""

    path: str
    line: int  # 0-based
    kind: str  # "plain" (sets the value) | "append" | "prepend" (extends the value set before)
    value: str  # the value, or the text added
    quote: str
    lead: str
    trail: str  # whitespace and a comment after the value, kept on a rewrite


def _grub_assignment(path: str, index: int, line: str) -> GrubAssignment | None:
    """Parse one line; raises PlanError, naming the file and line, for shell
    this program will not rewrite."""
    where = f"{path} line {index + 1} ({shown(line.strip(), 80)})"
    match = _GRUB_LINE.match(line)
    if not match:
        if _GRUB_OTHER.match(line) and "+=" in line:
            raise PlanError(f"{where} uses +=, which update-grub's /bin/sh does not understand")
        return None
    rest = match.group("rest")
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = rest.find(quote, 1)
        if end < 0:
            raise PlanError(f"{where} has an unterminated quote")
        inner, after = rest[1:end], rest[end + 1:]
    else:
        quote = ""
        inner = re.match(r"[^\s#;&|<>()'\"`\\]*", rest).group(0)  # type: ignore[union-attr]
        after = rest[len(inner):]
    # After the value: nothing, or whitespace and a comment (a `#` right after
    # a closing quote would be part of the word, so it needs the space).
    if not re.fullmatch(r"\s*|\s+#.*", after):
        raise PlanError(f"{where} continues after the value with shell syntax this program will not rewrite")
    if "`" in inner or "\\" in inner or (quote == "'" and "$" in inner):
        raise PlanError(f"{where} uses shell syntax this program will not rewrite")
    kind, value = "plain", inner
    if "$" in inner:
        append, prepend = _APPEND.match(inner), _PREPEND.match(inner)
        if append and "$" not in (added := append.group("x") or ""):
            kind, value = "append", added
        elif prepend and "$" not in prepend.group("x"):
            kind, value = "prepend", prepend.group("x")
        else:
            raise PlanError(f"{where} uses shell expansion this program will not rewrite")
    return GrubAssignment(path, index, kind, value, quote, match.group("lead"), after)


def grub_assignments(path: str, content: str) -> list[GrubAssignment]:
    found = []
    for index, line in enumerate(content.splitlines()):  # a comment matches neither pattern: both begin at the first word
        assignment = _grub_assignment(path, index, line)
        if assignment:
            found.append(assignment)
    return found


@dataclass(frozen=True)
class GrubCmdline:
    """GRUB_CMDLINE_LINUX_DEFAULT the way update-grub (grub-mkconfig) gets it:
    /etc/default/grub sourced first, then /etc/default/grub.d/*.cfg in order,
    the last plain assignment winning and later ``$GRUB_CMDLINE_LINUX_DEFAULT
    …`` lines extending it."""

    base: GrubAssignment | None  # the assignment that decides the value
    additions: tuple[GrubAssignment, ...]  # extensions after it

    @property
    def path(self) -> str:
        """The file that decides the value (where this program edits it)."""
        return self.base.path if self.base else GRUB_DEFAULT

    @property
    def effective(self) -> str:
        value = self.base.value if self.base else ""
        for addition in self.additions:
            value = f"{value} {addition.value}" if addition.kind == "append" else f"{addition.value} {value}"
        return " ".join(value.split())


def grub_cmdline(files: dict[str, str | None]) -> GrubCmdline:
    # Sorting names sorts their UTF-8 bytes (the shell's glob order), and /etc/default/grub
    # sorts before every /etc/default/grub.d/ name, as update-grub sources it first.
    order = sorted((p, c) for p, c in files.items() if c is not None and is_grub_file(p))
    base: GrubAssignment | None = None
    additions: list[GrubAssignment] = []
    for path, content in order:
        for assignment in grub_assignments(path, content):
            if assignment.kind == "plain":
                base, additions = assignment, []
            else:
                additions.append(assignment)
    return GrubCmdline(base, tuple(additions))


def _set_grub_value(content: str, assignment: GrubAssignment, value: str) -> str:
    lines = content.splitlines(keepends=True)
    line = lines[assignment.line]
    ending = line[len(line.rstrip("\r\n")):]
    quote = assignment.quote or ('"' if (" " in value or not value) else "")
    lines[assignment.line] = f"{assignment.lead}{quote}{value}{quote}{assignment.trail}{ending}"
    return "".join(lines)


def edit_grub_files(files: dict[str, str | None], wanted: list[str]) -> tuple[str, str]:
    """(file that decides GRUB_CMDLINE_LINUX_DEFAULT, its new content) with
    each wanted token in the effective value. Raises PlanError, naming the
    file and line, where that cannot be done by editing one value."""
    grub = grub_cmdline(files)
    effective = grub.effective.split()
    missing = []
    for token in wanted:
        same = [t for t in effective if token_key(t) == token_key(token)]
        if same and all(t == token for t in same):
            continue
        for addition in grub.additions:
            clash = [t for t in addition.value.split() if token_key(t) == token_key(token) and t != token]
            if clash:
                raise PlanError(f"{addition.path} line {addition.line + 1} adds {clash[0]} to GRUB_CMDLINE_LINUX_DEFAULT after "
                                f"{grub.path} sets it; change it to {token} (or remove it) and re-run")
        missing.append(token)
    path = grub.path
    content = files.get(path) or ""
    if not missing:
        return path, content
    if grub.base is None:
        if grub.additions:
            first = grub.additions[0]
            raise PlanError(f"GRUB_CMDLINE_LINUX_DEFAULT is only extended ({first.path} line {first.line + 1}), never set; "
                            f"set it once in {GRUB_DEFAULT} (e.g. GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\") and re-run")
        sep = "" if content.endswith("\n") or not content else "\n"
        return path, f'{content}{sep}GRUB_CMDLINE_LINUX_DEFAULT="{" ".join(missing)}"\n'
    return path, _set_grub_value(content, grub.base, edit_tokens(grub.base.value, missing))


def edit_grub(content: str, wanted: list[str]) -> str:
    """Minimal edit of one /etc/default/grub: only GRUB_CMDLINE_LINUX_DEFAULT's value."""
    return edit_grub_files({GRUB_DEFAULT: content}, wanted)[1]


def kernel_cmdline_value(content: str) -> str:
    lines = [line for line in content.splitlines() if line.strip()]
    if len(lines) != 1:
        raise PlanError(f"{KERNEL_CMDLINE} must hold exactly one line (it holds {len(lines)})")
    return lines[0]


def edit_kernel_cmdline(content: str, wanted: list[str]) -> str:
    """Minimal edit of /etc/kernel/cmdline (one line), keeping its line ending."""
    value = kernel_cmdline_value(content)
    new_value = edit_tokens(value, wanted)
    if new_value.split() == value.split():  # every wanted parameter is there: the file stays byte for byte
        return content
    return content.replace(value, new_value, 1)


def cmdline_file(facts: HostFacts) -> str:
    """The file that decides the kernel command line on this host."""
    if facts.bootloader == "systemd-boot":
        return KERNEL_CMDLINE
    return grub_cmdline(facts.files).path


def cmdline_of(path: str, content: str) -> str | None:
    """The command-line value one file sets (None: a GRUB file that no longer sets it)."""
    if path == KERNEL_CMDLINE:
        return kernel_cmdline_value(content)
    plain = [a for a in grub_assignments(path, content) if a.kind == "plain"]
    return plain[-1].value if plain else None


def set_cmdline(path: str, content: str, value: str) -> str:
    if path == KERNEL_CMDLINE:
        return content.replace(kernel_cmdline_value(content), value, 1)
    plain = [a for a in grub_assignments(path, content) if a.kind == "plain"]
    return _set_grub_value(content, plain[-1], value)


def planned_edit(path: str, content: str, wanted: list[str]) -> str | None:
    """``content`` as the planner's edit leaves it; None where the planner would not edit that file."""
    if path == KERNEL_CMDLINE:
        return edit_kernel_cmdline(content, wanted)
    current = cmdline_of(path, content)
    if current is None:  # never set: the planner adds the line to /etc/default/grub, and edits no other such file
        return edit_grub(content, wanted) if path == GRUB_DEFAULT else None
    return set_cmdline(path, content, edit_tokens(current, wanted))
