"""The shipped Grafana dashboard and Prometheus alert rules refer only to metrics Parley exports,
and cover seed 004's hard-stop conditions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import parley.metrics  # noqa: F401 - registers every metric

DEPLOY = Path(__file__).parents[2] / "deploy"
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def _referenced(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\bparley_[a-z0-9_]+", expr)}


def _known(name: str, exported: set[str]) -> bool:
    if name in exported:
        return True
    base = next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s)), name)
    return base in exported


def test_the_alert_rules_cover_every_hard_stop_and_use_real_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "parley-alerts.yml").read_text())
    alerts = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}

    assert {
        "ParleyAckWithoutReceipt",
        "ParleyTimelineDuplicate",
        "ParleyReadRollback",
        "ParleySendStall",
    } <= {name for name, rule in alerts.items() if rule["labels"]["severity"] == "critical"}
    exported = _exported()
    unknown = {
        n for n in _referenced([r["expr"] for r in alerts.values()]) if not _known(n, exported)
    }
    assert unknown == set()


def test_the_chat_health_dashboard_uses_real_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "chat-health.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]

    assert dashboard["title"] == "Chat Health"
    assert len(expressions) >= 15
    exported = _exported()
    assert {n for n in _referenced(expressions) if not _known(n, exported)} == set()
