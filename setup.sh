#!/usr/bin/env bash
# Quick start on your machine: ./setup.sh [STACK] [render|preview|up]
# Creates .venv with the pinned packages and renders what the stack would do
# into render/STACK/ (offline, no credentials). `render` stops there. Otherwise
# it installs the Pulumi CLI if missing, selects (or creates) the stack with a
# local state backend unless PULUMI_BACKEND_URL says otherwise, and runs
# `pulumi preview` (the default) or `pulumi up`.
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
echo "rendered what stack $stack would do into render/$stack/ (start with host/plan.txt and graph.mmd)"
[ "$action" = render ] && exit 0
if ! command -v pulumi >/dev/null 2>&1; then
  if [ ! -x "$HOME/.pulumi/bin/pulumi" ]; then
    echo "installing the Pulumi CLI into ~/.pulumi (https://get.pulumi.com)"
    curl -fsSL https://get.pulumi.com | sh
  fi
  export PATH="$HOME/.pulumi/bin:$PATH"
fi
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  mkdir -p state
  export PULUMI_BACKEND_URL="file://$PWD/state"
fi
pulumi stack select "$stack" 2>/dev/null || pulumi stack init "$stack"
pulumi "$action" --stack "$stack" --diff
