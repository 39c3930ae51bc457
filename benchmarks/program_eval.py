"""How long evaluating the program takes under Pulumi's mock engine, for the
homelab stack (1 GPU) and an 8-GPU stack, against importing the SDKs alone.

Each figure is the median of N fresh Python processes (imports included), so
it is what a user waits for before the engine starts talking to providers.

    .venv/bin/python benchmarks/program_eval.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORT_ONLY = """
import time; t = time.perf_counter()
import pulumi, pulumi_proxmoxve, pulumi_kubernetes, pulumiverse_talos
print(time.perf_counter() - t)
"""

EVALUATE = """
import time; t = time.perf_counter()
import copy, json, sys
sys.path.insert(0, {root!r})
from tests.conftest import run_main, stack_file_config
config = stack_file_config()
gpus = {gpus}
if gpus > 1:
    config["gpus"] = [
        {{"address": f"0000:{{0x3b + 0x10 * i:02x}}:00.0", "id": "10de:1eb8", "subsystemId": "10de:12a2", "slot": f"hostpci{{i}}"}}
        for i in range(gpus)
    ]
run = run_main(config)
print(json.dumps({{"seconds": time.perf_counter() - t, "resources": len(run.registrations)}}))
"""


def _median_seconds(code: str, runs: int) -> tuple[float, int]:
    seconds, resources = [], 0
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        if out.startswith("{"):
            data = json.loads(out)
            seconds.append(data["seconds"])
            resources = data["resources"]
        else:
            seconds.append(float(out))
    return statistics.median(seconds), resources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    sdk, _ = _median_seconds(IMPORT_ONLY, args.runs)
    print(f"import SDKs only          : {sdk * 1000:8.0f} ms (median of {args.runs})")
    for label, gpus in (("homelab stack (1 GPU)", 1), ("8-GPU stack", 8)):
        seconds, resources = _median_seconds(EVALUATE.format(root=str(ROOT), gpus=gpus), args.runs)
        print(f"{label:<25}: {seconds * 1000:8.0f} ms, {resources} resources, {seconds / sdk:.2f}x the SDK import")
    print(f"(benchmark wall time {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
