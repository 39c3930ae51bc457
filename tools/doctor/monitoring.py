"""The doctor's monitoring layer, pure: is the DCGM exporter serving the
metrics the dashboard and the alert rules read for this node (one scrape of
the exporter's pod on the node, through the API server's pod proxy), and is
the PrometheusRule there. The runner (runners.gather_monitoring) only runs
the kubectl commands named here."""

from __future__ import annotations

import json
import re

from components.config import StackConfig
from components.facts.kubernetes import PodInfo, parse_pods
from components.facts.parsing import ParseError
from components.monitoring import metrics
from components.monitoring.rules import RULE_NAME, alerts
from tools.doctor.model import CheckResult, MonitoringObservation, Output

PROMETHEUS_RULES = "prometheusrules.monitoring.coreos.com"
LAYER = "monitoring"


def pods_command(cfg: StackConfig) -> list[str]:
    where = metrics.exporter(cfg)
    return ["get", "pods", "-n", where.namespace, "-l", where.pod_selector,
            "--field-selector", f"spec.nodeName={cfg.node_name}", "-o", "json"]


def scrape_command(cfg: StackConfig, pod: str) -> list[str]:
    """One GET of the pod's /metrics through the API server
    (``/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/{path}``)."""
    namespace = metrics.exporter(cfg).namespace
    return ["get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}:{metrics.EXPORTER_PORT}/proxy/metrics"]


def rule_command(cfg: StackConfig) -> list[str]:
    return ["get", PROMETHEUS_RULES, RULE_NAME, "-n", cfg.gpu_stack.namespace, "-o", "json"]


def select_exporter_pod(pods: list[PodInfo]) -> PodInfo | None:
    running = [pod for pod in pods if pod.phase == "Running"]
    return running[0] if running else None


# -- Prometheus text format ---------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_-]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_exposition(text: str) -> dict[str, list[dict[str, str]]]:
    """Prometheus' text exposition format: metric name -> the label sets of
    its samples (``# HELP`` / ``# TYPE`` and blank lines skipped). Raises
    ParseError on a line that is not a sample."""
    found: dict[str, list[dict[str, str]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if not match:
            raise ParseError(f"line {number} is not a Prometheus sample: {line[:120]!r}")
        labels: dict[str, str] = {}
        rest = match.group("labels") or ""
        while rest.strip():
            label = _LABEL.match(rest)
            if not label:
                raise ParseError(f"line {number}: labels not in name=\"value\" form: {rest[:120]!r}")
            labels[label.group(1)] = label.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            rest = rest[label.end():]
        found.setdefault(match.group("name"), []).append(labels)
    return found


# -- checks -------------------------------------------------------------------


def _result(name: str, status: str, detail: str, remedy: str = "") -> CheckResult:
    return CheckResult(LAYER, name, status, detail, remedy)  # type: ignore[arg-type]


def _no_exporter_remedy(cfg: StackConfig) -> str:
    where = metrics.exporter(cfg)
    if cfg.gpu_stack.mode == "operator":
        return (f"the GPU Operator runs the exporter on nodes labelled nvidia.com/gpu.deploy.dcgm-exporter=true: "
                f"kubectl get pods -n {where.namespace} -l {where.pod_selector} -o wide; kubectl describe ds -n {where.namespace} "
                "nvidia-dcgm-exporter (dcgmExporter.enabled is on in the program's values)")
    chart = metrics.DCGM_EXPORTER_CHART
    return (f"device-plugin mode has no exporter of its own: install NVIDIA's {chart.chart} chart {chart.version} with the values "
            "render writes (kubernetes/monitoring/dcgm-exporter-values.yaml; docs/monitoring.md)")


def check_monitoring(obs: MonitoringObservation, cfg: StackConfig) -> list[CheckResult]:
    return [_check_exporter(obs, cfg), _check_rule(obs.rule, cfg)]


def _check_exporter(obs: MonitoringObservation, cfg: StackConfig) -> CheckResult:
    name, node = "exporter metrics", cfg.node_name
    if not obs.pods.ok:
        return _result(name, "fail", f"cannot list the exporter's pods: {obs.pods.error}", _no_exporter_remedy(cfg))
    try:
        pod = select_exporter_pod(parse_pods(obs.pods.text or ""))
    except ParseError as error:
        return _result(name, "fail", f"kubectl get pods: {error}", _no_exporter_remedy(cfg))
    if pod is None or obs.scrape is None:
        return _result(name, "fail", f"no running DCGM exporter pod on {node} ({metrics.exporter(cfg).pod_selector})",
                       _no_exporter_remedy(cfg))
    if not obs.scrape.ok:
        return _result(name, "fail", f"scrape of {pod.name} through the API server failed: {obs.scrape.error}",
                       f"kubectl logs -n {pod.namespace} {pod.name}; the exporter listens on :{metrics.EXPORTER_PORT}")
    try:
        samples = parse_exposition(obs.scrape.text or "")
    except ParseError as error:
        return _result(name, "fail", f"{pod.name} answered with something else than metrics: {error}",
                       f"kubectl logs -n {pod.namespace} {pod.name}")
    missing = [metric for metric in metrics.DCGM_METRICS
               if not any(labels.get(metrics.NODE_LABEL) == node for labels in samples.get(metric, []))]
    if missing:
        return _result(name, "fail", f"{pod.name} serves no {', '.join(missing)} for {node}",
                       "the exporter's counters file lacks them (a custom dcgmExporter.config?) or DCGM cannot read the GPU: "
                       f"kubectl logs -n {pod.namespace} {pod.name}")
    gpus = sorted({labels.get("gpu", "?") for labels in samples[metrics.GPU_TEMP] if labels.get(metrics.NODE_LABEL) == node})
    return _result(name, "pass", f"{pod.name} serves all {len(metrics.DCGM_METRICS)} metrics the dashboard and alerts read "
                                 f"for {node} (GPU {', '.join(gpus)})")


def _check_rule(output: Output | None, cfg: StackConfig) -> CheckResult:
    name = "alert rules"
    if output is None:
        return _result(name, "skip", "gpuStack.prometheusOperator is false: no PrometheusRule is delivered")
    where = f"{PROMETHEUS_RULES} {cfg.gpu_stack.namespace}/{RULE_NAME}"
    if not output.ok:
        return _result(name, "fail", f"{where}: {output.error}",
                       "pulumi up (or Flux, with flux.objects: git) creates it on the owner stack; without the Prometheus "
                       "Operator's CRDs set gpuStack.prometheusOperator: false")
    try:
        document = json.loads(output.text or "")
        names = {rule.get("alert") for group in document["spec"]["groups"] for rule in group.get("rules", [])}
    except (ValueError, KeyError, TypeError, AttributeError):
        return _result(name, "fail", f"{where}: not a PrometheusRule object", "kubectl get " + " ".join(rule_command(cfg)[1:]))
    wanted = [alert.name for alert in alerts(cfg, "-")]
    lacking = [alert for alert in wanted if alert not in names]
    if lacking:
        return _result(name, "fail", f"{where} lacks {', '.join(lacking)}", "run pulumi up (or render --flux and commit) again")
    labels = (document.get("metadata") or {}).get("labels") or {}
    unlabelled = {key: value for key, value in cfg.gpu_stack.monitoring.prometheus_labels.items() if labels.get(key) != value}
    if unlabelled:
        return _result(name, "fail", f"{where} lacks the labels the Prometheus selects: {unlabelled}",
                       "set gpuStack.monitoring.prometheusLabels and run pulumi up again")
    return _result(name, "pass", f"{where} holds all {len(wanted)} alerts")
