"""Command line: read Pulumi.<stack>.yaml (no Pulumi engine), run the checks,
print a table with remedies (or JSON). Exit 0 all good (skips allowed), 1 on
any failure, 2 on a config or usage error."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from components.config import ConfigError, load_stack_file
from components.doctor.model import LAYERS, Layer
from components.doctor.report import render_json, render_table
from components.doctor.runners import Credentials, Gatherer, default_gatherers, run_doctor

ROOT = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.doctor",
        description="Run the guide's checks on each layer of a GPU node stack and say how to fix what fails.",
        epilog="Credentials: --identity for SSH (host, proxmox), KUBECONFIG (kubernetes, workload), TALOSCONFIG (talos). "
               "A layer that cannot be reached is skipped with the reason.",
    )
    parser.add_argument("--stack", default="homelab", help="reads Pulumi.<stack>.yaml (default: homelab)")
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="folder holding Pulumi.<stack>.yaml (default: the project root)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {layer, name, status, detail, remedy}")
    parser.add_argument("--layer", action="append", choices=LAYERS, help="check only this layer (repeatable; default: all)")
    parser.add_argument("--identity", type=Path, metavar="KEY_FILE", help="SSH private key for host.user on the Proxmox host")
    parser.add_argument("--known-hosts", type=Path, metavar="FILE", help="known_hosts file pinning the Proxmox host's key (instead of host.hostKey)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per command (default: 30)")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
         gatherers: Mapping[Layer, Gatherer] | None = None) -> int:
    """``gatherers`` replaces the runners of some layers (tests)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    stack_file = args.project_dir / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        print(f"doctor: no {stack_file.name} in {args.project_dir}", file=err)
        return 2
    try:
        cfg = load_stack_file(stack_file)
    except ConfigError as error:
        print(f"doctor: {error}", file=err)
        return 2
    texts: dict[str, str | None] = {}
    for flag, path in (("--identity", args.identity), ("--known-hosts", args.known_hosts)):
        try:
            texts[flag] = path.read_text() if path else None
        except OSError as error:
            print(f"doctor: cannot read {flag} {path}: {error.strerror}", file=err)
            return 2
    talosconfig = os.environ.get("TALOSCONFIG")
    try:
        texts["TALOSCONFIG"] = Path(talosconfig).read_text() if talosconfig else None
    except OSError as error:
        print(f"doctor: cannot read TALOSCONFIG {talosconfig}: {error.strerror}", file=err)
        return 2
    creds = Credentials(identity=texts["--identity"], known_hosts=texts["--known-hosts"], talosconfig=texts["TALOSCONFIG"], timeout=args.timeout)
    runners = {**default_gatherers(creds), **(gatherers or {})}
    layers: list[Layer] = args.layer or list(LAYERS)
    try:
        results = run_doctor(cfg, layers, runners)
    except ConfigError as error:
        print(f"doctor: {error}", file=err)
        return 2
    out.write(render_json(results) if args.json else render_table(results))
    return 1 if any(result.status == "fail" for result in results) else 0
