"""Secrets out of text a tool printed, before it reaches a progress line, a
log or an error: the one masking helper (kubectl, talosctl and the SSH
transport use it)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A credential a server's error page may echo back whatever the config held:
# an Authorization header (`Authorization: Bearer <token>`, `Basic <b64>`) or a
# token in a URL's query (`?access_token=...`, `&token=...`).
_ECHOED = (re.compile(r"(?i)(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{8,}"),
           re.compile(r"(?i)([?&;](?:access_token|token|id_token|refresh_token|password|client_secret)=)[^&\s\"'<>]+"))


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and each of its lines of 8 characters or more)
    with ***, and any bearer/basic credential or token in a URL."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
        for part in secret.splitlines():
            if len(part) >= 8:
                text = text.replace(part, "***")
    for pattern in _ECHOED:
        text = pattern.sub(r"\1***", text)
    return text
