"""Parse the two Talos secrets (pure). Errors name the config key and the
missing field, never a value."""

from __future__ import annotations

import os
from typing import Any

import yaml

from components.config import PROJECT


class TalosSecretsError(ValueError):
    """A Talos secret is not in the expected format."""


def _load_mapping(text: str, key: str, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise TalosSecretsError(f"{PROJECT}:{key} is not valid YAML; expected {what}") from None
    if not isinstance(data, dict):
        raise TalosSecretsError(f"{PROJECT}:{key} is not a YAML mapping; expected {what}")
    return data


def _field(data: dict[str, Any], path: str, key: str, what: str, optional: bool = False) -> str | None:
    current: Any = data
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if current is None or current == "":
        if optional:
            return None
        raise TalosSecretsError(f"{PROJECT}:{key} has no {path}; expected {what}")
    if not isinstance(current, str):
        raise TalosSecretsError(f"{PROJECT}:{key}: {path} must be a string")
    return current


_BUNDLE = "the YAML written by `talosctl gen secrets` (cluster, secrets, trustdinfo, certs)"


def parse_machine_secrets(text: str) -> dict[str, Any]:
    """``talosctl gen secrets`` YAML -> pulumiverse_talos MachineSecretsArgs
    (dict form). The bundle's certs use ``crt``/``key``; the provider's
    ``cert``/``key``."""
    key = "talosMachineSecrets"
    data = _load_mapping(text, key, _BUNDLE)

    def get(path: str, optional: bool = False) -> str | None:
        return _field(data, path, key, _BUNDLE, optional)

    def pair(name: str) -> dict[str, str | None]:
        return {"cert": get(f"certs.{name}.crt"), "key": get(f"certs.{name}.key")}

    secrets: dict[str, str | None] = {
        "bootstrap_token": get("secrets.bootstraptoken"),
        "secretbox_encryption_secret": get("secrets.secretboxencryptionsecret"),
    }
    aescbc = get("secrets.aescbcencryptionsecret", optional=True)
    if aescbc:
        secrets["aescbc_encryption_secret"] = aescbc
    return {
        "cluster": {"id": get("cluster.id"), "secret": get("cluster.secret")},
        "secrets": secrets,
        "trustdinfo": {"token": get("trustdinfo.token")},
        "certs": {
            "etcd": pair("etcd"),
            "k8s": pair("k8s"),
            "k8s_aggregator": pair("k8saggregator"),
            "k8s_serviceaccount": {"key": get("certs.k8sserviceaccount.key")},
            "os": pair("os"),
        },
    }


_TALOSCONFIG = "a talosconfig (context, contexts.<name>.ca/crt/key, base64)"


def talosconfig_text(value: str) -> str:
    """The talosconfig YAML; ``TALOSCONFIG`` in the environment holds a path
    (config.SECRETS), so a one-line value naming a file is read."""
    candidate = value.strip()
    if "\n" not in candidate and candidate and os.path.isfile(os.path.expanduser(candidate)):
        with open(os.path.expanduser(candidate), encoding="utf-8") as handle:
            return handle.read()
    return value


def parse_talosconfig(text: str) -> dict[str, str]:
    """talosconfig -> pulumiverse_talos ClientConfigurationArgs (dict form),
    from its current context (or its only one)."""
    key = "talosClientConfiguration"
    data = _load_mapping(text, key, _TALOSCONFIG)
    contexts = data.get("contexts")
    if not isinstance(contexts, dict) or not contexts:
        raise TalosSecretsError(f"{PROJECT}:{key} has no contexts; expected {_TALOSCONFIG}")
    name = data.get("context")
    if name is None and len(contexts) == 1:
        name = next(iter(contexts))
    if name not in contexts:
        raise TalosSecretsError(f"{PROJECT}:{key}: context {name!r} is not among its contexts ({', '.join(map(str, contexts))})")
    context = contexts[name] if isinstance(contexts[name], dict) else {}
    values = {}
    for field, arg in (("ca", "ca_certificate"), ("crt", "client_certificate"), ("key", "client_key")):
        value = context.get(field)
        if not isinstance(value, str) or not value:
            raise TalosSecretsError(f"{PROJECT}:{key}: context {name!r} has no {field}; expected {_TALOSCONFIG}")
        values[arg] = value
    return values


def machine_secrets_args(text: str) -> Any:
    """:func:`parse_machine_secrets` as the provider's input types, so the
    invoke sends its wire names (``k8sAggregator``): plain dicts reach an
    invoke untranslated."""
    import pulumiverse_talos.machine as machine

    data = parse_machine_secrets(text)
    certs = data["certs"]

    def pair(name: str) -> Any:
        return machine.CertificateArgs(cert=certs[name]["cert"], key=certs[name]["key"])

    return machine.MachineSecretsArgs(
        cluster=machine.ClusterArgs(**data["cluster"]),
        secrets=machine.KubernetesSecretsArgs(**data["secrets"]),
        trustdinfo=machine.TrustdInfoArgs(**data["trustdinfo"]),
        certs=machine.CertificatesArgs(
            etcd=pair("etcd"), k8s=pair("k8s"), k8s_aggregator=pair("k8s_aggregator"), os=pair("os"),
            k8s_serviceaccount=machine.KeyArgs(key=certs["k8s_serviceaccount"]["key"]),
        ),
    )


def client_configuration_args(text: str) -> Any:
    """:func:`parse_talosconfig` as ``ClientConfigurationArgs``."""
    import pulumiverse_talos.machine as machine

    return machine.ClientConfigurationArgs(**parse_talosconfig(text))
