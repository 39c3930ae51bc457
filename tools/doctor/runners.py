"""I/O: gather one observation per layer, or say why the layer is unreachable.

Runners decide nothing: they run the guide's commands and hand the raw text to
the pure checks. A layer that cannot be reached (no credentials, tool
missing, connection refused, timeout) becomes :class:`Unreachable`, and every
check of it is skipped with that reason, the same way in every layer: a
timeout is "unreachable", never a failed check. Reasons are one line; a
tool's full stderr goes to this module's debug log (doctor --verbose).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.config import StackConfig, pci_device
from components.facts.kubernetes import parse_pods
from components.facts.parsing import ParseError
from components.facts.proxmox import parse_lspci_nnk
from components.hostprep.facts import FactsError
from components.hostprep.facts_read import gather_facts
from components.kubectl import KubectlError, run_kubectl
from components.ssh.connect import SshTarget
from components.ssh.errors import TransportError
from components.ssh.keys import known_hosts_lines_for
from components.ssh.transport import SshTransport
from components.talos.talosctl import TalosctlError, TalosctlTimeout, extensions_args, run_talosctl
from tools.doctor import checks, monitoring, workload_checks
from tools.doctor.model import (
    LAYERS,
    CheckResult,
    HostObservation,
    KubernetesObservation,
    Layer,
    MonitoringObservation,
    Observation,
    Output,
    PciFunctionState,
    ProxmoxObservation,
    TalosObservation,
    Unreachable,
    WorkloadObservation,
)
from tools.doctor.remedies import host_name

FFMPEG = "/usr/lib/jellyfin-ffmpeg/ffmpeg"

log = logging.getLogger(__name__)

Gatherer = Callable[[StackConfig], Observation | Unreachable]


@dataclass(frozen=True)
class Credentials:
    """What the doctor may use to reach each layer. Secrets are held in memory
    only; kubeconfig/talosconfig None means the tools' own environment."""

    identity: str | None = field(default=None, repr=False)  # SSH private key text
    known_hosts: str | None = None  # known_hosts file text (overrides host.hostKey)
    kubeconfig: str | None = field(default=None, repr=False)
    talosconfig: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    home: Path = field(default_factory=lambda: Path(os.environ.get("HOME") or Path.home()))


def run_doctor(cfg: StackConfig, layers: Sequence[Layer], gatherers: Mapping[Layer, Gatherer],
               progress: Callable[[int, int, Layer, str], None] | None = None) -> list[CheckResult]:
    """Gather and check each requested layer, in the graph's order.
    ``progress(index, count, layer, what)`` is called before each layer."""
    results: list[CheckResult] = []
    chosen = [layer for layer in LAYERS if layer in layers]
    for index, layer in enumerate(chosen, 1):
        if progress is not None:
            progress(index, len(chosen), layer, describe(layer, cfg))
        observation = gatherers[layer](cfg)
        if isinstance(observation, Unreachable):
            results.append(CheckResult(layer, "reachable", "skip", observation.reason))
        else:
            results += checks.CHECKS[layer](observation, cfg)
    return results


def describe(layer: Layer, cfg: StackConfig) -> str:
    """What the doctor is about to do for ``layer``, for its progress line."""
    ssh = f"SSH to {cfg.host.user}@{host_name(cfg)}:{cfg.host.port}"
    return {
        "host": f"{ssh}: IOMMU and the GPU's driver",
        "proxmox": f"{ssh}: qm config {cfg.vm.vm_id}",
        "talos": f"talosctl to node {cfg.talos.node_address} (endpoint {cfg.talos.talosctl_endpoint}): driver, modules, extensions",
        "kubernetes": f"kubectl: node {cfg.node_name}, pods in {cfg.gpu_stack.namespace}",
        "workload": f"kubectl: the Jellyfin pod in {cfg.jellyfin.namespace} ({cfg.jellyfin.pod_selector})",
        "monitoring": f"kubectl: one scrape of the DCGM exporter on {cfg.node_name} through the API server, the alert rules",
    }[layer]


def one_line(text: str, limit: int = 300) -> str:
    """A tool's message in one line: its last non-empty line, shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else last[:limit] + "..."


def default_gatherers(creds: Credentials) -> dict[Layer, Gatherer]:
    return {
        "host": lambda cfg: gather_host(cfg, creds),
        "proxmox": lambda cfg: gather_proxmox(cfg, creds),
        "talos": lambda cfg: gather_talos(cfg, creds),
        "kubernetes": lambda cfg: gather_kubernetes(cfg, creds),
        "workload": lambda cfg: gather_workload(cfg, creds),
        "monitoring": lambda cfg: gather_monitoring(cfg, creds),
    }


# -- SSH: host and proxmox --------------------------------------------------


def _ssh_target(cfg: StackConfig, creds: Credentials) -> Any:
    host, port = host_name(cfg), cfg.host.port
    if not creds.identity:
        return Unreachable(f"no SSH key for {cfg.host.user}@{host}: pass --identity KEY_FILE")
    if creds.known_hosts is not None:
        lines = known_hosts_lines_for(creds.known_hosts, host, port)
        if not lines:
            return Unreachable(f"--known-hosts has no entry for {host} (port {port}): add one with `ssh-keyscan -p {port} {host}` after checking the key")
        pin = "\n".join(lines)
    elif cfg.host.host_key:
        pin = cfg.host.host_key
    else:
        return Unreachable(f"no host key pinned for {host}: set proxmox-talos-gpu:host.hostKey or pass --known-hosts FILE")
    return SshTarget(host, port, cfg.host.user, creds.identity, pin)


def _with_ssh(cfg: StackConfig, creds: Credentials, observe: Callable[[Any], Observation | Unreachable]) -> Observation | Unreachable:
    target = _ssh_target(cfg, creds)
    if isinstance(target, Unreachable):
        return target
    try:
        with SshTransport.connect(target, timeout=creds.timeout, command_timeout=creds.timeout) as transport:
            return observe(transport)
    except TransportError as error:
        return Unreachable(str(error))


def host_observation_from_facts(facts: Any, host: str, kernel_modules: Mapping[str, tuple[str, ...]] | None = None) -> HostObservation:
    """Adapter from hostprep's ``HostFacts`` (``.iommu_active``, ``.functions``
    and ``.devices``: address -> ``PciFunction`` with ``.driver``, ``.vendor_device``)."""
    modules = kernel_modules or {}
    functions = {
        address: PciFunctionState(function.driver, function.vendor_device, modules.get(address, ()))
        for address, function in facts.functions.items()
    }
    nvidia = {address: function.vendor_device for address, function in facts.devices.items() if function.vendor_device.startswith("10de:")}
    return HostObservation(host=host, iommu_active=bool(facts.iommu_active), functions=functions, nvidia_devices=nvidia)


def lspci_command(cfg: StackConfig) -> str:
    """The guide's `lspci -nnk -s <slot>` for every configured GPU slot (all functions)."""
    slots = sorted({pci_device(gpu.address) for gpu in cfg.gpus})
    return "; ".join(f"lspci -nnk -D -s {shlex.quote(slot)}" for slot in slots)


def gather_host(cfg: StackConfig, creds: Credentials) -> HostObservation | Unreachable:
    host = host_name(cfg)

    def observe(transport: Any) -> HostObservation | Unreachable:
        try:
            facts = gather_facts(transport, [gpu.address for gpu in cfg.gpus])
        except FactsError as error:
            return Unreachable(f"could not read the host facts of {host}: {error}")
        # lspci -k adds what facts do not have: the modules that could claim each
        # function, i.e. what to blacklist. Without pciutils the check still runs.
        listing = transport.run(lspci_command(cfg), label="lspci -nnk")
        try:
            devices = parse_lspci_nnk(listing.stdout) if listing.ok else {}
        except ParseError:
            devices = {}
        return host_observation_from_facts(facts, host, {address: device.modules for address, device in devices.items()})

    return _with_ssh(cfg, creds, observe)  # type: ignore[return-value]


def gather_proxmox(cfg: StackConfig, creds: Credentials) -> ProxmoxObservation | Unreachable:
    host, vmid = host_name(cfg), cfg.vm.vm_id

    def observe(transport: Any) -> ProxmoxObservation | Unreachable:
        result = transport.run(f"qm config {int(vmid)}", label=f"qm config {vmid}")
        if result.rc == 127:
            return Unreachable(f"`qm` not found on {host}: is it a Proxmox VE host?")
        if result.rc != 0:
            error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit code {result.rc}"
            return ProxmoxObservation(host, Output(error=error))
        return ProxmoxObservation(host, Output(result.stdout))

    return _with_ssh(cfg, creds, observe)  # type: ignore[return-value]


# -- talosctl ---------------------------------------------------------------

_TALOS_UNREACHABLE = (
    "connection refused", "connection error", "deadline exceeded", "i/o timeout", "no such host", "timed out",
    "code = unavailable", "network is unreachable", "no route to host", "certificate", "permissiondenied",
    "permission denied", "unauthenticated", "failed to determine endpoints", "talosconfig", "not found on path",
)


class _LayerUnreachable(Exception):
    pass


def gather_talos(cfg: StackConfig, creds: Credentials) -> TalosObservation | Unreachable:
    if shutil.which("talosctl", path=creds.environ.get("PATH")) is None:
        return Unreachable("talosctl not found on PATH (https://www.talos.dev/latest/talos-guides/install/talosctl/)")
    # run_talosctl takes the talosconfig's content (TALOSCONFIG, read by the
    # CLI); without it talosctl falls back to ~/.talos/config.
    if creds.talosconfig is None and not (creds.home / ".talos" / "config").exists():
        return Unreachable("no talosconfig: export TALOSCONFIG=<path> (or write ~/.talos/config)")
    node, endpoint = cfg.talos.node_address, cfg.talos.talosctl_endpoint

    def call(args: list[str]) -> Output:
        try:
            return Output(run_talosctl(args, talosconfig=creds.talosconfig, timeout=creds.timeout))
        except TalosctlTimeout:
            raise _LayerUnreachable(f"talosctl cannot reach {node}: no answer within {creds.timeout:g} s (endpoint {endpoint})") from None
        except TalosctlError as error:
            text = str(error)
            log.debug("%s", text)
            if any(marker in text.lower() for marker in _TALOS_UNREACHABLE):
                raise _LayerUnreachable(f"talosctl cannot reach {node}: {one_line(text.partition('): ')[2] or text)}") from None
            return Output(error=one_line(text))

    def read(path: str) -> Output:
        return call(["read", path, "--nodes", node, "--endpoints", endpoint])

    try:
        return TalosObservation(
            nvidia_version=read("/proc/driver/nvidia/version"),
            modules=read("/proc/modules"),
            extensions=call(extensions_args(node, endpoint)),
        )
    except _LayerUnreachable as error:
        return Unreachable(str(error))


# -- kubectl ----------------------------------------------------------------


def _kubectl(creds: Credentials, args: list[str]) -> Output:
    """Run kubectl; an unreachable cluster raises _LayerUnreachable, anything
    else (not found, the command in `exec` failing) is a failed Output."""
    try:
        return Output(run_kubectl(args, kubeconfig=creds.kubeconfig, timeout=creds.timeout))
    except KubectlError as error:
        if error.stderr.strip():
            log.debug("kubectl %s (exit %s), its stderr:\n%s", " ".join(args), error.returncode, error.stderr.rstrip())
        if error.kind == "missing":
            raise _LayerUnreachable(str(error)) from None
        if error.kind in ("timeout", "unreachable"):
            server = _api_server(creds)
            named = f" (API server {server})" if server and server.split("://")[-1] not in str(error) else ""
            raise _LayerUnreachable(f"{error}{named}") from None
        first = next((line.strip() for line in error.stdout.splitlines() if line.strip()), "")
        return Output(error=f"{error} (stdout: {first[:160]})" if first else str(error))


def _api_server(creds: Credentials) -> str:
    """The API server the kubeconfig points at, as kubectl resolves it (a
    local read, no network), to name it when it cannot be reached; "" when
    kubectl cannot say."""
    try:
        return run_kubectl(["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"],
                           kubeconfig=creds.kubeconfig, timeout=10).strip()
    except KubectlError:
        return ""


def _kube_precheck(creds: Credentials) -> Unreachable | None:
    if creds.kubeconfig is None and not creds.environ.get("KUBECONFIG") and not (creds.home / ".kube" / "config").exists():
        return Unreachable("no kubeconfig: export KUBECONFIG=<path> (or write ~/.kube/config)")
    return None


def gather_kubernetes(cfg: StackConfig, creds: Credentials) -> KubernetesObservation | Unreachable:
    missing = _kube_precheck(creds)
    if missing:
        return missing
    try:
        node = _kubectl(creds, ["get", "node", cfg.node_name, "-o", "json"])
        pods = _kubectl(creds, ["get", "pods", "-n", cfg.gpu_stack.namespace, "-o", "json"])
    except _LayerUnreachable as error:
        return Unreachable(str(error))
    return KubernetesObservation(node=node, pods=pods)


def nvenc_probe_command(encoder: str) -> list[str]:
    """A real encode of generated test frames with ``encoder``, output thrown
    away: ``ffmpeg ... -c:v h264_nvenc -f null -``. It fails where the GPU has
    no NVENC (``OpenEncodeSessionEx failed: unsupported device``)."""
    return [FFMPEG, "-hide_banner", "-nostats", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
            "-frames:v", "10", "-c:v", encoder, "-f", "null", "-"]


def probe_nvenc(creds: Credentials, exec_args: Sequence[str], encoders: Sequence[str]) -> dict[str, Output]:
    """Run :func:`nvenc_probe_command` for each encoder with ``kubectl exec``
    (``exec_args`` ends with ``--``); encoder -> its result."""
    return {encoder: _kubectl(creds, [*exec_args, *nvenc_probe_command(encoder)]) for encoder in encoders}


def gather_workload(cfg: StackConfig, creds: Credentials) -> WorkloadObservation | Unreachable:
    missing = _kube_precheck(creds)
    if missing:
        return missing
    jf = cfg.jellyfin
    try:
        pods = _kubectl(creds, ["get", "pods", "-n", jf.namespace, "-l", jf.pod_selector, "-o", "json"])
        try:
            pod = workload_checks.select_jellyfin_pod(parse_pods(pods.text)) if pods.ok and pods.text is not None else None
        except ParseError:
            pod = None  # the check reports the unparseable output
        if pod is None:
            return WorkloadObservation(pods=pods)
        container = workload_checks.gpu_container(pod)
        exec_args = ["exec", "-n", jf.namespace, pod.name, *(["-c", container] if container else []), "--"]
        return WorkloadObservation(
            pods=pods,
            nvidia_smi=_kubectl(creds, [*exec_args, "nvidia-smi"]),
            encoders=_kubectl(creds, [*exec_args, FFMPEG, "-hide_banner", "-encoders"]),
            nvenc_probes=probe_nvenc(creds, exec_args, workload_checks.nvenc_probe_encoders(cfg)),
        )
    except _LayerUnreachable as error:
        return Unreachable(str(error))


def gather_monitoring(cfg: StackConfig, creds: Credentials) -> MonitoringObservation | Unreachable:
    """The exporter's pods on the node, one scrape of the running one through
    the API server, and the PrometheusRule (with prometheusOperator only)."""
    missing = _kube_precheck(creds)
    if missing:
        return missing
    try:
        pods = _kubectl(creds, monitoring.pods_command(cfg))
        try:
            pod = monitoring.select_exporter_pod(parse_pods(pods.text)) if pods.ok and pods.text is not None else None
        except ParseError:
            pod = None  # the check reports the unparseable output
        scrape = _kubectl(creds, monitoring.scrape_command(cfg, pod.name)) if pod is not None else None
        rule = _kubectl(creds, monitoring.rule_command(cfg)) if cfg.gpu_stack.prometheus_operator else None
    except _LayerUnreachable as error:
        return Unreachable(str(error))
    return MonitoringObservation(pods=pods, scrape=scrape, rule=rule)
