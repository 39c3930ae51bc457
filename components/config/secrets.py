"""The stack's secrets: each a config key set with ``pulumi config set
--secret`` or the provider's usual environment variable, which of them a
configuration needs, and the refusal of one stored in plain text. Read from
the engine by components/config/engine.py; here without the Pulumi SDK, for
the offline tools too."""

from __future__ import annotations

from dataclasses import dataclass

from components.config.stack import StackConfig
from components.config_issues import ConfigIssue


@dataclass(frozen=True)
class SecretSpec:
    key: str
    env: str | None
    purpose: str


SECRETS: tuple[SecretSpec, ...] = (
    SecretSpec("proxmoxApiToken", "PROXMOX_VE_API_TOKEN", "Proxmox API token `user@realm!id=uuid` (authMethod apiToken)"),
    SecretSpec("proxmoxPassword", "PROXMOX_VE_PASSWORD", "Proxmox password for proxmox.username (authMethod password)"),
    SecretSpec("sshPrivateKey", None, "OpenSSH private key for host.user on the Proxmox host (HostVfioPrep)"),
    SecretSpec("talosMachineSecrets", None, "cluster secrets bundle, the YAML of `talosctl gen secrets`"),
    SecretSpec("talosClientConfiguration", "TALOSCONFIG", "talosconfig YAML (or, from the environment, its path)"),
    SecretSpec("kubeconfig", "KUBECONFIG", "kubeconfig YAML (or, from the environment, its path)"),
    SecretSpec("jellyfinApiKey", "JELLYFIN_API_KEY", "Jellyfin API key (jellyfin.enabled)"),
)
SECRET_KEYS = frozenset(spec.key for spec in SECRETS)


def plain_text_secret(key: str, line: int | None = None) -> ConfigIssue:
    """The same refusal for the program and for every offline tool."""
    return ConfigIssue(key, "(hidden)", f"is stored in plain text; set it with `pulumi config set --secret {key}`", line)


def required_secret_keys(cfg: StackConfig) -> list[str]:
    """Which secrets this configuration cannot do without."""
    needed = ["proxmoxApiToken" if cfg.proxmox.auth_method == "apiToken" else "proxmoxPassword"]
    if cfg.host.enabled:
        needed.append("sshPrivateKey")
    if cfg.talos.config_source == "generated":
        needed.append("talosMachineSecrets")
    needed.append("talosClientConfiguration")
    if cfg.jellyfin.enabled:
        needed.append("jellyfinApiKey")
    return needed
