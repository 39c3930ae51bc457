"""What every parser of tool output shares: its error, and the readers of
JSON objects, JSON streams and whole-number quantities."""

from __future__ import annotations

import json
import re
from typing import Any


class ParseError(ValueError):
    """The text is not the output the parser expects."""


def json_stream(text: str) -> list[Any]:
    """JSON values printed back to back (``talosctl -o json`` prints one
    indented object per resource, cmd/talosctl/cmd/talos/output/json.go)."""
    decoder = json.JSONDecoder()
    items, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return items
        item, position = decoder.raw_decode(text, position)
        items.append(item)


def load_json_object(text: str | dict[str, Any], what: str) -> dict[str, Any]:
    """``text`` as a JSON object (a dict is taken as already parsed)."""
    if isinstance(text, dict):
        return text
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ParseError(f"{what} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ParseError(f"{what} is a JSON {type(data).__name__}, expected an object")
    return data


def whole_number(value: Any, what: str) -> int | None:
    """A Kubernetes quantity that must be a whole number; None when absent."""
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text):
        raise ParseError(f"{what} is {text!r}, expected a whole number")
    return int(text)
