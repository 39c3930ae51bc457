"""The upgrade planners (pure): the path from the running version to the
target, one step's talosctl arguments, and what they refuse."""

from __future__ import annotations

import pytest

from components.talos.upgrade import NodeFacts, UpgradeRefused, plan_upgrade
from components.talos.versions import LATEST_PATCH, PathRefused, crosses_to_operator, path_problems, plan_walk, upgrade_steps

SID = "990731763242a6b3cf735e49d0f550ce4068b4d0e7f4dfbb49a31799b698877e"
OLD = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
IMAGE = f"factory.talos.dev/metal-installer/{SID}:v1.13.9"


def plan(version: str, schematic: str | None, wanted: str = "v1.13.9", image: str = IMAGE):
    return plan_upgrade(NodeFacts(version, schematic), image=image, version=wanted, schematic_id=SID,
                        node="192.168.8.123", endpoint="192.168.8.99")


def test_adjacent_minor_upgrade_runs_talosctl_upgrade_and_waits() -> None:
    result = plan("v1.12.4", OLD)
    assert result.upgrade
    assert result.args == ("upgrade", "--nodes", "192.168.8.123", "--endpoints", "192.168.8.99", "--image", IMAGE,
                           "--wait", "--timeout", "1800s")
    assert "runs Talos v1.12.4, wanted v1.13.9" in result.reason


def test_same_version_and_schematic_is_a_no_op_with_reason() -> None:
    result = plan("v1.13.9", SID)
    assert not result.upgrade and result.args == ()
    assert result.reason.startswith("nothing to do because 192.168.8.123 already runs Talos v1.13.9")


def test_new_extensions_on_the_same_version_upgrade_in_place() -> None:
    result = plan("v1.13.9", OLD)
    assert result.upgrade and f"runs schematic {OLD}, wanted {SID}" in result.reason


def test_patch_upgrade_within_a_minor_is_allowed() -> None:
    assert plan("v1.13.2", SID).upgrade


def test_a_single_step_that_skips_a_minor_is_refused_with_the_path() -> None:
    with pytest.raises(UpgradeRefused) as error:
        plan("v1.11.6", OLD)
    assert "v1.11.6 -> v1.12.11 -> v1.13.9" in str(error.value)
    assert "only between adjacent minors" in str(error.value)


def test_downgrade_is_refused() -> None:
    with pytest.raises(UpgradeRefused, match="newer than talos.version v1.13.9; this program does not downgrade"):
        plan("v1.13.10", SID)


# -- the path ---------------------------------------------------------------


def test_the_guides_node_walks_through_the_latest_1_12() -> None:
    assert upgrade_steps("v1.11.6", "v1.13.9") == ["v1.12.11", "v1.13.9"]


def test_an_old_patch_first_goes_to_the_latest_patch_of_its_own_minor() -> None:
    """Talos docs: 1.0 -> latest 1.0 -> latest 1.1 -> target."""
    assert upgrade_steps("v1.11.2", "v1.13.9") == ["v1.11.6", "v1.12.11", "v1.13.9"]
    assert upgrade_steps("v1.10.3", "v1.13.9") == ["v1.10.9", "v1.11.6", "v1.12.11", "v1.13.9"]


def test_upgrade_path_overrides_the_table_for_its_minors() -> None:
    assert upgrade_steps("v1.11.6", "v1.13.9", ["v1.12.9"]) == ["v1.12.9", "v1.13.9"]
    assert upgrade_steps("v1.10.9", "v1.13.9", ["v1.12.9"]) == ["v1.11.6", "v1.12.9", "v1.13.9"]


def test_same_minor_and_same_version() -> None:
    assert upgrade_steps("v1.13.2", "v1.13.9") == ["v1.13.9"]
    assert upgrade_steps("v1.13.9", "v1.13.9") == []


@pytest.mark.parametrize(("running", "target", "message"), [
    ("v1.13.10", "v1.13.9", "does not downgrade"),
    ("v1.12.11", "v1.11.6", "does not downgrade"),
    ("v1.13.9", "v2.0.0", "another major release"),
    ("v1.6.7", "v1.8.4", "no release of Talos v1.6 is known"),
])
def test_downgrades_major_jumps_and_unknown_minors_are_refused(running: str, target: str, message: str) -> None:
    with pytest.raises(PathRefused, match=message):
        upgrade_steps(running, target)


def test_a_walk_that_stops_before_1_13_and_one_that_only_changes_the_schematic() -> None:
    assert plan_walk("v1.11.6", OLD, "v1.13.9", SID, stop_before="v1.13.0") == ["v1.12.11"]
    assert plan_walk("v1.12.11", SID, "v1.13.9", SID, stop_before="v1.13.0") == []
    assert plan_walk("v1.13.9", OLD, "v1.13.9", SID) == ["v1.13.9"], "new extensions: a same-version upgrade"
    assert plan_walk("v1.13.9", SID, "v1.13.9", SID) == []


def test_the_table_has_the_latest_patch_of_every_minor_a_walk_crosses() -> None:
    minors = sorted(LATEST_PATCH)
    assert [minor for _, minor in minors] == list(range(minors[0][1], minors[-1][1] + 1)), "no gap in the table"
    for (major, minor), version in LATEST_PATCH.items():
        assert version.startswith(f"v{major}.{minor}.")


def test_extensions_published_only_later_are_named() -> None:
    assert path_problems(["v1.12.11", "v1.13.9"], ["siderolabs/nonfree-kmod-nvidia-production", "siderolabs/qemu-guest-agent"]) == []
    [problem] = path_problems(["v1.11.6", "v1.12.11"], ["siderolabs/nvidia-gdrdrv-device"])
    assert "v1.12 and newer, not for the step to v1.11.6" in problem
    assert path_problems(["v1.9.6"], ["someone/custom-extension"]) == [], "unknown names are not checked offline"


def test_crossing_into_1_13() -> None:
    assert crosses_to_operator("v1.11.6", "v1.13.9") and crosses_to_operator("v1.12.11", "v1.13.0")
    assert not crosses_to_operator("v1.13.0", "v1.13.9") and not crosses_to_operator("v1.11.6", "v1.12.11")


def test_preserve_is_passed_only_to_nodes_older_than_1_8() -> None:
    old = plan("v1.7.6", OLD, wanted="v1.8.4", image=f"factory.talos.dev/installer/{SID}:v1.8.4")
    assert "--preserve" in old.args
    assert "--preserve" not in plan("v1.12.4", OLD).args


@pytest.mark.parametrize("running", ["v1.7.6", "v1.12.0", "v1.13.0", "v1.13.9"])
def test_no_plan_ever_carries_a_wipe_flag(running: str) -> None:
    wanted = "v1.8.4" if running == "v1.7.6" else "v1.13.9"
    result = plan(running, None, wanted=wanted, image=f"factory.talos.dev/installer/{SID}:{wanted}")
    assert result.upgrade
    assert not any("wipe" in arg or arg == "--preserve=false" or arg == "--force" for arg in result.args)


def test_no_op_plan_says_false_not_just_falsy() -> None:
    assert plan("v1.13.9", SID).upgrade is False


def test_refusal_tells_the_whole_way_to_proceed() -> None:
    with pytest.raises(UpgradeRefused) as error:
        plan("v1.11.6", OLD)
    # The whole way: each release of the path (the latest patch of the
    # intermediate minor), and the key that chooses other releases.
    assert str(error.value) == (
        "192.168.8.123 runs Talos v1.11.6; going to v1.13.9 in one step skips a minor release, and Talos supports upgrades only "
        "between adjacent minors. The path is v1.11.6 -> v1.12.11 -> v1.13.9 (set proxmox-talos-gpu:talos.upgradePath to choose "
        "the intermediate releases)")


def test_a_node_not_installed_from_the_image_factory_is_named_so() -> None:
    assert plan("v1.13.9", None).reason == (
        f"upgrade to {IMAGE} because 192.168.8.123 runs schematic (none: not an Image Factory image), wanted {SID}")


@pytest.mark.parametrize(("running", "wanted", "preserve"), [
    ("v1.7.6", "v1.8.0", True),
    ("v1.8.0", "v1.8.4", False),  # from 1.8 --preserve is implied and deprecated
    ("v1.8.0", "v1.9.3", False),
])
def test_preserve_stops_at_talos_1_8_exactly(running: str, wanted: str, preserve: bool) -> None:
    result = plan(running, OLD, wanted=wanted, image=f"factory.talos.dev/installer/{SID}:{wanted}")
    assert result.upgrade and ("--preserve" in result.args) is preserve
