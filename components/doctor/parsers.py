"""Pure parsers for the output of the tools the guide's checks run.

Each takes the text a command printed and returns small frozen dataclasses,
or raises :class:`ParseError` saying what was expected. None of them does I/O.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any

import yaml

from components import cluster
from components.pci import normalise_pci_address, pci_device


class ParseError(ValueError):
    """The text is not the output the parser expects."""


# --------------------------------------------------------------------------
# nvidia-smi: the default table, --query-gpu CSV, -L and -q -x
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SmiGpu:
    index: int
    name: str
    bus_id: str = ""
    uuid: str = ""


@dataclass(frozen=True)
class NvidiaSmi:
    driver_version: str
    cuda_version: str
    gpus: tuple[SmiGpu, ...]


_SMI_HEADER = re.compile(r"NVIDIA-SMI\s+(?P<smi>\S+)\s+Driver Version:\s*(?P<driver>\S+)\s+CUDA Version:\s*(?P<cuda>\S+)")
_SMI_GPU_ROW = re.compile(r"^\|\s*(?P<index>\d+)\s+(?P<name>.+?)\s+(?:On|Off)\s*\|\s*(?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s")
_SMI_LIST_ROW = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>[^)]+)\)\s*$")
_SMI_FAILURE = re.compile(r"(NVIDIA-SMI has failed.*|No devices were found)")


def parse_nvidia_smi(text: str) -> NvidiaSmi:
    """``nvidia-smi`` in any of its common shapes: the default table, ``-q -x``
    XML, ``--query-gpu=... --format=csv`` (with header) or ``-L``."""
    stripped = text.strip()
    if not stripped:
        raise ParseError("nvidia-smi printed nothing")
    if stripped.startswith("<?xml") or stripped.startswith("<nvidia_smi_log"):
        return _parse_smi_xml(stripped)
    header = _SMI_HEADER.search(stripped)
    if header:
        return _parse_smi_table(stripped, header)
    failure = _SMI_FAILURE.search(stripped)
    if failure:
        raise ParseError(f"nvidia-smi reports: {failure.group(0).strip()}")
    first = stripped.splitlines()[0]
    if _SMI_LIST_ROW.match(first):
        return _parse_smi_list(stripped)
    if "," in first and "name" in first.lower():
        return _parse_smi_csv(stripped)
    raise ParseError(f"not nvidia-smi output (first line: {first[:80]!r})")


def _parse_smi_table(text: str, header: re.Match[str]) -> NvidiaSmi:
    gpus = []
    for line in text.splitlines():
        row = _SMI_GPU_ROW.match(line)
        if row:
            gpus.append(SmiGpu(int(row["index"]), row["name"].strip(), row["bus"]))
    if not gpus:
        raise ParseError("nvidia-smi table lists no GPU rows")
    return NvidiaSmi(header["driver"], header["cuda"], tuple(gpus))


def _parse_smi_list(text: str) -> NvidiaSmi:
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        row = _SMI_LIST_ROW.match(line)
        if not row:
            raise ParseError(f"unexpected line in nvidia-smi -L output: {line[:80]!r}")
        gpus.append(SmiGpu(int(row["index"]), row["name"], uuid=row["uuid"]))
    return NvidiaSmi("", "", tuple(gpus))


def _parse_smi_csv(text: str) -> NvidiaSmi:
    lines = [line for line in text.splitlines() if line.strip()]
    columns = [column.strip().split(" [")[0].lower() for column in lines[0].split(",")]
    if "name" not in columns:
        raise ParseError("nvidia-smi CSV header has no 'name' column")
    gpus, drivers = [], set()
    for index, line in enumerate(lines[1:]):
        values = [value.strip() for value in line.split(",")]
        if len(values) != len(columns):
            raise ParseError(f"nvidia-smi CSV row {index + 1} has {len(values)} fields, header has {len(columns)}")
        row = dict(zip(columns, values, strict=True))
        gpus.append(SmiGpu(index, row["name"], row.get("pci.bus_id", ""), row.get("uuid", "")))
        if row.get("driver_version"):
            drivers.add(row["driver_version"])
    if not gpus:
        raise ParseError("nvidia-smi CSV has a header but no rows")
    return NvidiaSmi(drivers.pop() if len(drivers) == 1 else "", "", tuple(gpus))


def _parse_smi_xml(text: str) -> NvidiaSmi:
    # The DOCTYPE names an external DTD; ElementTree never fetches it.
    try:
        root = ElementTree.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", text, count=1))
    except ElementTree.ParseError as error:
        raise ParseError(f"nvidia-smi -q -x output is not well-formed XML: {error}") from None
    if root.tag != "nvidia_smi_log":
        raise ParseError(f"nvidia-smi XML root is <{root.tag}>, expected <nvidia_smi_log>")
    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        gpus.append(SmiGpu(index, (gpu.findtext("product_name") or "").strip(), gpu.get("id", ""), (gpu.findtext("uuid") or "").strip()))
    if not gpus:
        raise ParseError("nvidia-smi XML lists no <gpu> elements")
    return NvidiaSmi((root.findtext("driver_version") or "").strip(), (root.findtext("cuda_version") or "").strip(), tuple(gpus))


# --------------------------------------------------------------------------
# /proc/driver/nvidia/version and /proc/modules (read with talosctl)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NvidiaKernelModule:
    version: str
    open: bool  # the open GPU kernel modules, not the proprietary ones
    description: str


_NVRM = re.compile(r"^NVRM version:\s+(?P<description>NVIDIA UNIX .*?Kernel Module(?: for \S+)?)\s+(?P<version>\d+\.\d+(?:\.\d+)?)(?:\s|$)", re.MULTILINE)


def parse_nvidia_version(text: str) -> NvidiaKernelModule:
    """``/proc/driver/nvidia/version``: ``NVRM version: NVIDIA UNIX x86_64
    Kernel Module  580.95.05  ...`` (or the Open Kernel Module wording)."""
    match = _NVRM.search(text)
    if not match:
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise ParseError(f"no 'NVRM version: NVIDIA UNIX ... Kernel Module <version>' line (first line: {first[:80]!r})")
    description = match["description"]
    return NvidiaKernelModule(match["version"], " Open " in f" {description} ", description)


@dataclass(frozen=True)
class KernelModule:
    name: str
    size: int
    refcount: int
    state: str


def parse_proc_modules(text: str) -> dict[str, KernelModule]:
    """``/proc/modules``: ``name size refcount deps state address [taint]``."""
    modules: dict[str, KernelModule] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 6 or not fields[1].isdigit() or not fields[2].lstrip("-").isdigit():
            raise ParseError(f"/proc/modules line {number} is not 'name size refcount deps state address': {line[:80]!r}")
        modules[fields[0]] = KernelModule(fields[0], int(fields[1]), int(fields[2]), fields[4])
    return modules


# --------------------------------------------------------------------------
# talosctl get extensions -o json | -o yaml
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TalosExtension:
    name: str
    version: str
    image: str = ""


def _json_stream(text: str) -> list[Any]:
    """talosctl -o json prints one JSON object per resource, back to back."""
    decoder = json.JSONDecoder()
    items, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return items
        item, position = decoder.raw_decode(text, position)
        items.append(item)


def parse_talos_extensions(text: str) -> list[TalosExtension]:
    """``talosctl get extensions -o json`` (a stream of objects) or ``-o yaml``
    (``---``-separated documents): name, version and image of each."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        documents = _json_stream(stripped) if stripped[0] in "{[" else list(yaml.safe_load_all(stripped))
    except (ValueError, yaml.YAMLError) as error:
        raise ParseError(f"talosctl extensions output is neither JSON nor YAML: {str(error).splitlines()[0]}") from None
    flat: list[Any] = []
    for document in documents:
        flat.extend(document if isinstance(document, list) else [document])
    extensions = []
    for index, document in enumerate(flat):
        if document is None:
            continue
        spec = document.get("spec") if isinstance(document, dict) else None
        meta = spec.get("metadata") if isinstance(spec, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise ParseError(f"talosctl extensions resource {index} has no spec.metadata.name")
        extensions.append(TalosExtension(meta["name"], str(meta.get("version", "")), str(spec.get("image", ""))))
    return extensions


# --------------------------------------------------------------------------
# kubectl get node / get pods -o json
# --------------------------------------------------------------------------

GPU_RESOURCE = cluster.GPU_RESOURCE
PRODUCT_LABEL = "nvidia.com/gpu.product"  # set by GPU Feature Discovery


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ready: bool
    allocatable_gpus: int | None  # None: the node does not advertise nvidia.com/gpu at all
    capacity_gpus: int | None
    labels: dict[str, str] = field(default_factory=dict)
    # Every nvidia.com/* extended resource in status.allocatable (nvidia.com/gpu,
    # nvidia.com/gpu.shared with renameByDefault, MIG profiles).
    allocatable_nvidia: dict[str, int] = field(default_factory=dict)

    def label(self, key: str) -> str | None:
        return self.labels.get(key)

    def allocatable(self, resource: str) -> int | None:
        """status.allocatable[resource]; None when the node does not advertise it."""
        return self.allocatable_nvidia.get(resource)


def _quantity(value: Any, what: str) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text):
        raise ParseError(f"{what} is {text!r}, expected a whole number")
    return int(text)


def _load_json_object(text: str | dict[str, Any], what: str) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ParseError(f"{what} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ParseError(f"{what} is a JSON {type(data).__name__}, expected an object")
    return data


def _nvidia_quantities(section: Any, where: str) -> dict[str, int]:
    """The ``nvidia.com/*`` entries of a resource list (allocatable, limits)."""
    if not isinstance(section, dict):
        return {}
    found = {}
    for key, value in section.items():
        if str(key).startswith("nvidia.com/"):
            quantity = _quantity(value, f"{where}[{key}]")
            if quantity is not None:
                found[str(key)] = quantity
    return found


def parse_node(text: str | dict[str, Any]) -> NodeInfo:
    """``kubectl get node <name> -o json``."""
    data = _load_json_object(text, "kubectl get node output")
    if data.get("kind") != "Node":
        raise ParseError(f"expected kind Node, got {data.get('kind')!r}")
    metadata = data.get("metadata") or {}
    status = data.get("status") or {}
    if not isinstance(metadata, dict) or not isinstance(status, dict) or not isinstance(metadata.get("name"), str):
        raise ParseError("Node object lacks metadata.name or status")
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise ParseError("Node metadata.labels is not a mapping")
    conditions = status.get("conditions") or []
    ready = any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return NodeInfo(
        name=metadata["name"],
        ready=ready,
        allocatable_gpus=_quantity((status.get("allocatable") or {}).get(GPU_RESOURCE), f"status.allocatable[{GPU_RESOURCE}]"),
        capacity_gpus=_quantity((status.get("capacity") or {}).get(GPU_RESOURCE), f"status.capacity[{GPU_RESOURCE}]"),
        labels={str(key): str(value) for key, value in labels.items()},
        allocatable_nvidia=_nvidia_quantities(status.get("allocatable"), "status.allocatable"),
    )


def gpu_driver_version(labels: dict[str, str]) -> str:
    """The driver version GFD labelled: ``nvidia.com/cuda.driver-version.full``,
    else ``nvidia.com/cuda.driver.major/.minor/.rev``; "" when absent."""
    full = labels.get("nvidia.com/cuda.driver-version.full")
    if full:
        return full
    parts = [labels.get(f"nvidia.com/cuda.driver.{part}") for part in ("major", "minor", "rev")]
    if parts[0] and parts[1]:
        return ".".join(part for part in parts if part)
    return ""


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    gpu_limit: int
    ready: bool
    waiting_reason: str = ""
    restarts: int = 0
    nvidia_limits: dict[str, int] = field(default_factory=dict)  # every nvidia.com/* limit

    def limit(self, resource: str) -> int:
        return self.nvidia_limits.get(resource, 0)


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    node: str
    phase: str
    labels: dict[str, str]
    containers: tuple[ContainerInfo, ...]

    @property
    def healthy(self) -> bool:
        """Running with every container ready, or finished successfully."""
        if self.phase == "Succeeded":
            return True
        return self.phase == "Running" and all(container.ready for container in self.containers)

    @property
    def state(self) -> str:
        reasons = sorted({c.waiting_reason for c in self.containers if c.waiting_reason})
        if reasons:
            return f"{self.phase} ({', '.join(reasons)})"
        if self.phase == "Running" and not self.healthy:
            return "Running (not ready)"
        return self.phase

    @property
    def gpu_limit(self) -> int:
        return sum(container.gpu_limit for container in self.containers)

    def limit(self, resource: str) -> int:
        """The pod's limit of one extended resource, summed over its containers."""
        return sum(container.limit(resource) for container in self.containers)


def _pod(item: Any, index: int) -> PodInfo:
    if not isinstance(item, dict) or item.get("kind", "Pod") != "Pod":
        raise ParseError(f"item {index} is not a Pod")
    metadata, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
    if not isinstance(metadata.get("name"), str):
        raise ParseError(f"pod {index} has no metadata.name")
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or [] if isinstance(s, dict)}
    containers = []
    for container in spec.get("containers") or []:
        if not isinstance(container, dict):
            raise ParseError(f"pod {metadata['name']}: spec.containers holds a non-object")
        limits = (container.get("resources") or {}).get("limits") or {}
        state = statuses.get(container.get("name"), {})
        waiting = (state.get("state") or {}).get("waiting") or {}
        containers.append(ContainerInfo(
            name=str(container.get("name", "")),
            gpu_limit=_quantity(limits.get(GPU_RESOURCE), f"pod {metadata['name']} limits[{GPU_RESOURCE}]") or 0,
            ready=bool(state.get("ready", False)),
            waiting_reason=str(waiting.get("reason", "")),
            restarts=int(state.get("restartCount", 0) or 0),
            nvidia_limits=_nvidia_quantities(limits, f"pod {metadata['name']} limits"),
        ))
    return PodInfo(
        name=metadata["name"],
        namespace=str(metadata.get("namespace", "")),
        node=str(spec.get("nodeName", "")),
        phase=str(status.get("phase", "Unknown")),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        containers=tuple(containers),
    )


def parse_pods(text: str | dict[str, Any]) -> list[PodInfo]:
    """``kubectl get pods -o json`` (a List) or ``kubectl get pod X -o json``."""
    data = _load_json_object(text, "kubectl get pods output")
    if data.get("kind") == "Pod":
        return [_pod(data, 0)]
    items = data.get("items")
    if not isinstance(items, list):
        raise ParseError(f"expected a List of Pods with .items, got kind {data.get('kind')!r}")
    return [_pod(item, index) for index, item in enumerate(items)]


# --------------------------------------------------------------------------
# ffmpeg -encoders
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoder:
    name: str
    kind: str  # V, A or S
    description: str


_ENCODER_ROW = re.compile(r"^\s*(?P<flags>[VAS][A-Z.]{5})\s+(?P<name>\S+)\s*(?P<description>.*)$")


def parse_ffmpeg_encoders(text: str) -> dict[str, Encoder]:
    """``ffmpeg -encoders``: the rows after the legend's ``------`` line."""
    lines = text.splitlines()
    try:
        start = next(index for index, line in enumerate(lines) if line.strip().startswith("---")) + 1
    except StopIteration:
        raise ParseError("no '------' line: not the output of `ffmpeg -encoders`") from None
    encoders: dict[str, Encoder] = {}
    for line in lines[start:]:
        if not line.strip():
            continue
        row = _ENCODER_ROW.match(line)
        if not row:
            raise ParseError(f"unexpected line in ffmpeg -encoders output: {line[:80]!r}")
        encoders[row["name"]] = Encoder(row["name"], row["flags"][0], row["description"].strip())
    if not encoders:
        raise ParseError("ffmpeg -encoders lists no encoders")
    return encoders


# --------------------------------------------------------------------------
# qm config <vmid> (Proxmox)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class HostpciEntry:
    slot: str
    mapping: str | None
    addresses: tuple[str, ...]  # normalised; "0000:3b:00" (no function) means every function
    options: dict[str, str]

    def covers(self, address: str) -> bool:
        address = normalise_pci_address(address)
        return any(address == entry or pci_device(address) == entry for entry in self.addresses)


@dataclass(frozen=True)
class QmConfig:
    options: dict[str, str]
    hostpci: dict[str, HostpciEntry]


_QM_LINE = re.compile(r"^(?P<key>[a-z][a-z0-9_-]*):\s?(?P<value>.*)$")
_HOSTPCI_KEY = re.compile(r"^hostpci\d+$")
_PCI_NO_FUNCTION = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])$")


def _hostpci_address(text: str) -> str:
    bare = _PCI_NO_FUNCTION.match(text)
    if bare:
        return f"{(bare.group(1) or '0000').lower()}:{bare.group(2).lower()}:{bare.group(3).lower()}"
    return normalise_pci_address(text)


def parse_hostpci(slot: str, value: str) -> HostpciEntry:
    """One ``hostpciN`` value: ``mapping=<name>,pcie=1`` or
    ``[host=]0000:3b:00.0[;0000:3b:00.1],pcie=1,rombar=1``."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ParseError(f"{slot} is empty")
    options: dict[str, str] = {}
    positional: list[str] = []
    for part in parts:
        key, sep, item = part.partition("=")
        if sep:
            options[key] = item
        else:
            positional.append(part)
    mapping = options.pop("mapping", None)
    raw = options.pop("host", None) or (positional[0] if positional else None)
    if mapping is None and raw is None:
        raise ParseError(f"{slot}: {value!r} names neither a mapping nor a PCI address")
    addresses: list[str] = []
    for item in (raw.split(";") if raw else []):
        try:
            addresses.append(_hostpci_address(item))
        except ValueError:
            raise ParseError(f"{slot}: {item!r} is not a PCI address") from None
    return HostpciEntry(slot, mapping, tuple(addresses), options)


def parse_qm_config(text: str) -> QmConfig:
    """``qm config <vmid>``: ``key: value`` lines of the current config (a
    snapshot section ``[name]`` ends it; ``#`` lines are the description)."""
    options: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            break
        match = _QM_LINE.match(line)
        if not match:
            raise ParseError(f"qm config line {number} is not 'key: value': {line[:80]!r}")
        options[match["key"]] = match["value"].strip()
    if not options:
        raise ParseError("qm config printed no 'key: value' lines")
    hostpci = {key: parse_hostpci(key, value) for key, value in options.items() if _HOSTPCI_KEY.match(key)}
    return QmConfig(options, hostpci)


# --------------------------------------------------------------------------
# lspci -nnk (Proxmox host)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PciDevice:
    address: str  # normalised 0000:3b:00.0
    class_name: str
    class_code: str
    vendor_device: str
    description: str
    driver: str | None
    modules: tuple[str, ...] = ()
    subsystem: str | None = None


_LSPCI_DEVICE = re.compile(
    r"^(?P<address>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7])\s+"
    r"(?P<class_name>[^\[]+?)\s+\[(?P<class_code>[0-9a-fA-F]{4})\]:\s+"
    r"(?P<description>.*?)\s+\[(?P<vendor_device>[0-9a-fA-F]{4}:[0-9a-fA-F]{4})\](?:\s+\(rev [0-9a-fA-F]+\))?(?:\s+\(prog-if [^)]*\))?\s*$"
)
_LSPCI_SUBSYSTEM_ID = re.compile(r"\[([0-9a-fA-F]{4}:[0-9a-fA-F]{4})\]\s*$")


def parse_lspci_nnk(text: str) -> dict[str, PciDevice]:
    """``lspci -nnk [-D] [-s ...]``: a device line, then indented
    ``Subsystem:``, ``Kernel driver in use:`` and ``Kernel modules:`` lines."""
    devices: dict[str, PciDevice] = {}
    current: dict[str, Any] | None = None

    def finish() -> None:
        if current is not None:
            devices[current["address"]] = PciDevice(**current)

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not line[0].isspace():
            finish()
            match = _LSPCI_DEVICE.match(line)
            if not match:
                raise ParseError(f"lspci line {number} is not '<address> <class> [cccc]: <name> [vvvv:dddd]': {line[:100]!r}")
            current = {
                "address": normalise_pci_address(match["address"]),
                "class_name": match["class_name"],
                "class_code": match["class_code"].lower(),
                "vendor_device": match["vendor_device"].lower(),
                "description": match["description"],
                "driver": None,
            }
            continue
        if current is None:
            raise ParseError(f"lspci line {number} is indented but follows no device line: {line[:80]!r}")
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if key == "Kernel driver in use":
            current["driver"] = value
        elif key == "Kernel modules":
            current["modules"] = tuple(module.strip() for module in value.split(",") if module.strip())
        elif key == "Subsystem":
            found = _LSPCI_SUBSYSTEM_ID.search(value)
            current["subsystem"] = found.group(1).lower() if found else None
    finish()
    return devices
