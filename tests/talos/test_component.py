"""TalosGpuNode under the mock engine (graph, inputs, secrets), and its
upgrade provider run the engine's way: serialized with dill, loaded in a
fresh Python process, driving the stand-in talosctl."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs
from pulumi.runtime.rpc import UNKNOWN

from components.gpu_stack import GpuStack
from components.talos.component import TalosGpuNode
from components.vm import GpuVm
from tests.talos.conftest import MACHINE_SECRETS, TALOSCONFIG, FakeTalosctl, make_cfg
from tests.talos.engine import engine, registration
from tools.mockengine import GET_CONFIGURATION, ProgramMocks, ProgramRun, is_secret, reveal, run_program

ROOT = Path(__file__).resolve().parents[2]
SCHEMATIC = "talos:imageFactory/schematic:Schematic"
APPLY = "talos:machine/configurationApply:ConfigurationApply"
CONFIG = "pulumi-python:dynamic/talos:TalosMachineConfig"
UPGRADE = "pulumi-python:dynamic/talos:TalosUpgrade"
# A new node in maintenance mode: a generated config with a pinned kubelet.
GENERATED = {"configSource": "generated", "kubernetesVersion": "v1.34.3"}
NODE = "proxmox-talos-gpu:talos:TalosGpuNode"
SECRET_VALUES = ["Q0xJRU5ULUtFWS1TVEFORC1JTg==", "Q0EtQ0VSVElGSUNBVEUtU1RBTkQtSU4=", "c2VjcmV0Ym94LXN0YW5kLWluLXZhbHVlLTMyYnl0ZXM=",
                 "T1MtS0VZLVNUQU5ELUlO", "trustd.0123456789abcdef"]
WORKER = yaml.safe_dump({"version": "v1alpha1", "machine": {"type": "worker", "token": "abcdef.0123456789abcdef"}})


class FactoryMocks(ProgramMocks):
    """The program's mocks (the factory answers with the sha256 of the posted
    schematic, its real rule), plus: a fixed wrong factory ID on demand, and
    getConfiguration answering with WORKER while recording its arguments."""

    def __init__(self, factory_id: str | None = None):
        super().__init__(calls={GET_CONFIGURATION: self._configuration})
        self.factory_id = factory_id
        self.invokes: list[dict[str, Any]] = []

    def _configuration(self, args: MockCallArgs) -> dict[str, Any]:
        self.invokes.append(dict(args.args))
        return {"machineConfiguration": WORKER, "clusterName": args.args.get("clusterName")}

    def new_resource(self, args: MockResourceArgs):
        resource_id, state = super().new_resource(args)
        if args.typ == SCHEMATIC and self.factory_id:
            resource_id = self.factory_id
        return resource_id, state


def run_node(homelab: dict[str, Any], mocks: FactoryMocks | None = None, preview: bool = False, **talos: Any) -> tuple[ProgramRun, dict[str, Any]]:
    cfg = make_cfg(homelab, **talos)
    seen: dict[str, Any] = {}

    def program() -> None:
        vm = GpuVm(cfg.vm.name, cfg)
        node = TalosGpuNode(f"{cfg.node_name}-talos", cfg, pulumi.Output.secret(MACHINE_SECRETS), pulumi.Output.secret(TALOSCONFIG),
                            opts=pulumi.ResourceOptions(depends_on=[vm]))
        GpuStack(f"{cfg.node_name}-gpu-stack", cfg, opts=pulumi.ResourceOptions(depends_on=[node]))
        pulumi.export("installerImage", node.installer_image)
        pulumi.export("schematicId", node.schematic_id)
        pulumi.export("configPatch", node.config_patch)
        seen["node"] = node

    return run_program(program, {}, mocks=mocks or FactoryMocks(), preview=preview), seen


def _the_vm(run: ProgramRun):
    """The VM's resource under GpuVm: VmLegacy (vm.source: create) or the
    dynamic resource that owns an existing VM's GPU slots."""
    [gpu_vm] = run.by_type("proxmox-talos-gpu:proxmox:GpuVm")
    [vm] = [reg for reg in run.registrations if reg.parent == gpu_vm.urn and not reg.type.startswith("proxmoxve:hardware")]
    return vm


def final_upgrade(run: ProgramRun):
    """The walk that ends on talos.version (the other one stops before 1.13)."""
    [reg] = [reg for reg in run.by_type(UPGRADE) if reg.name.endswith("-talos-upgrade")]
    return reg


def all_plain_strings(value: Any) -> list[str]:
    """Every string in registration inputs that is not inside a secret."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [text for item in value.values() for text in all_plain_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in all_plain_strings(item)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize(("talos", "config_type"), [({}, CONFIG), (GENERATED, APPLY)], ids=["running", "generated"])
def test_children_are_parented_and_upgrade_waits_for_the_config(homelab, talos, config_type) -> None:
    run, _ = run_node(homelab, **talos)
    node = run.one(NODE)
    for reg in [run.one(SCHEMATIC), run.one(config_type), *run.by_type(UPGRADE)]:
        assert reg.parent == node.urn, f"{reg.urn} must be a child of {node.urn}"
    assert run.depends_on(final_upgrade(run), run.one(config_type)), "the upgrade must run after the new config is in place"
    other = APPLY if config_type == CONFIG else CONFIG
    assert run.by_type(other) == [], f"configSource {talos.get('configSource', 'running')} registers no {other}"


@pytest.mark.parametrize(("talos", "config_type"), [({}, CONFIG), (GENERATED, APPLY)], ids=["running", "generated"])
def test_node_waits_for_the_vm_and_the_gpu_stack_waits_for_the_node(homelab, talos, config_type) -> None:
    run, _ = run_node(homelab, **talos)
    # The engine expands a component dependency to the component's resources.
    vm = _the_vm(run)
    for reg in [run.one(SCHEMATIC), run.one(config_type), *run.by_type(UPGRADE)]:
        assert run.depends_on(reg, vm), f"{reg.urn} must wait for the VM"
    for reg in run.registrations:
        if reg.type.startswith("kubernetes:"):
            assert run.depends_on(reg, final_upgrade(run)), f"{reg.urn} must wait for the node's upgrade"
            assert run.depends_on(reg, run.one(config_type)), f"{reg.urn} must wait for the node's config"


def test_adopt_mode_carries_the_node_spec_and_keeps_secrets_secret(homelab) -> None:
    run, _ = run_node(homelab)
    config = run.one(CONFIG)
    spec = config.inputs["spec"]
    sid = hashlib.sha256(run.one(SCHEMATIC).inputs["schematic"].encode()).hexdigest()
    assert spec == {"targetVersion": "v1.13.9", "schematicId": sid, "platform": "metal",
                    "nodeLabels": {"drmoo.io/role": "worker", "drmoo.io/zone": "pve5", "drmoo.io/storage": "rook-osd-node",
                                   "drmoo.io/gpu": "nvidia-t4"}}
    # No override: the provider follows the NVIDIA guide of each version.
    assert "bpfJitHarden" not in spec and "nvidiaDefaultRuntime" not in spec
    overridden = run_node(homelab, bpfJitHarden=True, nvidiaDefaultRuntime=False)[0].one(CONFIG).inputs["spec"]
    assert overridden["bpfJitHarden"] is True and overridden["nvidiaDefaultRuntime"] is False
    assert is_secret(config.inputs["talosconfig"]) and is_secret(config.inputs["originals"]), config.urn
    assert set(config.additional_secret_outputs) >= {"talosconfig", "originals"}, config.urn
    assert run.depends_on(config, run.one(PREFLIGHT)), "no config may reach the node before its upgrade path is checked"
    assert run.depends_on(config, run.one(SCHEMATIC)), "the config waits for the factory's schematic ID check"


def test_adopt_mode_needs_no_machine_secrets(homelab) -> None:
    cfg = make_cfg(homelab)

    def program() -> None:
        TalosGpuNode("n", cfg, None, pulumi.Output.secret(TALOSCONFIG))

    run = run_program(program, {}, mocks=FactoryMocks())
    assert run.one(CONFIG) and run.by_type(APPLY) == []
    with pytest.raises(Exception, match="talosMachineSecrets"):
        run_program(lambda: TalosGpuNode("n", make_cfg(homelab, **GENERATED), None, pulumi.Output.secret(TALOSCONFIG)), {}, mocks=FactoryMocks())


def test_schematic_posts_the_sorted_nvidia_extension_set(homelab) -> None:
    run, _ = run_node(homelab)
    posted = run.one(SCHEMATIC).inputs["schematic"]
    assert posted == ("customization:\n    systemExtensions:\n        officialExtensions:\n"
                      "            - siderolabs/nonfree-kmod-nvidia-production\n"
                      "            - siderolabs/nvidia-container-toolkit-production\n"
                      "            - siderolabs/qemu-guest-agent\n")


def test_outputs_carry_factory_id_installer_image_and_patch(homelab) -> None:
    run, _ = run_node(homelab)
    sid = hashlib.sha256(run.one(SCHEMATIC).inputs["schematic"].encode()).hexdigest()
    assert run.outputs["schematicId"] == sid
    assert run.outputs["installerImage"] == f"factory.talos.dev/metal-installer/{sid}:v1.13.9"
    patch = yaml.safe_load(run.outputs["configPatch"])
    assert patch["machine"]["install"]["image"] == run.outputs["installerImage"]


def test_apply_gets_patch_secret_client_config_and_never_resets(homelab) -> None:
    run, _ = run_node(homelab, **GENERATED)
    apply = run.one(APPLY)
    assert apply.inputs["node"] == "192.168.8.123" and apply.inputs["endpoint"] == "192.168.8.99"
    assert is_secret(apply.inputs["clientConfiguration"])
    assert reveal(apply.inputs["clientConfiguration"]) == {"caCertificate": "Q0EtQ0VSVElGSUNBVEUtU1RBTkQtSU4=",
                                                          "clientCertificate": "Q0xJRU5ULUNFUlQtU1RBTkQtSU4=",
                                                          "clientKey": "Q0xJRU5ULUtFWS1TVEFORC1JTg=="}
    assert is_secret(apply.inputs["machineConfigurationInput"])
    assert reveal(apply.inputs["machineConfigurationInput"]) == WORKER
    patch = yaml.safe_load(reveal(apply.inputs["configPatches"])[0])
    assert [module["name"] for module in patch["machine"]["kernel"]["modules"]] == ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]
    assert apply.inputs["onDestroy"] == {"graceful": True, "reboot": False, "reset": False}


def test_machine_secrets_reach_get_configuration_in_provider_shape(homelab) -> None:
    mocks = FactoryMocks()
    run_node(homelab, mocks, **GENERATED)
    [invoke] = mocks.invokes
    assert invoke["machineType"] == "worker" and invoke["talosVersion"] == "v1.13.9"
    assert invoke["kubernetesVersion"] == "v1.34.3", "the kubelet is pinned, never the provider's default"
    assert invoke["clusterEndpoint"] == "https://192.168.8.99:6443"
    secrets = reveal(invoke["machineSecrets"])
    # The provider's wire names: an invoke does not translate dict keys.
    assert secrets["certs"]["k8sAggregator"] == {"cert": "QUdHLUNSVC1TVEFORC1JTg==", "key": "QUdHLUtFWS1TVEFORC1JTg=="}
    assert secrets["certs"]["k8sServiceaccount"] == {"key": "U0EtS0VZLVNUQU5ELUlO"}
    assert secrets["secrets"]["bootstrapToken"] == "abcdef.0123456789abcdef"
    assert secrets["secrets"]["secretboxEncryptionSecret"] == "c2VjcmV0Ym94LXN0YW5kLWluLXZhbHVlLTMyYnl0ZXM="


def test_no_secret_value_appears_in_plain_in_any_registration(homelab) -> None:
    run, _ = run_node(homelab)
    upgrade = final_upgrade(run)
    assert is_secret(upgrade.inputs["talosconfig"])
    for reg in run.registrations:
        plain = "\n".join(all_plain_strings(reg.inputs))
        for value in SECRET_VALUES:
            assert value not in plain, f"{value} is in plain text in {reg.urn}"


def test_preview_registers_the_node_without_running_talosctl(homelab, fake_talosctl: FakeTalosctl) -> None:
    run, _ = run_node(homelab, preview=True)
    assert {reg.type for reg in run.registrations} >= {NODE, SCHEMATIC, CONFIG, UPGRADE}
    assert fake_talosctl.calls() == []


def test_factory_id_that_differs_from_offline_id_fails_the_run(homelab) -> None:
    with pytest.raises(Exception, match="computed offline is [0-9a-f]{64}"):
        run_node(homelab, FactoryMocks(factory_id="0" * 64))


def test_bad_extension_config_fails_before_any_resource(homelab) -> None:
    with pytest.raises(Exception, match="talos.extensions.extra\\[0\\]"):
        run_node(homelab, extensions={"extra": ["siderolabs/nonfree-kmod-nvidia-lts"]})


# --------------------------------------------------------------------------
# The upgrade provider, the engine's way
# --------------------------------------------------------------------------

def upgrade_registration(homelab) -> tuple[str, dict[str, Any]]:
    run, _ = run_node(homelab)
    return registration(run, UPGRADE, "-talos-upgrade")


def no_wipe(calls: list[dict[str, Any]]) -> None:
    for call in calls:
        assert not any("wipe" in arg.lower() or arg.startswith("--preserve=false") for arg in call["argv"]), call["argv"]


def test_upgrade_from_1_12_walks_through_the_latest_1_12_with_the_factory_images(homelab, fake_talosctl: FakeTalosctl) -> None:
    provider, props = upgrade_registration(homelab)
    fake_talosctl.node("v1.12.4", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba")
    result = engine(provider, "create", {**props, "pollSeconds": 0.05}, fake_talosctl.env())
    assert "ok" in result, result
    calls = fake_talosctl.calls()
    upgrades = [call["argv"] for call in calls if "upgrade" in call["argv"]]
    images = [argv[argv.index("--image") + 1] for argv in upgrades]
    assert images == [f"factory.talos.dev/metal-installer/{props['schematicId']}:{version}" for version in ("v1.12.11", "v1.13.9")]
    for argv in upgrades:
        assert "--wait" in argv and "--preserve" not in argv and argv[argv.index("--timeout") + 1] == "1800s"
        assert argv[argv.index("--nodes") + 1] == "192.168.8.123"
    no_wipe(calls)
    for call in calls:
        assert call["talosconfig_mode"] == "0o600" and not Path(call["talosconfig"]).exists()
    outs = result["ok"]["outs"]
    assert outs["upgraded"] is True and outs["previousVersion"] == "v1.12.4" and outs["stepsDone"] == ["v1.12.11", "v1.13.9"]
    assert fake_talosctl.reboots == 2
    assert "talosconfig" not in outs and "kubeconfig" not in outs, "no credential is stored as an output"


def test_node_already_on_the_wanted_image_is_not_upgraded(homelab, fake_talosctl: FakeTalosctl) -> None:
    provider, props = upgrade_registration(homelab)
    fake_talosctl.node("v1.13.9", props["schematicId"])
    result = engine(provider, "create", props, fake_talosctl.env())
    outs = result["ok"]["outs"]
    assert outs["upgraded"] is False and outs["reason"].startswith("nothing to do because")
    assert not any("upgrade" in call["argv"] for call in fake_talosctl.calls())


def test_same_version_other_schematic_is_upgraded_in_place(homelab, fake_talosctl: FakeTalosctl) -> None:
    provider, props = upgrade_registration(homelab)
    fake_talosctl.node("v1.13.9", None)  # installed from a plain image: no extensions yet
    result = engine(provider, "create", {**props, "pollSeconds": 0.05}, fake_talosctl.env())
    assert "ok" in result, result
    assert result["ok"]["outs"]["upgraded"] is True and result["ok"]["outs"]["stepsDone"] == ["v1.13.9"]
    assert "schematic (none: not an Image Factory image)" in result["stderr"]
    no_wipe(fake_talosctl.calls())


def test_missing_talosctl_is_a_clear_error_in_the_provider(homelab, fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    provider, props = upgrade_registration(homelab)
    env = fake_talosctl.env()
    env["PATH"] = str(tmp_path / "empty")
    result = engine(provider, "create", props, env)
    assert result["error"] == "TalosctlError" and "talosctl is not installed" in result["message"]


def test_check_diff_and_delete_only_read_the_node(homelab, fake_talosctl: FakeTalosctl) -> None:
    provider, props = upgrade_registration(homelab)
    fake_talosctl.node("v1.11.6", None)
    checked = engine(provider, "check", props, fake_talosctl.env())["ok"]
    assert checked["failures"] == [] and checked["inputs"]["pendingSteps"] == ["upgrade to v1.12.11", "upgrade to v1.13.9"]
    bad = {**props, "image": props["image"].replace(":v1.13.9", ":v1.12.9")}
    assert engine(provider, "check", bad, fake_talosctl.env())["ok"]["failures"][0][0] == "image"
    # First preview: the factory's ID, so the image, is not known yet.
    unknown = {**props, "image": UNKNOWN, "schematicId": UNKNOWN}
    assert engine(provider, "check", unknown, fake_talosctl.env())["ok"]["failures"] == []
    settled = {**props, "pendingSteps": []}
    rotated = {**settled, "talosconfig": TALOSCONFIG.replace("homelab", "other")}
    assert engine(provider, "diff", rotated, fake_talosctl.env(), olds=settled)["ok"]["changes"] is False
    newer = {**settled, "version": "v1.13.10"}
    assert engine(provider, "diff", newer, fake_talosctl.env(), olds=settled)["ok"]["changes"] is True
    behind = {**settled, "pendingSteps": ["upgrade to v1.13.9"]}
    assert engine(provider, "diff", behind, fake_talosctl.env(), olds=settled)["ok"]["changes"] is True, "a node behind is a change"
    assert engine(provider, "delete", props, fake_talosctl.env())["ok"] == {"deleted": None}
    assert fake_talosctl.commands() and set(fake_talosctl.commands()) <= {"version", "get"}
    assert not any(call["mutated"] for call in fake_talosctl.calls())


PREFLIGHT = "pulumi-python:dynamic/talos:TalosUpgradePreflight"


def preflight_registration(homelab) -> tuple[str, dict[str, Any]]:
    run, _ = run_node(homelab)
    return registration(run, PREFLIGHT)


def test_apply_waits_for_the_upgrade_path_preflight(homelab) -> None:
    run, _ = run_node(homelab, **GENERATED)
    preflight, apply = run.one(PREFLIGHT), run.one(APPLY)
    assert run.depends_on(apply, preflight), "no config may reach the node before its upgrade path is checked"
    assert run.depends_on(preflight, _the_vm(run)), preflight.urn
    assert is_secret(run.one(PREFLIGHT).inputs["talosconfig"]), preflight.urn


def test_preflight_refuses_a_downgrade_before_anything_is_applied(homelab, fake_talosctl: FakeTalosctl) -> None:
    provider, props = preflight_registration(homelab)
    fake_talosctl.node("v1.14.0", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba")
    result = engine(provider, "create", props, fake_talosctl.env())
    assert result["error"] == "StepFailed" and "this program does not downgrade" in result["message"]
    assert "proxmox-talos-gpu:talos.version" in result["message"]
    assert set(fake_talosctl.commands()) <= {"version", "get"}


def test_preflight_names_the_path_of_a_minor_skipping_node_and_never_upgrades(homelab, fake_talosctl: FakeTalosctl) -> None:
    provider, props = preflight_registration(homelab)
    fake_talosctl.node("v1.11.6", None)
    result = engine(provider, "create", props, fake_talosctl.env())
    outs = result["ok"]["outs"]
    assert outs["upgraded"] is False and outs["previousVersion"] == "v1.11.6"
    assert outs["reason"] == "path v1.11.6 -> v1.12.11 -> v1.13.9" and outs["steps"] == ["v1.12.11", "v1.13.9"]
    assert set(fake_talosctl.commands()) <= {"version", "get"}
    assert "talosconfig" not in outs


def test_preflight_lets_a_node_in_maintenance_mode_through(homelab, fake_talosctl: FakeTalosctl) -> None:
    """A new VM booted from the ISO does not answer with the cluster's
    certificates; the apply installs the wanted image, so nothing to refuse."""
    provider, props = preflight_registration(homelab)
    fake_talosctl.node("v1.13.9", None)
    fake_talosctl.fail_next("rpc error: code = Unavailable desc = connection error: tls: certificate required")
    result = engine(provider, "create", props, fake_talosctl.env())
    assert "nothing to check before the apply" in result["ok"]["outs"]["reason"]


def test_preflight_without_talosctl_is_a_clear_error(homelab, fake_talosctl: FakeTalosctl, tmp_path: Path) -> None:
    provider, props = preflight_registration(homelab)
    env = {**fake_talosctl.env(), "PATH": str(tmp_path / "empty")}
    result = engine(provider, "create", props, env)
    assert result["error"] == "TalosctlError" and "talosctl is not installed" in result["message"]


def test_generated_config_takes_the_users_patches_before_the_gpu_patch(homelab, tmp_path: Path) -> None:
    network = tmp_path / "network.yaml"
    network.write_text("machine:\n  network:\n    hostname: moody-good\n")
    run, _ = run_node(homelab, **GENERATED, configPatches=[str(network)])
    patches = reveal(run.one(APPLY).inputs["configPatches"])
    assert patches[0] == network.read_text() and len(patches) == 2
    assert yaml.safe_load(patches[1])["machine"]["kernel"]["modules"][0] == {"name": "nvidia"}


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read the patch file"), ("machine: [\n", "not a machine-config patch in YAML")])
def test_a_bad_config_patch_file_stops_before_any_resource(homelab, tmp_path: Path, content, message) -> None:
    patch = tmp_path / "patch.yaml"
    if content is not None:
        patch.write_text(content)
    registered: list[Any] = []
    with pytest.raises(Exception, match=r"talos\.configPatches\[0\]") as error:
        run, _ = run_node(homelab, **GENERATED, configPatches=[str(patch)])
        registered = run.registrations
    assert message in str(error.value) and registered == []


def test_generated_config_without_a_pinned_kubelet_takes_the_clusters_version(homelab, tmp_path: Path, monkeypatch) -> None:
    from tests.doctor.fakecli import answer, install, rule

    fake = install(tmp_path)
    fake.set_rules("kubectl", [rule(["version", "--output", "json"], answer('{"clientVersion": {}, "serverVersion": {"gitVersion": "v1.34.3"}}'))])
    monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLI_DIR", str(fake.state))
    mocks = FactoryMocks()
    cfg = make_cfg(homelab, configSource="generated")

    def program() -> None:
        TalosGpuNode("n", cfg, pulumi.Output.secret(MACHINE_SECRETS), pulumi.Output.secret(TALOSCONFIG),
                     kubeconfig=pulumi.Output.secret("apiVersion: v1\nkind: Config\n"))

    run_program(program, {}, mocks=mocks)
    [invoke] = mocks.invokes
    assert invoke["kubernetesVersion"] == "v1.34.3"
    fake.set_rules("kubectl", [rule(["version"], answer(stderr="The connection to the server localhost:8080 was refused\n", rc=1))])
    with pytest.raises(Exception, match="talos.kubernetesVersion"):
        run_program(program, {}, mocks=FactoryMocks())


MIGRATION = "pulumi-python:dynamic/migration:GpuModeMigration"


def test_the_graph_removes_the_device_plugin_between_the_walk_to_1_12_and_the_step_to_1_13(homelab) -> None:
    run, _ = run_node(homelab, upgradePath=["v1.12.9"])
    [before] = [reg for reg in run.by_type(UPGRADE) if reg.name.endswith("-upgrade-before-1.13")]
    after, migration, config = final_upgrade(run), run.one(MIGRATION), run.one(CONFIG)
    assert before.inputs["stopBefore"] == "v1.13.0" and "stopBefore" not in after.inputs
    assert run.depends_on(before, config), "the walk starts once the config is staged"
    assert run.depends_on(migration, before), "the device plugin goes only after the walk to the last 1.12"
    assert run.depends_on(after, migration), "the step to 1.13 waits for the removal"
    assert not run.depends_on(before, migration)
    release = run.one("kubernetes:helm.sh/v3:Release")
    assert release.inputs["chart"] == "gpu-operator" and run.depends_on(release, after), "the GPU Operator comes after the step to 1.13"
    for walk in (before, after):
        assert walk.inputs["upgradePath"] == ["v1.12.9"] and walk.inputs["stage"] is True and is_secret(walk.inputs["originals"])
        assert walk.inputs["timeoutSeconds"] == 1800 and walk.inputs["nodeName"] == "moody-good"
        assert walk.inputs["extensions"] == ["siderolabs/nonfree-kmod-nvidia-production", "siderolabs/nvidia-container-toolkit-production",
                                             "siderolabs/qemu-guest-agent"]
    assert run.depends_on(after, config) and run.by_urn(migration.parent).type == NODE


def test_a_device_plugin_stack_below_1_13_walks_once_and_migrates_nothing(homelab) -> None:
    run, _ = run_node(homelab, version="v1.12.11", upgradeTimeoutSeconds=600)
    assert run.by_type(MIGRATION) == [] and [reg.name for reg in run.by_type(UPGRADE)] == ["moody-good-talos-upgrade"]
    assert final_upgrade(run).inputs["timeoutSeconds"] == 600
    assert run.one("kubernetes:helm.sh/v3:Release").inputs["chart"] == "nvidia-device-plugin"
    runtime_class = run.one("kubernetes:node.k8s.io/v1:RuntimeClass")
    assert runtime_class.retain_on_delete is True, "a late delete by name would remove the GPU Operator's RuntimeClass"
    assert runtime_class.inputs["metadata"]["labels"] == {"app.kubernetes.io/part-of": "proxmox-talos-gpu"}



def test_the_walk_waits_for_a_node_still_rebooting_from_its_config(homelab, fake_talosctl: FakeTalosctl) -> None:
    """A config change Talos applies with a reboot (auto mode) leaves the
    node rebooting when the walk starts: it waits, it does not fail."""
    provider, props = upgrade_registration(homelab)
    fake_talosctl.set(down_calls=3)
    result = engine(provider, "create", {**props, "pollSeconds": 0.05}, fake_talosctl.env())
    assert result["ok"]["outs"]["upgraded"] is False, result
    assert result["stderr"].count("before the walk: waiting for 192.168.8.123's Talos API (") == 3, "one line per refused poll"
