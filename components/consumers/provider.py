"""Dynamic provider for Jellyfin's encoding settings.

The engine pickles the provider object with dill and runs it in its own
process, so: the class lives in this importable module (no import-time side
effects), it holds no state at all, every method makes its own HTTP client,
and the API key only ever arrives as an input (a secret) and leaves as an
output (kept secret through ``additional_secret_outputs``); delete needs it,
and delete only sees outputs.

Inputs: ``url``, ``apiKey``, ``timeoutSeconds``, ``settings`` (Jellyfin key
-> wanted value), ``reasons``, ``decodeCodecs``. ``check`` adds
``pendingChanges`` (what the next ``up`` would change, read from Jellyfin),
so ``pulumi preview`` shows which settings would change; ``check`` and
``diff`` only read, never write.

Outputs add: ``originals`` (each changed key's value from before this program
changed it; what ``delete`` restores), ``applied`` (the values it set),
``changedSettings`` (the keys in ``originals``) and ``lastChanges``.

Earlier versions stored ``api_key``, ``timeout_seconds``, ``decode_codecs``,
``pending_changes``, ``changed_settings`` and ``last_changes``
(components.consumers.encoding_spec ``OLD_KEYS``); every method reads either
spelling. When ``diff`` finds no change the engine keeps the stored outputs
as they are (pulumi/pulumi pkg/resource/deploy/step.go ``SameStep.Apply``),
so while the state still holds an old output name ``diff`` reports an
update: it posts nothing when every owned setting has its wanted value, and
writes the outputs under their new names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.consumers.encoding_spec import OLD_KEYS, OLD_OUTPUT_KEYS, EncodingSpec, canonical
from components.consumers.jellyfin import JellyfinClient, JellyfinError, plan_encoding, plan_restore
from components.dynamic import changed_keys, outputs, replacing, updating
from components.log import logger
from components.renamed_keys import get_key, old_names_held
from components.unknowns import UNKNOWN

_STATE_KEYS = ("originals", "applied", "changedSettings", "lastChanges")
# The inputs whose change is an update (``url`` replaces).
_UPDATE_KEYS = ("settings", "apiKey", "timeoutSeconds", "decodeCodecs")

_say = logger("jellyfin")


def _api_key(props: dict[str, Any]) -> Any:
    """The API key, under ``apiKey`` or the ``api_key`` of earlier versions."""
    return get_key(props, "apiKey", OLD_KEYS)


def _client(props: dict[str, Any], spec: EncodingSpec):
    """The spec's server, with the API key carried next to it (a secret)."""
    key = _api_key(props)
    return JellyfinClient(spec.url, "" if key is None else str(key), spec.timeout_seconds)


def _post_and_verify(client, document: dict[str, Any], verify: Callable[[dict[str, Any]], Any]) -> None:
    """POST ``document``, then read it back and re-plan with ``verify``: a
    setting Jellyfin did not keep is an error now, not a change on every
    later run."""
    client.post_encoding(document)
    check = verify(client.get_encoding())
    if check.changed:
        raise JellyfinError(f"POST {client.url} was accepted but Jellyfin did not keep: {', '.join(check.changed_keys)}")


class JellyfinEncodingProvider(ResourceProvider):
    """Sets the keys in ``settings`` in Jellyfin's EncodingOptions and nothing
    else; restores what it changed on delete."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        url = news.get("url")
        if url != UNKNOWN and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            failures.append(CheckFailure("url", f"expected an http(s) URL, got {url!r}"))
        try:
            spec = EncodingSpec.from_dict(news)
        except (KeyError, TypeError, ValueError) as error:
            failures.append(CheckFailure("settings", str(error)))
            spec = None
        inputs = dict(news)
        if failures or spec is None:
            return CheckResult(inputs, failures)
        if UNKNOWN in (url, _api_key(news)):
            inputs["pendingChanges"] = ["not known yet: the URL or API key is computed during this update"]
            return CheckResult(inputs, failures)
        try:
            plan = plan_encoding(_client(news, spec).get_encoding(), spec.wanted)
            inputs["pendingChanges"] = [change.line() for change in plan.changes]
        except JellyfinError as error:
            # Preview must not fail only because Jellyfin is not up yet (its
            # pod waits for the GPU this same update provides); create/update
            # read again and fail with the same message if it is still down.
            inputs["pendingChanges"] = [f"not known: {error}"]
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # What the keys mean, in either spelling: state from earlier versions holds snake_case keys.
        stored, wanted = canonical(olds), canonical(news)
        if stored.get("url") != wanted.get("url"):
            # Another server (or the same through another URL): restore the
            # old one first, then plan afresh, so originals stay truthful.
            return replacing(["url"])
        if changed_keys(stored, wanted, _UPDATE_KEYS):
            return updating(True)
        spec = EncodingSpec.from_dict(news)
        try:
            plan = plan_encoding(_client(news, spec).get_encoding(), spec.wanted)
        except JellyfinError:
            return updating(True)
        if plan.changed:
            # Drift (someone changed an owned setting in the dashboard) is a change.
            return updating(True)
        held = old_names_held(olds, OLD_OUTPUT_KEYS)
        if held:
            # Left alone, the engine would keep these outputs as they are.
            _say(f"the state holds {', '.join(held)} as an earlier version named them; no setting changes, "
                 "this update only writes the outputs under their camelCase names")
            return updating(True)
        return updating(False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._apply(props, originals={}, applied={}, dropped={})
        return CreateResult(f"encoding@{props['url']}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        old_settings = dict(olds.get("settings") or {})
        dropped = {key: value for key, value in (olds.get("applied") or {}).items() if key not in news["settings"] and key in old_settings}
        outs = self._apply(news, originals=dict(olds.get("originals") or {}), applied=dict(olds.get("applied") or {}), dropped=dropped)
        return UpdateResult(outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        originals = dict(props.get("originals") or {})
        if not originals:
            return
        client = _client(props, EncodingSpec.from_dict(props))
        try:
            plan = plan_restore(client.get_encoding(), originals, dict(props.get("applied") or {}))
            if plan.changed:
                _post_and_verify(client, plan.document, lambda after: plan_restore(after, originals, dict(props.get("applied") or {})))
        except JellyfinError as error:
            raise JellyfinError(
                f"{error}. The settings this program changed were not restored ({', '.join(sorted(originals))}); "
                "retry `pulumi destroy` once Jellyfin answers, or drop the resource from the state with `pulumi state delete`"
            ) from None

    def _apply(self, props: dict[str, Any], originals: dict[str, Any], applied: dict[str, Any], dropped: dict[str, Any]) -> dict[str, Any]:
        """Plan against the live document and POST once if anything differs.
        ``dropped``: keys set earlier that this configuration no longer owns;
        they go back to their originals."""
        spec = EncodingSpec.from_dict(props)
        client = _client(props, spec)
        wanted = spec.wanted
        current = client.get_encoding()
        plan = plan_encoding(current, wanted)
        restore = plan_restore(plan.document, {key: originals[key] for key in dropped if key in originals}, dropped)
        if plan.changed or restore.changed:
            _post_and_verify(client, restore.document, lambda after: plan_encoding(after, wanted))
        for change in plan.changes:
            originals.setdefault(change.key, change.before)  # the first "before" is the user's own value
            applied[change.key] = change.after
        for key in dropped:
            originals.pop(key, None)
            applied.pop(key, None)
        for key in list(applied):
            if key in wanted.settings():
                applied[key] = wanted.settings()[key]
        return outputs(
            props, (*_STATE_KEYS, "pendingChanges"),
            originals=originals,
            applied=applied,
            changedSettings=sorted(originals),
            lastChanges=[change.line() for change in plan.changes + restore.changes] or ["nothing to do: every owned setting already had its wanted value"],
        )
