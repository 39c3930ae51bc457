"""Atomic file writes as POSIX sh snippets (so a batch of them runs in one
round trip): a temp file (0600 until it takes the target's owner and mode)
in the target's directory, fsync, rename. A reader sees the old or the new
content, never a mix."""

from __future__ import annotations

import base64
import shlex

TEMP_MARK = ".ptg-tmp-"  # temp files are `.<name>.ptg-tmp-<token>` next to their target


def temp_path(path: str, token: str) -> str:
    directory, _, name = path.rpartition("/")
    return f"{directory}/.{name}{TEMP_MARK}{token}"


def atomic_write_snippet(path: str, content: bytes, token: str, *, mode: str = "0644") -> str:
    """POSIX sh that writes ``content`` to ``path`` via a temp file in the same
    directory, fsyncs it and renames it over the target. Owner and mode follow
    the file it replaces (``mode`` for a new file). A reader sees the old or
    the new content, never a mix."""
    tmp = temp_path(path, token)
    payload = base64.b64encode(content).decode()
    q_path, q_tmp, q_dir = shlex.quote(path), shlex.quote(tmp), shlex.quote(path.rpartition('/')[0] or '/')
    return "\n".join([
        f"mkdir -p -- {q_dir}",
        # umask 077: the temp file is 0600 until it takes the owner and mode of the file it replaces.
        f"if ! (umask 077 && base64 -d > {q_tmp}) <<'PTG_EOF'",
        payload,
        "PTG_EOF",
        # A full disk (ENOSPC) or any other write error: drop the partial temp
        # file, leave the target as it was, and say which file and how much room.
        "then",
        f"  rm -f -- {q_tmp}",
        f"  printf 'cannot write %s (%s bytes): %s; it was left as it was\\n' {q_path} {len(content)} "
        f"\"$(df -Pk -- {q_dir} 2>/dev/null | awk 'NR==2 {{print $4 \" KiB free on \" $6}}')\" >&2",
        "  exit 77",
        "fi",
        f"if [ -e {q_path} ]; then chmod --reference={q_path} {q_tmp} && chown --reference={q_path} {q_tmp}; else chmod {mode} {q_tmp}; fi",
        f"sync -- {q_tmp}",
        f"mv -f -- {q_tmp} {q_path}",
        f"sync -- {q_dir} 2>/dev/null || true",
    ])
