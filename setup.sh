#!/usr/bin/env bash
# Quick start on your machine: ./setup.sh [STACK] [render|preview|up]
# Creates .venv with the pinned packages and renders what the stack would do
# into render/STACK/ (offline, no credentials, no Pulumi CLI). `render` stops
# there. Otherwise it installs the Pulumi CLI if missing, selects (or creates)
# the stack in the local state backend that Pulumi.yaml names (./state;
# PULUMI_BACKEND_URL overrides it), and runs `pulumi preview` (the default)
# or `pulumi up`.
set -euo pipefail
cd "$(dirname "$0")"
stack="${1:-homelab}"
action="${2:-preview}"
case "$action" in
  render|preview|up) ;;
  *) echo "usage: ./setup.sh [STACK] [render|preview|up]" >&2; exit 2 ;;
esac
if [ ! -f "Pulumi.$stack.yaml" ]; then
  echo "no Pulumi.$stack.yaml here: copy Pulumi.homelab.yaml to Pulumi.$stack.yaml and describe your node" >&2
  exit 2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m components.render --stack "$stack" --out "render/$stack" >/dev/null
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
