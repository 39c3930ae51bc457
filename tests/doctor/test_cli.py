"""`python -m components.doctor` end to end: stand-in kubectl and talosctl on
PATH with canned answers per scenario; one simulated failure per layer prints
that layer's remedy; unreachable layers are skipped with the reason."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doctor import samples
from tests.doctor.fakecli import FakeCli, answer, data, install, rule
from tools.doctor.cli import main
from tools.doctor.model import Output, PciFunctionState, ProxmoxObservation, Unreachable

ROOT = Path(__file__).resolve().parents[2]
HOMELAB_STACK = ROOT / "tests" / "data" / "stacks" / "Pulumi.homelab.yaml"
KUBECONFIG = "apiVersion: v1\nkind: Config\ncurrent-context: admin@homelab\n"
TALOSCONFIG = "context: homelab\ncontexts:\n  homelab:\n    endpoints: [192.168.8.99]\n    ca: Y2EtY2VydGlmaWNhdGU=\n    crt: Y2xpZW50LWNlcnQ=\n    key: Y2xpZW50LWtleS1zZWNyZXQ=\n"

FFMPEG = "/usr/lib/jellyfin-ffmpeg/ffmpeg"


NODE = ["--nodes", "192.168.8.123", "--endpoints", "192.168.8.99"]


def talos_rules(version: dict | None = None, modules: dict | None = None, extensions: dict | None = None) -> list[dict]:
    return [
        rule(["read", "/proc/driver/nvidia/version", *NODE], version or answer(data("nvidia-version.proprietary.txt"))),
        rule(["read", "/proc/modules", *NODE], modules or answer(data("proc-modules.txt"))),
        rule(["get", "extensions", *NODE, "--output", "yaml"], extensions or answer(data("talos-extensions.yaml"))),
    ]


# What jellyfin-ffmpeg prints when NVENC refuses the session (FFmpeg
# libavcodec/nvenc.c: nvenc_print_error with "unsupported device"), as on an H200.
UNSUPPORTED_DEVICE = ("[h264_nvenc @ 0x55d0c8a4e2c0] OpenEncodeSessionEx failed: unsupported device (2): (no details)\n"
                      "[h264_nvenc @ 0x55d0c8a4e2c0] No capable devices found\n"
                      "[vost#0:0/h264_nvenc @ 0x55d0c8a4d180] Error while opening encoder - maybe incorrect parameters such as bit_rate, rate, width or height.\n")


def probe_rule(encoder: str, *responses: dict) -> dict:
    """The encode probe, matched strictly: quiet, ten generated frames in
    (a bounded encode: lavfi's test source never ends by itself), the
    encoder, output to null."""
    return rule(["exec", "-n", "media", "jellyfin-6d7f8c9b4-p2q3r", "-c", "app", "--", FFMPEG, "-hide_banner", "-nostats", "-loglevel", "error",
                 "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "10", "-c:v", encoder, "-f", "null", "-"],
                *(responses or (answer(),)))


def kubectl_rules(node: dict | None = None, encoders: dict | None = None, probes: list[dict] | None = None) -> list[dict]:
    return [
        *(probes or [probe_rule("h264_nvenc"), probe_rule("hevc_nvenc")]),
        rule(["get", "node", "moody-good", "-o", "json"], node or answer(data("node-moody-good.json"))),
        rule(["get", "pods", "-n", "gpu-operator", "-o", "json"], answer(data("pods-gpu-operator.json"))),
        rule(["get", "pods", "-n", "media", "-l", "app.kubernetes.io/name=jellyfin", "-o", "json"], answer(data("pods-jellyfin.json"))),
        rule(["get", "pods", "-n", "gpu-operator", "-l", "app=nvidia-dcgm-exporter", "--field-selector", "spec.nodeName=moody-good",
              "-o", "json"], answer(data("pods-dcgm-exporter.json"))),
        rule(["get", "--raw", "/api/v1/namespaces/gpu-operator/pods/nvidia-dcgm-exporter-m8v4d:9400/proxy/metrics"],
             answer(data("dcgm-exporter-metrics.txt"))),
        rule(["exec", "-n", "media", "jellyfin-6d7f8c9b4-p2q3r", "-c", "app", "--", "nvidia-smi"], answer(data("nvidia-smi.t4.txt"))),
        rule(["exec", "-n", "media", "jellyfin-6d7f8c9b4-p2q3r", "-c", "app", "--", FFMPEG, "-hide_banner", "-encoders"],
             encoders or answer(data("ffmpeg-encoders.txt"), stderr="ffmpeg version 7.1.2-Jellyfin Copyright (c) 2000-2025\n")),
    ]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    cli = install(tmp_path)
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    (tmp_path / "talosconfig").write_text(TALOSCONFIG)
    for key, value in cli.env(KUBECONFIG=str(tmp_path / "kubeconfig"), TALOSCONFIG=str(tmp_path / "talosconfig")).items():
        monkeypatch.setenv(key, value)
    cli.set_rules("talosctl", talos_rules())
    cli.set_rules("kubectl", kubectl_rules())
    return cli


def doctor(*argv: str, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--stack", "homelab", *argv], stdout=out, stderr=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def remedies_section(text: str) -> str:
    assert "\nRemedies\n" in text, text
    return " ".join(text.split("\nRemedies\n", 1)[1].split())  # undo the wrapping


def test_module_entry_point_on_a_healthy_node_exits_zero(fake: FakeCli) -> None:
    done = subprocess.run([sys.executable, "-m", "components.doctor", "--stack", "homelab"], cwd=ROOT, env=fake.env(
        KUBECONFIG=str(fake.state.parent / "kubeconfig"), TALOSCONFIG=str(fake.state.parent / "talosconfig")),
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["LAYER", "CHECK", "STATUS", "DETAIL"]
    assert any(line.split()[:3] == ["host", "reachable", "skip"] and "--identity" in line for line in lines)
    assert any(line.startswith("kubernetes") and "allocatable nvidia.com/gpu" in line and " pass " in line for line in lines)
    assert any(line.startswith("workload") and "nvenc encoders" in line and " pass " in line for line in lines)
    assert any(line.startswith("workload") and "nvenc encode " in line and " pass " in line and "h264_nvenc, hevc_nvenc encoded" in line
               for line in lines)
    assert any(line.startswith("monitoring") and "exporter metrics" in line and " pass " in line for line in lines)
    # The reference stack has no Prometheus Operator: no rules to look for.
    assert any(line.startswith("monitoring") and "alert rules" in line and " skip " in line for line in lines)
    assert "Remedies" not in done.stdout
    assert lines[-1] == "16 passed, 0 failed, 3 skipped"  # talos 4, kubernetes 6, workload 5, monitoring 1


def test_talosconfig_reaches_talosctl_as_a_private_file(fake: FakeCli) -> None:
    code, _, _ = doctor("--layer", "talos")
    assert code == 0
    calls = fake.calls("talosctl")
    assert len(calls) == 3
    assert all(call["config_mode"] == "0o600" and call["config_text"] == TALOSCONFIG for call in calls)
    assert all(not Path(call["config_path"]).exists() for call in calls)


def test_talos_layer_failure_prints_the_kernel_modules_remedy(fake: FakeCli) -> None:
    fake.set_rules("talosctl", talos_rules(
        version=answer(stderr="error reading file: rpc error: code = Unknown desc = open /proc/driver/nvidia/version: no such file or directory\n", rc=1),
        modules=answer(data("proc-modules.no-nvidia.txt")),
    ))
    code, out, _ = doctor("--layer", "talos")
    assert code == 1
    remedies = remedies_section(out)
    assert "talos / nvidia driver:" in remedies and "talos / kernel modules:" in remedies
    assert "machine.kernel.modules" in remedies
    assert "Y2xpZW50LWtleS1zZWNyZXQ=" not in out  # the talosconfig key never shows


def test_kubernetes_layer_failure_prints_the_time_slicing_remedy(fake: FakeCli) -> None:
    fake.set_rules("kubectl", kubectl_rules(node=answer(samples.node_json(allocatable={"nvidia.com/gpu": "1"}))))
    code, out, _ = doctor("--layer", "kubernetes")
    assert code == 1
    remedies = remedies_section(out)
    assert "kubernetes / allocatable nvidia.com/gpu:" in remedies
    assert "sharing.timeSlicing.resources" in remedies


def test_workload_layer_failure_prints_the_nvenc_remedy(fake: FakeCli) -> None:
    no_nvenc = "\n".join(line for line in data("ffmpeg-encoders.txt").splitlines() if "nvenc" not in line)
    fake.set_rules("kubectl", kubectl_rules(encoders=answer(no_nvenc)))
    code, out, _ = doctor("--layer", "workload")
    assert code == 1
    assert "missing: h264_nvenc, hevc_nvenc" in out
    assert "Nvidia NVENC" in remedies_section(out)


def test_host_layer_failure_prints_the_vfio_remedy(fake: FakeCli) -> None:


    broken = dataclasses.replace(samples.host_ok(), functions={"0000:3b:00.0": PciFunctionState("nouveau", "10de:1eb8", ("nvidiafb", "nouveau"))})
    code, out, _ = doctor("--layer", "host", gatherers={"host": lambda cfg: broken})
    assert code == 1
    remedy = remedies_section(out)
    assert "host / vfio-pci gpus[0]:" in remedy and "options vfio-pci ids=10de:1eb8" in remedy


def test_proxmox_layer_failure_prints_the_hostpci_remedy(fake: FakeCli) -> None:
    observation = ProxmoxObservation("pve5.lan", Output(data("qm-config.guide-raw.txt")))
    code, out, _ = doctor("--layer", "proxmox", gatherers={"proxmox": lambda cfg: observation})
    assert code == 1
    remedy = remedies_section(out)
    assert "qm set 1105 --hostpci0 mapping=moody-good-gpu0,pcie=1" in remedy and "qm set 1105 --machine q35" in remedy


def test_json_output_is_a_list_of_results(fake: FakeCli) -> None:
    fake.set_rules("kubectl", kubectl_rules(node=answer(samples.node_json(labels={"nvidia.com/gpu.product": None}))))
    code, out, _ = doctor("--json", "--layer", "kubernetes")
    assert code == 1
    results = json.loads(out)
    assert {tuple(sorted(result)) for result in results} == {("detail", "layer", "name", "remedy", "status")}
    gfd = next(result for result in results if result["name"] == "gfd labels")
    assert gfd["status"] == "fail" and "gpu-feature-discovery" in gfd["remedy"]


def test_unreachable_cluster_is_skipped_with_the_reason(fake: FakeCli) -> None:
    refused = answer(stderr="The connection to the server 192.168.8.99:6443 was refused - did you specify the right host or port?\n", rc=1)
    fake.set_rules("kubectl", [rule(["get", "node", "moody-good", "-o", "json"], refused),
                               rule(["get", "pods", "-n", "media", "-l", "app.kubernetes.io/name=jellyfin", "-o", "json"], refused)])
    code, out, _ = doctor("--layer", "kubernetes", "--layer", "workload")
    assert code == 3  # nothing verified
    assert out.count("reachable") == 2 and "was refused" in out
    assert out.splitlines()[-1] == "0 passed, 0 failed, 2 skipped"


def test_missing_tools_and_credentials_skip_their_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = install(tmp_path)
    for key, value in empty.env().items():
        monkeypatch.setenv(key, value)
    code, out, _ = doctor()
    assert code == 3  # nothing verified
    assert "talosctl not found on PATH" in out
    assert "no kubeconfig: export KUBECONFIG" in out
    assert "no SSH key for root@pve5.lan: pass --identity KEY_FILE" in out


def test_unknown_host_key_skips_host_and_proxmox(fake: FakeCli, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n")
    known = tmp_path / "known_hosts"
    known.write_text("otherhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    code, out, _ = doctor("--layer", "host", "--layer", "proxmox", "--identity", str(key), "--known-hosts", str(known))
    assert code == 3  # nothing verified
    assert out.count("--known-hosts has no entry for pve5.lan") == 2


def test_config_error_exits_2_naming_the_key(tmp_path: Path) -> None:
    text = HOMELAB_STACK.read_text().replace("vmId: 1105", "vmId: 12")
    (tmp_path / "Pulumi.broken.yaml").write_text(text)
    out, err = io.StringIO(), io.StringIO()
    code = main(["--stack", "broken", "--project-dir", str(tmp_path)], stdout=out, stderr=err)
    assert code == 2
    assert "proxmox-talos-gpu:vm.vmId = 12" in err.getvalue()
    assert out.getvalue() == ""


def test_missing_stack_file_exits_2(tmp_path: Path) -> None:
    err = io.StringIO()
    assert main(["--stack", "nope", "--project-dir", str(tmp_path)], stdout=io.StringIO(), stderr=err) == 2
    assert "Pulumi.nope.yaml (1 problem(s)):\n  - no such file" in err.getvalue()


def test_an_unreachable_layer_from_a_gatherer_is_one_skip_line(fake: FakeCli) -> None:
    code, out, _ = doctor("--layer", "host", gatherers={"host": lambda cfg: Unreachable("pve5.lan:22: cannot connect: [Errno 111] Connection refused")})
    assert code == 3  # nothing verified
    assert out.splitlines()[1].split(None, 3) == ["host", "reachable", "skip", "pve5.lan:22: cannot connect: [Errno 111] Connection refused"]


def test_unreachable_talos_node_is_skipped_after_one_attempt(fake: FakeCli) -> None:
    refused = answer(stderr='error reading file: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: '
                             'dial tcp 192.168.8.99:50000: connect: connection refused"\n', rc=1)
    fake.set_rules("talosctl", talos_rules(version=refused))
    code, out, _ = doctor("--layer", "talos")
    assert code == 3  # nothing verified
    assert out.splitlines()[1].split(None, 3)[:3] == ["talos", "reachable", "skip"]
    assert "talosctl cannot reach 192.168.8.123" in out and "connection refused" in out
    assert len(fake.calls("talosctl")) == 1, "an unreachable node is not asked three times"


def test_encode_probe_fails_where_nvenc_refuses_the_session_and_names_the_model_key(fake: FakeCli) -> None:
    # An H200 (GH100): ffmpeg lists h264_nvenc, NVML reports encoder capacity, the encode fails.
    fake.set_rules("kubectl", kubectl_rules(probes=[probe_rule("h264_nvenc", answer(stderr=UNSUPPORTED_DEVICE, rc=187)),
                                                    probe_rule("hevc_nvenc", answer(stderr=UNSUPPORTED_DEVICE.replace("h264", "hevc"), rc=187))]))
    code, out, _ = doctor("--layer", "workload")
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("workload") and "nvenc encode " in line)
    assert " fail " in line and "unsupported device (2)" in line
    assert "nvenc encoders" in out and any(" pass " in row and "nvenc encoders" in row for row in out.splitlines())
    remedies = remedies_section(out)
    assert "proxmox-talos-gpu:gpus[].model" in remedies and "GH100 (H100, H200)" in remedies
    probes = [call["argv"] for call in fake.calls("kubectl") if "lavfi" in call["argv"]]
    assert [argv[argv.index("-c:v") + 1] for argv in probes] == ["h264_nvenc", "hevc_nvenc"]
    assert all(argv[-3:] == ["-f", "null", "-"] for argv in probes)


def test_no_encode_probe_on_a_gpu_the_config_says_has_no_nvenc(fake: FakeCli, tmp_path: Path) -> None:
    text = HOMELAB_STACK.read_text().replace("      generation: turing\n", "      model: gh100\n")
    assert "model: gh100" in text
    (tmp_path / "Pulumi.h200.yaml").write_text(text)
    code, out, _ = doctor("--layer", "workload", "--project-dir", str(tmp_path), "--stack", "h200")
    line = next(line for line in out.splitlines() if line.startswith("workload") and "nvenc encode " in line)
    assert " skip " in line and "has no NVENC" in line, out
    assert code == 0
    assert not [call for call in fake.calls("kubectl") if "lavfi" in call["argv"]]
