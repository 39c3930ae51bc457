"""The Talos layer: the NVIDIA driver loaded (/proc/driver/nvidia/version),
its kernel modules (/proc/modules) and the schematic's extensions installed
with matching driver versions (`talosctl get extensions`). Pure."""

from __future__ import annotations

from components.config import StackConfig
from components.facts.linux import parse_proc_modules
from components.facts.nvidia import parse_nvidia_version
from components.facts.talos import parse_extensions
from components.talos.machine_config import NVIDIA_MODULES  # what the patch makes Talos load
from components.talos.schematic import extensions_for
from tools.doctor import remedies
from tools.doctor.model import CheckResult, TalosObservation
from tools.doctor.verdicts import failed, parsed, passed


def expected_extensions(cfg: StackConfig) -> list[str]:
    """The schematic's extensions as `talosctl get extensions` names them
    (``siderolabs/nvidia-container-toolkit-lts`` -> ``nvidia-container-toolkit-lts``)."""

    return sorted(name.split("/", 1)[-1] for name in extensions_for(cfg.talos))


def check_talos(obs: TalosObservation, cfg: StackConfig) -> list[CheckResult]:
    """Driver loaded (/proc/driver/nvidia/version), the four modules in
    /proc/modules, the configured extensions installed with matching versions."""
    results = []
    module = parsed(obs.nvidia_version, parse_nvidia_version,
                     lambda detail, _reason: failed("talos", "nvidia driver", detail, remedies.modules_not_loaded(cfg)),
                     unreadable="/proc/driver/nvidia/version unreadable", unparseable="unparseable /proc/driver/nvidia/version")
    if isinstance(module, CheckResult):
        results.append(module)
    else:
        flavour = "open" if module.open else "proprietary"
        if flavour != cfg.talos.extensions.driver:
            wanted = expected_extensions(cfg)[:1]
            results.append(failed("talos", "nvidia driver", f"{flavour} kernel module {module.version} loaded, config wants {cfg.talos.extensions.driver}", remedies.extensions_missing(cfg, wanted)))
        else:
            results.append(passed("talos", "nvidia driver", f"{flavour} kernel module {module.version}"))

    loaded = parsed(obs.modules, parse_proc_modules,
                     lambda detail, _reason: failed("talos", "kernel modules", detail, remedies.modules_not_loaded(cfg)),
                     unreadable="/proc/modules unreadable", unparseable="unparseable /proc/modules")
    if isinstance(loaded, CheckResult):
        results.append(loaded)
    else:
        missing = [name for name in NVIDIA_MODULES if name not in loaded]
        if missing:
            results.append(failed("talos", "kernel modules", f"not loaded: {', '.join(missing)}", remedies.modules_not_loaded(cfg)))
        else:
            results.append(passed("talos", "kernel modules", f"{', '.join(NVIDIA_MODULES)} loaded"))

    wanted = expected_extensions(cfg)
    extensions = parsed(obs.extensions, parse_extensions,
                         lambda detail, _reason: failed("talos", "extensions", detail, remedies.extensions_missing(cfg, wanted)),
                         unreadable="`talosctl get extensions` failed", unparseable="unparseable `talosctl get extensions` output")
    if isinstance(extensions, CheckResult):
        return [*results, extensions]
    installed = {ext.name: ext for ext in extensions}
    missing = [name for name in wanted if name not in installed]
    if missing:
        results.append(failed("talos", "extensions", f"missing: {', '.join(missing)}", remedies.extensions_missing(cfg, missing)))
        return results
    results.append(passed("talos", "extensions", ", ".join(f"{name} {installed[name].version}" for name in wanted)))
    kmod = next(name for name in wanted if name.startswith(("nonfree-kmod-nvidia", "nvidia-open-gpu-kernel-modules")))
    toolkit = next(name for name in wanted if name.startswith("nvidia-container-toolkit"))
    kmod_driver, toolkit_driver = installed[kmod].version.split("-")[0], installed[toolkit].version.split("-")[0]
    if kmod_driver != toolkit_driver:
        results.append(failed("talos", "extension versions", f"{kmod} {installed[kmod].version} vs {toolkit} {installed[toolkit].version}",
                             remedies.extension_versions_differ(cfg, installed[kmod].version, installed[toolkit].version)))
    else:
        results.append(passed("talos", "extension versions", f"driver {kmod_driver} in both"))
    return results
