"""Adopt an existing VM's GPU slots and balloon without Pulumi.

    python -m components.vm {plan,apply,undo} [--stack S] [--json] [--no-restart]

The VM, its GPUs and the restart settings come from Pulumi.<S>.yaml
(vm.source: existing); the endpoint from proxmox.endpoint and
proxmox.insecure, the credentials from PROXMOX_VE_API_TOKEN (authMethod
apiToken) or PROXMOX_VE_PASSWORD (authMethod password). ``plan`` only reads
and prints the owned keys' diff against the VM as Proxmox has it; ``apply``
writes them (with the config's digest) and restarts the VM once, with its
Kubernetes node drained, when the change is pending; ``undo`` puts back what
``apply`` recorded in <project>/state/vm-<S>.json. Exit codes: 0 done or
nothing to do, 1 refused (the message names the key), 2 bad stack file or
flags, 3 Proxmox unreachable or the credentials refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from components.cli import PlainParser, StackChoiceError, add_project_dir, add_stack, choose_stack, program, run
from components.vm.adopt import spec_from_config
from components.vm.api import ApiTarget, ProxmoxApiError, ProxmoxUnreachable, connect
from components.vm.engine import AdoptEngine, RefusedError
from components.vm.restart import RestartError, RestartOptions

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class UsageError(ValueError):
    """Bad flags or stack file: exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = PlainParser(prog=program("vm"), description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2].strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("plan", "apply", "undo"), help="plan only reads; apply writes the owned keys; undo restores them (required, no default)")
    add_stack(parser)
    add_project_dir(parser)
    parser.add_argument("--no-restart", action="store_true", help="write, but leave a pending change pending and say so (default: vm.restart of the stack)")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig for the drain (default: kubectl's own, $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout in every case, errors as {error, exit_code} (default: text)")
    return parser


def _config(args: argparse.Namespace) -> Any:
    # Lazy: the config (pydantic) costs more than `--help` itself; only a verb loads it.
    from components.config import ConfigError, load_stack_file

    try:
        stack = choose_stack(args.project_dir, args.stack)
        if stack.chosen:
            print(f"vm: {stack.chosen}", file=sys.stderr)
        args.stack = stack.name
        cfg = load_stack_file(stack.path)
    except StackChoiceError as error:
        raise UsageError(str(error)) from None
    except ConfigError as error:
        raise UsageError(" ".join(str(error).split())) from None
    if cfg.vm.source != "existing":
        raise UsageError(f"vm.source = {cfg.vm.source!r} in Pulumi.{args.stack}.yaml: this tool adopts an existing VM (vm.source: existing); "
                         "a VM of vm.source: create is Pulumi's (`pulumi up`)")
    return cfg


def _target(cfg: Any) -> Any:
    if cfg.proxmox.auth_method == "apiToken":
        token = os.environ.get("PROXMOX_VE_API_TOKEN")
        if not token:
            raise UsageError("PROXMOX_VE_API_TOKEN is not set (proxmox.authMethod is apiToken): export it as user@realm!tokenid=secret")
        return ApiTarget(cfg.proxmox.endpoint, cfg.proxmox.insecure, api_token=token)
    password = os.environ.get("PROXMOX_VE_PASSWORD")
    if not password or not cfg.proxmox.username:
        raise UsageError("PROXMOX_VE_PASSWORD and proxmox.username are needed (proxmox.authMethod is password)")
    return ApiTarget(cfg.proxmox.endpoint, cfg.proxmox.insecure, username=cfg.proxmox.username, password=password)


def record_path(project_dir: Path, stack: str) -> Path:
    return project_dir / "state" / f"vm-{stack}.json"


def _save_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    tmp.replace(path)


def _run(args: argparse.Namespace) -> tuple[int, dict[str, Any], str]:
    cfg = _config(args)
    target = _target(cfg)
    kubeconfig = None
    if args.kubeconfig is not None:
        if not args.kubeconfig.is_file():
            raise UsageError(f"--kubeconfig: {args.kubeconfig} is not a file")
        kubeconfig = str(args.kubeconfig.resolve())
    options = RestartOptions(node_name=cfg.node_name, kubeconfig=kubeconfig, drain_timeout=cfg.vm.drain_timeout_seconds,
                             timeout=cfg.vm.restart_timeout_seconds, progress=lambda m: print(f"... {m}", file=sys.stderr, flush=True))
    engine = AdoptEngine(lambda: connect(target), spec_from_config(cfg), cfg.vm.restart, options)
    path = record_path(args.project_dir, args.stack)
    record = json.loads(path.read_text()) if path.is_file() else None
    if args.action == "plan":
        plan = engine.plan((record or {}).get("previous"))
        code = EXIT_REFUSED if plan.refused else 0
        return code, {"plan": plan.to_json(), "exit_code": code} | ({"error": "; ".join(plan.refusals)} if plan.refused else {}), plan.render()
    if args.action == "apply":
        result = engine.apply((record or {}).get("previous"), restart=not args.no_restart)
        _save_record(path, {"vm_id": cfg.vm.vm_id, "node": cfg.proxmox.node, "previous": result.plan.previous, "written": result.plan.written})
    else:
        if record is None:
            return 0, {"plan": None, "note": f"no record of an apply ({path}): nothing to undo"}, f"nothing to undo: no record at {path}"
        result = engine.undo(record["previous"], record["written"], restart=not args.no_restart)
        path.unlink()
    lines = [result.plan.render(), f"done: wrote {'yes' if result.wrote else 'nothing'}, restarted: {'yes' if result.restarted else 'no'}"]
    lines += [f"pending until the next cold start: {', '.join(result.pending)}"] if result.pending else []
    lines += [f"warning: {w}" for w in result.warnings]
    return 0, result.to_json(), "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def fail(code: int, message: str) -> int:
        message = " ".join(message.split())
        if args.json:
            print(json.dumps({"error": message, "exit_code": code}, indent=2))
        print(f"error: {message}", file=sys.stderr)
        return code

    try:
        code, data, text = _run(args)
    except UsageError as error:
        return fail(EXIT_USAGE, str(error))
    except ProxmoxUnreachable as error:
        return fail(EXIT_UNREACHABLE, str(error))
    except (RefusedError, RestartError, ProxmoxApiError) as error:
        return fail(EXIT_REFUSED, str(error))
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)
    if code and not args.json:
        print(f"error: {data.get('error')}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(run("python -m components.vm", main))
