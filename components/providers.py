"""Explicit providers for Proxmox and Kubernetes, configured from the stack."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_kubernetes as k8s
import pulumi_proxmoxve as proxmoxve

from components.config import StackConfig
from components.config.engine import StackSecrets


@dataclass(frozen=True)
class Providers:
    proxmox: proxmoxve.Provider
    kubernetes: k8s.Provider


def make_providers(cfg: StackConfig, secrets: StackSecrets) -> Providers:
    token_auth = cfg.proxmox.auth_method == "apiToken"
    proxmox = proxmoxve.Provider(
        "proxmox",
        endpoint=cfg.proxmox.endpoint,
        insecure=cfg.proxmox.insecure,
        api_token=secrets.proxmox_api_token if token_auth else None,
        username=None if token_auth else cfg.proxmox.username,
        password=None if token_auth else secrets.proxmox_password,
    )
    kubernetes = k8s.Provider(
        "kubernetes",
        kubeconfig=secrets.kubeconfig,
        # Patch resources (ConfigMapPatch, NodePatch) need server-side apply.
        enable_server_side_apply=True,
    )
    return Providers(proxmox=proxmox, kubernetes=kubernetes)
