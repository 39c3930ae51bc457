"""The kubectl stand-in parses kubectl's command line as kubectl does: what
kubectl refuses, it refuses with kubectl's own message; what kubectl accepts
in several spellings, it reads the same way; and its rules answer only the
exact command. The messages were recorded from kubectl v1.32; where a real
kubectl is on PATH the test also checks them against it (each fails before
kubectl contacts any cluster)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.doctor.fakecli import FakeCli, answer, install, rule
from tests.stand_ins.kubectl_flags import Usage
from tests.stand_ins.kubectl_flags import parse as parse_kubectl

# argv -> the first line kubectl prints on stderr (exit code 1).
REFUSED = [
    (["get", "node", "moody-good", "--bogus"], "Error: unknown flag: --bogus"),
    (["get", "node", "moody-good", "-x"], "Error: unknown shorthand flag: 'x' in -x"),
    (["get", "node", "moody-good", "-o"], "Error: flag needs an argument: 'o' in -o"),
    (["get", "node", "moody-good", "--namespace"], "Error: flag needs an argument: --namespace"),
    (["get", "node", "moody-good", "--ignore-not-found=maybe"],
     'Error: invalid argument "maybe" for "--ignore-not-found" flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["gett", "node"], 'Error: unknown command "gett" for "kubectl"'),
    (["--bogus", "get", "node"], "Error: flags cannot be placed before plugin name: --bogus"),
    (["get"], 'You must specify the type of resource to get. Use "kubectl api-resources" for a complete list of supported resources.'),
    (["exec", "-n", "media", "jellyfin-0", "nvidia-smi"],
     "error: exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead"),
    (["exec", "-n", "media", "jellyfin-0"], "error: you must specify at least one command for the container"),
    (["exec", "--", "nvidia-smi"], "error: pod, type/name or --filename must be specified"),
    (["exec", "-n", "media", "jellyfin-0", "--selector", "app=jf", "--", "ls"], "Error: unknown flag: --selector"),
    (["get", "pods", "--raw", "/metrics"], "error: arguments may not be passed when --raw is specified"),
    (["get", "--raw", "/metrics", "-o", "json"], "error: --raw and --output are mutually exclusive"),
]


@pytest.fixture
def fake(tmp_path: Path) -> FakeCli:
    cli = install(tmp_path)
    cli.set_rules("kubectl", [rule(["get", "node", "moody-good", "-o", "json"], answer('{"kind": "Node"}'))])
    return cli


def _run(binary: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *argv], capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("argv", "message"), REFUSED, ids=[" ".join(argv) for argv, _ in REFUSED])
def test_stand_in_refuses_what_kubectl_refuses_with_its_message(fake: FakeCli, tmp_path: Path, argv: list[str], message: str) -> None:
    done = _run(str(fake.bin / "kubectl"), argv, fake.env())
    assert (done.returncode, done.stderr.splitlines()[0]) == (1, message)
    assert fake.calls("kubectl")[-1]["argv"] == argv, "a refused call is still on record"
    real = shutil.which("kubectl", path=os.environ.get("PATH"))
    if real:  # the recording still matches the kubectl on this machine
        env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
        first = next((line for line in _run(real, argv, env).stderr.splitlines() if line.strip()), "")
        assert first == message, f"real kubectl: {first!r}"


@pytest.mark.parametrize("argv", [
    ["get", "node", "moody-good", "-o", "json"],
    ["get", "node", "moody-good", "-ojson"],
    ["get", "node", "moody-good", "--output=json"],
    ["get", "node", "-o=json", "moody-good"],
    ["-v", "2", "get", "node", "moody-good", "-o", "json"],
])
def test_stand_in_reads_kubectls_spellings_alike(argv: list[str]) -> None:
    verb, positional, flags, after = parse_kubectl(argv)
    assert (verb, positional, flags.get("output"), after) == ("get", ["node", "moody-good"], "json", None)


def test_stand_in_reads_exec_flags_and_the_command_after_the_separator() -> None:
    verb, positional, flags, after = parse_kubectl(["exec", "-it", "-nmedia", "jellyfin-0", "-c", "app", "--", "nvidia-smi", "-L"])
    assert (verb, positional, after) == ("exec", ["jellyfin-0"], ["nvidia-smi", "-L"])
    assert flags == {"stdin": True, "tty": True, "namespace": "media", "container": "app"}


def test_a_call_the_program_should_never_make_is_parsed_and_recorded(fake: FakeCli) -> None:
    argv = ["label", "node", "moody-good", "nvidia.com/gpu.deploy.driver=false", "--overwrite"]
    assert parse_kubectl(argv)[:2] == ("label", argv[1:])
    with pytest.raises(Usage, match="unknown flag: --overwrite"):
        parse_kubectl(["get", "node", "moody-good", "--overwrite"])
    done = _run(str(fake.bin / "kubectl"), argv, fake.env())
    assert done.returncode == 99 and "no canned answer" in done.stderr
    assert fake.calls("kubectl")[-1]["argv"] == argv


def test_rules_answer_only_the_exact_command(fake: FakeCli) -> None:
    assert _run(str(fake.bin / "kubectl"), ["get", "node", "moody-good", "-o", "json"], fake.env()).stdout == '{"kind": "Node"}'
    for other in (["get", "node", "moody-good", "-o", "yaml"], ["get", "node", "-o", "json", "moody-good"], ["get", "node", "moody-good"]):
        done = _run(str(fake.bin / "kubectl"), other, fake.env())
        assert done.returncode == 99 and f"no canned answer for {other}" in done.stderr
