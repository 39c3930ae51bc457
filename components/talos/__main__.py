"""Offline helpers for the Talos node.

    python -m components.talos schematic-id FILE.yaml   # the factory's ID of any schematic file
    python -m components.talos schematic [STACK]         # this stack's schematic YAML, ID and installer image
    python -m components.talos patch [STACK]             # this stack's machine-config patch

STACK defaults to homelab (Pulumi.<STACK>.yaml in the current directory).
Exit codes: 0 printed; 2 a file that cannot be read or used (the message
names it and the line).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.config import ConfigError, StackConfig, load_stack_file, stack_file
from components.talos.machine_config import gpu_patch_yaml
from components.talos.schematic import SchematicFormatError, planned_installer, schematic_id


def _stack_config(stack: str) -> StackConfig:
    return load_stack_file(stack_file(Path.cwd(), stack))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.talos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{schematic-id,schematic,patch}")
    sid = sub.add_parser("schematic-id", help="print the Image Factory ID of a schematic file, offline",
                         description="Print the Image Factory ID of a schematic file, computed offline as the factory does.")
    sid.add_argument("file", help="schematic in the factory's format (YAML or JSON); - reads stdin (no default: required)")
    for name, text in (("schematic", "print this stack's schematic, its ID and installer image"),
                       ("patch", "print this stack's machine-config patch")):
        command = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ", offline.")
        command.add_argument("stack", nargs="?", default="homelab",
                             help="the stack: reads Pulumi.<stack>.yaml in the current directory (default: homelab)")
    args = parser.parse_args(argv)
    try:
        if args.command == "schematic-id":
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
            print(schematic_id(text))
            return 0
        cfg = _stack_config(args.stack)
        rendered, sid_value, image = planned_installer(cfg.talos)
        if args.command == "schematic":
            print(rendered, end="")
            print(f"# id: {sid_value}\n# installer: {image}")
        else:
            print(gpu_patch_yaml(cfg, image), end="")
        return 0
    except SchematicFormatError as error:
        print(f"talos: {args.file} is not a schematic in the Image Factory's format: {error}", file=sys.stderr)
    except OSError as error:
        print(f"talos: cannot read {args.file}: {error.strerror or error}", file=sys.stderr)
    except UnicodeDecodeError:
        print(f"talos: cannot read {args.file}: not UTF-8 text", file=sys.stderr)
    except ConfigError as error:
        print(f"talos: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from components.cli import run

    sys.exit(run("talos", main))
