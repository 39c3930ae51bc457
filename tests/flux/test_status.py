"""The readiness gate in flux delivery: it waits for the HelmRelease's Ready
condition and names Flux's reason while it is not ready, stops at once when
Flux has stopped retrying (Stalled), then checks the node as always. Status
samples follow helm-controller v1.6.3 docs/spec/v2/helmreleases.md
("Conditions", "Debugging a HelmRelease")."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys

import pytest

from components.config import parse_stack_config
from components.config.engine import load_stack_config, secret
from components.facts.kubernetes import parse_node
from components.flux import objects
from components.flux.in_cluster import HELM_RELEASE_RESOURCE
from components.flux.status import evaluate_release, parse_release
from components.readiness.component import GpuReadiness
from components.readiness.gate import Expectation, GateError, wait_for_gpu
from components.readiness.provider import GpuReadinessProvider
from tests.conftest import ROOT, stack_file_config
from tests.doctor.fakecli import FakeCli, answer, rule
from tests.doctor.samples import node_json
from tests.readiness.test_gate import FakeClock
from tools.mockengine import StateMocks, reveal, run_program

WANT = Expectation(node_name="moody-good", gpus=1, advertised=4, config_key="moody-good", namespace="gpu-operator")
REF = "gpu-operator/gpu-operator"
INSTALL_FAILED = ("False", "InstallFailed", "Helm install failed for release gpu-operator/gpu-operator with chart gpu-operator@v26.7.0: "
                  "context deadline exceeded")
PROGRESSING = ("Unknown", "Progressing", "Running 'install' action with timeout of 15m0s")
READY = ("True", "InstallSucceeded", "Helm install succeeded for release gpu-operator/gpu-operator.v1 with chart gpu-operator@v26.7.0")


def release_json(ready: tuple[str, str, str] | None = READY, *, generation: int = 1, observed: int = 1,
                 stalled: tuple[str, str] | None = None, stalled_observed: int | None = None, suspend: bool = False) -> str:
    """The HelmRelease the program creates, as the API server returns it
    with the status helm-controller wrote."""
    document = copy.deepcopy(objects.helm_release(parse_stack_config(stack_file_config())))
    document["metadata"].update(generation=generation, uid="5d2c7a4e-0000-4000-8000-000000000001")
    if suspend:
        document["spec"]["suspend"] = True
    conditions = []
    if ready is not None:
        status, reason, message = ready
        conditions.append({"type": "Ready", "status": status, "reason": reason, "message": message, "observedGeneration": observed,
                           "lastTransitionTime": "2026-12-01T10:00:00Z"})
        if status == "Unknown":
            conditions.append({"type": "Reconciling", "status": "True", "reason": "Progressing", "message": message, "observedGeneration": observed,
                               "lastTransitionTime": "2026-12-01T10:00:00Z"})
    if stalled is not None:
        conditions.append({"type": "Stalled", "status": "True", "reason": stalled[0], "message": stalled[1],
                           "observedGeneration": stalled_observed if stalled_observed is not None else observed,
                           "lastTransitionTime": "2026-12-01T10:45:00Z"})
    if conditions:
        document["status"] = {"conditions": conditions, "observedGeneration": observed, "installFailures": 4 if stalled else 0}
    return json.dumps(document)


def evaluate(text: str | None):
    return evaluate_release(parse_release(json.loads(text)) if text else None, REF)


def test_ready_release_passes():
    assert evaluate(release_json()) is None


@pytest.mark.parametrize(("text", "says"), [
    (None, "HelmRelease gpu-operator/gpu-operator does not exist"),
    (release_json(None), "has no Ready condition yet: helm-controller has not reconciled it"),
    (release_json(INSTALL_FAILED), "is not ready: InstallFailed: Helm install failed for release gpu-operator/gpu-operator with chart "
                                   "gpu-operator@v26.7.0: context deadline exceeded (`flux get helmreleases -n gpu-operator gpu-operator`"),
    (release_json(("False", "ArtifactFailed", "HelmChart 'gpu-operator/gpu-operator-gpu-operator' is not ready: no 'v26.9.9' version found")),
     "is not ready: ArtifactFailed: HelmChart 'gpu-operator/gpu-operator-gpu-operator' is not ready"),
    (release_json(PROGRESSING), "is being reconciled: Progressing: Running 'install' action"),
    (release_json(READY, generation=2, observed=1), "Ready for generation 1, not yet for the current generation 2"),
    (release_json(suspend=True), "is suspended (`flux resume helmrelease -n gpu-operator gpu-operator`)"),
    # A Stalled of an older generation is over: the new spec reset the retries.
    (release_json(INSTALL_FAILED, generation=2, observed=2, stalled=("RetriesExceeded", "Failed to install after 4 attempt(s)"),
                  stalled_observed=1), "is not ready: InstallFailed"),
])
def test_not_ready_release_names_flux_reason(text, says):
    state = evaluate(text)
    assert state is not None and not state.ready and state.layer == "Flux HelmRelease"
    assert says in state.message


def test_stalled_release_stops_the_wait_with_its_reason():
    with pytest.raises(GateError) as caught:
        evaluate(release_json(INSTALL_FAILED, stalled=("RetriesExceeded", "Failed to install after 4 attempt(s)")))
    message = str(caught.value)
    assert "HelmRelease gpu-operator/gpu-operator is not ready and Flux has stopped retrying (Stalled: RetriesExceeded: Failed to install after 4 attempt(s))" in message
    assert "Ready is False, InstallFailed: Helm install failed" in message


def test_gate_waits_for_the_release_then_the_node_and_prints_flux_reason():
    clock, messages = FakeClock(), []
    releases = iter([INSTALL_FAILED, PROGRESSING, READY, READY])
    nodes = iter([node_json(allocatable={"nvidia.com/gpu": None}), node_json(allocatable={"nvidia.com/gpu": None}),
                  node_json(allocatable={"nvidia.com/gpu": None}), node_json()])
    state = wait_for_gpu(lambda: parse_node(next(nodes)), WANT, 900, clock=clock, sleep=clock.sleep, progress=messages.append,
                         release=lambda: evaluate(release_json(next(releases))))
    assert state.ready and state.allocatable == 4
    assert "waiting (Flux HelmRelease): HelmRelease gpu-operator/gpu-operator is not ready: InstallFailed: Helm install failed" in messages[0]
    assert "waiting (Flux HelmRelease)" in messages[1] and "Progressing" in messages[1]
    assert "waiting (device plugin/driver)" in messages[2], "a ready release hands over to the node's layers"
    assert len(clock.sleeps) == 3


def test_gate_times_out_naming_the_failing_release():
    clock = FakeClock()
    with pytest.raises(GateError) as caught:
        wait_for_gpu(lambda: parse_node(node_json(allocatable={"nvidia.com/gpu": None})), WANT, 120, clock=clock, sleep=clock.sleep,
                     progress=lambda message: None, release=lambda: evaluate(release_json(INSTALL_FAILED)))
    message = str(caught.value)
    assert "not ready after 120 s" in message and "Missing layer: Flux HelmRelease" in message and "InstallFailed" in message


def test_an_absent_node_is_named_before_the_release():
    read: list[str] = []
    with pytest.raises(GateError, match="Missing layer: Talos/VM"):
        wait_for_gpu(lambda: None, WANT, 0, clock=FakeClock(), sleep=lambda seconds: None, progress=lambda message: None,
                     release=lambda: read.append("release") or evaluate(release_json(INSTALL_FAILED)))
    assert read == [], "the release is read only once the node exists"


# -- the provider against a stand-in kubectl ----------------------------------

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: c2VjcmV0LWFkbWluLXRva2Vu\n"
PROPS = {"nodeName": "moody-good", "gpus": 1, "expectedGpus": 4, "configKey": "moody-good", "namespace": "gpu-operator",
         "helmRelease": {"namespace": "gpu-operator", "name": "gpu-operator"}, "timeoutSeconds": 900, "pollSeconds": 5.0,
         "maxPollSeconds": 30.0, "kubeconfig": KUBECONFIG, "allocatable": None, "product": None, "driverVersion": None}


def rules(releases: list[dict], node: str | None = None) -> list[dict]:
    return [rule(["get", HELM_RELEASE_RESOURCE, "gpu-operator", "--ignore-not-found", "-o", "json", "--request-timeout=25s",
                  "--namespace", "gpu-operator"], *releases),
            rule(["get", "node", "moody-good", "-o", "json"], answer(node or node_json()))]


def test_provider_fails_with_the_stalled_releases_reason(fake: FakeCli):
    fake.set_rules("kubectl", rules([answer(release_json(INSTALL_FAILED)),
                                     answer(release_json(INSTALL_FAILED, stalled=("RetriesExceeded", "Failed to install after 4 attempt(s)")))],
                                    node_json(allocatable={"nvidia.com/gpu": None})))
    clock, messages = FakeClock(), []
    provider = GpuReadinessProvider(clock=clock, sleep=clock.sleep, progress=messages.append)
    with pytest.raises(GateError, match="Flux has stopped retrying .*RetriesExceeded.*InstallFailed"):
        provider.create(dict(PROPS))
    assert "InstallFailed: Helm install failed" in messages[0]
    release_calls = [call for call in fake.calls("kubectl") if HELM_RELEASE_RESOURCE in call["argv"]]
    assert len(release_calls) == 2 and all(call["config_mode"] == "0o600" for call in release_calls)


def test_provider_reports_a_cluster_without_flux_in_the_release_layer(fake: FakeCli):
    no_crd = answer(stderr='error: the server doesn\'t have a resource type "helmreleases"\n', rc=1)
    fake.set_rules("kubectl", rules([no_crd]))
    clock, messages = FakeClock(), []
    with pytest.raises(GateError) as caught:
        GpuReadinessProvider(clock=clock, sleep=clock.sleep, progress=messages.append).create({**PROPS, "timeoutSeconds": 30})
    assert "Missing layer: Flux HelmRelease" in str(caught.value)
    assert "cannot read HelmRelease gpu-operator/gpu-operator" in str(caught.value) and "helmreleases" in str(caught.value)


def test_provider_without_a_helm_release_reads_none(fake: FakeCli):
    fake.set_rules("kubectl", rules([answer(release_json(INSTALL_FAILED))]))
    clock = FakeClock()
    result = GpuReadinessProvider(clock=clock, sleep=clock.sleep, progress=lambda message: None).create({**PROPS, "helmRelease": None})
    assert result.outs["allocatable"] == 4
    assert not any(HELM_RELEASE_RESOURCE in call["argv"] for call in fake.calls("kubectl")), "helm delivery: no HelmRelease to wait for"


def test_check_refuses_a_malformed_release_reference():
    failures = GpuReadinessProvider().check({}, {**PROPS, "helmRelease": {"name": "gpu-operator"}}).failures
    assert [failure.property for failure in failures] == ["helmRelease"]


def test_diff_reruns_the_wait_when_delivery_changes():
    olds = {key: PROPS[key] for key in ("nodeName", "gpus", "expectedGpus", "configKey", "namespace")}
    provider = GpuReadinessProvider()
    assert provider.diff("id", {**olds, "helmRelease": PROPS["helmRelease"]}, dict(PROPS)).changes is False
    assert provider.diff("id", olds, dict(PROPS)).changes is True, "helm -> flux waits again"


# -- the engine's way: the registered gate in a fresh process ------------------

DRIVER = r"""
import base64, json, sys
import dill
request = json.load(sys.stdin)
provider = dill.loads(base64.b64decode(request["provider"]))
try:
    provider.create(request["props"])
    print(json.dumps({"error": None}))
except Exception as error:
    print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
"""


def test_serialized_gate_prints_and_fails_with_flux_reason_in_a_fresh_process(fake: FakeCli):
    def program() -> None:
        GpuReadiness("gpu-ready", load_stack_config(), secret("kubeconfig"))

    raw = stack_file_config()
    raw["gpuStack"]["delivery"] = "flux"
    run = run_program(program, raw, secret_keys={"kubeconfig": KUBECONFIG}, mocks=StateMocks())
    inputs = reveal(run.one("pulumi-python:dynamic/readiness:GpuReadinessGate").inputs)
    assert inputs["helmRelease"] == {"namespace": "gpu-operator", "name": "gpu-operator"}
    provider = inputs.pop("__provider")
    assert KUBECONFIG.encode() not in base64.b64decode(provider)
    fake.set_rules("kubectl", rules([answer(release_json(INSTALL_FAILED))], node_json(allocatable={"nvidia.com/gpu": None})))
    props = {**inputs, "timeoutSeconds": 1, "pollSeconds": 0.2, "maxPollSeconds": 0.2}
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=fake.env(), input=json.dumps({"provider": provider, "props": props}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error.startswith("GateError: GPU readiness gate: node moody-good not ready after 1 s")
    assert "Missing layer: Flux HelmRelease" in error and "InstallFailed: Helm install failed" in error
    assert "info: [gpu-readiness] waiting (Flux HelmRelease): HelmRelease gpu-operator/gpu-operator is not ready: InstallFailed" in done.stderr
    assert KUBECONFIG not in done.stderr and KUBECONFIG not in done.stdout
