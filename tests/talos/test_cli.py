"""`python -m components.talos config` and `upgrade-plan`: the same planners
as the component, on a config file or a running version, run as a user
would (a subprocess in the project root)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from components.talos.config_documents import load_documents
from tests.conftest import ROOT
from tests.talos.running_configs import as_text, multi_document, with_own_cri_file, worker_documents
from tests.talos.test_adopt import is_owned, leaves

LABELS = {"drmoo.io/role", "drmoo.io/zone", "drmoo.io/storage", "drmoo.io/gpu"}


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "components.talos", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, timeout=120, check=False)


def test_config_writes_the_adopted_config_0600_for_the_target_version(tmp_path: Path) -> None:
    running, out = tmp_path / "running.yaml", tmp_path / "out.yaml"
    running.write_text(as_text(multi_document("v1.13.9")))
    out.write_text("old")
    out.chmod(0o644)
    done = cli("config", "--stack", "homelab", "--running", str(running), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600, "the config holds the node's secrets"
    before, after = load_documents(running.read_text()), load_documents(out.read_text())
    assert after[1:] == before[1:], "the other documents pass through"
    old, new = leaves(before[0]), leaves(after[0])
    assert {path: value for path, value in old.items() if not is_owned(path, LABELS)} == \
           {path: value for path, value in new.items() if not is_owned(path, LABELS)}
    assert after[0]["machine"]["install"]["image"].startswith("factory.talos.dev/metal-installer/")
    assert "machine.nodeLabels[drmoo.io/gpu]: add 'nvidia-t4'" in done.stderr


def test_config_targets_the_stacks_version_whatever_the_file_runs(tmp_path: Path) -> None:
    running = tmp_path / "running.yaml"
    running.write_text(as_text(with_own_cri_file("v1.11.6")))
    done = cli("config", "--running", str(running), "--out", str(tmp_path / "out.yaml"))
    assert done.returncode == 0, done.stderr
    after = load_documents((tmp_path / "out.yaml").read_text())
    assert after[0]["machine"]["install"]["image"].endswith(":v1.13.9")
    assert "net.core.bpf_jit_harden" not in after[0]["machine"]["sysctls"], "the 1.13 guide sets no sysctl"
    assert "--mode=staged" in done.stderr and "v1.11.6" in done.stderr


def test_config_diff_prints_changed_lines_only_and_writes_nothing(tmp_path: Path) -> None:
    text = as_text(worker_documents("v1.11.6"))
    done = cli("config", "--running", "-", "--diff", stdin=text)
    assert done.returncode == 0, done.stderr
    changed = [line for line in done.stdout.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert "-    image: ghcr.io/siderolabs/installer:v1.11.6" in changed
    assert "+    - name: nvidia" in changed
    assert "abcdef.0123456789abcdef" not in done.stdout, "no secret of the node is printed"
    assert list(tmp_path.iterdir()) == []


def test_config_refusals_are_one_clear_line(tmp_path: Path) -> None:
    assert "talos: give --out OUT" in cli("config", "--stack", "homelab", "--running", "x").stderr
    missing = cli("config", "--stack", "homelab", "--running", str(tmp_path / "nope.yaml"), "--diff")
    assert missing.returncode == 2 and missing.stderr.startswith("talos: cannot read") and "Traceback" not in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: x\n")
    refused = cli("config", "--stack", "homelab", "--running", str(bad), "--diff")
    assert refused.returncode == 2 and "no v1alpha1 document" in refused.stderr and "Traceback" not in refused.stderr
    good = tmp_path / "good.yaml"
    good.write_text(as_text(worker_documents("v1.13.9")))
    unwritable = cli("config", "--stack", "homelab", "--running", str(good), "--out", str(tmp_path / "no" / "such" / "dir.yaml"))
    assert unwritable.returncode == 2 and "talos: cannot write" in unwritable.stderr and "Traceback" not in unwritable.stderr
    unknown = cli("config", "--stack", "nosuch", "--running", str(bad), "--diff")
    assert unknown.returncode == 2 and "Pulumi.nosuch.yaml" in unknown.stderr and "no such file" in unknown.stderr
    assert "--running" in cli("config", "--help").stdout


# -- upgrade-plan -----------------------------------------------------------


def plan_json(*args: str) -> list[dict]:
    import json

    done = cli("upgrade-plan", "--stack", "homelab", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_upgrade_plan_from_the_guides_node_puts_the_removal_between_1_12_and_1_13() -> None:
    steps = plan_json("--running-version", "v1.11.6", "--device-plugin-installed")
    assert [(step["kind"], step["version"]) for step in steps] == [
        ("upgrade", "v1.12.11"), ("wait", "v1.12.11"), ("remove", None), ("remove", None),
        ("upgrade", "v1.13.9"), ("wait", "v1.13.9"), ("install", None)]
    assert all(set(step) == {"kind", "version", "image", "object", "path", "drain"} for step in steps)
    sid = steps[0]["image"].split("/")[2].split(":")[0]
    assert [step["image"] for step in steps if step["kind"] == "upgrade"] == [
        f"factory.talos.dev/metal-installer/{sid}:v1.12.11", f"factory.talos.dev/metal-installer/{sid}:v1.13.9"], "one schematic, two versions"
    assert steps[2]["object"] == "Helm release gpu-operator/nvidia-device-plugin (chart nvidia-device-plugin)"
    assert steps[3]["object"] == "RuntimeClass nvidia"
    assert steps[6]["object"] == "Helm release gpu-operator/gpu-operator (chart gpu-operator v26.7.0)"
    text = cli("upgrade-plan", "--running-version", "v1.11.6", "--device-plugin-installed").stdout
    assert "2 reboot(s)" in text and "From step 3, pods get no GPU" in text


def test_upgrade_plan_from_1_12_removes_first_then_takes_one_step() -> None:
    steps = plan_json("--running-version", "v1.12.11", "--device-plugin-installed")
    assert [step["kind"] for step in steps] == ["remove", "remove", "upgrade", "wait", "install"]
    assert steps[2]["version"] == "v1.13.9"
    assert [step["kind"] for step in plan_json("--running-version", "v1.12.3")] == ["upgrade", "wait", "upgrade", "wait", "install"], \
        "an older 1.12 patch first goes to the latest 1.12"


def test_upgrade_plan_for_a_node_already_on_the_target_has_no_steps() -> None:
    assert plan_json("--running-version", "v1.13.9") == []
    assert "nothing to do, the node already runs the target" in cli("upgrade-plan", "--running-version", "v1.13.9").stdout


def test_upgrade_plan_refusals_are_one_clear_line() -> None:
    for version, message in (("1.11.6", "is not a Talos version like v1.11.6"), ("v1.14.0", "does not downgrade"),
                             ("v1.7.2", "no release of Talos v1.7 is known")):
        done = cli("upgrade-plan", "--running-version", version)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "--device-plugin-installed" in cli("upgrade-plan", "--help").stdout


def test_upgrade_plan_with_the_device_plugin_from_flux_deletes_its_helmrelease_before_1_13() -> None:
    steps = plan_json("--running-version", "v1.11.6", "--device-plugin-delivery", "flux")
    assert [(step["kind"], step["version"]) for step in steps] == [
        ("upgrade", "v1.12.11"), ("wait", "v1.12.11"), ("remove", None), ("remove", None), ("remove", None),
        ("upgrade", "v1.13.9"), ("wait", "v1.13.9"), ("install", None)], "--device-plugin-delivery implies --device-plugin-installed"
    assert [step["object"] for step in steps[2:5]] == [
        "Flux HelmRelease gpu-operator/nvidia-device-plugin (helm-controller uninstalls the chart; waited for, at most 1200 s)",
        "Flux HelmRepository gpu-operator/nvdp (unless something else reads it)", "RuntimeClass nvidia"]
    text = cli("upgrade-plan", "--running-version", "v1.12.11", "--device-plugin-delivery", "git").stdout
    assert "1. stop      HelmRelease gpu-operator/nvidia-device-plugin and RuntimeClass nvidia come from Git: `pulumi up` stops here" in text


def test_upgrade_plan_from_git_with_suspend_and_the_operator_from_flux_or_git(homelab) -> None:
    from components.config import parse_stack_config
    from components.talos.walk_plan import upgrade_plan

    homelab["gpuStack"].update(delivery="flux", flux={**homelab["gpuStack"]["flux"], "objects": "git", "gitDevicePlugin": "suspend"})
    steps = upgrade_plan(parse_stack_config(homelab), "v1.12.11", device_plugin_installed=True, stack_name="homelab")
    assert [step.kind for step in steps] == ["suspend", "remove", "remove", "upgrade", "wait", "install"], "the stack's delivery: git"
    assert "flux-system/nvidia-device-plugin" in steps[0].object and "--stack homelab --flux DIR" in steps[0].object
    assert steps[-1].object.startswith("Flux HelmRelease gpu-operator/gpu-operator from Git (chart gpu-operator v26.7.0): commit the tree")
    homelab["gpuStack"]["flux"]["objects"] = "pulumi"
    steps = upgrade_plan(parse_stack_config(homelab), "v1.12.11", device_plugin_installed=True)
    assert [step.kind for step in steps] == ["remove", "remove", "remove", "upgrade", "wait", "install"]
    assert steps[-1].object == ("Flux HelmRelease gpu-operator/gpu-operator with HelmRepository gpu-operator/nvidia (chart gpu-operator v26.7.0; "
                                "helm-controller installs it)")


def test_upgrade_plan_help_says_how_the_device_plugin_delivery_defaults() -> None:
    text = " ".join(cli("upgrade-plan", "--help").stdout.split())
    assert "--device-plugin-delivery {helm,flux,git}" in text
    assert "(default: as the stack delivers, gpuStack.delivery, git with gpuStack.flux.objects: git)" in text
    done = cli("upgrade-plan", "--running-version", "v1.12.11", "--device-plugin-delivery", "fluxcd")
    assert done.returncode == 2 and "invalid choice: 'fluxcd' (choose from 'helm', 'flux', 'git')" in done.stderr and "Traceback" not in done.stderr
