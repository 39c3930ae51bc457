"""The Flux check: a cluster without the Flux CRDs (or with a Flux older than
v2.3) is refused at preview naming the key; an unreachable cluster is said
to be unchecked, not refused; `pulumi up` looks again before creating. Driven
against a stand-in kubectl answering with the vendored Flux CRDs, in-process
and the engine's way (the serialized provider in a fresh Python process)."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.flux.preflight import CRD_RESOURCE, FluxPreflightProvider, missing_apis, served_versions
from tests.conftest import ROOT, run_main, stack_file_config
from tests.doctor.fakecli import FakeCli, answer, rule
from tests.flux.crds import crd
from tools.mockengine import reveal

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: c2VjcmV0LWFkbWluLXRva2Vu\n"
PROPS = {"apis": ["HelmRepository source.toolkit.fluxcd.io/v1", "HelmRelease helm.toolkit.fluxcd.io/v2"], "kubeconfig": KUBECONFIG, "served": None}
UNREACHABLE = answer(stderr="The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?\n", rc=1)


def crd_list(*documents: dict) -> str:
    """What `kubectl get crd A B --ignore-not-found -o json` prints."""
    if not documents:
        return ""
    if len(documents) == 1:
        return json.dumps(documents[0])
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents), "metadata": {"resourceVersion": ""}})


def old_helm_release_crd() -> dict:
    """The HelmRelease CRD of a Flux before v2.3: v2beta2 served, no v2."""
    document = copy.deepcopy(crd("HelmRelease"))
    for version in document["spec"]["versions"]:
        version["name"] = "v2beta2"
    return document


FLUX = (crd("HelmRepository"), crd("HelmRelease"))


def crds_answer(*responses: dict) -> list[dict]:
    """The one read-only call the check makes (kubectl's own timeout 5 s
    inside the check's 20 s)."""
    return [rule(["get", CRD_RESOURCE, "helmrepositories.source.toolkit.fluxcd.io", "helmreleases.helm.toolkit.fluxcd.io",
                  "--ignore-not-found", "-o", "json", "--request-timeout=15s"], *responses)]


def test_served_versions_read_from_the_vendored_crds():
    assert served_versions(list(FLUX)) == {"helmrepositories.source.toolkit.fluxcd.io": ("v1",), "helmreleases.helm.toolkit.fluxcd.io": ("v2",)}
    assert missing_apis(served_versions(list(FLUX))) == []


def test_missing_and_old_apis_are_named():
    assert missing_apis({}) == [
        "HelmRepository source.toolkit.fluxcd.io/v1 (no CRD helmrepositories.source.toolkit.fluxcd.io: Flux is not installed)",
        "HelmRelease helm.toolkit.fluxcd.io/v2 (no CRD helmreleases.helm.toolkit.fluxcd.io: Flux is not installed)"]
    old = served_versions([crd("HelmRepository"), old_helm_release_crd()])
    assert missing_apis(old) == ["HelmRelease helm.toolkit.fluxcd.io/v2 (CRD helmreleases.helm.toolkit.fluxcd.io serves v2beta2: Flux older than v2.3)"]


def test_check_passes_when_flux_is_installed(fake: FakeCli):
    fake.set_rules("kubectl", crds_answer(answer(crd_list(*FLUX))))
    assert FluxPreflightProvider().check({}, dict(PROPS)).failures == []
    (call,) = fake.calls("kubectl")
    assert call["config_mode"] == "0o600" and call["config_text"] == KUBECONFIG and not Path(call["config_path"]).exists()
    assert "-o" in call["argv"] and not {"apply", "create", "delete", "patch"} & set(call["argv"]), "read-only"


@pytest.mark.parametrize(("crds", "says"), [
    ((), "HelmRelease helm.toolkit.fluxcd.io/v2 (no CRD helmreleases.helm.toolkit.fluxcd.io: Flux is not installed)"),
    ((crd("HelmRepository"),), "HelmRelease helm.toolkit.fluxcd.io/v2 (no CRD"),
    ((crd("HelmRepository"), old_helm_release_crd()), "serves v2beta2: Flux older than v2.3"),
])
def test_check_refuses_a_cluster_without_the_flux_apis(fake: FakeCli, crds, says):
    fake.set_rules("kubectl", crds_answer(answer(crd_list(*crds))))
    (failure,) = FluxPreflightProvider().check({}, dict(PROPS)).failures
    assert failure.property == "delivery"
    assert failure.reason.startswith("proxmox-talos-gpu:gpuStack.delivery = 'flux': the cluster does not serve ")
    assert says in failure.reason and "or set gpuStack.delivery: helm" in failure.reason


def test_check_without_kubectl_refuses_naming_the_tool(fake: FakeCli, monkeypatch):
    monkeypatch.setenv("PATH", str(fake.bin))  # nothing installed there
    (failure,) = FluxPreflightProvider().check({}, dict(PROPS)).failures
    assert "gpuStack.delivery is flux: kubectl not found on PATH" in failure.reason


def test_create_looks_again_and_fails_on_an_unreachable_cluster(fake: FakeCli):
    fake.set_rules("kubectl", crds_answer(UNREACHABLE))
    with pytest.raises(RuntimeError, match="cannot check the cluster for the Flux APIs before creating Flux objects: .*was refused"):
        FluxPreflightProvider().create(dict(PROPS))
    fake.set_rules("kubectl", crds_answer(answer(crd_list())))
    with pytest.raises(RuntimeError, match="gpuStack.delivery = 'flux': the cluster does not serve"):
        FluxPreflightProvider().create(dict(PROPS))


def test_create_records_what_the_cluster_serves_and_no_secret(fake: FakeCli):
    fake.set_rules("kubectl", crds_answer(answer(crd_list(*FLUX))))
    created = FluxPreflightProvider().create(dict(PROPS))
    assert created.outs["served"] == {"helmrepositories.source.toolkit.fluxcd.io": ["v1"], "helmreleases.helm.toolkit.fluxcd.io": ["v2"]}
    assert "kubeconfig" not in created.outs


def test_diff_changes_only_with_the_apis():
    provider = FluxPreflightProvider()
    assert provider.diff("flux-apis", {"apis": PROPS["apis"]}, {**PROPS, "kubeconfig": "other"}).changes is False, "a second run changes nothing"
    assert provider.diff("flux-apis", {"apis": PROPS["apis"][:1]}, dict(PROPS)).changes is True
    assert provider.delete("flux-apis", dict(PROPS)) is None


# -- the engine's way -------------------------------------------------------

DRIVER = r"""
import base64, json, sys
import dill
request = json.load(sys.stdin)
provider = dill.loads(base64.b64decode(request["provider"]))
props = request["props"]
result = {"check": [[f.property, f.reason] for f in provider.check({}, props).failures]}
try:
    result["create"] = provider.create(props).outs
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}"
json.dump(result, sys.stdout)
"""


@pytest.fixture(scope="module")
def registered_inputs() -> dict:
    raw = stack_file_config()
    raw["gpuStack"]["delivery"] = "flux"
    (preflight,) = run_main(raw).by_type("pulumi-python:dynamic/flux:FluxPreflight")
    return reveal(preflight.inputs)


def drive(registered: dict, fake: FakeCli) -> dict:
    inputs = dict(registered)
    provider = inputs.pop("__provider")
    assert b"BEGIN" not in base64.b64decode(provider) and KUBECONFIG.encode() not in base64.b64decode(provider)
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=fake.env(), input=json.dumps({"provider": provider, "props": inputs}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout), "stderr": done.stderr}


def test_serialized_provider_refuses_a_cluster_without_flux_in_a_fresh_process(registered_inputs, fake: FakeCli):
    fake.set_rules("kubectl", crds_answer(answer(crd_list())))
    result = drive(registered_inputs, fake)
    ((prop, reason),) = result["check"]
    assert prop == "delivery" and "proxmox-talos-gpu:gpuStack.delivery = 'flux'" in reason and "Flux is not installed" in reason
    calls = fake.calls("kubectl")
    assert len(calls) == 2, "check, then create looks again"
    assert all(call["config_text"] == registered_inputs["kubeconfig"] for call in calls), "the stack's kubeconfig, not ambient credentials"


def test_serialized_provider_says_when_the_cluster_is_unreachable(registered_inputs, fake: FakeCli):
    fake.set_rules("kubectl", crds_answer(UNREACHABLE))
    result = drive(registered_inputs, fake)
    assert result["check"] == [], "an unreachable cluster does not stop the preview"
    assert "warning: [flux-preflight] Flux APIs not checked: the cluster could not be read" in result["stderr"] and "was refused" in result["stderr"]
    assert result["error"].startswith("RuntimeError: cannot check the cluster for the Flux APIs before creating Flux objects")


def test_serialized_provider_passes_with_flux_installed(registered_inputs, fake: FakeCli):
    fake.set_rules("kubectl", crds_answer(answer(crd_list(*FLUX))))
    result = drive(registered_inputs, fake)
    assert result["check"] == [] and result["create"]["served"]["helmreleases.helm.toolkit.fluxcd.io"] == ["v2"]
    assert "warning" not in result["stderr"]
    assert result["create"]["apis"] == ["HelmRepository source.toolkit.fluxcd.io/v1", "HelmRelease helm.toolkit.fluxcd.io/v2"]


# -- against the cluster stand-in (tests/stand_ins/kubectl.py) ----------------


@pytest.mark.parametrize(("flux_installed", "failures"), [(True, []), (False, ["delivery"])])
def test_check_against_a_cluster_with_and_without_flux(tmp_path: Path, monkeypatch, flux_installed, failures):
    """The cluster stand-in lists Flux's CRDs once Flux is installed: the
    check's one read finds both APIs there, and none on a cluster without
    Flux; nothing in the cluster changes."""
    from tests.stand_ins.kubectl_objects import install_kubectl, node

    cluster = install_kubectl(tmp_path)
    cluster.objects([node()])
    if flux_installed:
        cluster.install_flux()
    monkeypatch.setenv("PATH", f"{cluster.bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBE_STATE", str(cluster.state))
    result = FluxPreflightProvider().check({}, dict(PROPS))
    assert [failure.property for failure in result.failures] == failures, result.failures
    (call,) = cluster.calls()
    assert call["exit"] == 0 and call["mutated"] is False
    assert call["argv"][2:] == ["get", CRD_RESOURCE, "helmrepositories.source.toolkit.fluxcd.io", "helmreleases.helm.toolkit.fluxcd.io",
                                "--ignore-not-found", "-o", "json", "--request-timeout=15s"]
