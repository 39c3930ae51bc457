#!/usr/bin/env bash
# Quick start on your machine: ./setup.sh [STACK] [render|preview|up]
# Creates .venv with the pinned packages and renders what the stack would do
# into render/STACK/ (offline, no credentials, no Pulumi CLI). `render` stops
# there. Otherwise it installs the Pulumi CLI if missing, selects (or creates)
# the stack in the local state backend that Pulumi.yaml names (./state;
# PULUMI_BACKEND_URL overrides it), and runs `pulumi preview` (the default)
# or `pulumi up`. STACK is a name (Pulumi.STACK.yaml here) or that file's
# path; without it, the folder's only Pulumi.<name>.yaml is used. It also
# installs the gpunode command into .venv/bin (every tool, from any folder).
set -euo pipefail
cd "$(dirname "$0")"
usage="usage: ./setup.sh [STACK] [render|preview|up]
  STACK   the stack: Pulumi.STACK.yaml in this folder, or that file's path (default: the only
          Pulumi.<name>.yaml here; with several, required)
  render  write render/STACK/ offline and stop (no Pulumi CLI, no credentials)
  preview install the Pulumi CLI if missing and run pulumi preview (the default)
  up      the same, then pulumi up
It also installs the gpunode command (.venv/bin/gpunode --help) for the offline tools."
stack_arg="" action="preview"
case "${1:-}" in
  -h|--help) echo "$usage"; exit 0 ;;
  -*) echo "setup.sh: unknown option $1" >&2; echo "$usage" >&2; exit 2 ;;
  render|preview|up) action="$1"; [ $# -le 1 ] || { echo "$usage" >&2; exit 2; } ;;
  "") ;;
  *) stack_arg="$1"; action="${2:-preview}"; [ $# -le 2 ] || { echo "$usage" >&2; exit 2; } ;;
esac
case "$action" in
  render|preview|up) ;;
  *) echo "setup.sh: $action is not render, preview or up" >&2; echo "$usage" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# The gpunode command (.venv/bin/gpunode): this folder installed in editable
# mode, so it runs this checkout's code from any folder. Skipped when .venv
# already has it for this folder, with the entry point pyproject.toml names.
if ! .venv/bin/python - "$(pwd -P)" <<'PY' 2>/dev/null
import json, pathlib, sys, tomllib
from importlib.metadata import distribution
dist = distribution("proxmox-talos-gpu")
url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
script = next((entry.value for entry in dist.entry_points if entry.name == "gpunode"), "")
wanted = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]["scripts"]["gpunode"]
sys.exit(url != pathlib.Path(sys.argv[1]).as_uri() or script != wanted)
PY
then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable .
fi
stack="$(.venv/bin/python -m tools.stacks which --project-dir . ${stack_arg:+--stack "$stack_arg"})" || exit 2
if [ ! -f "Pulumi.$stack.yaml" ]; then
  echo "setup.sh: Pulumi reads a stack's settings from Pulumi.$stack.yaml in this folder ($PWD): copy $stack_arg here" >&2
  exit 2
fi
.venv/bin/python -m tools.render --project-dir . --stack "$stack" --out "render/$stack" >/dev/null
[ "$action" = render ] && exit 0
if ! command -v pulumi >/dev/null 2>&1; then
  if [ ! -x "$HOME/.pulumi/bin/pulumi" ]; then
    echo "installing the Pulumi CLI into ~/.pulumi (https://get.pulumi.com)"
    if ! curl -fsSL https://get.pulumi.com | sh; then
      cat >&2 <<MSG
setup.sh: could not install the Pulumi CLI (get.pulumi.com could not be downloaded or its installer failed).
  Install it by hand: download the archive for your system from https://github.com/pulumi/pulumi/releases
  (or see https://www.pulumi.com/docs/iac/download-install/), unpack it so that ~/.pulumi/bin/pulumi exists
  (or put pulumi on PATH), then run ./setup.sh $stack $action again.
  Without the CLI, render works: render/$stack/ already holds everything the stack would apply
  (./setup.sh $stack render, or python -m components.render --stack $stack).
MSG
      exit 1
    fi
  fi
  export PATH="$HOME/.pulumi/bin:$PATH"
  echo "the Pulumi CLI is in ~/.pulumi/bin; for later shells: export PATH=\"\$HOME/.pulumi/bin:\$PATH\""
fi
mkdir -p state
pulumi stack select "$stack" 2>/dev/null || pulumi stack init "$stack"
pulumi "$action" --stack "$stack" --diff
