"""The stack's config and secrets as the Pulumi engine hands them over.

Only the program (``__main__.py``) and the tests that run it under the mock
engine import this module: it is the one part of the config room that needs
the Pulumi SDK, so the package's ``__init__`` does not import it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pulumi

from components.config.parse import parse_stack_config
from components.config.secrets import SECRET_KEYS, SECRETS, plain_text_secret, required_secret_keys
from components.config.stack import StackConfig
from components.config_issues import MISSING, PROJECT, ConfigError, ConfigIssue, ProgramError

# The Python language host prints a pulumi.RunError's message and no
# traceback; any other exception ends `pulumi up` with the whole stack trace.
# ConfigError is defined without the SDK (components/config_issues.py), so it
# becomes a RunError here, where the program loads the SDK anyway.
if ConfigError.__bases__ == (ProgramError,):
    ConfigError.__bases__ = (pulumi.RunError,)


def load_stack_config() -> StackConfig:
    """Read this stack's config from the Pulumi engine and validate it."""
    raw: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    issues: list[ConfigIssue] = []
    # The engine hands config over either directly or through PULUMI_CONFIG.
    everything = {**pulumi.runtime.config.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    for full_key, text in everything.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix):]
        if key in SECRET_KEYS:
            if not pulumi.runtime.is_config_secret(full_key):
                issues.append(plain_text_secret(key))
            continue
        try:
            raw[key] = json.loads(text)
        except (TypeError, ValueError):
            raw[key] = text
    if issues:
        raise ConfigError(issues)
    return parse_stack_config(raw)


def secret(key: str) -> pulumi.Output[str] | None:
    """A secret from config (``--secret``) or its environment variable, as a
    secret Output; None when neither is set."""
    spec = next(spec for spec in SECRETS if spec.key == key)
    value = pulumi.Config(PROJECT).get_secret(key)
    if value is not None:
        return value
    if spec.env and os.environ.get(spec.env):
        return pulumi.Output.secret(os.environ[spec.env])
    return None


@dataclass(frozen=True)
class StackSecrets:
    """The secrets this stack needs, each a secret Output (or None when the
    provider may find it on its own, e.g. kubeconfig in ~/.kube/config)."""

    proxmox_api_token: pulumi.Output[str] | None
    proxmox_password: pulumi.Output[str] | None
    ssh_private_key: pulumi.Output[str] | None
    talos_machine_secrets: pulumi.Output[str] | None
    talos_client_configuration: pulumi.Output[str] | None
    kubeconfig: pulumi.Output[str] | None
    jellyfin_api_key: pulumi.Output[str] | None


def load_secrets(cfg: StackConfig) -> StackSecrets:
    """Read every secret; refuse (before any resource) when a required one is
    missing, naming the key and the environment variable that can stand in."""
    values = {spec.key: secret(spec.key) for spec in SECRETS}
    issues = []
    for key in required_secret_keys(cfg):
        if values[key] is None:
            spec = next(spec for spec in SECRETS if spec.key == key)
            env = f" or export {spec.env}" if spec.env else ""
            issues.append(ConfigIssue(key, MISSING, f"required secret ({spec.purpose}); set it with `pulumi config set --secret {key}`{env}"))
    if issues:
        raise ConfigError(issues)
    return StackSecrets(
        proxmox_api_token=values["proxmoxApiToken"],
        proxmox_password=values["proxmoxPassword"],
        ssh_private_key=values["sshPrivateKey"],
        talos_machine_secrets=values["talosMachineSecrets"],
        talos_client_configuration=values["talosClientConfiguration"],
        kubeconfig=values["kubeconfig"],
        jellyfin_api_key=values["jellyfinApiKey"],
    )
