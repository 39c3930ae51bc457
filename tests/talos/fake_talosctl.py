"""Stand-in for talosctl (the real one cannot be installed here).

Records every call (argv, and whether --talosconfig named a 0600 file) in
$FAKE_TALOS_STATE/calls.jsonl and answers like the real tool from the state
files there: `version` (the node's Talos tag) and `schematic` (the ID of the
`schematic` extension, empty for a non-factory image). `upgrade --image`
switches the state to the image's version and schematic, as a real upgrade
would after the reboot. $FAKE_TALOS_STATE/fail makes the next call fail."""

import json
import os
import re
import stat
import sys
from pathlib import Path

state = Path(os.environ["FAKE_TALOS_STATE"])
argv = sys.argv[1:]
record = {"argv": argv, "talosconfig": None, "talosconfig_mode": None, "talosconfig_has_contexts": None}
if "--talosconfig" in argv:
    path = argv[argv.index("--talosconfig") + 1]
    record["talosconfig"] = path
    record["talosconfig_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
    record["talosconfig_has_contexts"] = "contexts:" in Path(path).read_text()
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps(record) + "\n")

fail = state / "fail"
if fail.exists():
    message = fail.read_text()
    fail.unlink()
    print(message, file=sys.stderr)
    sys.exit(1)

words = []
skip = False
for arg in argv:
    if skip:
        skip = False
        continue
    if arg in ("--talosconfig", "--nodes", "-n", "--endpoints", "-e", "--image", "--timeout", "--output", "-o"):
        skip = True
        continue
    if not arg.startswith("-"):
        words.append(arg)

def flag(name):
    return argv[argv.index(name) + 1] if name in argv else None

node = flag("--nodes") or "?"
version = (state / "version").read_text().strip()
schematic = (state / "schematic").read_text().strip() if (state / "schematic").exists() else ""

if words[:1] == ["version"]:
    print("Client:\n\tTag:         v1.13.9\n\tSHA:         5b9ba0d3\n\tBuilt:       \n\tGo version:  go1.25.9\n\tOS/Arch:     linux/amd64")
    print(f"Server:\n\tNODE:        {node}\n\tTag:         {version}\n\tSHA:         0d2a4e9c\n\tBuilt:       \n"
          "\tGo version:  go1.24.11\n\tOS/Arch:     linux/amd64\n\tEnabled:     RBAC")
elif words[:2] == ["get", "extensions"]:
    docs = [("0", "nonfree-kmod-nvidia-production", "580.95.05-" + version),
            ("1", "qemu-guest-agent", "10.0.2")]
    if schematic:
        docs.append(("2", "schematic", schematic))
    docs.append(("modules.dep", "modules.dep", "6.12.57-talos"))
    out = []
    for ident, name, ver in docs:
        out.append(f"node: {node}\nmetadata:\n    namespace: runtime\n    type: ExtensionStatuses.runtime.talos.dev\n"
                   f"    id: \"{ident}\"\n    version: 1\n    owner: runtime.ExtensionStatusController\n    phase: running\n"
                   f"spec:\n    image: {ident}.sqsh\n    metadata:\n        name: {name}\n        version: {ver}\n"
                   "        author: Sidero Labs\n")
    print("---\n".join(out), end="")
elif words[:1] == ["upgrade"]:
    image = flag("--image")
    match = re.search(r"/([0-9a-f]{64}):(v[0-9.]+)$", image or "")
    if not match:
        print(f"error: bad image {image}", file=sys.stderr)
        sys.exit(1)
    (state / "schematic").write_text(match.group(1))
    (state / "version").write_text(match.group(2))
    print(f"{node}: upgrade completed")
else:
    print(f"fake talosctl: unsupported command {argv}", file=sys.stderr)
    sys.exit(2)
