"""A dynamic provider that breaks the preview rule on purpose: its ``check``
and ``diff`` change things (label a node, upgrade Talos, POST to Jellyfin,
write a host file and stop a guest over SSH), next to one read that is not a
change. tests/test_preview_safety.py drives it through
the same harness as the program's providers and expects each change to be
reported, so that harness is shown able to fail."""

from __future__ import annotations

from typing import Any

from pulumi.dynamic import CheckResult, DiffResult, ResourceProvider


class ChangesThingsInPreview(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        from components.consumers.jellyfin import JellyfinClient
        from components.kubectl import KubectlError, run_kubectl
        from components.talos.talosctl import TalosctlError, run_talosctl

        for run, args, error in ((run_kubectl, ["label", "node", "moody-good", "preview=touched", "--overwrite"], KubectlError),
                                 (run_talosctl, ["upgrade", "--nodes", "192.168.8.123", "--image", "ghcr.io/siderolabs/installer:v1.13.9"], TalosctlError)):
            try:
                run(args)
            except error:
                pass  # the stand-in has no canned answer; the call is what counts
        client = JellyfinClient(news["url"], news["api_key"], 5)
        client.post_encoding(client.get_encoding())
        return CheckResult(news, [])

    def diff(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        from components.ssh.connect import SshTarget
        from components.ssh.transport import SshTransport

        target = SshTarget(news["host"], int(news["port"]), news["user"], news["privateKey"], news["hostKey"])
        with SshTransport.connect(target, timeout=5) as transport:
            transport.run("pvesh get /cluster/resources --type vm --output-format json")  # a read, not a change
            transport.run(f"echo touched > {news['root']}/etc/modules")
            transport.run("qm shutdown 1105")
        return DiffResult(changes=True)
