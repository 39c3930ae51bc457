"""The workload layer: the Jellyfin pod holds a GPU, nvidia-smi runs in it,
its ffmpeg has NVENC and a real encode with each NVENC encoder the GPU has
succeeds (NVML's encoder capacity is never asked). Pure."""

from __future__ import annotations

from components import cluster
from components.config import StackConfig
from components.facts.ffmpeg import parse_ffmpeg_encoders
from components.facts.kubernetes import PodInfo, parse_pods
from components.facts.nvidia import parse_nvidia_smi
from components.gpu_capabilities import combined_capabilities, generation_issues
from tools.doctor import remedies
from tools.doctor.model import CheckResult, Output, WorkloadObservation
from tools.doctor.verdicts import failed, parsed, passed, skipped

NVENC_ENCODERS = ("h264_nvenc", "hevc_nvenc")
# ffmpeg's encoder for each codec the capability table names.
_NVENC_ENCODER = {"h264": "h264_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"}


def select_jellyfin_pod(pods: list[PodInfo]) -> PodInfo | None:
    """The pod to run the exec checks in: a Running one, newest name last."""
    running = sorted((pod for pod in pods if pod.phase == "Running"), key=lambda pod: pod.name)
    return running[-1] if running else None


def gpu_container(pod: PodInfo) -> str:
    """The container that holds a GPU limit (nvidia.com/gpu or
    nvidia.com/gpu.shared; else the first), for `exec -c`."""
    for container in pod.containers:
        if any(name.startswith(cluster.GPU_RESOURCE) and count for name, count in container.nvidia_limits.items()):
            return container.name
    return pod.containers[0].name if pod.containers else ""


def nvenc_probe_encoders(cfg: StackConfig) -> list[str]:
    """The NVENC encoders to try with a real encode in the Jellyfin pod: those
    of every codec the configured GPUs' NVENC encodes (capability table);
    none for a GPU without NVENC; h264_nvenc and hevc_nvenc when the GPUs'
    capabilities are not known. NVML's encoder capacity is never asked: an
    H200 reports 100 there and has no NVENC."""

    rows, unknown = generation_issues(cfg)
    if unknown or not rows:
        return list(NVENC_ENCODERS)
    caps = combined_capabilities(rows)
    return [_NVENC_ENCODER[codec] for codec in ("h264", "hevc", "av1") if codec in caps.encode]


def check_workload(obs: WorkloadObservation, cfg: StackConfig) -> list[CheckResult]:
    """The Jellyfin pod: GPU in its limits, nvidia-smi runs, ffmpeg has NVENC,
    and a real encode with each NVENC encoder the GPU has succeeds."""
    jf = cfg.jellyfin
    where = f"{jf.namespace} -l {jf.pod_selector}"
    names = ("gpu limit", "nvidia-smi", "nvenc encoders", "nvenc encode")
    pods = parsed(obs.pods, parse_pods, lambda detail, _reason: failed("workload", "jellyfin pod", detail, remedies.jellyfin_pod_missing(cfg)),
                   unreadable=f"listing pods in {where}", unparseable="unparseable `kubectl get pods` output")
    if isinstance(pods, CheckResult):
        return [pods]
    pod = select_jellyfin_pod(pods)
    if pod is None:
        states = ", ".join(f"{p.name} {p.state}" for p in pods) or "none"
        if not pods and not jf.enabled:
            reason = f"no pod in {where} and jellyfin.enabled is false"
            return [skipped("workload", "jellyfin pod", reason)] + [skipped("workload", name, reason) for name in names]
        results = [failed("workload", "jellyfin pod", f"no running pod in {where} (pods: {states})", remedies.jellyfin_pod_missing(cfg))]
        return results + [skipped("workload", name, "no running Jellyfin pod") for name in names]

    results = [passed("workload", "jellyfin pod", f"{pod.name} Running on {pod.node or '?'}")]
    resource = cluster.advertised_resource(cfg)
    if pod.limit(resource) >= 1:
        results.append(passed("workload", "gpu limit", f"limits {resource}: {pod.limit(resource)}"))
    else:
        results.append(failed("workload", "gpu limit", f"{pod.name} has no {resource} in its limits", remedies.gpu_not_allocated(cfg)))

    results.append(_check_nvidia_smi(obs.nvidia_smi, cfg))
    results.append(_check_encoders(obs.encoders, cfg))
    results.append(_check_nvenc_probe(obs.nvenc_probes, cfg))
    return results


def _check_nvenc_probe(probes: dict[str, Output] | None, cfg: StackConfig) -> CheckResult:
    """Pass when every probed encoder encoded; skip when the GPU has no NVENC."""
    wanted = nvenc_probe_encoders(cfg)
    if not wanted:
        return skipped("workload", "nvenc encode", "the configured GPU has no NVENC (capability table): Jellyfin decodes in hardware and encodes in software")
    if probes is None:
        return skipped("workload", "nvenc encode", "not run")
    failures = {encoder: probes[encoder] for encoder in wanted if encoder in probes and not probes[encoder].ok}
    missing = [encoder for encoder in wanted if encoder not in probes]
    if missing:
        return skipped("workload", "nvenc encode", f"not run for {', '.join(missing)}")
    if failures:
        encoder, output = next(iter(failures.items()))
        shown = "; ".join(f"{name}: {out.error}" for name, out in failures.items())
        return failed("workload", "nvenc encode", f"encoding failed: {shown}", remedies.nvenc_encode_failed(cfg, encoder, output.error))
    return passed("workload", "nvenc encode", f"{', '.join(wanted)} encoded test frames on the GPU")


def _check_nvidia_smi(output: Output | None, cfg: StackConfig) -> CheckResult:
    if output is None:
        return skipped("workload", "nvidia-smi", "not run")
    smi = parsed(output, parse_nvidia_smi, lambda detail, _reason: failed("workload", "nvidia-smi", detail, remedies.nvidia_smi_failed(cfg)),
                  unreadable="failed in the pod")
    if isinstance(smi, CheckResult):
        return smi
    gpus = ", ".join(gpu.name for gpu in smi.gpus)
    return passed("workload", "nvidia-smi", f"{gpus}, driver {smi.driver_version or '?'}, CUDA {smi.cuda_version or '?'}")


def _check_encoders(output: Output | None, cfg: StackConfig) -> CheckResult:
    if output is None:
        return skipped("workload", "nvenc encoders", "not run")
    encoders = parsed(output, parse_ffmpeg_encoders,
                       lambda detail, _reason: failed("workload", "nvenc encoders", detail, remedies.nvenc_missing(cfg, list(NVENC_ENCODERS))),
                       unreadable="ffmpeg -encoders failed in the pod")
    if isinstance(encoders, CheckResult):
        return encoders
    missing = [name for name in NVENC_ENCODERS if name not in encoders]
    if missing:
        return failed("workload", "nvenc encoders", f"missing: {', '.join(missing)}", remedies.nvenc_missing(cfg, missing))
    # Listed means ffmpeg was built with NVENC, not that the GPU has it: the
    # "nvenc encode" probe tests the GPU.
    return passed("workload", "nvenc encoders", ", ".join(NVENC_ENCODERS) + " built into ffmpeg")
