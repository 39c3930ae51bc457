"""Run a dynamic provider the way the Pulumi engine does: the serialized
``__provider`` input from a mock-engine registration is loaded with dill in a
fresh Python process started in the project root, and one method is called
there (the stand-in talosctl/kubectl on that process's PATH)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.mockengine import ProgramRun, reveal

ROOT = Path(__file__).resolve().parents[2]

DRIVER = r"""
import base64, json, sys
import dill
request = json.load(sys.stdin)
provider = dill.loads(base64.b64decode(request["provider"]))
try:
    op, props, olds = request["op"], request["props"], request["olds"]
    if op == "check":
        result = provider.check(olds, props)
        out = {"inputs": result.inputs, "failures": [[f.property, f.reason] for f in result.failures]}
    elif op == "diff":
        result = provider.diff("id", olds, props)
        out = {"changes": result.changes, "replaces": result.replaces}
    elif op == "create":
        result = provider.create(props)
        out = {"id": result.id, "outs": result.outs}
    elif op == "update":
        out = {"outs": provider.update("id", olds, props).outs}
    elif op == "delete":
        out = {"deleted": provider.delete("id", props)}
    print(json.dumps({"ok": out}))
except Exception as error:
    print(json.dumps({"error": type(error).__name__, "message": str(error)}))
"""


def registration(run: ProgramRun, type_: str, name_suffix: str = "") -> tuple[str, dict[str, Any]]:
    """(serialized provider, plain inputs) of the one ``type_`` registration
    (whose name ends with ``name_suffix``)."""
    [reg] = [reg for reg in run.by_type(type_) if reg.name.endswith(name_suffix)]
    inputs = reveal(reg.inputs)
    provider = inputs.pop("__provider")
    return provider, {key: value for key, value in inputs.items() if value is not None}


def engine(provider: str, op: str, props: dict[str, Any], env: dict[str, str], olds: dict[str, Any] | None = None,
           timeout: float = 120) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          input=json.dumps({"provider": provider, "op": op, "props": props, "olds": olds or {}}), check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result
