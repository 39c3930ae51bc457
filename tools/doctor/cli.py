"""Command line: read Pulumi.<stack>.yaml (no Pulumi engine), run the checks,
print a table with remedies (or JSON), and one progress line per layer on
stderr. Exit 0 when at least one check passed and none failed, 1 on any
failure, 2 on a config or usage error, 3 when nothing could be verified
(every check skipped)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from components.cli import PlainParser, add_project_dir, add_stack, program, stack_from_args
from components.config import ConfigError, load_stack_file
from tools.doctor.model import LAYERS, CheckResult, Layer
from tools.doctor.report import render_json, render_table
from tools.doctor.runners import Credentials, Gatherer, default_gatherers, run_doctor

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNVERIFIED = 0, 1, 2, 3
# --verbose logs what these packages log: the doctor's runners and the transports they use.
LOGGERS = ("tools.doctor", "components")


def _parser() -> argparse.ArgumentParser:
    parser = PlainParser(
        prog=program("doctor"),
        description="Run the guide's checks on each layer of a GPU node stack and say how to fix what fails. It changes nothing.",
        epilog="Credentials: --identity for SSH (host, proxmox), KUBECONFIG (kubernetes, workload), TALOSCONFIG (talos). "
               "A layer that cannot be reached (no credentials, tool missing, refused, timed out) is skipped with the reason. "
               "Exit codes: 0 at least one check passed and none failed; 1 a check failed; 2 a config or usage error; "
               "3 nothing could be verified (every check skipped).",
    )
    add_stack(parser)
    add_project_dir(parser)
    parser.add_argument("--layer", action="append", choices=LAYERS,
                        help="check only this layer; repeat for more (default: every layer, in the graph's order)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {layer, name, status, detail, remedy} instead of the table (default: off)")
    parser.add_argument("--identity", type=Path, metavar="KEY_FILE",
                        help="SSH private key for host.user on the Proxmox host (default: none; host and proxmox are skipped)")
    parser.add_argument("--known-hosts", type=Path, metavar="FILE",
                        help="known_hosts file pinning the Proxmox host's key, used instead of host.hostKey (default: host.hostKey)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="time limit for connecting and for each command; a layer that does not answer in time is "
                             "skipped as unreachable (default: 30)")
    parser.add_argument("--verbose", action="store_true",
                        help="also log each tool's full error output and the SSH library's messages to stderr (default: off)")
    return parser


def kubeconfig_problem(value: str | None) -> str | None:
    """What is wrong with ``$KUBECONFIG``, as kubectl would meet it, or None.

    KUBECONFIG is a list of files (``:``-separated). kubectl skips the ones
    that do not exist and fails on one it cannot read, such as a folder
    (kubernetes/client-go tools/clientcmd/loader.go,
    ``ClientConfigLoadingRules.Load``: "skip missing files", else "Error
    loading config file"); when none exists it falls back to an empty config
    and talks to localhost:8080. Both are named here, as TALOSCONFIG is."""
    if not value:
        return None
    paths = [part for part in value.split(os.pathsep) if part]
    for part in paths:
        path = Path(part).expanduser()
        if path.is_dir():
            return f"cannot read KUBECONFIG {part}: is a folder, not a kubeconfig file"
        if path.exists():
            try:
                path.read_bytes()
            except OSError as error:
                return f"cannot read KUBECONFIG {part}: {error.strerror or error}"
    if paths and not any(Path(part).expanduser().exists() for part in paths):
        shown = value if len(paths) == 1 else f"{value} (none of its {len(paths)} files)"
        return (f"cannot read KUBECONFIG {shown}: No such file or directory (kubectl would ignore it and try "
                "localhost:8080); point KUBECONFIG at your cluster's kubeconfig, e.g. the one `talosctl kubeconfig` writes")
    return None


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 only when something was verified and nothing failed."""
    if any(result.status == "fail" for result in results):
        return EXIT_FAILED
    return EXIT_OK if any(result.status == "pass" for result in results) else EXIT_UNVERIFIED


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None,
         gatherers: Mapping[Layer, Gatherer] | None = None) -> int:
    """``gatherers`` replaces the runners of some layers (tests)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    if args.timeout <= 0:
        print(f"doctor: --timeout {args.timeout:g}: give a number of seconds above 0", file=err)
        return EXIT_USAGE
    verbose = logging.StreamHandler(err) if args.verbose else None
    if verbose is not None:
        verbose.setFormatter(logging.Formatter("doctor: debug: %(name)s: %(message)s"))
        for root in LOGGERS:
            logging.getLogger(root).addHandler(verbose)
            logging.getLogger(root).setLevel(logging.DEBUG)
    try:
        return _run(args, out, err, gatherers)
    finally:
        if verbose is not None:
            for root in LOGGERS:
                logging.getLogger(root).removeHandler(verbose)
                logging.getLogger(root).setLevel(logging.NOTSET)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO, gatherers: Mapping[Layer, Gatherer] | None) -> int:
    stack = stack_from_args(args, "doctor", err)
    if stack is None:
        return EXIT_USAGE
    try:
        cfg = load_stack_file(stack.path)
    except ConfigError as error:
        print(f"doctor: {error}", file=err)
        return EXIT_USAGE
    texts: dict[str, str | None] = {}
    for flag, path in (("--identity", args.identity), ("--known-hosts", args.known_hosts)):
        try:
            texts[flag] = path.read_text() if path else None
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not a text file"
            print(f"doctor: cannot read {flag} {path}: {reason}", file=err)
            return EXIT_USAGE
    talosconfig = os.environ.get("TALOSCONFIG")
    try:
        texts["TALOSCONFIG"] = Path(talosconfig).read_text() if talosconfig else None
    except (OSError, UnicodeDecodeError) as error:
        print(f"doctor: cannot read TALOSCONFIG {talosconfig}: {getattr(error, 'strerror', None) or 'not a text file'}", file=err)
        return EXIT_USAGE
    problem = kubeconfig_problem(os.environ.get("KUBECONFIG"))
    if problem:
        print(f"doctor: {problem}", file=err)
        return EXIT_USAGE
    creds = Credentials(identity=texts["--identity"], known_hosts=texts["--known-hosts"], talosconfig=texts["TALOSCONFIG"], timeout=args.timeout)
    runners = {**default_gatherers(creds), **(gatherers or {})}
    layers: list[Layer] = args.layer or list(LAYERS)

    def progress(index: int, count: int, layer: Layer, what: str) -> None:
        print(f"doctor: [{index}/{count}] {layer}: {what} (up to {args.timeout:g} s per step)", file=err, flush=True)

    try:
        results = run_doctor(cfg, layers, runners, progress)
    except ConfigError as error:
        print(f"doctor: {error}", file=err)
        return EXIT_USAGE
    out.write(render_json(results) if args.json else render_table(results))
    return exit_code(results)
