"""The panel map in docs/monitoring.md is drawn from the dashboard's JSON by
tools.panel_map and stays in step with the dashboard."""

from __future__ import annotations

import json
import xml.dom.minidom

from components.monitoring import dashboard
from tests.conftest import ROOT
from tests.doctor import samples
from tools.panel_map import main, panel_map

SVG = ROOT / "docs" / "monitoring-dashboard.svg"


def test_the_committed_panel_map_is_the_reference_dashboards():
    model = dashboard.dashboard_model(samples.homelab_cfg())
    assert SVG.read_text() == panel_map(model), (
        "docs/monitoring-dashboard.svg is out of date: render, then run the command in components/monitoring/panel_map.py")


def test_every_panel_is_drawn_where_its_grid_position_puts_it(tmp_path):
    model = dashboard.dashboard_model(samples.homelab_cfg())
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(model))
    assert main([str(path), str(tmp_path / "map.svg")]) == 0
    document = xml.dom.minidom.parse(str(tmp_path / "map.svg"))
    texts = [node.firstChild.data for node in document.getElementsByTagName("text")]
    for panel in model["panels"]:
        assert panel["title"] in texts
    rects = [(int(r.getAttribute("x")), int(r.getAttribute("y"))) for r in document.getElementsByTagName("rect") if r.getAttribute("x")]
    encoder = next(panel for panel in model["panels"] if panel["title"] == "Encoder (NVENC) use")["gridPos"]
    assert (8 + encoder["x"] * 40 + 2, 8 + 30 + encoder["y"] * 28 + 2) in rects


def test_a_file_that_is_not_a_dashboard_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text('{"panels": [{"title": "no grid"}]}')
    assert main([str(path), str(tmp_path / "map.svg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a Grafana dashboard's JSON" in err and "Traceback" not in err
    assert main([str(tmp_path / "missing.json"), str(tmp_path / "map.svg")]) == 2
