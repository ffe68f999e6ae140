"""Prometheus metrics Parley exports at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
