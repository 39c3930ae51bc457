"""The node facts' pure parsers, on real output (tests/data/upstream/fixtures, the lspci lines
from the guide) and realistic samples in tests/doctor/data, and on
malformed output: a ParseError saying what was expected, never a crash."""

from __future__ import annotations

import json

import pytest

from components.facts.ffmpeg import parse_ffmpeg_encoders
from components.facts.kubernetes import gpu_driver_version, parse_node, parse_pods
from components.facts.linux import parse_proc_modules
from components.facts.nvidia import parse_nvidia_smi, parse_nvidia_version
from components.facts.parsing import ParseError
from components.facts.proxmox import parse_hostpci, parse_lspci_nnk, parse_qm_config
from tests.conftest import reference
from tests.doctor.fakecli import data


def fixture(name: str) -> str:
    return reference("fixtures", name).read_text()


def smi_sections() -> dict[str, str]:
    """h200-vm.nvidia-smi.txt holds three captures: the table, `===CSV`, `===L`."""
    text = fixture("h200-vm.nvidia-smi.txt")
    table, _, rest = text.partition("===CSV")
    csv, _, listing = rest.partition("===L")
    return {"table": table, "csv": csv, "list": listing}


# -- nvidia-smi -------------------------------------------------------------


def test_nvidia_smi_table_from_a_passed_through_h200() -> None:
    smi = parse_nvidia_smi(smi_sections()["table"])
    assert (smi.driver_version, smi.cuda_version) == ("580.159.04", "13.0")
    assert [(gpu.index, gpu.name, gpu.bus_id) for gpu in smi.gpus] == [(0, "NVIDIA H200", "00000000:00:06.0")]


def test_nvidia_smi_query_csv_from_the_same_vm() -> None:
    smi = parse_nvidia_smi(smi_sections()["csv"])
    assert smi.driver_version == "580.159.04"
    assert smi.gpus[0].name == "NVIDIA H200"
    assert smi.gpus[0].uuid == "GPU-0311b4ed-01d5-b4da-724c-81c7eb80a0e6"


def test_nvidia_smi_list_from_the_same_vm() -> None:
    smi = parse_nvidia_smi(smi_sections()["list"])
    assert [(gpu.index, gpu.name, gpu.uuid) for gpu in smi.gpus] == [(0, "NVIDIA H200", "GPU-0311b4ed-01d5-b4da-724c-81c7eb80a0e6")]


def test_nvidia_smi_xml_agrees_with_the_table() -> None:
    xml = parse_nvidia_smi(fixture("h200-vm.nvidia-smi-q.xml"))
    table = parse_nvidia_smi(smi_sections()["table"])
    assert (xml.driver_version, xml.cuda_version) == (table.driver_version, table.cuda_version)
    assert [(gpu.name, gpu.bus_id) for gpu in xml.gpus] == [(gpu.name, gpu.bus_id) for gpu in table.gpus]


@pytest.mark.parametrize(("text", "says"), [
    ("", "printed nothing"),
    ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
     "couldn't communicate"),
    ("No devices were found\n", "No devices were found"),
    ("bash: nvidia-smi: command not found\n", "not nvidia-smi output"),
    ("<?xml version=\"1.0\" ?>\n<nvidia_smi_log><driver_version>1</driver_version>", "not well-formed"),
    ("<?xml version=\"1.0\" ?>\n<other/>", "expected <nvidia_smi_log>"),
    ("| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |\n+----+\n", "no GPU rows"),
    ("name, pci.bus_id\nNVIDIA H200\n", "has 1 fields, header has 2"),
    ("GPU 0: NVIDIA H200 (UUID: GPU-1)\ngarbage\n", "unexpected line"),
])
def test_nvidia_smi_malformed_output_is_a_parse_error(text: str, says: str) -> None:
    with pytest.raises(ParseError, match="(?i)" + says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_nvidia_smi(text)


# -- /proc/driver/nvidia/version, /proc/modules -----------------------------


def test_proprietary_kernel_module_version() -> None:
    module = parse_nvidia_version(data("nvidia-version.proprietary.txt"))
    assert (module.version, module.open) == ("595.91.07", False)


def test_open_kernel_module_version() -> None:
    module = parse_nvidia_version(data("nvidia-version.open.txt"))
    assert (module.version, module.open) == ("580.95.05", True)
    assert module.description == "NVIDIA UNIX Open Kernel Module for x86_64"


@pytest.mark.parametrize("text", ["", "open /proc/driver/nvidia/version: no such file or directory", "NVRM version: something else 1.2"])
def test_nvidia_version_malformed(text: str) -> None:
    with pytest.raises(ParseError, match="NVRM version"):
        parse_nvidia_version(text)


def test_proc_modules_lists_the_nvidia_modules() -> None:
    modules = parse_proc_modules(data("proc-modules.txt"))
    assert {"nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"} <= set(modules)
    assert modules["nvidia"].refcount == 2 and modules["nvidia"].state == "Live"
    assert "nvidia" not in parse_proc_modules(data("proc-modules.no-nvidia.txt"))


@pytest.mark.parametrize("text", ["nvidia", "nvidia big 0 - Live 0x0", "nvidia 1 2 3"])
def test_proc_modules_malformed(text: str) -> None:
    with pytest.raises(ParseError, match="line 1"):
        parse_proc_modules(text)


# -- kubectl get node / pods ------------------------------------------------


def test_node_with_time_sliced_t4() -> None:
    node = parse_node(data("node-moody-good.json"))
    assert (node.name, node.ready, node.allocatable_gpus, node.capacity_gpus) == ("moody-good", True, 4, 4)
    assert node.label("nvidia.com/gpu.product") == "Tesla-T4-SHARED"
    assert gpu_driver_version(node.labels) == "595.91.07"


def test_driver_version_from_the_older_major_minor_rev_labels() -> None:
    labels = {"nvidia.com/cuda.driver.major": "550", "nvidia.com/cuda.driver.minor": "127", "nvidia.com/cuda.driver.rev": "05"}
    assert gpu_driver_version(labels) == "550.127.05"
    assert gpu_driver_version({}) == ""


def test_node_without_gpu_resource() -> None:
    document = json.loads(data("node-moody-good.json"))
    del document["status"]["allocatable"]["nvidia.com/gpu"]
    assert parse_node(json.dumps(document)).allocatable_gpus is None


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda d: d.update(kind="Pod"), "expected kind Node"),
    (lambda d: d["status"]["allocatable"].update({"nvidia.com/gpu": "4k"}), "expected a whole number"),
    (lambda d: d["metadata"].pop("name"), "metadata.name"),
    (lambda d: d["metadata"].update(labels=["a"]), "labels is not a mapping"),
])
def test_node_malformed(mutate, says: str) -> None:
    document = json.loads(data("node-moody-good.json"))
    mutate(document)
    with pytest.raises(ParseError, match=says):
        parse_node(json.dumps(document))


@pytest.mark.parametrize(("text", "says"), [("", "not JSON"), ("[]", "JSON list"), ("Error from server", "not JSON")])
def test_node_not_json(text: str, says: str) -> None:
    with pytest.raises(ParseError, match=says):
        parse_node(text)


def test_gpu_operator_pods() -> None:
    pods = {pod.name: pod for pod in parse_pods(data("pods-gpu-operator.json"))}
    plugin = pods["nvidia-device-plugin-daemonset-7kx2n"]
    assert (plugin.node, plugin.phase, plugin.healthy) == ("moody-good", "Running", True)
    assert pods["nvidia-cuda-validator-b4n6m"].healthy, "a completed validator is healthy"


def test_jellyfin_pod_has_its_gpu_limit() -> None:
    [pod] = parse_pods(data("pods-jellyfin.json"))
    assert pod.gpu_limit == 1 and pod.containers[0].name == "app"


def test_single_pod_object_and_crashloop_state() -> None:
    document = json.loads(data("pods-gpu-operator.json"))["items"][6]
    document["status"]["containerStatuses"][0].update(ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}})
    [pod] = parse_pods(json.dumps(document))
    assert not pod.healthy
    assert pod.state == "Running (CrashLoopBackOff)"


@pytest.mark.parametrize(("text", "says"), [
    ('{"kind": "List"}', "expected a List of Pods"),
    ('{"kind": "List", "items": [{"kind": "Service"}]}', "item 0 is not a Pod"),
    ('{"kind": "List", "items": [{"metadata": {}}]}', "pod 0 has no metadata.name"),
    ('{"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "one"}}}]}}',
     "whole number"),
])
def test_pods_malformed(text: str, says: str) -> None:
    with pytest.raises(ParseError, match=says):
        parse_pods(text)


# -- ffmpeg -encoders -------------------------------------------------------


def test_jellyfin_ffmpeg_lists_nvenc() -> None:
    encoders = parse_ffmpeg_encoders(data("ffmpeg-encoders.txt"))
    assert encoders["h264_nvenc"].kind == "V"
    assert encoders["hevc_nvenc"].description == "NVIDIA NVENC hevc encoder (codec hevc)"
    assert encoders["aac"].kind == "A" and encoders["srt"].kind == "S"
    assert "V....." not in encoders, "the legend above ------ is not an encoder"


@pytest.mark.parametrize(("text", "says"), [
    ("", "no '------' line"),
    ("ffmpeg version 7.1\nUnrecognized option 'encoders'.\n", "no '------' line"),
    ("Encoders:\n ------\n", "lists no encoders"),
    ("Encoders:\n ------\n V....D h264_nvenc  NVIDIA\n garbage line here\n", "unexpected line"),
])
def test_ffmpeg_encoders_malformed(text: str, says: str) -> None:
    with pytest.raises(ParseError, match=says):
        parse_ffmpeg_encoders(text)


# -- qm config --------------------------------------------------------------


def test_qm_config_with_a_pci_mapping() -> None:
    qm = parse_qm_config(data("qm-config.mapping.txt"))
    entry = qm.hostpci["hostpci0"]
    assert (entry.mapping, entry.addresses, entry.options) == ("moody-good-gpu0", (), {"pcie": "1", "rombar": "1"})
    assert (qm.options["machine"], qm.options["balloon"]) == ("q35", "0")


def test_qm_config_with_the_guides_raw_id_stops_at_the_snapshot() -> None:
    qm = parse_qm_config(data("qm-config.guide-raw.txt"))
    entry = qm.hostpci["hostpci0"]
    assert entry.mapping is None and entry.covers("0000:3b:00.0") and entry.options["pcie"] == "1"
    assert "snaptime" not in qm.options


@pytest.mark.parametrize(("value", "addresses", "covers", "misses"), [
    ("host=3b:00.0,pcie=1", ("0000:3b:00.0",), "0000:3b:00.0", "0000:3b:00.1"),
    ("0000:3b:00,pcie=1,x-vga=1", ("0000:3b:00",), "0000:3b:00.1", "0000:3c:00.0"),
    ("0000:3b:00.0;0000:3b:00.1,pcie=1", ("0000:3b:00.0", "0000:3b:00.1"), "0000:3b:00.1", "0000:3b:00.2"),
])
def test_hostpci_raw_forms(value: str, addresses: tuple[str, ...], covers: str, misses: str) -> None:
    entry = parse_hostpci("hostpci0", value)
    assert entry.addresses == addresses
    assert entry.covers(covers) and not entry.covers(misses)


@pytest.mark.parametrize(("text", "says"), [
    ("", "no 'key: value' lines"),
    ("Configuration file 'nodes/pve5/qemu-server/1105.conf' does not exist", "not 'key: value'"),
    ("hostpci0: pcie=1\n", "neither a mapping nor a PCI address"),
    ("hostpci0: zz:00.0,pcie=1\n", "not a PCI address"),
    ("hostpci0:\n", "hostpci0 is empty"),
])
def test_qm_config_malformed(text: str, says: str) -> None:
    with pytest.raises(ParseError, match=says):
        parse_qm_config(text)


# -- lspci -nnk -------------------------------------------------------------


def test_lspci_lines_quoted_in_design() -> None:
    devices = parse_lspci_nnk(data("lspci-nnk.t4.txt"))
    t4 = devices["0000:3b:00.0"]
    assert (t4.class_code, t4.vendor_device, t4.subsystem, t4.driver) == ("0302", "10de:1eb8", "10de:12a2", "vfio-pci")
    assert t4.description == "NVIDIA Corporation TU104GL [Tesla T4]"
    assert t4.modules == ("nvidiafb", "nouveau")


def test_lspci_with_domain_and_an_unbound_audio_function() -> None:
    text = (
        "0000:65:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204] (rev a1)\n"
        "\tSubsystem: eVga.com. Corp. Device [3842:3987]\n\tKernel driver in use: nvidia\n\tKernel modules: nvidiafb, nouveau, nvidia_drm, nvidia\n"
        "0000:65:00.1 Audio device [0403]: NVIDIA Corporation GA102 High Definition Audio Controller [10de:1aef] (rev a1)\n"
        "\tSubsystem: eVga.com. Corp. Device [3842:3987]\n\tKernel modules: snd_hda_intel\n"
    )
    devices = parse_lspci_nnk(text)
    assert devices["0000:65:00.0"].driver == "nvidia"
    assert devices["0000:65:00.1"].driver is None and devices["0000:65:00.1"].vendor_device == "10de:1aef"


@pytest.mark.parametrize(("text", "says"), [
    ("\tKernel driver in use: vfio-pci\n", "follows no device line"),
    ("3b:00.0 3D controller: NVIDIA Corporation TU104GL\n", "is not '<address>"),
    ("pcilib: Cannot open /proc/bus/pci\n", "is not '<address>"),
])
def test_lspci_malformed(text: str, says: str) -> None:
    with pytest.raises(ParseError, match=says):
        parse_lspci_nnk(text)
