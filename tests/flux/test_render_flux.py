"""`python -m components.render --flux DIR`: the guide's layout, corrected;
every Flux object validates against the vendored CRDs; the app/ folder builds
with the real `kubectl kustomize` into the objects the program registers in
flux delivery; a non-owner stack adds only its ConfigMap entry; files edited
by hand are never replaced without --force."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.config import OWNER_ONLY_KEYS, parse_stack_config
from components.flux import objects
from tests.conftest import ROOT, run_main, stack_file_config
from tests.flux.crds import assert_valid
from tests.test_cluster_plan import _validate_plugin_config
from tools import render
from tools.mockengine import reveal

DATA = Path(__file__).resolve().parent / "data"
OWNER_FILES = {"ks.yaml", "app/kustomization.yaml", "app/namespace.yaml", "app/helm-repository.yaml", "app/helm-release.yaml",
               "app/time-slicing-config.yaml", "jellyfin-gpu-values.yaml"}


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not on PATH (it is on the development and CI machines)")
    return path


def build(kubectl: str, folder: Path) -> list[dict]:
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [document for document in yaml.safe_load_all(done.stdout) if document]


def by_kind(documents: list[dict]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for document in documents:
        assert document["kind"] not in found, f"two {document['kind']} objects"
        found[document["kind"]] = document
    return found


def files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def docs(folder: Path, relative: str) -> list[dict]:
    return [document for document in yaml.safe_load_all((folder / relative).read_text()) if document]


def stack_config(**changes) -> dict:
    raw = copy.deepcopy(stack_file_config())
    for section, values in changes.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


def non_owner_config() -> dict:
    raw = stack_config(vm={"vmId": 1106, "name": "moody-bad"}, gpuStack={"ownsClusterObjects": False, "timeSlicing": {"replicas": 2}})
    raw["gpus"][0]["address"] = "0000:af:00.0"
    for key in OWNER_ONLY_KEYS:  # refused in a non-owner stack
        raw["gpuStack"].pop(key, None)
    return raw


def run_cli(monkeypatch, tmp_path: Path, raw: dict, *args: str, stack: str = "node") -> int:
    """`render` in-process, reading Pulumi.<stack>.yaml from a temporary
    project folder (the checkout is never written to)."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {f"proxmox-talos-gpu:{key}": value for key, value in raw.items()}}))
    return render.main(["--stack", stack, "--project-dir", str(project), *args])


def test_render_flux_cli_writes_the_guides_layout_and_nothing_else(tmp_path):
    out = tmp_path / "nvidia-gpu-operator"
    done = subprocess.run([sys.executable, "-m", "components.render", "--stack", "homelab", "--flux", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert files(out) == OWNER_FILES
    assert sorted(done.stdout.split()) == sorted(str(out / name) for name in OWNER_FILES)
    flux_objects = {relative: document for relative in OWNER_FILES - {"jellyfin-gpu-values.yaml"} for document in docs(out, relative)
                    if document["apiVersion"].split("/")[0].endswith(".toolkit.fluxcd.io")}
    assert sorted(flux_objects) == ["app/helm-release.yaml", "app/helm-repository.yaml", "ks.yaml"]
    for relative, document in flux_objects.items():
        assert_valid(document, relative)
    assert docs(out, "ks.yaml")[0]["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "profmoo-home"}


@pytest.fixture(scope="module")
def helm_mode_run():
    return run_main(stack_file_config())


def test_rendered_app_builds_into_the_helm_deliverys_values(tmp_path, kubectl, helm_mode_run):
    cfg = parse_stack_config(stack_file_config())
    result = render.render_flux(cfg, "homelab", tmp_path, dump=render._yaml)
    assert result.exit_code == 0 and set(result.written) == OWNER_FILES
    built = by_kind(build(kubectl, tmp_path / "app"))
    assert set(built) == {"Namespace", "ConfigMap", "HelmRepository", "HelmRelease"}
    for kind in ("HelmRepository", "HelmRelease"):
        assert_valid(built[kind], f"built {kind}")
    assert built["HelmRelease"] == objects.helm_release(cfg)
    release = helm_mode_run.one("kubernetes:helm.sh/v3:Release")
    assert built["HelmRelease"]["spec"]["values"] == reveal(release.inputs["values"]), f"{release.urn}: flux and helm delivery values differ"
    assert built["HelmRepository"]["spec"]["url"] == release.inputs["repositoryOpts"]["repo"]
    assert built["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    (entry,) = built["ConfigMap"]["data"].values()
    _validate_plugin_config(yaml.safe_load(entry))
    assert built["ConfigMap"]["data"] == helm_mode_run.one("kubernetes:core/v1:ConfigMap").inputs["data"]


def test_device_plugin_tree_has_the_runtime_class(tmp_path, kubectl):
    raw = stack_config(talos={"version": "v1.11.6"}, gpuStack={"mode": "devicePlugin"})
    result = render.render_flux(parse_stack_config(raw), "node", tmp_path, dump=render._yaml)
    assert "app/runtime-class.yaml" in result.written
    built = by_kind(build(kubectl, tmp_path / "app"))
    assert built["RuntimeClass"] == {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"}
    assert built["HelmRelease"]["spec"]["chart"]["spec"]["chart"] == "nvidia-device-plugin"
    assert_valid(built["HelmRelease"]) and assert_valid(built["HelmRepository"])


def test_non_owner_writes_only_its_entry_and_the_owner_patches_it_in(tmp_path, kubectl, monkeypatch, capsys):
    out = tmp_path / "nvidia-gpu-operator"
    assert run_cli(monkeypatch, tmp_path, non_owner_config(), "--flux", str(out), stack="moody-bad") == 0
    assert files(out) == {"app/time-slicing-config.moody-bad.yaml"}
    assert "does not list app/time-slicing-config.moody-bad.yaml yet" in capsys.readouterr().out
    (patch,) = docs(out, "app/time-slicing-config.moody-bad.yaml")
    assert patch["metadata"] == {"name": "time-slicing-config", "namespace": "gpu-operator"} and list(patch["data"]) == ["moody-bad"]

    assert run_cli(monkeypatch, tmp_path, stack_file_config(), "--flux", str(out), stack="homelab") == 0
    assert docs(out, "app/kustomization.yaml")[0]["patches"] == [{"path": "time-slicing-config.moody-bad.yaml"}]
    config_map = by_kind(build(kubectl, out / "app"))["ConfigMap"]
    assert sorted(config_map["data"]) == ["moody-bad", "moody-good"], "both nodes' entries in the one ConfigMap"
    replicas = {key: yaml.safe_load(text)["sharing"]["timeSlicing"]["resources"][0]["replicas"] for key, text in config_map["data"].items()}
    assert replicas == {"moody-bad": 2, "moody-good": 4}

    capsys.readouterr()
    assert run_cli(monkeypatch, tmp_path, non_owner_config(), "--flux", str(out), stack="moody-bad") == 0
    assert "note:" not in capsys.readouterr().out, "the owner's kustomization lists the entry now"


def test_a_file_edited_by_hand_is_refused_unless_forced(tmp_path, monkeypatch, capsys):
    out = tmp_path / "tree"
    assert run_cli(monkeypatch, tmp_path, stack_file_config(), "--flux", str(out)) == 0
    release = out / "app" / "helm-release.yaml"
    edited = release.read_text().replace("retries: 3", "retries: 9")
    release.write_text(edited)
    namespace = out / "app" / "namespace.yaml"
    before = namespace.stat().st_mtime_ns
    (out / "app" / "oci-repository.yaml").write_text("apiVersion: source.toolkit.fluxcd.io/v1beta2\nkind: OCIRepository\n")
    capsys.readouterr()

    assert run_cli(monkeypatch, tmp_path, stack_file_config(), "--flux", str(out)) == 1
    error = capsys.readouterr().err
    assert "nothing written: 1 file(s)" in error and "  app/helm-release.yaml" in error and "--force" in error
    assert "app/oci-repository.yaml is not listed in app/kustomization.yaml" in error
    assert release.read_text() == edited and namespace.stat().st_mtime_ns == before

    assert run_cli(monkeypatch, tmp_path, stack_file_config(), "--flux", str(out), "--force") == 0
    assert "retries: 9" not in release.read_text() and namespace.stat().st_mtime_ns == before, "only the differing file is written"
    assert (out / "app" / "oci-repository.yaml").exists(), "files render did not write are never removed"


def test_a_second_render_changes_nothing(tmp_path):
    cfg = parse_stack_config(stack_file_config())
    first = render.render_flux(cfg, "homelab", tmp_path, dump=render._yaml)
    stamps = {path: (tmp_path / path).stat().st_mtime_ns for path in first.written}
    second = render.render_flux(cfg, "homelab", tmp_path, dump=render._yaml)
    assert second.written == () and set(second.unchanged) == OWNER_FILES and second.exit_code == 0
    assert stamps == {path: (tmp_path / path).stat().st_mtime_ns for path in first.written}


def test_render_flux_without_a_path_names_the_key_and_exits_2(tmp_path, monkeypatch, capsys):
    raw = stack_file_config()
    del raw["gpuStack"]["flux"]["path"]
    assert run_cli(monkeypatch, tmp_path, raw, "--flux", str(tmp_path / "out")) == 2
    error = capsys.readouterr().err
    assert "proxmox-talos-gpu:gpuStack.flux.path = None: required for render --flux" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_flux_and_out_together_are_a_usage_error(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as caught:
        run_cli(monkeypatch, tmp_path, stack_file_config(), "--flux", str(tmp_path / "a"), "--out", str(tmp_path / "b"))
    assert caught.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_help_names_flux_force_and_their_defaults(capsys):
    with pytest.raises(SystemExit):
        render.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--flux DIR" in text and "(default: not written)" in text and "--force" in text and "(default: off)" in text


def test_jellyfin_values_patch_merges_into_an_app_template_release(tmp_path, kubectl):
    cfg = parse_stack_config(stack_file_config())
    render.render_flux(cfg, "homelab", tmp_path / "gpu", dump=render._yaml)
    jellyfin = tmp_path / "jellyfin" / "app"
    jellyfin.mkdir(parents=True)
    shutil.copy(DATA / "jellyfin-helm-release.yaml", jellyfin / "helm-release.yaml")
    shutil.copy(tmp_path / "gpu" / "jellyfin-gpu-values.yaml", jellyfin / "jellyfin-gpu-values.yaml")
    (jellyfin / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["helm-release.yaml"], "patches": [{"path": "jellyfin-gpu-values.yaml"}]}))
    (release,) = build(kubectl, jellyfin)
    assert_valid(release, "Jellyfin HelmRelease with the GPU values")
    app = release["spec"]["values"]["controllers"]["jellyfin"]["containers"]["app"]
    assert app["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 1}, "merged, the release's own limits kept"
    assert app["env"] == {"TZ": "Europe/Berlin", "NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,video,utility"}
    assert app["image"]["repository"] == "ghcr.io/jellyfin/jellyfin"
    pod = release["spec"]["values"]["defaultPodOptions"]
    assert pod["nodeSelector"] == {"drmoo.io/gpu": "nvidia-t4"} and pod["securityContext"] == {"runAsUser": 1000}
    header = (tmp_path / "gpu" / "jellyfin-gpu-values.yaml").read_text().split("apiVersion:")[0]
    assert "patches:" in header and "jellyfin-gpu-values.yaml" in header and "apps/base/jellyfin/app/" in header
