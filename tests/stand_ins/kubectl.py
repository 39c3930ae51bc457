"""The kubectl stand-in every test shares. Run it as ``python kubectl.py
<args>`` (the wrappers ``install_*`` write, or tests/stand_ins/kubectl_cli).

| behaviour imitated | upstream (kubernetes/kubectl, kubernetes-1.33.0 .. kubernetes-1.35.7) |
|---|---|
| global flags, verb flags (bool/string/int/duration), `-ovalue`, `--` | `kubectl options`; pkg/cmd/*/ flags; spf13/pflag |
| `Error: unknown flag: --x` / `unknown shorthand flag: 'x' in -x` + `See 'kubectl V --help' for usage.`, exit 1 | spf13/cobra command.go (FlagErrorFunc), pkg/cmd/cmd.go |
| `Error: unknown command "x" for "kubectl"` | cobra command.go `Find` |
| `Error: invalid argument "x" for "--f" flag: strconv.ParseBool ...` / `time: invalid duration` | spf13/pflag bool.go, duration.go |
| `get` without a type; `--raw` with arguments or `-o` | pkg/cmd/get/get.go `Complete`, `Validate` |
| `get TYPE NAME -o json`: the object (4-space JSON); no name: a `List`; `--ignore-not-found`: nothing | pkg/cmd/get/get.go `Run`; k8s.io/cli-runtime printers/json.go |
| `Error from server (NotFound): nodes "x" not found`, exit 1 | k8s.io/apimachinery errors.go `NewNotFound`; pkg/cmd/util/helpers.go `StandardErrorMessage` |
| `error: the server doesn't have a resource type "x"` (`... in group "g"` when a group was given) | pkg/cmd/util/helpers.go `checkErr` (NoMatchError) |
| `The connection to the server H:P was refused - did you specify the right host or port?` | pkg/cmd/util/helpers.go `StandardErrorMessage` |
| `exec` without `--` / with a bare command | pkg/cmd/exec/exec.go `Complete` |
| `version -o json` (`clientVersion`, `kustomizeVersion`, `serverVersion`); `-o` other than json/yaml refused | pkg/cmd/version/version.go `Run`, `Validate` |
| `cordon`/`uncordon`: `node/x cordoned`, `already cordoned`; no node: `USAGE: cordon NODE [flags]` | pkg/cmd/drain/drain.go `RunCordonOrUncordon`, `already`, `changed`, `Complete` |
| `drain`: cordon, DaemonSet / emptyDir / no-controller refusals, `evicting pod ns/p`, `pod/p evicted`, `node/x drained` | pkg/cmd/drain/drain.go `RunDrain`; pkg/drain/filters.go; pkg/drain/drain.go `evictPods` |
| `drain --timeout`: PDB retries every 5s, then `global timeout reached: 10m0s` | pkg/drain/drain.go `evictPods`, `EvictErrorRetryDelay` |
| `delete`: `kind.group "x" deleted`, `--wait` for finalizers, `--ignore-not-found` | pkg/cmd/delete/delete.go, delete_flags.go |
| `patch --type=merge -p`: `kind.group/x patched`; `--type` other than json/merge/strategic refused | pkg/cmd/patch/patch.go `Validate`, `RunPatch` |

Three ways to answer, chosen by the environment (every one parses the
command line first, with tests/stand_ins/kubectl_flags.py, and refuses what
kubectl refuses):

- $FAKE_CLI_DIR: scripted answers in <dir>/kubectl.json, a list of {"match":
  argv less the --kubeconfig flag, "responses": [{"stdout", "stderr", "rc",
  "sleep"}, ...]} stepped through on successive calls (the last repeats);
  anything else exits 99 naming the argv. For failures no cluster makes on
  demand (garbage output, a hang, an error page).
- $FAKE_KUBE_STATE=<file>.json: nodes and pods for the drain around a host
  reboot ({"nodes": {name: {"ready", "unschedulable", "vm"}}, "pods": [...]},
  tests/stand_ins/kubectl_drain.py's pod form; "vm" makes the node Ready
  while the simulated host runs its VM).
- $FAKE_KUBE_STATE=<dir>: a cluster of objects, with Flux's controllers when
  asked (tests/stand_ins/kubectl_cluster.py).

Every call is appended to calls.jsonl beside the state: its argv, args (argv
less --kubeconfig), the kubeconfig's path, mode (``mode``/``config_mode``)
and text, $KUBECONFIG, the exit code, whether it changed the cluster
(``mutated``), what the controllers did before it (``reconciled``), and the
Talos node's version when $FAKE_TALOS_STATE is set."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.stand_ins.kubectl_flags import Usage, parse  # noqa: E402
from tests.stand_ins.scripted import scripted_answer  # noqa: E402

CONFIG_FLAG = "--kubeconfig"


def without_config_flag(argv: list[str], flag: str = CONFIG_FLAG) -> list[str]:
    """argv less the private config file's flag (its path changes per call):
    kubectl's --kubeconfig, or the flag named (the doctor's talosctl)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(f"{flag}="):
            out.append(arg)
    return out


def _kubeconfig(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == CONFIG_FLAG and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(f"{CONFIG_FLAG}="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str]) -> int:
    scripted = os.environ.get("FAKE_CLI_DIR")
    kube_state = Path(os.environ.get("FAKE_KUBE_STATE", "."))
    log_dir = Path(scripted) if scripted else kube_state.parent if kube_state.suffix == ".json" else kube_state
    path = _kubeconfig(argv)
    record: dict[str, Any] = {"tool": "kubectl", "argv": argv, "args": without_config_flag(argv), "kubeconfig": path,
                              "config_path": path, "mode": None, "config_mode": None, "config_text": None,
                              "env_kubeconfig": os.environ.get("KUBECONFIG"), "time": time.time(), "mutated": False, "reconciled": []}
    out, err, code, sleep = "", "", 0, 0.0
    try:
        if path is not None:
            try:
                record["mode"] = record["config_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
                record["config_text"] = Path(path).read_text()
            except OSError:
                raise Usage(f"error: stat {path}: no such file or directory") from None
        verb, words, flags, _after = parse(argv)
        if verb is None:
            raise Usage("kubectl controls the Kubernetes cluster manager.")
        if scripted:
            out, err, code, sleep = scripted_answer(Path(scripted), "kubectl", without_config_flag(argv))
        elif kube_state.suffix == ".json":
            from tests.stand_ins.kubectl_nodes import serve as serve_nodes

            out, err = serve_nodes(kube_state, verb, words, flags)
        else:
            from tests.stand_ins import kubectl_cluster

            try:
                out, err, record["mutated"], record["reconciled"] = kubectl_cluster.serve(verb, words, flags)
            except kubectl_cluster.Exit as error:
                out, err, code = error.stdout, f"{error}\n", 1
    except Usage as error:
        err, code = f"{error}\n", 1
    except Exception as error:  # the nodes' drain fails the same way
        if type(error).__name__ not in ("Failed", "Exit"):
            raise
        out, err, code = getattr(error, "stdout", ""), f"{error}\n", 1
    record["exit"] = code
    talos = Path(os.environ["FAKE_TALOS_STATE"]) / "node.json" if os.environ.get("FAKE_TALOS_STATE") else None
    record["talos_version"] = json.loads(talos.read_text()).get("version") if talos and talos.exists() else None
    with open(log_dir / "calls.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
    time.sleep(sleep)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
