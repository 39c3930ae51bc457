"""Stack configuration: read once, validated once, then passed around typed.

Every key lives under the project namespace (``proxmox-talos-gpu:<key>``) in
``Pulumi.<stack>.yaml``. Non-secret settings are structured objects
(``vm``, ``gpus``, ...); secrets are separate top-level keys set with
``pulumi config set --secret`` or taken from the providers' usual environment
variables (see ``SECRETS``).

A bad value raises :class:`ConfigError` (a ``pulumi.RunError`` under the
engine, so the CLI prints the message without a traceback) naming the key
path, the value given and what is allowed, before any resource is
registered. No Pulumi SDK here: components/engine_config.py reads the config
and the secrets from the engine.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from components.config_issues import MISSING as _MISSING
from components.config_issues import NOT_SHOWN as _NOT_SHOWN
from components.config_issues import PROJECT, ConfigError, ConfigIssue
from components.config_rules import rule_issues
from components.gpu_capabilities import jellyfin_config_issues
from components.gpu_chips import chip_row
from components.pci import normalise_pci_address, pci_device
from components.proxmox_limits import MEMORY_MIB_MAX, check_config_id, check_cpu_type, check_username
from components.semver import SEMVER as _SEMVER
from components.semver import V_SEMVER as _V_SEMVER
from components.semver import parse_version
from components.vm_config import RestartMode, VmSource, vm_issues

# --------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------

_VENDOR_DEVICE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")
_TALOS_VERSION = re.compile(r"^v1\.(\d+)\.(\d+)$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTPCI_SLOT = re.compile(r"^hostpci([0-9]|1[0-5])$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$")
_EXTENSION = re.compile(r"^[a-z0-9-]+/[a-z0-9][a-z0-9._-]*$")


def _vendor_device(value: str) -> str:
    if not _VENDOR_DEVICE.match(str(value)):
        raise ValueError("expected a PCI vendor:device id like 10de:1eb8 (two groups of 4 hex digits)")
    return str(value).lower()


def _talos_version(value: str) -> str:
    if not _TALOS_VERSION.match(str(value)):
        raise ValueError("expected a Talos version like v1.13.9 (leading v, major 1)")
    return str(value)


def _v_chart_version(value: str) -> str:
    if not _V_SEMVER.match(str(value)):
        raise ValueError("expected a chart version with a leading v, like v26.7.0 (NGC publishes the GPU Operator as v<major>.<minor>.<patch>)")
    return str(value)


def _plain_chart_version(value: str) -> str:
    if not _SEMVER.match(str(value)):
        raise ValueError("expected a chart version without a leading v, like 0.18.2 (the nvidia-device-plugin chart's own versioning)")
    return str(value)


def _mac(value: str) -> str:
    if not _MAC.match(str(value)):
        raise ValueError("expected a MAC address like 94:96:cc:43:7d:80")
    return str(value).lower()


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(str(value)):
        raise ValueError("expected a DNS label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit")
    return str(value)


def _hostpci_slot(value: str) -> str:
    if not _HOSTPCI_SLOT.match(str(value)):
        raise ValueError("expected a Proxmox slot name hostpci0 .. hostpci15 (the PCI address goes in gpus[].address)")
    return str(value)


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ValueError("expected an IPv4 or IPv6 address like 192.168.8.123") from None


def _host_key(value: str) -> str:
    text = str(value).strip()
    if re.match(r"^SHA256:[A-Za-z0-9+/]{43}=?$", text):
        return text
    fields = text.split()
    if len(fields) >= 3 and fields[1].startswith(("ssh-", "ecdsa-")):
        return text
    raise ValueError("expected a SHA256 host-key fingerprint (SHA256:<43 base64 chars>, from `ssh-keygen -lf`) or a known_hosts line `<host> <key-type> <base64-key>`")


def _https_url(value: str) -> str:
    if not re.match(r"^https://[^\s/]+(:\d+)?(/.*)?$", str(value)):
        raise ValueError("expected an https URL like https://pve5.lan:8006/")
    return str(value)


def _http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+(:\d+)?(/.*)?$", str(value)):
        raise ValueError("expected an http(s) URL like http://jellyfin.media.svc:8096")
    return str(value).rstrip("/")


def _extension(value: str) -> str:
    if not _EXTENSION.match(str(value)):
        raise ValueError("expected an extension name like siderolabs/qemu-guest-agent")
    return str(value)


def _configmap_key(value: str) -> str:
    if not _CONFIGMAP_KEY.match(str(value)):
        raise ValueError("expected a ConfigMap key: letters, digits, '-', '_' or '.'")
    return str(value)


def _label_key(value: str) -> str:
    text = str(value)
    prefix, _, name = text.rpartition("/")
    if prefix and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", prefix):
        raise ValueError(f"label key {text!r}: prefix must be a DNS subdomain")
    if not _LABEL_NAME.match(name):
        raise ValueError(f"label key {text!r}: name must be 1-63 letters, digits, '-', '_' or '.'")
    return text


def _label_value(value: str) -> str:
    if not _LABEL_VALUE.match(str(value)):
        raise ValueError(f"label value {value!r}: at most 63 letters, digits, '-', '_' or '.'")
    return str(value)


def _repository_path(value: str) -> str:
    text = str(value)
    parts = text.removeprefix("./").split("/")
    if not text or text.startswith("/") or any(part in ("", "..") for part in parts) or not re.match(r"^[A-Za-z0-9._/-]+$", text):
        raise ValueError("expected a folder path relative to the Git repository's root, like ./kubernetes/apps/gpu-operator/app "
                         "(no leading /, no '..', no empty segments)")
    return text if text.startswith("./") else f"./{text}"


PciAddress = Annotated[str, AfterValidator(normalise_pci_address)]
VendorDevice = Annotated[str, AfterValidator(_vendor_device)]
TalosVersion = Annotated[str, AfterValidator(_talos_version)]
VChartVersion = Annotated[str, AfterValidator(_v_chart_version)]
PlainChartVersion = Annotated[str, AfterValidator(_plain_chart_version)]
MacAddress = Annotated[str, AfterValidator(_mac)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
HostpciSlot = Annotated[str, AfterValidator(_hostpci_slot)]
IpAddress = Annotated[str, AfterValidator(_ip_address)]
HostKey = Annotated[str, AfterValidator(_host_key)]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
ExtensionName = Annotated[str, AfterValidator(_extension)]
ConfigMapKey = Annotated[str, AfterValidator(_configmap_key)]
LabelKey = Annotated[str, AfterValidator(_label_key)]
LabelValue = Annotated[str, AfterValidator(_label_value)]


class _Model(BaseModel):
    """camelCase keys in YAML, snake_case in Python; unknown keys refused."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        strict=False,
    )


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


class ProxmoxConfig(_Model):
    endpoint: HttpsUrl
    node: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")]
    # apiToken: PROXMOX_VE_API_TOKEN / proxmoxApiToken. password: root@pam
    # with PROXMOX_VE_PASSWORD / proxmoxPassword (needed for raw-id hostpci).
    auth_method: Literal["apiToken", "password"] = "apiToken"
    username: Annotated[str, AfterValidator(check_username)] | None = None
    insecure: bool = False


class HostPrepConfig(_Model):
    """SSH access to the Proxmox host for VFIO preparation (HostVfioPrep)."""

    enabled: bool = True
    address: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: str = "root"
    host_key: HostKey | None = None
    allow_reboot: bool = True
    reboot_timeout_seconds: Annotated[int, Field(ge=30, le=3600)] = 600
    reboot_on_destroy: bool = False
    # "auto": intel_iommu=on only on Intel with a kernel older than 6.8.
    intel_iommu: Literal["auto", "on"] = "auto"
    iommu_passthrough_mode: bool = True
    # A reboot stops every guest on the host. "refuse": not while guests other
    # than this stack's VM (vm.vmId) run; "stop": Proxmox shuts them down.
    running_guests: Literal["refuse", "stop"] = "refuse"
    command_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 900
    drain_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 300
    guest_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 600
    # Lines added by hand to a file this program wrote: "refuse" to drop them, or "overwrite".
    hand_edits: Literal["refuse", "overwrite"] = "refuse"


class GpuConfig(_Model):
    address: PciAddress
    id: VendorDevice
    subsystem_id: VendorDevice | None = None
    iommu_group: Annotated[int, Field(ge=0)] | None = None
    slot: HostpciSlot | None = None
    passthrough: Literal["mapping", "raw"] = "mapping"
    mapping_name: Annotated[str, AfterValidator(check_config_id)] | None = None
    pcie: bool = True
    rombar: bool = True
    xvga: bool = False
    generation: Literal["pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell"] | None = None
    # The chip, where chips of one generation differ in their video engines
    # (components.gpu_capabilities.CHIPS): GA100 and GH100 have no NVENC.
    # lspci's chip names (GA106, TU104GL) are read as their row (components/gpu_chips.py).
    model: Annotated[Literal["gp108", "gp10x", "gv100", "tu10x", "tu11x", "ga100", "ga10x", "ad10x", "gh100", "gb100", "gb20x"],
                     BeforeValidator(chip_row)] | None = None
    mig: bool = False
    # Pass every function of the card (GPU, HDMI audio, USB-C ...): the PCI
    # mapping's path (or the raw id) leaves the function off, which Proxmox
    # reads as the whole device (PVE/Mapping/PCI.pm; the GUI's "All Functions").
    all_functions: bool = False

    @property
    def device_path(self) -> str:
        """What the mapping's ``path`` (or the raw ``id``) holds: the function's
        address, or the device's (no ``.function``) with ``allFunctions``."""
        return pci_device(self.address) if self.all_functions else self.address


class DiskConfig(_Model):
    datastore_id: str
    size_gib: Annotated[int, Field(ge=8, le=65536, alias="sizeGiB")]
    interface: Annotated[str, Field(pattern=r"^(scsi|virtio|sata)\d{1,2}$")] = "scsi0"


class NetworkConfig(_Model):
    bridge: str = "vmbr0"
    vlan_id: Annotated[int, Field(ge=1, le=4094)] | None = None
    mac_address: MacAddress | None = None
    model: Literal["virtio", "e1000", "rtl8139", "vmxnet3"] = "virtio"


class VmConfig(_Model):
    vm_id: Annotated[int, Field(ge=100, le=999_999_999)]
    name: DnsLabel
    description: str = ""
    tags: list[Annotated[str, Field(pattern=r"^[a-z0-9_][a-z0-9_.+-]*$")]] = []
    cores: Annotated[int, Field(ge=1, le=512)] = 4
    sockets: Annotated[int, Field(ge=1, le=8)] = 1
    cpu_type: Annotated[str, AfterValidator(check_cpu_type)] = "host"
    memory_mib: Annotated[int, Field(ge=1024, le=MEMORY_MIB_MAX, alias="memoryMiB")] = 8192
    machine: Literal["q35", "pc"] = "q35"
    bios: Literal["seabios", "ovmf"] = "seabios"
    # Adopt the VM that exists or create it, and who restarts it: components/vm_config.py, docs/vm.md.
    source: VmSource = "existing"
    restart: RestartMode = "drained"
    restart_timeout_seconds: Annotated[int, Field(ge=60, le=7200)] = 900
    drain_timeout_seconds: Annotated[int, Field(ge=10, le=7200)] = 300
    disk: DiskConfig | None = None
    disks: list[DiskConfig] = []
    network: NetworkConfig = NetworkConfig()
    networks: list[NetworkConfig] = []
    boot_iso: str | None = None
    on_boot: bool = True
    start_timeout_seconds: Annotated[int, Field(ge=60, le=7200)] | None = None
    # `pulumi destroy` leaves the VM and its disks in place (they may hold
    # Ceph OSDs); set false to let destroy delete a VM this stack created.
    retain_on_destroy: bool = True

    @property
    def network_set(self) -> bool:
        return "network" in self.model_fields_set

    @property
    def all_disks(self) -> list[DiskConfig]:
        """The disks of ``create`` mode: vm.disks[], else the single vm.disk."""
        return list(self.disks) or ([self.disk] if self.disk is not None else [])

    @property
    def all_networks(self) -> list[NetworkConfig]:
        """The NICs of ``create`` mode: vm.networks[], else the single vm.network."""
        return list(self.networks) or [self.network]

    @property
    def start_timeout(self) -> int:
        """Passthrough pins all guest memory at start, so larger VMs start slower
        (README "What the guide gets wrong", row 4): 5 minutes plus 2 s per GiB unless set explicitly."""
        return self.start_timeout_seconds or 300 + 2 * (self.memory_mib // 1024)


class ExtensionsConfig(_Model):
    driver: Literal["proprietary", "open"] = "proprietary"
    branch: Literal["production", "lts"] = "production"
    extra: list[ExtensionName] = ["siderolabs/qemu-guest-agent"]


class TalosConfig(_Model):
    version: TalosVersion = "v1.13.9"
    platform: Literal["metal", "nocloud"] = "metal"
    node_address: IpAddress
    endpoint: IpAddress | None = None
    cluster_name: DnsLabel
    cluster_endpoint: HttpsUrl
    # running: adopt the node's own machine config and change only the paths
    # this program owns. generated: a new worker config from the machine
    # secrets (a brand-new node in maintenance mode).
    config_source: Literal["running", "generated"] = "running"
    # generated only: the user's own patches (files), applied before the GPU
    # patch, as `talosctl gen config --config-patch @file` does.
    config_patches: list[Annotated[str, Field(min_length=1)]] = []
    kubernetes_version: Annotated[str, Field(pattern=r"^v1\.\d+\.\d+$")] | None = None
    install_disk: Annotated[str, Field(pattern=r"^/dev/[A-Za-z0-9/_-]+$")] = "/dev/sda"
    extensions: ExtensionsConfig = ExtensionsConfig()
    node_labels: dict[LabelKey, LabelValue] = {}
    # None: what the NVIDIA guide of the Talos version sets (both up to 1.12,
    # neither from 1.13); true/false: an explicit override for every version.
    bpf_jit_harden: bool | None = None
    nvidia_default_runtime: bool | None = None
    # The intermediate releases to walk through instead of the latest patch
    # of each minor from the code's table (one entry per minor).
    upgrade_path: list[TalosVersion] = []
    # Bound for each version step: talosctl upgrade, then the wait for the
    # node to answer with the new version, list its extensions and be Ready.
    upgrade_timeout_seconds: Annotated[int, Field(ge=300, le=7200)] = 1800
    # talos.version newer than the releases components/talos/versions.py
    # lists: accepted only when set (the user checked that it exists).
    allow_unlisted_version: bool = False

    @property
    def talosctl_endpoint(self) -> str:
        return self.endpoint or self.node_address


class TimeSlicingConfig(_Model):
    enabled: bool = True
    replicas: int = 4
    rename_by_default: bool = False
    fail_requests_greater_than_one: bool = False


class FluxConfig(_Model):
    """Flux delivery (``gpuStack.delivery: flux``) and the tree that
    ``python -m components.render --flux DIR`` writes for a GitOps repository."""

    # Who puts the Flux objects (namespace, HelmRepository, HelmRelease,
    # time-slicing ConfigMap) into the cluster: this program, or Flux itself
    # from your Git repository (the committed `render --flux` tree).
    objects: Literal["pulumi", "git"] = "pulumi"
    # The GitRepository (and its namespace) that ks.yaml's Kustomization reads.
    git_repository: DnsLabel = "flux-system"
    namespace: DnsLabel = "flux-system"
    # The app/ folder's path in that repository; ks.yaml needs it.
    path: Annotated[str, AfterValidator(_repository_path)] | None = None
    # A device plugin that Flux applies from Git, in the way of the step to
    # Talos 1.13: refuse (name it and say how to remove it from Git), or
    # suspend the Kustomization that applies it and remove it
    # (components.gpu_migration).
    git_device_plugin: Literal["refuse", "suspend"] = "refuse"
# Keys only the owner stack acts on (the Helm release's values): a non-owner
# stack setting one would have it silently ignored, so it is refused.
OWNER_ONLY_KEYS: tuple[str, ...] = ("prometheusOperator", "nfd", "monitoring")
# Keys every node stack must set alike (python -m components.stacks check).
SHARED_KEYS: tuple[str, ...] = ("mode", "delivery", "namespace", "configMapName", "operatorChartVersion", "devicePluginChartVersion")


class MonitoringConfig(_Model):
    """The GPU dashboard and alert rules (components.monitoring, docs/monitoring.md);
    delivered only with ``gpuStack.prometheusOperator: true``."""

    dashboard: bool = True
    # Where Grafana's dashboard sidecar looks (kube-prometheus-stack: label
    # grafana_dashboard="1", every namespace); None: the GPU stack's namespace.
    dashboard_namespace: DnsLabel | None = None
    dashboard_label: LabelKey = "grafana_dashboard"
    dashboard_label_value: LabelValue = "1"
    # Labels a Prometheus's ruleSelector / serviceMonitorSelector picks (the
    # kube-prometheus-stack chart selects release=<its release name>).
    prometheus_labels: dict[LabelKey, LabelValue] = {"release": "kube-prometheus-stack"}
    gpu_temperature_celsius: Annotated[int, Field(ge=40, le=110)] = 85


class GpuStackConfig(_Model):
    mode: Literal["operator", "devicePlugin"] = "operator"
    # helm: a Helm release installed by this program; flux: Flux objects
    # (HelmRepository + HelmRelease) that Flux's helm-controller installs.
    delivery: Literal["helm", "flux"] = "helm"
    flux: FluxConfig = FluxConfig()
    owns_cluster_objects: bool = True
    namespace: DnsLabel = "gpu-operator"
    operator_chart_version: VChartVersion = "v26.7.0"
    device_plugin_chart_version: PlainChartVersion = "0.18.2"
    config_map_name: DnsLabel = "time-slicing-config"
    config_key: ConfigMapKey | None = None
    time_slicing: TimeSlicingConfig = TimeSlicingConfig()
    prometheus_operator: bool = False
    monitoring: MonitoringConfig = MonitoringConfig()
    nfd: bool = True
    # Also remove, before the node's upgrade to Talos 1.13, a RuntimeClass
    # `nvidia` or nvidia-device-plugin release this program did not create
    # (the guide's hand-made ones).
    adopt_guide_objects: bool = False


class JellyfinConfig(_Model):
    enabled: bool = False
    url: HttpUrl | None = None
    namespace: DnsLabel = "media"
    pod_selector: str = "app.kubernetes.io/name=jellyfin"
    decode_codecs: list[str] | None = None
    enhanced_nvdec: bool = True
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 30
    # Jellyfin's AllowHevcEncoding / AllowAv1Encoding. None: on exactly when
    # the GPU's NVENC can encode the codec (capability table); true where it
    # cannot is refused (components.gpu_capabilities).
    allow_hevc_encoding: bool | None = None
    allow_av1_encoding: bool | None = None


class ReadinessConfig(_Model):
    enabled: bool = True
    timeout_seconds: Annotated[int, Field(ge=30, le=7200)] = 900


class StackConfig(_Model):
    proxmox: ProxmoxConfig
    host: HostPrepConfig = HostPrepConfig(enabled=False)
    gpus: Annotated[list[GpuConfig], Field(min_length=1, max_length=16)]
    vm: VmConfig
    talos: TalosConfig
    gpu_stack: GpuStackConfig = GpuStackConfig()
    jellyfin: JellyfinConfig = JellyfinConfig()
    readiness: ReadinessConfig = ReadinessConfig()

    # Derived values, computed once here so every component agrees.
    @property
    def node_name(self) -> str:
        return self.vm.name

    @property
    def config_key(self) -> str:
        return self.gpu_stack.config_key or self.vm.name

    def slot(self, index: int) -> str:
        return self.gpus[index].slot or f"hostpci{index}"

    def mapping_name(self, index: int) -> str:
        return self.gpus[index].mapping_name or f"{self.vm.name}-gpu{index}"

    @property
    def advertised_gpus(self) -> int:
        sharing = self.gpu_stack.time_slicing
        return len(self.gpus) * (sharing.replicas if sharing.enabled else 1)


# --------------------------------------------------------------------------
# Secrets: config key (set with --secret) or the provider's environment variable
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


# ConfigIssue, ConfigError: components/config_issues.py (below the rules that
# report them).


def _nearest(key: str, candidates: list[str]) -> str | None:
    """The candidate ``key`` most likely meant (same letters in another case, or a typo)."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    return by_lower.get(key.lower()) or next(iter(difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)), None)


def _did_you_mean(key: str, candidates: list[str], prefix: str = "") -> str:
    """`` did you mean 'vmId'?`` for the nearest candidate, or ""."""
    match = _nearest(key, candidates)
    return f" did you mean {prefix + match!r}?" if match and prefix + match != key else ""


def _plain_text_secret(key: str, line: int | None = None) -> ConfigIssue:
    """The same refusal for the program and for every offline tool."""
    return ConfigIssue(key, "(hidden)", f"is stored in plain text; set it with `pulumi config set --secret {key}`", line)


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
        return ConfigIssue(_key_path(loc), error.get("input"), f"unknown key;{_did_you_mean(str(loc[-1]), allowed.split(', '))} allowed here: {allowed}")
    if kind == "missing":
        return ConfigIssue(_key_path(loc), _MISSING, "required key is missing")
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


def cross_field_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """Rules that span more than one key. Each names the key to change."""
    issues: list[ConfigIssue] = [ConfigIssue(key, value, allowed) for key, value, allowed in vm_issues(cfg.vm)]
    talos = parse_version(cfg.talos.version)

    seen_slots: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    seen_mappings: dict[str, int] = {}
    for index, gpu in enumerate(cfg.gpus):
        slot = cfg.slot(index)
        if slot in seen_slots:
            issues.append(ConfigIssue(f"gpus[{index}].slot", slot, f"each GPU needs its own slot; {slot} is already used by gpus[{seen_slots[slot]}]"))
        seen_slots.setdefault(slot, index)
        if gpu.address in seen_addresses:
            issues.append(ConfigIssue(f"gpus[{index}].address", gpu.address, f"listed twice (also gpus[{seen_addresses[gpu.address]}])"))
        seen_addresses.setdefault(gpu.address, index)
        if gpu.passthrough == "mapping":
            name = cfg.mapping_name(index)
            if name in seen_mappings:
                issues.append(ConfigIssue(f"gpus[{index}].mappingName", name, f"PCI mapping names must be unique (also gpus[{seen_mappings[name]}])"))
            seen_mappings.setdefault(name, index)
        if gpu.passthrough == "raw" and not (cfg.proxmox.auth_method == "password" and cfg.proxmox.username == "root@pam"):
            issues.append(ConfigIssue(
                f"gpus[{index}].passthrough", gpu.passthrough,
                "a raw PCI id may only be set by root@pam with password auth (Proxmox refuses API tokens, even root@pam!x); "
                "use passthrough: mapping (a PCI resource mapping, works with a token that has Mapping.Use) "
                "or set proxmox.authMethod: password and proxmox.username: root@pam",
            ))
        if gpu.all_functions and not gpu.address.endswith(".0"):
            issues.append(ConfigIssue(
                f"gpus[{index}].address", gpu.address,
                f"with gpus[{index}].allFunctions: true the address must be the card's function 0 (e.g. {pci_device(gpu.address)}.0): "
                "Proxmox maps the whole device and checks it against function 0",
            ))
        if gpu.passthrough == "mapping" and not cfg.host.enabled:
            # Proxmox asserts a mapping against the device at VM start and refuses
            # one without these ("no 'iommugroup' for device", PVE/Mapping/PCI.pm
            # assert_valid); with `host` on they come from the host's facts.
            how = {
                "iommuGroup": f"read it on the Proxmox host: `basename $(readlink /sys/bus/pci/devices/{gpu.address}/iommu_group)`",
                "subsystemId": f"read it on the Proxmox host: `lspci -nn -s {gpu.address} -v` (the `Subsystem: ... [vvvv:dddd]` line, e.g. 10de:12a2 on a Tesla T4)",
            }
            for key, value in (("iommuGroup", gpu.iommu_group), ("subsystemId", gpu.subsystem_id)):
                if value is None:
                    issues.append(ConfigIssue(
                        f"gpus[{index}].{key}", _MISSING,
                        f"required when the host section is off and gpus[{index}].passthrough is mapping: Proxmox checks the "
                        f"PCI mapping against the device at VM start and refuses it without {key}; {how[key]}",
                    ))
        if gpu.pcie and cfg.vm.machine != "q35":
            issues.append(ConfigIssue("vm.machine", cfg.vm.machine, f"gpus[{index}].pcie is true and PCIe passthrough needs machine q35 (Proxmox: 'q35 machine model is not enabled'); set vm.machine: q35 or gpus[{index}].pcie: false"))

    if cfg.proxmox.auth_method == "password" and not cfg.proxmox.username:
        issues.append(ConfigIssue("proxmox.username", None, "required with authMethod password, e.g. root@pam"))

    if cfg.host.enabled:
        if not cfg.host.address:
            issues.append(ConfigIssue("host.address", None, "required when host.enabled is true: the Proxmox host's SSH address"))
        if not cfg.host.host_key:
            issues.append(ConfigIssue("host.hostKey", None, "required when host.enabled is true: pin the host key (SHA256 fingerprint or known_hosts line); unknown keys are never accepted"))

    stack = cfg.gpu_stack
    if stack.mode == "operator":
        if talos < (1, 13, 0):
            issues.append(ConfigIssue("gpuStack.mode", stack.mode, f"the GPU Operator is not supported on Talos {cfg.talos.version} (its validator loops on driver validation); use gpuStack.mode: devicePlugin, or upgrade Talos one minor at a time to v1.13"))
        if parse_version(stack.operator_chart_version) < (26, 3, 1):
            issues.append(ConfigIssue("gpuStack.operatorChartVersion", stack.operator_chart_version, "Talos documents the GPU Operator from v26.3.1 (hostPaths.driverInstallDir=/usr/local); use v26.3.1 or newer, or gpuStack.mode: devicePlugin"))
    elif talos < (1, 9, 0):
        issues.append(ConfigIssue("talos.version", cfg.talos.version, "device-plugin mode needs Talos v1.9 or newer"))
    elif talos >= (1, 13, 0):
        # Talos 1.13 switched the NVIDIA toolkit to CDI and dropped
        # nvidia-container-cli; its upgrade notes tell NVIDIA users to remove
        # the device-plugin chart and RuntimeClass and use the GPU Operator
        # (docs/talos.md, "Device-plugin mode on Talos 1.13").
        issues.append(ConfigIssue("gpuStack.mode", stack.mode, f"the nvidia-device-plugin chart is not supported on Talos {cfg.talos.version}: from v1.13 the NVIDIA toolkit works through CDI and Talos documents only the GPU Operator; use gpuStack.mode: operator (the program removes the device plugin and RuntimeClass nvidia before the upgrade to 1.13)"))
    if stack.flux.objects == "git" and stack.delivery != "flux":
        issues.append(ConfigIssue("gpuStack.flux.objects", stack.flux.objects, "only with gpuStack.delivery: flux (the Flux objects come from Git); with delivery helm leave it at pulumi"))
    if not stack.owns_cluster_objects:
        fields = {GpuStackConfig.model_fields[name].alias or name: name for name in stack.model_fields_set}
        for key in OWNER_ONLY_KEYS:
            if key in fields:
                issues.append(ConfigIssue(
                    f"gpuStack.{key}", getattr(stack, fields[key]),
                    "only the stack that owns the cluster objects (gpuStack.ownsClusterObjects: true) sets this: it is a value "
                    "of the GPU Operator / device plugin release, which this stack does not install; set it in the owner's "
                    "stack file and remove it here",
                ))
    if stack.time_slicing.enabled and stack.time_slicing.replicas < 2:
        issues.append(ConfigIssue("gpuStack.timeSlicing.replicas", stack.time_slicing.replicas, "must be 2 or more (the device plugin rejects fewer); to give pods whole GPUs set gpuStack.timeSlicing.enabled: false"))
    if stack.time_slicing.replicas > 64:
        issues.append(ConfigIssue("gpuStack.timeSlicing.replicas", stack.time_slicing.replicas, "at most 64 replicas per GPU"))

    issues += talos_config_issues(cfg)

    if cfg.jellyfin.enabled and not cfg.jellyfin.url:
        issues.append(ConfigIssue("jellyfin.url", None, "required when jellyfin.enabled is true, e.g. http://jellyfin.media.svc:8096"))
    # The codec rules live with the capability table (components/gpu_capabilities.py).
    issues += jellyfin_config_issues(cfg)
    return issues


# NVIDIA dropped Maxwell, Pascal and Volta after the R580 driver branch: the
# production branch of Talos 1.13 (595.x) has no support for them, its lts
# branch (580.x) has (siderolabs/extensions v1.13.9 nvidia-gpu vars.yaml;
# NVIDIA's driver deprecation notes). The open kernel modules support Turing
# and newer only (NVIDIA/open-gpu-kernel-modules README).
_BEFORE_TURING = ("pascal", "volta")


def talos_config_issues(cfg: StackConfig) -> list[ConfigIssue]:
    """Talos rules that span keys: the config source, the upgrade path and
    which NVIDIA driver the GPUs can use."""
    issues: list[ConfigIssue] = []
    t = cfg.talos
    target = parse_version(t.version)
    if t.config_patches and t.config_source != "generated":
        issues.append(ConfigIssue("talos.configPatches", list(t.config_patches), "patches apply to a generated config only (talos.configSource: generated); with configSource: running the node's own config is kept and only the GPU paths change"))
    seen: dict[int, int] = {}
    for index, version in enumerate(t.upgrade_path):
        step = parse_version(version)
        key = f"talos.upgradePath[{index}]"
        if step[0] != target[0] or step[1] >= target[1]:
            issues.append(ConfigIssue(key, version, f"an intermediate release must be an older minor of the same major as talos.version {t.version} (e.g. v{target[0]}.{target[1] - 1}.<patch>)"))
        elif step < (1, 8, 0):
            issues.append(ConfigIssue(key, version, "the NVIDIA extensions come in -lts/-production variants from Talos v1.8 on"))
        elif step[1] in seen:
            issues.append(ConfigIssue(key, version, f"one release per minor: v{step[0]}.{step[1]} is already upgradePath[{seen[step[1]]}]"))
        seen.setdefault(step[1], index)
    ext = t.extensions
    for index, gpu in enumerate(cfg.gpus):
        if gpu.generation not in _BEFORE_TURING:
            continue
        if ext.driver == "open":
            issues.append(ConfigIssue("talos.extensions.driver", ext.driver, f"gpus[{index}] is {gpu.generation}: NVIDIA's open kernel modules support Turing and newer only; use driver: proprietary"))
        elif ext.branch == "production" and target >= (1, 13, 0):
            issues.append(ConfigIssue("talos.extensions.branch", ext.branch, f"gpus[{index}] is {gpu.generation}: Talos {t.version}'s production driver (595) no longer supports it; R580 is the last branch for Maxwell, Pascal and Volta: use branch: lts with driver: proprietary"))
    return issues


def parse_stack_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate a mapping of top-level key -> value (namespace stripped)."""
    extra = sorted(key for key in raw if key not in _TOP_LEVEL_KEYS and key not in SECRET_KEYS)
    known = sorted(_TOP_LEVEL_KEYS | SECRET_KEYS)
    issues = [ConfigIssue(key, raw[key], f"unknown key;{_did_you_mean(key, known)} allowed: {', '.join(known)}") for key in extra]
    data = {key: value for key, value in raw.items() if key in _TOP_LEVEL_KEYS}
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as error:
        issues += [_issue_from_pydantic(item, StackConfig) for item in error.errors()]
        raise ConfigError(issues) from None
    issues += cross_field_issues(cfg) + rule_issues(cfg)
    if issues:
        raise ConfigError(issues)
    return cfg


_TOP_LEVEL_KEYS = frozenset(field.alias or name for name, field in StackConfig.model_fields.items())


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


# --------------------------------------------------------------------------
# The stack file, read directly (the offline tools: render, doctor, talos)
# --------------------------------------------------------------------------

# The top-level settings of a Pulumi.<stack>.yaml (ProjectStack in Pulumi's
# sdk/go/common/workspace/project.go).
STACK_FILE_KEYS = ("config", "encryptedkey", "encryptionsalt", "environment", "secretsprovider")
_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EXAMPLE = "see Pulumi.homelab.yaml"


def stack_file(directory: str | Path, stack: str) -> Path:
    """``<directory>/Pulumi.<stack>.yaml``; a stack name that is not one (a
    path, an empty string) is a ConfigError."""
    if not _STACK_NAME.match(stack):
        raise ConfigError([ConfigIssue("", stack, f"{stack!r} is not a stack name: letters, digits, '-', '_' and '.', "
                                                  "e.g. homelab for Pulumi.homelab.yaml")])
    return Path(directory) / f"Pulumi.{stack}.yaml"


def _shown(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


@dataclass(frozen=True)
class _StackDocument:
    raw: dict[str, Any]  # this project's non-secret keys, namespace stripped
    issues: list[ConfigIssue]  # problems of the file itself (syntax, shape, stray keys, plain secrets)
    entries: list[tuple[str, Any, Any]]  # (key without namespace, key node, value node), for line numbers


def _file_issue(message: str, line: int | None = None) -> ConfigIssue:
    return ConfigIssue("", _MISSING, message, line)


def describe_yaml_error(error: Any) -> str:
    """A PyYAML error in one line (``line 28: a tab character at column 1;
    ...``), without PyYAML's excerpt that names the file ``<unicode string>``."""
    mark = getattr(error, "problem_mark", None)
    problem = str(getattr(error, "problem", None) or error).strip()
    column = f" at column {mark.column + 1}" if mark is not None else ""
    if "\\t" in problem or "tab character" in problem:
        problem = f"not valid YAML: a tab character{column}; YAML indents with spaces only: replace the tab with spaces"
    else:
        problem = f"not valid YAML{column}: {problem}"
        context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            problem += f" ({context} that starts at line {context_mark.line + 1})"
    return f"line {mark.line + 1}: {problem}" if mark is not None else problem


def _read_stack_document(path: Path) -> _StackDocument:
    import yaml

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _StackDocument({}, [_file_issue(f"no such file: copy Pulumi.homelab.yaml to {path.name} and describe your node (README, Configuration)")], [])
    except IsADirectoryError:
        return _StackDocument({}, [_file_issue("is a folder, not a stack file")], [])
    except OSError as error:
        return _StackDocument({}, [_file_issue(f"cannot be read: {error.strerror or error}")], [])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        return _StackDocument({}, [_file_issue(f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8", line)], [])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return _StackDocument({}, [_file_issue(describe_yaml_error(error))], [])
    if document is None:
        return _StackDocument({}, [_file_issue(f"the file is empty: it needs a `config:` section with {PROJECT}:<key> entries ({_EXAMPLE})")], [])
    if not isinstance(document, dict):
        kind = {list: "a list", str: "a single string"}.get(type(document), f"a {type(document).__name__}")
        return _StackDocument({}, [_file_issue(f"is not a Pulumi stack file: it holds {kind}, not a mapping; a stack file is a "
                                               f"`config:` section with {PROJECT}:<key> entries ({_EXAMPLE})", node.start_mark.line + 1)], [])
    issues: list[ConfigIssue] = []
    key_nodes = {str(key.value): (key, value) for key, value in node.value}
    for key, (key_node, _) in key_nodes.items():
        if key not in STACK_FILE_KEYS:
            issues.append(ConfigIssue(key, _NOT_SHOWN, f"not a stack-file setting;{_did_you_mean(key, list(STACK_FILE_KEYS))} "
                                      f"allowed at the top: {', '.join(STACK_FILE_KEYS)}", key_node.start_mark.line + 1, namespaced=False))
    if "config" not in key_nodes:
        return _StackDocument({}, issues + [_file_issue(f"no `config:` section: this project's keys go under it as {PROJECT}:<key> ({_EXAMPLE})")], [])
    config_key, config_node = key_nodes["config"]
    config = document["config"]
    if config is None:
        config, config_node = {}, None
    if not isinstance(config, dict):
        return _StackDocument({}, issues + [_file_issue("`config:` must be a mapping of <namespace>:<key> entries, e.g. "
                                                        f"{PROJECT}:vm ({_EXAMPLE})", config_key.start_mark.line + 1)], [])
    known = sorted(_TOP_LEVEL_KEYS | SECRET_KEYS)
    prefix = f"{PROJECT}:"
    raw: dict[str, Any] = {}
    entries: dict[str, tuple[str, Any, Any]] = {}  # YAML keeps the last of duplicate keys; so do the line numbers
    seen: dict[str, int] = {}
    for key_node, value_node in (config_node.value if config_node is not None else []):
        full, line = str(key_node.value), key_node.start_mark.line + 1
        value = config.get(key_node.value)
        if full in seen:
            issues.append(ConfigIssue(full, _NOT_SHOWN, f"defined twice (also line {seen[full]}); Pulumi refuses a duplicate key", line, namespaced=False))
        seen.setdefault(full, line)
        namespace, colon, name = full.partition(":")
        if not colon:
            issues.append(ConfigIssue(full, _NOT_SHOWN, "a config key without a namespace (stack files name keys <namespace>:<name>);"
                                      f"{_did_you_mean(full, known, prefix) or f' e.g. {prefix}vm'}", line, namespaced=False))
            continue
        if namespace != PROJECT:
            if _near_project(namespace):
                issues.append(ConfigIssue(full, _NOT_SHOWN, f"namespace {namespace!r} is not this project's ({PROJECT});"
                                          f"{_did_you_mean(name, known, prefix) or f' e.g. {prefix}vm'}", line, namespaced=False))
            continue  # another namespace: a provider's own config (e.g. proxmoxve:, kubernetes:)
        if name in SECRET_KEYS:
            if not (isinstance(value, dict) and set(value) == {"secure"}):
                issues.append(_plain_text_secret(name, line))
            continue
        raw[name] = value
        entries[name] = (name, key_node, value_node)
        issues += _nested_duplicates(value_node, name)
    return _StackDocument(raw, issues, list(entries.values()))


def _nested_duplicates(node: Any, path: str) -> list[ConfigIssue]:
    """A key set twice inside one mapping (``cores: 6`` then ``cores: 8``):
    PyYAML keeps the last silently; both lines are named instead."""
    import yaml

    found: list[ConfigIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                found.append(ConfigIssue(f"{path}.{key}", _NOT_SHOWN, f"defined twice, at line {seen[key]} and line {line}; "
                                         "YAML would keep only the last: remove one", line))
            seen.setdefault(key, line)
            found += _nested_duplicates(value_node, f"{path}.{key}")
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += _nested_duplicates(item, f"{path}[{index}]")
    return found


def _near_project(namespace: str) -> bool:
    folded = namespace.lower().replace("_", "-")
    return folded == PROJECT or difflib.SequenceMatcher(None, folded, PROJECT).ratio() >= 0.8


def _line_of(entries: list[tuple[str, Any, Any]], key: str) -> int | None:
    """The line of the deepest node along an issue's key path (``gpus[0].slot``,
    ``talos.nodeLabels.drmoo.io/role (key)``): the key itself, or for a
    missing key the section that lacks it."""
    import yaml

    rest, line = key.removesuffix(" (key)"), None
    pairs: list[tuple[str, Any, Any]] | None = entries
    current: Any = None
    while rest:
        if pairs is not None:
            matches = [(name, k, v) for name, k, v in pairs
                       if rest == name or rest.startswith(name + ".") or rest.startswith(name + "[")]
            if not matches:
                break
            name, key_node, current = max(matches, key=lambda match: len(match[0]))
            line, rest = key_node.start_mark.line + 1, rest[len(name):].removeprefix(".")
        elif isinstance(current, yaml.SequenceNode):
            index = re.match(r"\[(\d+)\]\.?", rest)
            if not index or int(index.group(1)) >= len(current.value):
                break
            current = current.value[int(index.group(1))]
            line, rest = current.start_mark.line + 1, rest[index.end():]
        else:
            break
        pairs = [(str(k.value), k, v) for k, v in current.value] if isinstance(current, yaml.MappingNode) else None
    return line


def read_stack_file(path: str | Path) -> dict[str, Any]:
    """The non-secret config of a ``Pulumi.<stack>.yaml`` file, namespace
    stripped. Secret entries, which the file holds encrypted, are skipped.
    A file that cannot be used (unreadable, not YAML, not a stack file, stray
    or mis-namespaced keys, a secret in plain text) is a ConfigError naming
    the file and the line."""
    document = _read_stack_document(Path(path))
    if document.issues:
        raise ConfigError(document.issues, _shown(Path(path)))
    return document.raw


def load_stack_file(path: str | Path) -> StackConfig:
    """Validate a stack file directly, without the Pulumi engine (for the
    offline tools: render, doctor, talos). Every problem names its line."""
    document = _read_stack_document(Path(path))
    issues = list(document.issues)
    if not document.raw and issues:
        raise ConfigError(issues, _shown(Path(path)))
    try:
        cfg = parse_stack_config(document.raw)
    except ConfigError as error:
        issues += [issue if issue.line or not issue.key else
                   ConfigIssue(issue.key, issue.value, issue.allowed, _line_of(document.entries, issue.key), issue.namespaced)
                   for issue in error.issues]
    if issues:
        raise ConfigError(issues, _shown(Path(path)))
    return cfg


# Read from the Pulumi engine: components/engine_config.py (the SDK is loaded
# only by the program, not by the offline tools that import this module).
_ENGINE_NAMES = frozenset({"load_stack_config", "load_secrets", "secret", "StackSecrets"})


def __getattr__(name: str) -> Any:
    if name in _ENGINE_NAMES:
        from components import engine_config

        return getattr(engine_config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
