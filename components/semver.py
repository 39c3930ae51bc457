"""Version strings as the config and the version tables write them."""

from __future__ import annotations

import re

V_SEMVER = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def parse_version(value: str) -> tuple[int, int, int]:
    """``v1.13.9`` or ``0.18.2`` -> (1, 13, 9). Raises ValueError otherwise."""
    match = V_SEMVER.match(value) or SEMVER.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a version like v1.2.3")
    major, minor, patch = (int(group) for group in match.groups())
    return major, minor, patch
