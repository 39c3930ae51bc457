"""What this program's dynamic providers share: the props codec (inputs
carried into outputs, without the engine's ``__provider`` blob or stale
state), the "pending changes" lines ``check`` leaves for ``diff`` and the
preview, and the ``diff`` results (replace, deleting the old one first;
update; let the engine decide while inputs are unknown).

Provider classes stay in their own modules (the state holds them pickled by
module path); they call these functions, so nothing here is pickled with
them. The unknown marker and ``known()`` are components.unknowns; the logger
is components.log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi.dynamic import DiffResult

# The input under which the engine passes the serialized provider
# (pulumi/dynamic/__main__.py PROVIDER_KEY); never an output of ours.
PROVIDER_KEY = "__provider"

# The pending-changes line while an input is computed during this update.
NOT_KNOWN_YET = "not known yet: computed during this update"


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def cannot_read(what: str, error: BaseException) -> str:
    """The pending-changes line when ``check`` could not read ``what``: a
    preview goes on, create/update read again."""
    return f"not known: cannot read {what} ({first_line(error)})"


def says(pending: Iterable[Any] | None, prefixes: tuple[str, ...]) -> bool:
    """True when a pending-changes line starts with one of ``prefixes``."""
    return any(str(line).startswith(prefixes) for line in pending or [])


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str],
                 defaults: Mapping[str, Any] | None = None) -> list[str]:
    """The ``keys`` whose stored value differs from the wanted one; a key
    absent on either side counts as its default (state written before the
    key existed)."""
    defaults = defaults or {}
    return [key for key in keys if olds.get(key, defaults.get(key)) != news.get(key, defaults.get(key))]


def replacing(keys: list[str]) -> DiffResult:
    """Replace because ``keys`` changed, deleting the old one first: it
    undoes what it did where it did it, before the new one starts."""
    return DiffResult(changes=True, replaces=list(keys), delete_before_replace=True)


def updating(changes: bool) -> DiffResult:
    """An update in place (or nothing to do)."""
    return DiffResult(changes=bool(changes), replaces=[], stables=[], delete_before_replace=False)


def undecided(changed: list[str]) -> DiffResult:
    """Inputs still unknown (a preview): a change when a known key changed,
    else left to the engine (``changes`` None)."""
    return DiffResult(changes=True if changed else None)


def outputs(props: Mapping[str, Any], drop: Iterable[str] = (), **values: Any) -> dict[str, Any]:
    """The inputs carried into the outputs, without the provider blob and
    the ``drop`` keys (stale state, pending lines), then ``values``."""
    dropped = {PROVIDER_KEY, *drop}
    outs = {key: value for key, value in props.items() if key not in dropped}
    outs.update(values)
    return outs
