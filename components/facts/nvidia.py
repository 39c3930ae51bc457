"""What the NVIDIA driver reports: ``nvidia-smi`` (in a pod) and
``/proc/driver/nvidia/version`` (read on the Talos node with talosctl)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from components.facts.parsing import ParseError


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
