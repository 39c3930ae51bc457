"""The upgrade path and one upgrade step, case by case as data: the
running version (and schematic) in, the whole plan or refusal out."""

from __future__ import annotations

import pytest

from components.talos.upgrade import NodeFacts, UpgradePlan, UpgradeRefused, plan_upgrade
from components.talos.versions import (
    LATEST_PATCH,
    PathRefused,
    crosses_to_operator,
    next_boot_version,
    path_problems,
    plan_walk,
    upgrade_steps,
)

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"
OLD = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
IMAGE = "factory.talos.dev/metal-installer/image:v"
ARGS = ("upgrade", "--nodes", "192.168.8.123", "--endpoints", "192.168.8.99", "--image", IMAGE, "--wait", "--timeout", "900s")
DOWNGRADE = ("192.168.8.123: the node runs Talos {running}, newer than talos.version {wanted}; this program does not downgrade. "
             "Set proxmox-talos-gpu:talos.version to {running} or newer")
TABLE = "its table covers v1.8 to v1.13"


def step(running: str, schematic: str | None, wanted: str) -> UpgradePlan:
    return plan_upgrade(NodeFacts(running, schematic), image=IMAGE, version=wanted, schematic_id=SID, node="192.168.8.123",
                        endpoint="192.168.8.99", timeout_seconds=900)


# (case, running, schematic, wanted) -> the whole plan
STEPS = [
    ("already there", "v1.13.9", SID, "v1.13.9", UpgradePlan(
        False, f"nothing to do because 192.168.8.123 already runs Talos v1.13.9 from schematic {SID}")),
    ("the next minor", "v1.12.4", OLD, "v1.13.9", UpgradePlan(
        True, f"upgrade to {IMAGE} because 192.168.8.123 runs Talos v1.12.4, wanted v1.13.9", ARGS)),
    ("a patch release", "v1.13.2", SID, "v1.13.9", UpgradePlan(
        True, f"upgrade to {IMAGE} because 192.168.8.123 runs Talos v1.13.2, wanted v1.13.9", ARGS)),
    ("another schematic, same version", "v1.13.9", OLD, "v1.13.9", UpgradePlan(
        True, f"upgrade to {IMAGE} because 192.168.8.123 runs schematic {OLD}, wanted {SID}", ARGS)),
    ("not from the Image Factory", "v1.13.9", None, "v1.13.9", UpgradePlan(
        True, f"upgrade to {IMAGE} because 192.168.8.123 runs schematic (none: not an Image Factory image), wanted {SID}", ARGS)),
    ("older than 1.8: --preserve keeps EPHEMERAL", "v1.7.6", OLD, "v1.8.0", UpgradePlan(
        True, f"upgrade to {IMAGE} because 192.168.8.123 runs Talos v1.7.6, wanted v1.8.0", (*ARGS, "--preserve"))),
    ("1.8.0 itself: --preserve is implied", "v1.8.0", OLD, "v1.9.6", UpgradePlan(
        True, f"upgrade to {IMAGE} because 192.168.8.123 runs Talos v1.8.0, wanted v1.9.6", ARGS)),
]


@pytest.mark.parametrize(("running", "schematic", "wanted", "plan"), [case[1:] for case in STEPS], ids=[case[0] for case in STEPS])
def test_one_step_plans_talosctl_upgrade_or_nothing_with_its_reason(running, schematic, wanted, plan):
    assert step(running, schematic, wanted) == plan


def test_the_default_timeout_is_half_an_hour():
    plan = plan_upgrade(NodeFacts("v1.12.4", OLD), image=IMAGE, version="v1.13.9", schematic_id=SID, node="n", endpoint="e")
    assert plan.args[-2:] == ("--timeout", "1800s")


# (case, running, wanted) -> the whole refusal
STEP_REFUSALS = [
    ("two minors at once", "v1.11.6", "v1.13.9",
     "192.168.8.123 runs Talos v1.11.6; going to v1.13.9 in one step skips a minor release, and Talos supports upgrades only between "
     "adjacent minors. The path is v1.11.6 -> v1.12.11 -> v1.13.9 (set proxmox-talos-gpu:talos.upgradePath to choose the intermediate releases)"),
    ("an old patch two minors back: its own minor's latest patch first", "v1.11.2", "v1.13.9",
     "192.168.8.123 runs Talos v1.11.2; going to v1.13.9 in one step skips a minor release, and Talos supports upgrades only between "
     "adjacent minors. The path is v1.11.2 -> v1.11.6 -> v1.12.11 -> v1.13.9 (set proxmox-talos-gpu:talos.upgradePath to choose the intermediate releases)"),
    ("a downgrade by a patch", "v1.13.10", "v1.13.9", DOWNGRADE.format(running="v1.13.10", wanted="v1.13.9")),
    ("a downgrade by a minor", "v1.13.0", "v1.12.11", DOWNGRADE.format(running="v1.13.0", wanted="v1.12.11")),
    ("another major", "v1.13.9", "v2.0.0",
     "192.168.8.123: the node runs Talos v1.13.9; v2.0.0 is another major release, which Talos has no tested upgrade to"),
    ("a minor the table does not know", "v1.6.1", "v1.8.4",
     f"192.168.8.123: no release of Talos v1.6 is known to this program ({TABLE}); add the latest v1.6.z to proxmox-talos-gpu:talos.upgradePath"),
]


@pytest.mark.parametrize(("running", "wanted", "message"), [case[1:] for case in STEP_REFUSALS], ids=[case[0] for case in STEP_REFUSALS])
def test_a_step_that_skips_a_minor_or_goes_back_is_refused_naming_the_way(running, wanted, message):
    with pytest.raises(UpgradeRefused) as error:
        step(running, OLD, wanted)
    assert str(error.value) == message


# -- the way there ---------------------------------------------------------------------

# (case, running, target, talos.upgradePath) -> the steps, in order
PATHS = [
    ("there already", "v1.13.9", "v1.13.9", (), []),
    ("a patch", "v1.13.2", "v1.13.9", (), ["v1.13.9"]),
    ("the next minor", "v1.12.11", "v1.13.9", (), ["v1.13.9"]),
    ("through the latest 1.12", "v1.11.6", "v1.13.9", (), ["v1.12.11", "v1.13.9"]),
    ("the latest patch of its own minor first", "v1.10.3", "v1.13.9", (), ["v1.10.9", "v1.11.6", "v1.12.11", "v1.13.9"]),
    ("from the first minor of the table", "v1.8.0", "v1.10.2", (), ["v1.8.4", "v1.9.6", "v1.10.2"]),
    ("upgradePath chooses a minor's release", "v1.10.9", "v1.13.9", ("v1.12.9",), ["v1.11.6", "v1.12.9", "v1.13.9"]),
    ("upgradePath fills a minor the table lacks", "v1.7.2", "v1.9.6", ("v1.7.6",), ["v1.7.6", "v1.8.4", "v1.9.6"]),
    ("an upgradePath release older than the node is skipped", "v1.12.11", "v1.13.9", ("v1.12.9",), ["v1.13.9"]),
]


@pytest.mark.parametrize(("running", "target", "override", "steps"), [case[1:] for case in PATHS], ids=[case[0] for case in PATHS])
def test_the_path_goes_one_minor_at_a_time_through_latest_patches(running, target, override, steps):
    assert upgrade_steps(running, target, override) == steps
    assert next_boot_version(running, target, override) == (steps[0] if steps else target)


PATH_REFUSALS = [
    ("v1.13.10", "v1.13.9", "the node runs Talos v1.13.10, newer than talos.version v1.13.9; this program does not downgrade. "
                            "Set proxmox-talos-gpu:talos.version to v1.13.10 or newer"),
    ("v1.9.6", "v2.1.0", "the node runs Talos v1.9.6; v2.1.0 is another major release, which Talos has no tested upgrade to"),
    ("v1.6.7", "v1.8.4", f"no release of Talos v1.6 is known to this program ({TABLE}); add the latest v1.6.z to proxmox-talos-gpu:talos.upgradePath"),
    ("v1.13.9", "v1.14.0", "talos.version v1.14.0: Talos v1.14 is not in this program's version table (LATEST_PATCH in "
                           "components/talos/versions.py covers v1.8 to v1.13); set proxmox-talos-gpu:talos.version to v1.13.x or "
                           "older. Supporting a new minor means adding its row to that table once the program writes what that "
                           "release needs (Talos 1.14 moves machine.install, kernel, sysctls, files and nodeLabels into documents "
                           "such as KernelModuleConfig)"),
    ("v2.0.0", "v1.13.9", "the node runs Talos v2.0.0, a major release this program does not support (it manages Talos v1.x, its "
                          "table covers v1.8 to v1.13); it cannot manage this node"),
]


@pytest.mark.parametrize(("running", "target", "message"), PATH_REFUSALS)
def test_no_path_down_across_majors_or_through_an_unknown_minor(running, target, message):
    with pytest.raises(PathRefused) as error:
        upgrade_steps(running, target)
    assert str(error.value) == message


def test_the_table_holds_one_latest_patch_per_minor_from_1_8():
    assert {minor: version for minor, version in LATEST_PATCH.items() if minor < (1, 10)} == {(1, 8): "v1.8.4", (1, 9): "v1.9.6"}
    assert [minor for _, minor in LATEST_PATCH] == list(range(8, 14))


# (case, running, schematic, target, stop before) -> the steps a walk still has to do
WALKS = [
    ("the whole way", "v1.11.6", OLD, "v1.13.9", None, ["v1.12.11", "v1.13.9"]),
    ("stopping before 1.13", "v1.11.6", OLD, "v1.13.9", "v1.13.0", ["v1.12.11"]),
    ("stopping at a step itself", "v1.11.6", OLD, "v1.13.9", "v1.12.11", []),
    ("only the schematic differs: a same-version step", "v1.13.9", OLD, "v1.13.9", None, ["v1.13.9"]),
    ("only the schematic differs, below the stop", "v1.12.11", OLD, "v1.12.11", "v1.13.0", ["v1.12.11"]),
    ("there already", "v1.13.9", SID, "v1.13.9", None, []),
]


@pytest.mark.parametrize(("running", "schematic", "target", "stop", "steps"), [case[1:] for case in WALKS], ids=[case[0] for case in WALKS])
def test_a_walk_plans_what_is_left(running, schematic, target, stop, steps):
    assert plan_walk(running, schematic, target, SID, stop_before=stop) == steps


def test_a_walk_follows_upgrade_path():
    assert plan_walk("v1.10.9", OLD, "v1.13.9", SID, ["v1.12.9"]) == ["v1.11.6", "v1.12.9", "v1.13.9"]


@pytest.mark.parametrize(("steps", "extensions", "problems"), [
    (["v1.11.6", "v1.12.11", "v1.13.9"], ["siderolabs/nvidia-gdrdrv-device", "siderolabs/nonfree-kmod-nvidia-lts", "siderolabs/qemu-guest-agent"],
     ["siderolabs/nvidia-gdrdrv-device is published for Talos v1.12 and newer, not for the step to v1.11.6"]),
    (["v1.7.6", "v1.8.4"], ["siderolabs/nvidia-open-gpu-kernel-modules-production", "siderolabs/nvidia-fabricmanager-lts"],
     ["siderolabs/nvidia-open-gpu-kernel-modules-production is published for Talos v1.8 and newer, not for the step to v1.7.6",
      "siderolabs/nvidia-fabricmanager-lts is published for Talos v1.8 and newer, not for the step to v1.7.6"]),
    (["v1.12.11"], ["siderolabs/nvidia-gdrdrv-device", "siderolabs/nvidia-container-toolkit-production"], []),
    (["v1.9.6"], ["someone/custom-extension", "siderolabs/nvidia-gdrdrv-device"],
     ["siderolabs/nvidia-gdrdrv-device is published for Talos v1.12 and newer, not for the step to v1.9.6"]),
], ids=["a 1.12 extension on the way through 1.11", "1.8 extensions before 1.8", "all published", "an unknown name is not checked offline"])
def test_an_extension_a_step_cannot_have_is_named(steps, extensions, problems):
    assert path_problems(steps, extensions) == problems


@pytest.mark.parametrize(("running", "target", "crosses"), [
    ("v1.12.11", "v1.13.0", True), ("v1.11.6", "v1.13.9", True), ("v1.13.0", "v1.13.9", False), ("v1.11.6", "v1.12.11", False),
    ("v1.12.11", "v1.12.11", False),
])
def test_which_walks_enter_the_operator_releases(running, target, crosses):
    assert crosses_to_operator(running, target) is crosses
