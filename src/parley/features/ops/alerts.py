"""`parley alerts test`: prove the alert path reaches a person before an incident does.

Posts one test alert, `ParleyTestAlert`, either to Alertmanager's API (a URL ending in
`/api/v2/alerts`: Alertmanager then routes it through deploy/alertmanager/alertmanager.yml to the
webhook, e-mail and Telegram receivers) or straight to a receiver's webhook in the payload
Alertmanager itself sends (version 4), so a chat bridge can be tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from parley import __version__
from parley.core.errors import BadInput, ErrorCode, ParleyError
from parley.features.ops.deploy import describe_http_error

ALERT_NAME = "ParleyTestAlert"


class AlertDeliveryFailed(ParleyError):
    status = 502
    default_code = ErrorCode.UNAVAILABLE


@dataclass
class Sent:
    url_kind: str  # alertmanager | webhook
    status: int
    alert: dict[str, Any]


def make_test_alert(note: str, *, minutes: int = 5) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {
            "alertname": ALERT_NAME,
            "severity": "info",
            "service": "parley",
            "test": "true",
        },
        "annotations": {
            "summary": "Test alert from `parley alerts test`: the alert path works.",
            "description": note or "Nothing is wrong; this checks that alerts reach a person.",
        },
        "startsAt": now.isoformat().replace("+00:00", "Z"),
        "endsAt": (now + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        "generatorURL": "parley://alerts/test",
    }


def webhook_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """The body Alertmanager POSTs to a webhook receiver (version 4)."""
    return {
        "version": "4",
        "status": "firing",
        "receiver": "parley-test",
        "groupKey": f'{{}}:{{alertname="{ALERT_NAME}"}}',
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": ALERT_NAME},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "",
        "alerts": [{**alert, "status": "firing", "fingerprint": "parley-test"}],
        "parley_version": __version__,
    }


def send_test_alert(url: str, note: str = "") -> Sent:
    """POST the test alert; raise AlertDeliveryFailed unless the receiver answered 2xx."""
    if not url.startswith(("http://", "https://")):
        raise BadInput("give an http(s) URL: Alertmanager's /api/v2/alerts or a webhook")
    alert = make_test_alert(note)
    to_alertmanager = url.rstrip("/").endswith("/api/v2/alerts")
    body: Any = [alert] if to_alertmanager else webhook_payload(alert)
    try:
        response = httpx.post(url, json=body, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise AlertDeliveryFailed(
            f"the test alert was not accepted: {describe_http_error(exc)}"
        ) from None
    return Sent("alertmanager" if to_alertmanager else "webhook", response.status_code, alert)
