"""Draw a Grafana dashboard's layout as an SVG panel map, from its JSON:
each panel where its gridPos puts it (24 columns), with its title, its unit
and the metrics it reads; rows as bands. docs/monitoring.md shows the GPU
dashboard's map, made with

    python -m components.render --stack homelab --out render/homelab
    python -m tools.panel_map render/homelab/kubernetes/monitoring/gpu-dashboard.json \\
        docs/monitoring-dashboard.svg
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

COLUMN, UNIT_HEIGHT, MARGIN = 40, 28, 8
_METRIC = re.compile(r"\b(DCGM_FI_[A-Z0-9_]+|kube_[a-z_]+)\b")


def _text(x: float, y: float, text: str, size: int, weight: str = "normal", fill: str = "#1f2328") -> str:
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-family="sans-serif" font-size="{size}" font-weight="{weight}" '
            f'fill="{fill}">{escape(text)}</text>')


def panel_map(model: dict[str, Any]) -> str:
    """The SVG text for a dashboard model (the JSON Grafana imports)."""
    panels = model.get("panels") or []
    bottom = max((panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in panels), default=0)
    width, height = 24 * COLUMN + 2 * MARGIN, bottom * UNIT_HEIGHT + 2 * MARGIN + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           _text(MARGIN, MARGIN + 18, f"{model.get('title', '')} (uid {model.get('uid', '')}): panel map", 16, "bold")]
    for panel in panels:
        grid = panel["gridPos"]
        x, y = MARGIN + grid["x"] * COLUMN, MARGIN + 30 + grid["y"] * UNIT_HEIGHT
        w, h = grid["w"] * COLUMN, grid["h"] * UNIT_HEIGHT
        if panel.get("type") == "row":
            out += [f'<rect x="{x}" y="{y}" width="{w}" height="{h - 2}" fill="#e7ecf3"/>',
                    _text(x + 6, y + h - 9, panel.get("title", ""), 13, "bold", "#3b4a5f")]
            continue
        unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit", "")
        found = sorted({name for target in panel.get("targets") or [] for name in _METRIC.findall(target.get("expr", ""))})
        out += [f'<rect x="{x + 2}" y="{y + 2}" width="{w - 4}" height="{h - 4}" rx="4" fill="#f6f8fa" stroke="#8c959f"/>',
                _text(x + 10, y + 22, panel.get("title", ""), 14, "bold"),
                _text(x + 10, y + 40, f"{panel.get('type', '')}, unit {unit or 'none'}", 11, fill="#57606a")]
        out += [_text(x + 10, y + 60 + 15 * index, name, 11, fill="#0b5cad") for index, name in enumerate(found)]
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.panel_map", description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboard", type=Path, help="the dashboard's JSON (render writes kubernetes/monitoring/gpu-dashboard.json)")
    parser.add_argument("out", type=Path, help="the SVG file to write")
    args = parser.parse_args(argv)
    try:
        model = json.loads(args.dashboard.read_text())
        svg = panel_map(model)
    except (OSError, UnicodeDecodeError) as error:
        print(f"panel_map: cannot read {args.dashboard}: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as error:
        print(f"panel_map: {args.dashboard} is not a Grafana dashboard's JSON ({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    try:
        args.out.write_text(svg)
    except OSError as error:
        print(f"panel_map: cannot write {args.out}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from components.cli import run

    sys.exit(run("panel_map", main))
