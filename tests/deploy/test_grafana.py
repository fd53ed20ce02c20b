"""The Grafana provisioning and dashboard, checked without Grafana.

Grafana is not packaged by Debian, so the Docker test runs nodes without it
(`enabled: { grafana: false }`). Here its inputs are held to what Grafana
requires of them: the provisioning files point where the compose file mounts
things and at the Prometheus service, and the dashboard is a well-formed
dashboard of its schema version (unique panel ids, a 24-column grid without
overlaps, every query on the provisioned data source through the `datasource`
variable). The PromQL itself is promtool's job (test_compose.py).
"""

import json
import re

import _jsonnet

from .conftest import ROOT
from .test_compose import render

PROVISIONING = ROOT / "monitoring" / "grafana"
PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "text", "heatmap"}


def yaml_values(path):
    """`key: value` pairs of a small provisioning file (no YAML library here)."""
    pairs = re.findall(r"^[ \t]*(?:- )?(\w+):[ \t]*(\S.*?)[ \t]*$", path.read_text(), re.M)
    return {key: value for key, value in pairs}


def test_provisioning_points_where_compose_mounts_and_at_prometheus():
    grafana = render()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./monitoring/grafana"] == "/etc/grafana/provisioning"
    datasource = yaml_values(PROVISIONING / "datasources" / "prometheus.yaml")
    assert datasource["apiVersion"] == "1" and datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"  # the compose service and its port
    provider = yaml_values(PROVISIONING / "dashboards" / "streamvault.yaml")
    assert provider["apiVersion"] == "1" and provider["type"] == "file"
    assert mounts["./monitoring/generated"] == provider["path"]


def test_dashboard_is_well_formed_for_its_schema():
    dashboard = json.loads(_jsonnet.evaluate_file(str(ROOT / "monitoring/dashboard.jsonnet")))
    assert dashboard["uid"] == "streamvault" and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = yaml_values(PROVISIONING / "datasources" / "prometheus.yaml")
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == datasource["type"]
    assert variables["datasource"]["current"]["value"] == datasource["uid"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells = set()
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs)
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"]
    for name in ("node", "channel"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"
