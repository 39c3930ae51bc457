"""Validate a mapping of top-level key -> value into a :class:`StackConfig`:
unknown keys named with the nearest known one, pydantic's errors turned into
:class:`ConfigIssue` s (the key path, the value, what is allowed), then the
rules that span keys (components/config/rules.py)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from components.config.rules import cross_field_issues, rule_issues
from components.config.secrets import SECRET_KEYS
from components.config.stack import TOP_LEVEL_KEYS, StackConfig
from components.config_issues import MISSING, ConfigError, ConfigIssue


def _nearest(key: str, candidates: list[str]) -> str | None:
    """The candidate ``key`` most likely meant (same letters in another case, or a typo)."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    return by_lower.get(key.lower()) or next(iter(difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)), None)


def did_you_mean(key: str, candidates: list[str], prefix: str = "") -> str:
    """`` did you mean 'vmId'?`` for the nearest candidate, or ""."""
    match = _nearest(key, candidates)
    return f" did you mean {prefix + match!r}?" if match and prefix + match != key else ""


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for a bad mapping key
            path += " (key)"
        else:
            path += f".{part}" if path else str(part)
    return path


def _issue_from_pydantic(error: Mapping[str, Any], model: type[BaseModel]) -> ConfigIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return ConfigIssue(_key_path(loc), error.get("input"), f"unknown key;{did_you_mean(str(loc[-1]), allowed.split(', '))} allowed here: {allowed}")
    if kind == "missing":
        return ConfigIssue(_key_path(loc), MISSING, "required key is missing")
    message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigIssue(_key_path(loc), error.get("input"), message)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Walk the model along ``loc`` (aliases) to list the keys allowed there."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or name: f for name, f in current.model_fields.items()}
        field = fields.get(part)
        if field is None:
            break
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            inner = getattr(candidate, "__args__", None)
            for target in (candidate, *(inner or ())):
                if isinstance(target, type) and issubclass(target, BaseModel):
                    current = target
                    break
    names = [f.alias or name for name, f in current.model_fields.items()]
    return ", ".join(sorted(names))


def parse_stack_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate a mapping of top-level key -> value (namespace stripped)."""
    extra = sorted(key for key in raw if key not in TOP_LEVEL_KEYS and key not in SECRET_KEYS)
    known = sorted(TOP_LEVEL_KEYS | SECRET_KEYS)
    issues = [ConfigIssue(key, raw[key], f"unknown key;{did_you_mean(key, known)} allowed: {', '.join(known)}") for key in extra]
    data = {key: value for key, value in raw.items() if key in TOP_LEVEL_KEYS}
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as error:
        issues += [_issue_from_pydantic(item, StackConfig) for item in error.errors()]
        raise ConfigError(issues) from None
    issues += cross_field_issues(cfg) + rule_issues(cfg)
    if issues:
        raise ConfigError(issues)
    return cfg
