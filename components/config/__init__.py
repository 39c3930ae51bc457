"""Stack configuration: read once, validated once, then passed around typed.

Every key lives under the project namespace (``proxmox-talos-gpu:<key>``) in
``Pulumi.<stack>.yaml``. Non-secret settings are structured objects
(``vm``, ``gpus``, ...); secrets are separate top-level keys set with
``pulumi config set --secret`` or taken from the providers' usual environment
variables (see ``SECRETS``).

A bad value raises :class:`ConfigError` (a ``pulumi.RunError`` under the
engine, so the CLI prints the message without a traceback) naming the key
path, the value given and what is allowed, before any resource is
registered.

The rooms, bottom to top (each imports only from the ones before it in this
list, and from components/config_issues.py, the issue type below them all):

- ``values``: the value types (PCI address, Talos version, DNS label, ...)
  and ``Section``, the base of every section model;
- ``host``, ``vm``, ``talos``, ``gpu_stack``, ``consumers``: the typed
  sections, one per top-level key (``vm`` with the rules of its own keys);
- ``stack``: ``StackConfig``, the sections together and the derived values;
- ``secrets``: which secrets there are and which a configuration needs;
- ``rules``: the rules that span keys;
- ``parse``: a mapping of keys -> ``StackConfig``, or a ConfigError;
- ``stack_file``: ``Pulumi.<stack>.yaml`` read directly (offline tools);
- ``engine``: the config and secrets as the Pulumi engine hands them over
  (``load_stack_config``, ``load_secrets``). The one module that loads the
  Pulumi SDK, so this ``__init__`` does not import it: the offline tools and
  the planners import the config without the SDK.
"""

from __future__ import annotations

from components.config.consumers import JellyfinConfig, ReadinessConfig
from components.config.gpu_stack import (
    OWNER_ONLY_KEYS,
    SHARED_KEYS,
    FluxConfig,
    GpuStackConfig,
    MonitoringConfig,
    TimeSlicingConfig,
)
from components.config.host import GpuConfig, HostPrepConfig, ProxmoxConfig
from components.config.parse import parse_stack_config
from components.config.rules import cross_field_issues, rule_issues, talos_config_issues
from components.config.secrets import SECRET_KEYS, SECRETS, SecretSpec, required_secret_keys
from components.config.stack import StackConfig
from components.config.stack_file import STACK_FILE_KEYS, describe_yaml_error, load_stack_file, read_stack_file, stack_file
from components.config.talos import ExtensionsConfig, TalosConfig
from components.config.vm import DiskConfig, NetworkConfig, RestartMode, VmConfig, VmSource
from components.config_issues import PROJECT, ConfigError, ConfigIssue

# Names of lower modules that the planners have always taken from here.
from components.pci import normalise_pci_address, pci_device
from components.semver import parse_version

__all__ = [
    "OWNER_ONLY_KEYS", "PROJECT", "SECRETS", "SECRET_KEYS", "SHARED_KEYS", "STACK_FILE_KEYS",
    "ConfigError", "ConfigIssue", "DiskConfig", "ExtensionsConfig", "FluxConfig", "GpuConfig", "GpuStackConfig",
    "HostPrepConfig", "JellyfinConfig", "MonitoringConfig", "NetworkConfig", "ProxmoxConfig", "ReadinessConfig",
    "RestartMode", "SecretSpec", "StackConfig", "TalosConfig", "TimeSlicingConfig", "VmConfig", "VmSource",
    "cross_field_issues", "describe_yaml_error", "load_stack_file", "normalise_pci_address", "parse_stack_config",
    "parse_version", "pci_device", "read_stack_file", "required_secret_keys", "rule_issues", "stack_file",
    "talos_config_issues",
]
