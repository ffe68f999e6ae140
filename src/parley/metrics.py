"""Prometheus metrics Parley exports at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

HTTP_REQUEST_SECONDS = Histogram(
    "parley_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES_STORED = Counter("parley_messages_stored_total", "Messages durably stored.")
SENDS = Counter(
    "parley_sends_total",
    "Sends that reached the writer, by outcome: ok, slow (stored, but later than "
    "PARLEY_RELEASE_SEND_STALL_MS) or failed (a server error). Slow and failed are send stalls.",
    ["outcome"],
)
MESSAGE_RETRIES = Counter(
    "parley_message_retries_total",
    "Sends answered with an already stored message (same client_msg_id).",
)
MESSAGE_CHANGES = Counter(
    "parley_message_changes_total",
    "Changes to stored messages, each with its stream position: edited, deleted, reactions.",
    ["change"],
)
WRITER_BATCH_SIZE = Histogram(
    "parley_writer_batch_size",
    "Sends stored per group-commit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
MEMBERSHIP_CACHE = Counter(
    "parley_membership_cache_total",
    "Membership checks of sends and typing, by result: hit (this node's cache answered) or "
    "miss (the database did).",
    ["result"],
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
STREAM_POLL_PARKED = Counter(
    "parley_stream_poll_parked_total",
    "Long polls that took the subscription their previous poll parked (no database read).",
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

# -- trust & safety (docs/moderation.md, docs/disputes.md) -------------------------------------
MODERATION_VERDICTS = Counter(
    "parley_moderation_verdicts_total",
    "Sends the moderation pipeline held or refused, by verdict and by what caught them "
    "(a rule kind, or mute/ban).",
    ["verdict", "rule"],
)
MODERATION_CLASSIFIER_SECONDS = Histogram(
    "parley_moderation_classifier_seconds",
    "Time the external classifier took to answer.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MODERATION_CLASSIFIER_FAILURES = Counter(
    "parley_moderation_classifier_failures_total",
    "Classifier calls that failed or timed out (the rule's on_error applied).",
)
MODERATION_REPORTS = Counter("parley_moderation_reports_total", "Messages reported by members.")
MODERATION_ACTIONS = Counter(
    "parley_moderation_actions_total", "Moderators' decisions, by action.", ["action"]
)
MODERATION_QUEUE_OPEN = Gauge(
    "parley_moderation_queue_open",
    "Open moderation queue items (the backlog), by kind (report, held) and tier.",
    ["kind", "tier"],
)
DISPUTES_OPEN = Gauge(
    "parley_disputes_open", "Disputes not yet resolved or cancelled, by status.", ["status"]
)
DISPUTES_OVERDUE = Gauge(
    "parley_disputes_overdue",
    "Active disputes past their status's SLA deadline (seed 000: must be 0 before a release).",
)
DISPUTE_TIME_TO_RESOLUTION = Histogram(
    "parley_dispute_time_to_resolution_seconds",
    "From opening to resolved or cancelled.",
    ["outcome"],
    buckets=(60, 600, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600, 7 * 86400, 30 * 86400),
)
DISPUTE_TRANSITIONS = Counter(
    "parley_dispute_transitions_total", "Dispute status changes, by new status.", ["status"]
)
DISPUTE_SLA_BREACHES = Counter(
    "parley_dispute_sla_breaches_total",
    "SLA deadlines that passed (fired once each), by the status that overran.",
    ["status"],
)
DISPUTE_WEBHOOK_DELIVERIES = Counter(
    "parley_dispute_webhook_deliveries_total",
    "Dispute webhook attempts: delivered, retry (will try again) or failed (gave up).",
    ["result"],
)

# -- notifications (docs/notifications.md) -------------------------------------------------------
NOTIFICATIONS_SENT = Counter(
    "parley_notifications_sent_total", "Notifications a channel accepted.", ["channel"]
)
NOTIFICATIONS_FAILED = Counter(
    "parley_notifications_failed_total",
    "Notifications dropped: dead-lettered after the last attempt, or refused for good.",
    ["channel"],
)
NOTIFICATION_ATTEMPT_FAILURES = Counter(
    "parley_notification_attempt_failures_total",
    "Failed send attempts, retried or not (a retry that then succeeds is no drop).",
    ["channel"],
)
NOTIFICATIONS_DEDUPLICATED = Counter(
    "parley_notifications_deduplicated_total",
    "Notifications refused by the deduplication key (duplicate events, work done again after "
    "a crash), by the stage that refused them: pending or delivery.",
    ["stage"],
)
NOTIFICATION_DROP_RATE = Gauge(
    "parley_notification_drop_rate",
    "Dropped / attempted per channel over PARLEY_NOTIFY_DROP_WINDOW_SECONDS, from the database "
    "(every worker's deliveries). Release gate P1 input; must stay below 1 %.",
    ["channel"],
)
NOTIFICATIONS_QUEUED = Gauge(
    "parley_notifications_queued",
    "Notification work waiting: outbox (new messages), pending (unread, not due yet), deliveries.",
    ["queue"],
)
CALLS_STARTED = Counter("parley_calls_started_total", "Calls placed (offers stored).")
CALLS_ANSWERED = Counter("parley_calls_answered_total", "Calls answered.")
CALLS_ENDED = Counter(
    "parley_calls_ended_total",
    "Calls that ended, by final state (ended | missed) and reason.",
    ["state", "reason"],
)
CALL_SIGNALS = Counter(
    "parley_call_signals_total",
    "Call signals relayed to the parties' streams, by type (call.offer, call.ice, ...).",
    ["type"],
)
SSO_LOGINS = Counter(
    "parley_sso_logins_total",
    "Single sign-on attempts that came back from a provider, by provider and outcome.",
    ["provider", "outcome"],
)

# -- operations (docs/operations.md) ---------------------------------------------------------------
MAINTENANCE_ACTIVE = Gauge(
    "parley_maintenance_active", "1 while maintenance mode is on (as this node last read it)."
)
MAINTENANCE_REFUSED = Counter(
    "parley_maintenance_refused_total", "Requests and streams refused by maintenance mode."
)
BACKUP_AGE = Gauge(
    "parley_backup_newest_verified_age_seconds",
    "Age of the newest verified backup in PARLEY_BACKUP_DIR as this node sees it (+Inf: none).",
)
RELEASE_P0_REPORTERS = Gauge(
    "parley_release_p0_reporters",
    "Distinct users who reported a P0 counter in the gates' window (a kill needs "
    "PARLEY_RELEASE_P0_MIN_REPORTERS of them).",
)
RELEASE_P0_ALERTS = Counter(
    "parley_release_p0_alerts_total",
    "P0 reports too few users corroborate for a kill: alerted and held, not killed.",
)
LOGIN_REFUSED = Counter(
    "parley_login_refused_total",
    "Password sign-ins refused: wrong credentials, a disabled account, or a rate exceeded.",
    ["reason"],
)
STREAMS_REVOKED = Counter(
    "parley_streams_revoked_total",
    "Streams closed because their token was revoked or expired, or their user changed.",
)


def serve_metrics(listen: str) -> None:
    """Serve /metrics on an internal listener `host:port` (a thread; `parley serve` only)."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")


# -- reliability (docs/reliability.md) ---------------------------------------------------------
BACKGROUND_ERRORS = Counter(
    "parley_background_errors_total",
    "Failed iterations of a safety loop (release watcher, hub gap fill, stream background tasks).",
    ["loop"],
)
STORAGE_FREE_BYTES = Gauge(
    "parley_storage_free_bytes",
    "Free bytes on the volume of the attachment store and of the embedded database.",
    ["volume"],
)
STORAGE_NEARLY_FULL = Gauge(
    "parley_storage_nearly_full",
    "1 when a volume has less free space than PARLEY_STORAGE_MIN_FREE_BYTES.",
    ["volume"],
)
STORAGE_FULL_REFUSALS = Counter(
    "parley_storage_full_total",
    "Writes refused because a volume (attachments or database) was full.",
    ["volume"],
)
CLOCK_OFFSET_SECONDS = Gauge(
    "parley_clock_offset_seconds",
    "This node's clock minus the database's (PostgreSQL) clock, as last measured.",
)
STREAM_QUEUED_EVENTS = Gauge(
    "parley_stream_queued_events",
    "Events queued for this node's stream connections, not yet written (all of them, and the "
    "largest queue of one): bounded by PARLEY_STREAM_QUEUE_LIMIT per connection.",
    ["of"],
)
DB_CONNECTIONS = Gauge(
    "parley_db_connections",
    "Database connections held by this process's pools: open, and in use right now.",
    ["state"],
)
EXPORTS = Counter(
    "parley_exports_total", "Export packages by kind and outcome.", ["kind", "outcome"]
)
RETENTION_PURGED = Counter(
    "parley_retention_purged_total", "Messages the retention job turned into tombstones."
)
ERASURES = Counter("parley_erasures_total", "People erased, by policy.", ["policy"])
