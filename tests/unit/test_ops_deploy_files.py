"""What deploy/ ships for operations is valid for the real tools that will load it: Prometheus's
config and alert rules (promtool, with unit tests of the rules), Alertmanager's config (amtool),
the systemd units (systemd-analyze), and the Promtail pipeline matches Parley's JSON log lines.

scripts/test.sh installs the tools (Debian packages prometheus, prometheus-alertmanager); a
missing tool is a skip on a developer's machine and a failure in CI.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from parley.logs import configure_logging

DEPLOY = Path(__file__).parents[2] / "deploy"
IN_CI = os.environ.get("CI", "").lower() == "true"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} must be installed in CI (scripts/test.sh)")
        pytest.skip(f"{name} is not installed (scripts/test.sh installs it)")
    return found


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_prometheus_config_and_its_alert_rules() -> None:
    checked = run(tool("promtool"), "check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout
    assert "parley-alerts.yml" in checked.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    """Outage pages, maintenance is announced and its 503s are not an error rate, real 5xx
    still are, and a backup older than 26 h warns (deploy/prometheus/parley-alerts.test.yml)."""
    tested = run(
        tool("promtool"), "test", "rules", "parley-alerts.test.yml", cwd=DEPLOY / "prometheus"
    )

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_amtool_accepts_the_alertmanager_config_with_webhook_email_and_telegram() -> None:
    path = DEPLOY / "alertmanager" / "alertmanager.yml"
    checked = run(tool("amtool"), "check-config", path)
    config = yaml.safe_load(path.read_text())
    kinds = {key for receiver in config["receivers"] for key in receiver if key != "name"}

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {"webhook_configs", "email_configs", "telegram_configs"} <= kinds
    inhibitors = [rule["source_matchers"] for rule in config["inhibit_rules"]]
    assert ['alertname="ParleyMaintenanceOn"'] in inhibitors


def test_a_broken_alertmanager_config_is_refused(tmp_path: Path) -> None:
    """The check can fail: a route to a receiver that does not exist."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    config["route"]["receiver"] = "nobody"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))

    checked = run(tool("amtool"), "check-config", broken)

    assert checked.returncode != 0
    assert "nobody" in checked.stdout + checked.stderr


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """systemd-analyze checks every key and section; the ExecStart binary is the one thing that
    does not exist here (/opt/parley), so the copies point at this Python instead."""
    analyze = tool("systemd-analyze")
    units = sorted((DEPLOY / "systemd").iterdir())
    for unit in units:
        text = unit.read_text().replace("/opt/parley/.venv/bin/parley", sys.executable)
        (tmp_path / unit.name).write_text(text)

    verified = run(analyze, "verify", *sorted(tmp_path.iterdir()))

    assert {u.name for u in units} >= {
        "parley.service",
        "parley-backup.service",
        "parley-backup.timer",
        "parley-restore-test.service",
        "parley-restore-test.timer",
    }
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stderr
    assert (
        "parley backup --label scheduled"
        in (DEPLOY / "systemd" / "parley-backup.service").read_text()
    )


def test_promtail_parses_the_fields_parley_writes_in_its_json_log_lines() -> None:
    config = yaml.safe_load((DEPLOY / "promtail" / "promtail.yml").read_text())
    (job,) = config["scrape_configs"]
    stages = {key: value for stage in job["pipeline_stages"] for key, value in stage.items()}
    buffer = io.StringIO()
    configure_logging(json_lines=True, level="INFO")
    handler = logging.getLogger().handlers[0]
    handler.setStream(buffer)  # type: ignore[attr-defined]
    logging.getLogger("parley.access").info("request", extra={"route": "/healthz", "status": 200})
    line = json.loads(buffer.getvalue().splitlines()[-1])

    assert set(stages["json"]["expressions"].values()) <= set(line)
    assert set(stages["labels"]) <= set(stages["json"]["expressions"])
    assert stages["timestamp"]["source"] == "time"
    assert job["journal"]["labels"]["job"] == "parley"
