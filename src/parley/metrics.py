"""Prometheus metrics Parley exports at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUEST_SECONDS = Histogram(
    "parley_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES_STORED = Counter("parley_messages_stored_total", "Messages durably stored.")
MESSAGE_RETRIES = Counter(
    "parley_message_retries_total",
    "Sends answered with an already stored message (same client_msg_id).",
)
WRITER_BATCH_SIZE = Histogram(
    "parley_writer_batch_size",
    "Sends stored per group-commit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
READ_ROLLBACK_DETECTED = Counter(
    "parley_read_rollback_detected_total",
    "P0: receipts that tried to move a cursor backwards (ignored, never applied).",
    ["transport"],
)

STREAM_CONNECTIONS = Gauge(
    "parley_stream_connections", "Open stream connections on this node.", ["transport"]
)
STREAM_OPENS = Counter(
    "parley_stream_opens_total",
    "Stream connections opened (with or without a cursor).",
    ["transport"],
)
STREAM_RESUMES = Counter(
    "parley_stream_resumes_total", "Stream opens that re-sent missed events.", ["transport"]
)
RESYNC_ERRORS = Counter(
    "parley_resync_errors_total",
    "ERR_RESYNC_RANGE_UNAVAILABLE and ERR_RESYNC_THROTTLED answers.",
    ["transport", "code"],
)
SLOW_CONSUMERS = Counter(
    "parley_slow_consumer_disconnects_total",
    "Connections cut loose for falling behind.",
    ["transport"],
)
FANOUT_DELAY = Histogram(
    "parley_fanout_delay_seconds",
    "Commit to dispatch on this node's hub (server-side write receipt).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CLIENT_REPORTED = Counter(
    "parley_client_reported_total",
    "Counters reported by clients: the P0 invariants ack_without_receipt_10s, "
    "timeline_duplicate_detected, read_rollback_detected, and forced_resyncs, full_state_loads.",
    ["transport", "counter"],
)
CLIENT_WRITE_RECEIPT = Histogram(
    "parley_client_write_receipt_seconds",
    "Ack to the message arriving on the sender's stream, as clients measured it.",
    ["transport"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITE_RECEIPT_P95_MS = Gauge(
    "parley_write_receipt_p95_ms",
    "p95 of the last 1,000 client-reported write receipts, in milliseconds.",
    ["transport"],
)
BUS_HEALTHY = Gauge("parley_bus_healthy", "1 when the fan-out bus is connected.")

# -- release control plane (docs/release.md) ---------------------------------------------------
RELEASE_STAGE_PERCENT = Gauge(
    "parley_release_stage_percent",
    "The rollout stage of the release, as its percentage (off 0, canary_1 1, ..., full 100).",
)
RELEASE_KILL_SWITCH = Gauge(
    "parley_release_kill_switch", "1 while the release's kill switch is on."
)
RELEASE_GATE_OK = Gauge(
    "parley_release_gate_ok",
    "Release gates as the watcher last computed them: 1 ok, 0 failed, -1 not enough data.",
    ["gate"],
)
RELEASE_DECISION = Gauge(
    "parley_release_decision",
    "1 for the current rollout decision (PROCEED, HOLD, ROLLBACK), 0 for the others.",
    ["decision"],
)
RELEASE_TRANSITIONS = Counter(
    "parley_release_transitions_total", "Rollout moves by action.", ["action"]
)
RELEASE_KILLS = Counter(
    "parley_release_kills_total",
    "Kill switch trips: by the watcher on a P0 breach, or by an operator.",
    ["trigger"],
)
RELEASE_WEBHOOK_FAILURES = Counter(
    "parley_release_webhook_failures_total", "Kill notifications the webhook did not accept."
)
WIDGET_REFUSED = Counter(
    "parley_widget_refused_total",
    "Widget API requests refused by a defence: origin, disabled, or the rate that was exceeded.",
    ["reason"],
)

AUDIT_ENTRIES = Counter(
    "parley_audit_entries_total", "Staff actions appended to the audit log.", ["action"]
)

EXPORTS = Counter(
    "parley_exports_total", "Export packages by kind and outcome.", ["kind", "outcome"]
)
RETENTION_PURGED = Counter(
    "parley_retention_purged_total", "Messages the retention job turned into tombstones."
)
ERASURES = Counter("parley_erasures_total", "People erased, by policy.", ["policy"])
