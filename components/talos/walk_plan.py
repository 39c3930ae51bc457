"""What one `pulumi up` does to a node that runs ``running_version``, step by
step (pure): the Talos version steps with their installer images, the waits
between them, and where the device plugin's removal and the GPU Operator's
install fall among them. `python -m components.talos upgrade-plan` prints
it; the graph (TalosGpuNode, GpuModeMigration, GpuStack) does it in this
order."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from components import cluster
from components.config import StackConfig, parse_version
from components.gpu_migration import GPU_UNAVAILABLE, migration_needed
from components.talos.schematic import installer_image, planned_installer
from components.talos.versions import OPERATOR_FROM, upgrade_steps


@dataclass(frozen=True)
class PlanStep:
    kind: str                 # "upgrade", "wait", "remove" or "install"
    version: str | None = None
    image: str | None = None
    object: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def line(self) -> str:
        return "  ".join(part for part in (f"{self.kind:<8}", self.version or "", self.image or "", self.object or "") if part)


def upgrade_plan(cfg: StackConfig, running_version: str, *, device_plugin_installed: bool = False) -> list[PlanStep]:
    """The steps, in order. Raises components.talos.versions.PathRefused."""
    t, stack = cfg.talos, cfg.gpu_stack
    _, schematic, _ = planned_installer(t)
    steps = upgrade_steps(running_version, t.version, list(t.upgrade_path))
    crossing = migration_needed(cfg) and (parse_version(running_version) < OPERATOR_FROM or device_plugin_installed)
    plan: list[PlanStep] = []
    removed = False

    def remove() -> None:
        nonlocal removed
        if device_plugin_installed and not removed:
            plan.append(PlanStep("remove", object=f"Helm release {stack.namespace}/{cluster.DEVICE_PLUGIN_CHART} (chart {cluster.DEVICE_PLUGIN_CHART})"))
            plan.append(PlanStep("remove", object=f"RuntimeClass {cluster.RUNTIME_CLASS}"))
        removed = True

    staged = " (its machine config staged first; this reboot applies both)" if t.config_source == "running" else ""
    ready = f", Kubernetes node {cfg.node_name} Ready (with a kubeconfig)"
    for step in steps:
        if crossing and parse_version(step) >= OPERATOR_FROM:
            remove()
        plan.append(PlanStep("upgrade", step, installer_image(schematic, step, t.platform), f"node {t.node_address}{staged}"))
        plan.append(PlanStep("wait", step, None, f"Talos API answers {step}, NVIDIA extensions listed{ready}; "
                                                 f"at most {t.upgrade_timeout_seconds} s"))
    if crossing:
        remove()
        chart = cluster.helm_chart(cfg)
        plan.append(PlanStep("install", None, None, f"Helm release {stack.namespace}/{chart.release_name} (chart {chart.chart} {chart.version})"))
    return plan


def render_plan(cfg: StackConfig, running_version: str, plan: list[PlanStep]) -> str:
    head = f"{cfg.node_name} ({cfg.talos.node_address}): Talos {running_version} -> {cfg.talos.version}"
    if not plan:
        return f"{head}: nothing to do, the node already runs the target\n"
    lines = [f"{head}, {sum(step.kind == 'upgrade' for step in plan)} reboot(s):"]
    lines += [f"{index:>3}. {step.line()}" for index, step in enumerate(plan, 1)]
    first_removal = next((index for index, step in enumerate(plan, 1) if step.kind == "remove"), None)
    if first_removal:
        lines.append(f"From step {first_removal}, {GPU_UNAVAILABLE}.")
    return "\n".join(lines) + "\n"
