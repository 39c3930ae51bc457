"""What ffmpeg reports: ``ffmpeg -encoders`` (run in the Jellyfin pod)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from components.facts.parsing import ParseError


@dataclass(frozen=True)
class Encoder:
    name: str
    kind: str  # V, A or S
    description: str


_ENCODER_ROW = re.compile(r"^\s*(?P<flags>[VAS][A-Z.]{5})\s+(?P<name>\S+)\s*(?P<description>.*)$")


def parse_ffmpeg_encoders(text: str) -> dict[str, Encoder]:
    """``ffmpeg -encoders``: the rows after the legend's ``------`` line."""
    lines = text.splitlines()
    try:
        start = next(index for index, line in enumerate(lines) if line.strip().startswith("---")) + 1
    except StopIteration:
        raise ParseError("no '------' line: not the output of `ffmpeg -encoders`") from None
    encoders: dict[str, Encoder] = {}
    for line in lines[start:]:
        if not line.strip():
            continue
        row = _ENCODER_ROW.match(line)
        if not row:
            raise ParseError(f"unexpected line in ffmpeg -encoders output: {line[:80]!r}")
        encoders[row["name"]] = Encoder(row["name"], row["flags"][0], row["description"].strip())
    if not encoders:
        raise ParseError("ffmpeg -encoders lists no encoders")
    return encoders
