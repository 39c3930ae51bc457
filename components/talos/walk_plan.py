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
from components.flux.objects import REPOSITORY_NAMES
from components.gpu_migration_plan import GPU_UNAVAILABLE, UNINSTALL_TIMEOUT_SECONDS, migration_needed
from components.talos.schematic import installer_image, planned_installer
from components.talos.upgrade_route import DRAINED_BY, plan_route
from components.talos.versions import OPERATOR_FROM, upgrade_steps

# How the device plugin reached the cluster (upgrade-plan --device-plugin-delivery).
DEVICE_PLUGIN_DELIVERIES = ("helm", "flux", "git")


@dataclass(frozen=True)
class PlanStep:
    kind: str                 # "upgrade", "wait", "suspend", "remove", "stop" or "install"
    version: str | None = None
    image: str | None = None
    object: str | None = None
    path: str | None = None   # an upgrade's: "legacy" or "lifecycle" (components.talos.upgrade_route)
    drain: str | None = None  # an upgrade's: who drains the node before its reboot ("node", "program", "talosctl")

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def line(self) -> str:
        route = f"{self.path} path; {DRAINED_BY[self.drain]}" if self.path and self.drain else ""
        return "  ".join(part for part in (f"{self.kind:<8}", self.version or "", self.image or "", self.object or "", route) if part)


def stack_delivery(cfg: StackConfig) -> str:
    """How this stack delivers the chart: helm, flux, or git (flux delivery
    with the Flux objects from Git)."""
    stack = cfg.gpu_stack
    return "git" if stack.delivery == "flux" and stack.flux.objects == "git" else stack.delivery


def device_plugin_removal(cfg: StackConfig, delivery: str, stack_name: str) -> list[PlanStep]:
    """The mode migration's steps for a device plugin delivered by
    ``delivery`` (components.gpu_migration does them, in this order)."""
    stack = cfg.gpu_stack
    release = f"{stack.namespace}/{cluster.DEVICE_PLUGIN_CHART}"
    runtime_class = PlanStep("remove", object=f"RuntimeClass {cluster.RUNTIME_CLASS}")
    uninstall = PlanStep("remove", object=f"Flux HelmRelease {release} (helm-controller uninstalls the chart; waited for, at most "
                                          f"{UNINSTALL_TIMEOUT_SECONDS} s)")
    if delivery == "flux":
        repository = f"{stack.namespace}/{REPOSITORY_NAMES[cluster.DEVICE_PLUGIN_REPO]}"
        return [uninstall, PlanStep("remove", object=f"Flux HelmRepository {repository} (unless something else reads it)"), runtime_class]
    if delivery == "git":
        if stack.flux.git_device_plugin != "suspend":
            return [PlanStep("stop", object=f"HelmRelease {release} and RuntimeClass {cluster.RUNTIME_CLASS} come from Git: `pulumi up` "
                                            "stops here until they are removed from the Git repository (or set "
                                            "gpuStack.flux.gitDevicePlugin: suspend)")]
        return [PlanStep("suspend", object=f"the Flux Kustomization that applies them from Git (`render --flux` names it "
                                           f"{stack.flux.namespace}/{cluster.DEVICE_PLUGIN_CHART}; resume it only once Git has the "
                                           f"operator tree of `python -m components.render --stack {stack_name} --flux DIR`)"),
                uninstall, runtime_class]
    return [PlanStep("remove", object=f"Helm release {release} (chart {cluster.DEVICE_PLUGIN_CHART})"), runtime_class]


def operator_install(cfg: StackConfig, stack_name: str) -> PlanStep:
    stack, chart = cfg.gpu_stack, cluster.helm_chart(cfg)
    release, what = f"{stack.namespace}/{chart.release_name}", f"chart {chart.chart} {chart.version}"
    delivery = stack_delivery(cfg)
    if delivery == "flux":
        return PlanStep("install", object=f"Flux HelmRelease {release} with HelmRepository {stack.namespace}/{REPOSITORY_NAMES[chart.repo]} "
                                          f"({what}; helm-controller installs it)")
    if delivery == "git":
        return PlanStep("install", object=f"Flux HelmRelease {release} from Git ({what}): commit the tree `python -m components.render "
                                          f"--stack {stack_name} --flux DIR` writes; helm-controller installs it, the readiness gate waits for it")
    return PlanStep("install", object=f"Helm release {release} ({what})")


def upgrade_plan(cfg: StackConfig, running_version: str, *, device_plugin_installed: bool = False,
                 device_plugin_delivery: str | None = None, stack_name: str = "<stack>", kubeconfig: bool = True,
                 running_machine: dict | None = None) -> list[PlanStep]:
    """The steps, in order. ``device_plugin_delivery``: how the device plugin
    was installed (helm, flux or git; default: as this stack delivers);
    ``kubeconfig``: whether the stack has one (this program then drains a
    LifecycleService upgrade itself); ``running_machine``: the node's
    ``machine`` section (its install.extraKernelArgs decide --legacy).
    Raises components.talos.versions.PathRefused and
    components.talos.upgrade_route.RouteRefused."""
    t = cfg.talos
    _, schematic, _ = planned_installer(t)
    steps = upgrade_steps(running_version, t.version, list(t.upgrade_path))
    crossing = migration_needed(cfg) and (parse_version(running_version) < OPERATOR_FROM or device_plugin_installed)
    plan: list[PlanStep] = []
    removed = False

    def remove() -> None:
        nonlocal removed
        if device_plugin_installed and not removed:
            plan.extend(device_plugin_removal(cfg, device_plugin_delivery or stack_delivery(cfg), stack_name))
        removed = True

    staged = " (its machine config staged first; this reboot applies both)" if t.config_source == "running" else ""
    ready = f", Kubernetes node {cfg.node_name} Ready (with a kubeconfig)"
    before = running_version
    for step in steps:
        if crossing and parse_version(step) >= OPERATOR_FROM:
            remove()
        route = plan_route(before, running_machine=running_machine or {}, kubeconfig=kubeconfig,
                           endpoint_is_node=t.talosctl_endpoint == t.node_address, node=t.node_address)
        plan.append(PlanStep("upgrade", step, installer_image(schematic, step, t.platform), f"node {t.node_address}{staged}",
                             path=route.path, drain=route.drain))
        before = step
        plan.append(PlanStep("wait", step, None, f"Talos API answers {step}, NVIDIA extensions listed{ready}; "
                                                 f"at most {t.upgrade_timeout_seconds} s"))
    if crossing:
        remove()
        plan.append(operator_install(cfg, stack_name))
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
