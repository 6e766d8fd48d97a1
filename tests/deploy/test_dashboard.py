"""The Grafana dashboard and its provisioning example (issue 20): every query
is scoped by the $job and $node variables, no panel depends on an optional
recording rule, the panels over the anomaly metrics show exemplars, and the
provisioning example links an exemplar's log_record_uid to the logs data
source. (tests/tests/dashboards.rs runs every query against a real
Prometheus.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards/badfd.json"
DATASOURCES = REPO / "dashboards/provisioning/datasource.yaml"
RULES = REPO / "deploy/prometheus/badfd-rules.yml"
# The exemplar label badfd writes (exporter/src/sinks/otlp/mod.rs EXEMPLAR_LABEL).
EXEMPLAR_LABEL = "log_record_uid"


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets() -> list[tuple[str, dict]]:
    out = [(p["title"], t) for p in dashboard()["panels"] for t in p.get("targets", [])]
    assert len(out) >= 10
    return out


# A metric name in a selector: a name, then `{` (every query here selects with labels).
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")


def selectors(expr: str) -> list[tuple[str, str]]:
    found = SELECTOR.findall(expr)
    assert found, f"no selector in {expr}"
    return found


def test_job_and_node_variables_scope_every_query():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    for name in ["datasource", "job", "node", "instance", "comm"]:
        assert name in variables, f"no ${name} variable"
    for name in ["job", "node", "instance", "comm"]:
        v = variables[name]
        # "All" matches targets without the label too (systemd hosts have no node).
        assert v["includeAll"] and v["allValue"] == ".*", name
    # Each variable's own query is narrowed by the ones before it.
    assert 'job=~"$job"' in variables["node"]["definition"]
    assert 'job=~"$job",node=~"$node"' in variables["instance"]["definition"]
    assert 'job=~"$job",node=~"$node",instance=~"$instance"' in variables["comm"]["definition"]
    for title, t in targets():
        for metric, labels in selectors(t["expr"]):
            for var in ["job", "node", "instance"]:
                assert f'{var}=~"${var}"' in labels, f"{title}: {metric}{{{labels}}} is not scoped by ${var}"


def recorded_names() -> set[str]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}


def test_no_panel_needs_a_recording_rule():
    recorded = recorded_names()
    assert recorded, "the rules file records something (else this test checks nothing)"
    for title, t in targets():
        for metric, _ in selectors(t["expr"]):
            assert metric not in recorded and ":" not in metric, f"{title} reads the recording rule {metric}: empty without it"


def test_anomaly_panels_show_exemplars_and_others_do_not_ask():
    with_exemplars = set()
    for title, t in targets():
        anomaly = any(m.startswith("badfd_anomaly_") for m, _ in selectors(t["expr"]))
        # Only badfd_anomaly_* carry exemplars: elsewhere the flag would only cost a query.
        assert t.get("exemplar", False) == anomaly, f"{title}: exemplar flag {t.get('exemplar')} on {t['expr']}"
        if anomaly:
            with_exemplars.add(title)
    assert "Slow open latency p99 by program" in with_exemplars
    assert "Slow opens by program" in with_exemplars
    assert "Failures never found, by program and errno" in with_exemplars


def test_provisioning_links_exemplars_to_the_logs_data_source():
    doc = yaml.safe_load(DATASOURCES.read_text())
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    prometheus = next(d for d in doc["datasources"] if d["type"] == "prometheus")
    destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert [d["name"] for d in destinations] == [EXEMPLAR_LABEL]
    url = destinations[0]["url"]
    # `$$` is provisioning's literal `$`: Grafana then interpolates ${__value.raw}.
    assert "$${__value.raw}" in url and "${__value.raw}" not in url.replace("$${__value.raw}", "")
    # The Explore pane names a logs data source this file provisions, by uid.
    panes = json.loads(url.split("panes=", 1)[1])
    (pane,) = panes.values()
    logs_uid = pane["queries"][0]["datasource"]["uid"]
    assert pane["datasource"] == logs_uid
    assert by_uid[logs_uid]["type"] == "loki"
    assert pane["queries"][0]["expr"].endswith(f'| {EXEMPLAR_LABEL}="$${{__value.raw}}"')


def test_exemplar_label_matches_the_exporter():
    source = (REPO / "exporter/src/sinks/otlp/mod.rs").read_text()
    assert f'pub const EXEMPLAR_LABEL: &str = "{EXEMPLAR_LABEL}";' in source


@pytest.mark.parametrize("doc", ["README.md", "docs/otlp.md", "docs/metrics.md", "dashboards/provisioning/datasource.yaml"])
def test_docs_say_prometheus_needs_exemplar_storage(doc):
    assert "--enable-feature=exemplar-storage" in (REPO / doc).read_text(), doc
