"""The changed lines of a machine config, with the values of secret-looking
keys masked: safe to show in a preview or log."""

from __future__ import annotations

import difflib
import re

# YAML `key: value` and TOML `key = value` lines whose key names a secret.
_SECRET_LINE = re.compile(r"^(\s*-?\s*\"?(?:key|token|secret|crt|bootstraptoken|secretboxencryptionsecret|aescbcencryptionsecret|"
                          r"password|auth|identitytoken|id|ca)\"?\s*[:=]\s*)(\S.*)$", re.IGNORECASE)


def _mask(line: str) -> str:
    match = _SECRET_LINE.match(line)
    return f"{match.group(1)}***" if match and len(match.group(2)) >= 8 else line


def diff_lines(before_text: str, after_text: str, *, name: str = "machine config") -> list[str]:
    """The changed lines only (no context), values of secret-looking keys
    masked: safe to show in a preview or log."""
    lines = difflib.unified_diff(before_text.splitlines(), after_text.splitlines(), f"{name} (node)", f"{name} (wanted)", n=0, lineterm="")
    return [line[0] + _mask(line[1:]) if line[:1] in "+-" and not line.startswith(("+++", "---")) else line for line in lines]
