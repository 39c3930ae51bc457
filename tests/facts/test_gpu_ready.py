"""The one "GPU ready" rule (components/facts/gpu_ready.py), and the gate and
the doctor agreeing on it: a node the gate calls ready passes the doctor's
count and GFD checks, and one it waits on fails one of them."""

from __future__ import annotations

import pytest

from components.facts.gpu_ready import gpu_advertisement
from components.facts.kubernetes import parse_node
from components.readiness.gate import Expectation, evaluate
from tests.doctor import samples
from tests.doctor.fakecli import data
from tools.doctor.kubernetes_checks import check_kubernetes
from tools.doctor.model import KubernetesObservation, Output


def node(**changes):
    return parse_node(samples.node_json(**changes))


@pytest.mark.parametrize(("changes", "resource", "problem", "labelled"), [
    ({}, "nvidia.com/gpu", "", True),
    ({"allocatable": {"nvidia.com/gpu": None}}, "nvidia.com/gpu", "none", True),
    ({"allocatable": {"nvidia.com/gpu": "0"}}, "nvidia.com/gpu", "none", True),
    ({"allocatable": {"nvidia.com/gpu": "1"}}, "nvidia.com/gpu", "count", True),
    ({"allocatable": {"nvidia.com/gpu": None, "nvidia.com/gpu.shared": "4"}}, "nvidia.com/gpu", "renamed", True),
    ({"allocatable": {"nvidia.com/gpu": None, "nvidia.com/gpu.shared": "4"}}, "nvidia.com/gpu.shared", "", True),
    ({}, "nvidia.com/gpu.shared", "renamed", True),
    ({"labels": {"nvidia.com/gpu.product": None}}, "nvidia.com/gpu", "", False),
])
def test_the_rule_judges_count_name_and_gfd_label(changes, resource: str, problem: str, labelled: bool) -> None:
    gpus = gpu_advertisement(node(**changes), resource, 4)
    assert (gpus.count_problem, gpus.labelled, gpus.ready) == (problem, labelled, not problem and labelled)


def test_the_other_names_are_shown_with_their_counts() -> None:
    gpus = gpu_advertisement(node(), "nvidia.com/gpu.shared", 4)
    assert (gpus.count, gpus.others_text()) == (0, "nvidia.com/gpu=4")


CASES = [{}, {"allocatable": {"nvidia.com/gpu": None}}, {"allocatable": {"nvidia.com/gpu": "1"}},
         {"allocatable": {"nvidia.com/gpu": None, "nvidia.com/gpu.shared": "4"}}, {"labels": {"nvidia.com/gpu.product": None}},
         {"allocatable": {"nvidia.com/gpu": "8"}}]


@pytest.mark.parametrize("changes", CASES)
def test_the_gate_and_the_doctor_agree(changes) -> None:
    cfg = samples.homelab_cfg()
    text = samples.node_json(**changes)
    want = Expectation(node_name=cfg.node_name, gpus=len(cfg.gpus), advertised=cfg.advertised_gpus, config_key=cfg.config_key)
    gate = evaluate(parse_node(text), want)
    results = {r.name: r.status for r in check_kubernetes(KubernetesObservation(Output(text), Output(data("pods-gpu-operator.json"))), cfg)}
    doctor_ready = results["allocatable nvidia.com/gpu"] == "pass" and results["gfd labels"] == "pass"
    assert gate.ready is doctor_ready, (gate, results)
