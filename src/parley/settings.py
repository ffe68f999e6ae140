"""Every PARLEY_* setting in one place, documented where it is declared."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    """Configuration read from `PARLEY_*` environment variables (and an optional `.env` file)."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_file=".env", extra="ignore")

    # Where Parley keeps its embedded database and attachment files.
    data_dir: Path = Field(default=DEFAULT_DATA_DIR)
    # SQLAlchemy async URL. Empty means the embedded SQLite file `<data_dir>/parley.db`.
    # Production: postgresql+asyncpg://user@host/db
    database_url: str = ""
    # Redis URL for fan-out, presence and rate limits. Empty means in-process (one node only).
    redis_url: str = ""
    # Prefix of every Redis key and channel: deployments sharing one Redis must differ here.
    redis_prefix: str = "parley:"

    # HTTP listener for `parley serve`.
    host: str = "127.0.0.1"
    port: int = 8000

    # Seed two demo users (alice, bob) and serve the demo page's one-click sign-in.
    # Never enable on a deployment reachable by strangers.
    demo: bool = False

    # SQLite `synchronous` pragma: FULL survives power loss; NORMAL survives process crashes only.
    sqlite_synchronous: str = "FULL"

    # Group commit: the most messages one transaction stores, and how many writer loops run.
    # SQLite has one writer; PostgreSQL batches of different conversations can commit in parallel.
    writer_max_batch: int = Field(default=512, ge=1, le=10_000)
    # One shard by default: every batch takes the stream head's row lock, so on PostgreSQL more
    # shards only queue on it (measured: 23-118 ms lock waits with 4, 1.5-4 ms with 1).
    writer_shards: int = Field(default=1, ge=1, le=64)

    # How long after sending authors may still edit a message (seconds; 0: never). Staff
    # (admins, moderators) edit their own messages at any time. Deleting has no window.
    edit_window_seconds: int = Field(default=3600, ge=0)

    # Attachments: largest upload accepted, in bytes.
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # Largest JSON request body, in bytes (refused with 413 before it is read whole).
    request_max_bytes: int = Field(default=256 * 1024, ge=1024)

    # Real-time streams (docs/realtime.md).
    # Resume from cursors at most this many positions behind the head, and this old.
    resume_window_events: int = Field(default=100_000, ge=1)
    resume_window_seconds: int = Field(default=24 * 3600, ge=1)
    # A resume may re-send at most this many missed messages; more means "load full state".
    resume_max_messages: int = Field(default=5_000, ge=1)
    # How often one user may resume with a backlog (a `limits` rate string).
    resume_rate: str = "60/minute"
    # Per-node connection limits.
    stream_max_per_user: int = Field(default=20, ge=1)
    stream_max_per_ip: int = Field(default=500, ge=1)
    # Events queued for one slow connection before it is cut loose (it then resumes).
    stream_queue_limit: int = Field(default=10_000, ge=10)
    # Largest WebSocket frame, after permessage-deflate inflation (close 1009 past it).
    ws_max_frame_bytes: int = Field(default=256 * 1024, ge=1024)
    # Origins (scheme://host[:port]) besides the server's own allowed to open a WebSocket.
    allowed_origins: list[str] = Field(default_factory=list)
    # How often each node reads the stream head to catch what the bus lost.
    head_poll_seconds: float = Field(default=1.0, gt=0)
    # Slowloris guards: a request's headers must arrive within this many seconds of its first
    # byte, and an idle keep-alive connection is closed after the second figure.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_keep_alive_seconds: int = Field(default=5, ge=1)
    # An SSE stream ends after this long (the client reconnects with its cursor).
    sse_max_seconds: int = Field(default=3600, ge=10)

    # Logs: JSON lines (production) or plain text.
    log_json: bool = True
    log_level: str = "INFO"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').as_posix()}"

    @property
    def is_embedded(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"

    # -- release control plane (docs/release.md) -------------------------------------------------
    # Minimum time a release stays in each canary stage before it may be promoted (seed 004:
    # canary_1 30-60 min, canary_10 2-4 h, canary_50 12-24 h).
    release_dwell_canary_1_seconds: int = Field(default=30 * 60, ge=0)
    release_dwell_canary_10_seconds: int = Field(default=2 * 3600, ge=0)
    release_dwell_canary_50_seconds: int = Field(default=12 * 3600, ge=0)
    # Gates read the metrics since the stage began, at most this far back.
    release_window_seconds: int = Field(default=3600, ge=1)
    # Too little data is HOLD, never a pass: each cohort needs this many measured messages
    # (write receipts clients reported) and sessions (distinct reporting users).
    release_min_messages: int = Field(default=200, ge=0)
    release_min_sessions: int = Field(default=10, ge=0)
    # P1 thresholds. Rates are per client report (≈ one client, one report interval), except the
    # resync-error rate (per stream open) and the 5xx rate (per HTTP request).
    release_max_write_receipt_p95_ms: float = Field(default=1000.0, ge=0)
    release_max_forced_resync_rate: float = Field(default=0.05, ge=0)
    release_max_full_state_rate: float = Field(default=0.05, ge=0)
    release_max_resync_error_rate: float = Field(default=0.05, ge=0)
    release_max_5xx_rate: float = Field(default=0.01, ge=0)
    # Canary vs baseline, per metric (Mann-Whitney U, as Kayenta does): a regression is a canary
    # worse with p < alpha and a mean worse by more than the tolerance (0.2 = 20 %).
    release_compare_alpha: float = Field(default=0.05, gt=0, lt=1)
    release_compare_tolerance: float = Field(default=0.2, ge=0)
    # How often the watcher stores samples, announces flag changes and checks for a P0 breach
    # (a report carrying a P0 counter wakes it at once).
    release_watch_seconds: float = Field(default=5.0, gt=0)
    # POSTed a JSON body when the watcher trips the kill switch (empty: no webhook).
    release_webhook_url: str = ""
    # A kill (manual or automatic) also switches the transport to SSE-only (seed 000's rollback).
    release_kill_sse_only: bool = False
    # Metric samples older than this are deleted.
    release_sample_retention_seconds: int = Field(default=2 * 24 * 3600, ge=3600)

    # -- website live-chat widget (docs/widget.md) -----------------------------------------------
    # Global switch: off answers every /api/widget request 503 ERR_MESSENGER_DISABLED.
    messenger_enabled: bool = True
    # Privacy line and link the widget shows, unless the inbox sets its own.
    privacy_url: str = ""
    privacy_text: str = "By chatting you agree to the processing of your personal data."
    # Proxies (IPs or CIDRs) whose X-Forwarded-For is believed; from anyone else it is ignored
    # and the peer address is the client's.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Widget API rates (`limits` strings, e.g. "30/minute"); Redis-backed when PARLEY_REDIS_URL
    # is set, so every node shares them. Past one: 429 ERR_RATE_LIMITED with Retry-After.
    widget_bootstrap_rate_per_ip: str = "30/minute"
    widget_bootstrap_rate_per_token: str = "1000/minute"  # noqa: S105 - a rate, not a secret
    widget_send_rate_per_session: str = "30/minute"
    widget_send_rate_per_ip: str = "120/minute"
    widget_poll_rate_per_session: str = "120/minute"
    # Polls of one session closer together than this are refused (0: no minimum).
    widget_poll_min_interval_seconds: int = Field(default=1, ge=0, le=3600)
    # Typing notices and attachment uploads one visitor session may send.
    widget_typing_rate_per_session: str = "30/minute"
    widget_upload_rate_per_session: str = "10/minute"
    # Past this many bootstraps from one address (a `limits` string; empty: never), bootstrap
    # answers 403 ERR_CHALLENGE_REQUIRED with a proof-of-work puzzle of this many zero bits.
    widget_challenge_after_per_ip: str = "20/minute"
    widget_challenge_difficulty: int = Field(default=16, ge=1, le=32)
    # Signs stateless tokens (widget challenges). Every node of a deployment must share it;
    # empty means a random key per process, which only works with one node.
    secret_key: str = ""

    # -- live chat: routing visitor conversations to branches (docs/livechat.md) -------------------
    # The branch a conversation goes to when no inbox rule matches and the inbox names none
    # (empty: none). It must name an existing branch; /readyz says so when it does not.
    default_branch_id: int | None = Field(default=None, ge=1)
    # A MaxMind .mmdb file (GeoLite2-Country or City) for the visitor's country, which routing
    # rules can match (empty: no country lookup, `country` rules never match).
    geoip_database: str = ""

    # -- export and privacy (docs/privacy.md) ----------------------------------------------------
    # A finished export package is kept this long for download, then deleted.
    export_keep_hours: int = Field(default=72, ge=1, le=24 * 90)
    # Days messages are kept, per conversation kind (`direct`, `group`, `room`, `livechat`); a
    # kind not named keeps its messages forever. JSON: PARLEY_RETENTION_DAYS='{"livechat": 90}'.
    # An inbox's own `retention_days` wins for its conversations; a conversation under legal hold
    # is never purged. Purged messages become tombstones (their seq stays).
    retention_days: dict[str, int] = Field(default_factory=dict)
    # How often one node of the deployment runs the retention job (0: only `parley retention
    # run` or `POST /v1/admin/retention/run`).
    retention_every_hours: float = Field(default=24.0, ge=0)
    # The built-in privacy page (/privacy, linked by the widget when no privacy URL is set): who
    # is responsible for the data (controller) and where people send requests (e-mail or URL).
    privacy_controller: str = ""
    privacy_contact: str = ""
