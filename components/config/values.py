"""The value types of the stack config: each a ``str`` checked (and, where
the form varies, normalised) by one validator whose message says what is
allowed; and :class:`Section`, the base of every section model."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from components.pci import normalise_pci_address
from components.semver import SEMVER as _SEMVER
from components.semver import V_SEMVER as _V_SEMVER

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
RepositoryPath = Annotated[str, AfterValidator(_repository_path)]


class Section(BaseModel):
    """camelCase keys in YAML, snake_case in Python; unknown keys refused."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        strict=False,
    )
