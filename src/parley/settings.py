"""Every PARLEY_* setting in one place, documented where it is declared."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class SsoProvider(BaseModel):
    """One OpenID Connect provider users may sign in with (an item of PARLEY_SSO_PROVIDERS)."""

    # Short name in URLs (/v1/auth/sso/<name>/login) and in the identities table.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    # What the sign-in button says.
    title: str = ""
    # The issuer; its /.well-known/openid-configuration is read (discovery).
    issuer: str = Field(pattern=r"^https?://")
    client_id: str = Field(min_length=1)
    client_secret: str = ""  # empty: a public client (PKCE only)
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    # A verified e-mail the provider asserts signs in as the Parley user with that e-mail.
    link_by_email: bool = True
    # Make a Parley user for an identity that matches none (off: such a sign-in gets 403).
    create_users: bool = True
    # Role mapping: the claim holding the user's groups or roles (a string or a list), and which
    # value gives which Parley role; the highest matching role wins, else `default_role`. With a
    # `role_claim` set the role is applied at every sign-in (the provider owns it).
    role_claim: str = ""
    roles: dict[str, Literal["member", "operator", "moderator", "dispute_ops", "admin"]] = Field(
        default_factory=dict
    )
    default_role: Literal["member", "operator", "moderator", "dispute_ops", "admin"] = "member"


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
    # Each node remembers who is a member of which conversation for this many seconds, so a
    # send costs no membership query (0: always ask the database). Removals reach it at once
    # (same node) or with their `conversation.updated` event (other nodes); this bounds how
    # long a lost event can leave a removed member able to send. At most `_size` entries.
    membership_cache_seconds: float = Field(default=15.0, ge=0, le=60)
    membership_cache_size: int = Field(default=50_000, ge=0, le=10_000_000)

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
    # A long poll that returns keeps its subscription on this node this long (seconds; 0: off),
    # for the same client's next poll with the cursor it was given: that poll then needs no
    # database read. A parked subscription is not an open stream (it does not count against the
    # caps above); a user has at most a few parked, the oldest is dropped.
    poll_park_seconds: float = Field(default=15.0, ge=0)
    # Largest WebSocket frame, after permessage-deflate inflation (close 1009 past it).
    ws_max_frame_bytes: int = Field(default=256 * 1024, ge=1024)
    # Offer permessage-deflate to WebSocket clients (browsers ask for it). Off by default: a
    # compressed connection holds zlib state (68 KiB per idle socket instead of 30) and every
    # event is compressed again for every connection, where uncompressed the same frame bytes
    # go to all of them. Chat events are small; turn it on for slow links that need it.
    ws_compression: bool = False
    # Origins (scheme://host[:port]) besides the server's own allowed to open a WebSocket.
    allowed_origins: list[str] = Field(default_factory=list)
    # How often each node reads the stream head to catch what the bus lost.
    head_poll_seconds: float = Field(default=1.0, gt=0)
    # Slowloris guards: a request's headers must arrive within this many seconds of its first
    # byte, and an idle keep-alive connection is closed after the second figure.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_keep_alive_seconds: int = Field(default=5, ge=1)
    # A user shows offline this long after their last stream's node stopped refreshing it (a node
    # that died or froze); each node refreshes its streams every third of it.
    presence_ttl_seconds: float = Field(default=60.0, ge=1)
    # An SSE stream ends after this long (the client reconnects with its cursor).
    sse_max_seconds: int = Field(default=3600, ge=10)

    # -- what this deployment is (GET /version, `parley preflight`, docs/operations.md) ------------
    # The git commit this deployment runs. Empty: `git rev-parse HEAD` of the checkout the
    # package was installed from (an editable install), read once at start; else "unknown".
    # Set it in images and packages built without their .git directory.
    git_sha: str = ""
    # What this deployment is for: the checks `parley preflight` and Go/No-Go apply by default.
    # Empty: "embedded" on the embedded SQLite, "production" otherwise.
    profile: Literal["", "production", "staging", "embedded"] = ""
    # The URL people reach this deployment at (https://chat.example.com): links in e-mails
    # (unsubscribe, back to a chat) use it, and preflight checks its TLS certificate (Go/No-Go
    # checks the URL it is given instead). Empty: http://HOST:PORT of this process.
    public_url: str = ""
    # The Alertmanager configuration that routes the alerts of deploy/prometheus/ (preflight
    # checks every route ends at a receiver that notifies someone). Empty: alerts go nowhere.
    alertmanager_config: str = ""
    # Preflight fails when the data directory's file system has less free space than this.
    preflight_min_free_disk_mb: int = Field(default=1024, ge=0)
    # Preflight fails when the TLS certificate of the public URL expires within this many days.
    preflight_tls_min_days: int = Field(default=14, ge=0)
    # -- reliability (docs/reliability.md) -----------------------------------------------------
    # Below this many free bytes on the attachment volume (and, embedded, the database's),
    # /readyz says "degraded" and parley_storage_nearly_full is 1: room to act before uploads
    # answer 507 ERR_STORAGE_FULL and, on the database volume, sends 503 ERR_STORAGE_FULL.
    storage_min_free_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    # How far clocks may disagree — this node's and another node's, or a site's that mints
    # identity tokens: expiries within it still pass, beyond it they are refused. Order never
    # depends on clocks (it is the stream position and seq). A node whose clock is further than
    # this from PostgreSQL's reports "clock" in /readyz (degraded) and parley_clock_offset_seconds.
    clock_skew_seconds: float = Field(default=60.0, ge=0, le=3600)
    # A stream write (WS frame, SSE chunk) that the client does not take within this many seconds
    # (it stopped reading, its network froze) aborts the connection; the client resumes with
    # its cursor. A consumer that reads, just slowly, is cut loose by PARLEY_STREAM_QUEUE_LIMIT.
    stream_send_timeout_seconds: float = Field(default=30.0, gt=0)
    # PostgreSQL: a statement (or a new connection) that gets no answer within this many seconds
    # fails with 503 (the server is paused, partitioned or overloaded) instead of hanging.
    database_timeout_seconds: float = Field(default=10.0, gt=0)

    # Logs: JSON lines (production) or plain text.
    # Every node reads the API tokens revoked since its last look this often, and closes the
    # streams opened with them (revocations also go through the bus at once; this catches what
    # the bus lost, and revocations made by the CLI). Expired tokens' streams close too.
    stream_auth_recheck_seconds: float = Field(default=10.0, gt=0)

    # Logs: JSON lines (production) or plain text. Credentials (tokens, tickets, widget sessions,
    # passwords in URLs) are masked in every line, whoever logs it.
    log_json: bool = True
    log_level: str = "INFO"

    # -- sign-in (docs/security.md) --------------------------------------------------------------
    # Password sign-in attempts (right or wrong) per account name and per client address
    # (`limits` strings; empty: no limit). Past one: 429 ERR_RATE_LIMITED with Retry-After, even
    # for the right password. Redis-backed when PARLEY_REDIS_URL is set.
    auth_login_rate_per_account: str = "10/minute"
    auth_login_rate_per_ip: str = "30/minute"

    # -- Prometheus /metrics (docs/security.md) --------------------------------------------------
    # With a token, /metrics on the API port answers `Authorization: Bearer <token>` only.
    # Without one it answers only callers on this machine (loopback, not through a proxy).
    metrics_token: str = ""
    # Also serve the metrics, without a token, on this internal listener ("127.0.0.1:9464",
    # "10.0.0.5:9464"); empty: none. `parley serve` only.
    metrics_listen: str = ""

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').as_posix()}"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def is_embedded(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"

    @property
    def effective_profile(self) -> str:
        return self.profile or ("embedded" if self.is_embedded else "production")

    # -- release control plane (docs/release.md) -------------------------------------------------
    # Minimum time a release stays in each canary stage before it may be promoted (seed 004:
    # canary_1 30-60 min, canary_10 2-4 h, canary_50 12-24 h).
    release_dwell_canary_1_seconds: int = Field(default=30 * 60, ge=0)
    release_dwell_canary_10_seconds: int = Field(default=2 * 3600, ge=0)
    release_dwell_canary_50_seconds: int = Field(default=12 * 3600, ge=0)
    # Maximum time in each canary stage (seed 004's upper bounds): from 80 % of it the gates
    # warn, past it they HOLD — a canary nobody decided on is promoted only by an override.
    release_max_canary_1_seconds: int = Field(default=3600, ge=1)
    release_max_canary_10_seconds: int = Field(default=4 * 3600, ge=1)
    release_max_canary_50_seconds: int = Field(default=24 * 3600, ge=1)
    # After `full`, the rollout is done only once this long has passed with no P0 breach and no
    # failed P1 gate in it (seed 004 §6.4: at least 24 h of closer monitoring).
    release_observe_full_seconds: int = Field(default=24 * 3600, ge=0)
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
    # Send stall (seed 004 §4.4), a P1 gate: the share of sends that failed on the server or
    # took longer than `release_send_stall_ms` to be stored and acknowledged.
    release_send_stall_ms: float = Field(default=5000.0, gt=0)
    release_max_send_stall_rate: float = Field(default=0.01, ge=0)
    # Canary vs baseline, per metric (Mann-Whitney U, as Kayenta does): a regression is a canary
    # worse with p < alpha and a mean worse by more than the tolerance (0.2 = 20 %).
    release_compare_alpha: float = Field(default=0.05, gt=0, lt=1)
    release_compare_tolerance: float = Field(default=0.2, ge=0)
    # How often the watcher stores samples, announces flag changes and checks for a P0 breach
    # (a report carrying a P0 counter wakes it at once).
    release_watch_seconds: float = Field(default=5.0, gt=0)
    # POSTed a JSON body when the watcher trips the kill switch or raises a P0 alert (empty: no
    # webhook). A secret in it (Slack-style URLs) never reaches a log line: only its host does.
    release_webhook_url: str = ""
    # Client reports are claims: a kill needs a P0 counter reported by at least this many
    # distinct users in the window. Fewer is an alert (webhook, log, metric) and a HOLD.
    release_p0_min_reporters: int = Field(default=3, ge=1)
    # How often one user may send POST /v1/stream/report (a `limits` string; empty: no limit).
    release_report_rate_per_user: str = "30/minute"
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
    # Proxies (IPs or CIDRs) whose X-Forwarded-For (and X-Forwarded-Proto) is believed; from
    # anyone else, loopback included, it is ignored and the peer address is the client's. Every
    # limit, log line and GeoIP lookup uses that one address.
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
    # Each node keeps inboxes, branches, admins and widget sessions this long. A change made on a
    # serving node drops every node's copy at once (on the bus); one made elsewhere (the CLI) shows
    # within this time. 0: no cache.
    livechat_cache_seconds: float = Field(default=2.0, ge=0, le=60)

    # -- moderation (docs/moderation.md) -------------------------------------------------------
    # Each node caches the filter rules and active sanctions, and checks this often whether another
    # node (or the CLI) changed them; changes made on a node apply there at once.
    moderation_refresh_seconds: float = Field(default=2.0, gt=0, le=60)
    # An external classifier that `classifier` rules ask for a score (POST JSON, answers
    # {"score": 0..1}); empty: no classifier, and `classifier` rules cannot be created.
    moderation_classifier_url: str = ""
    # Sent to the classifier as `Authorization: Bearer ...` when set; never logged.
    moderation_classifier_token: str = ""
    # A classifier slower than this counts as failed (the rule's `on_error` decides).
    moderation_classifier_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # Release gate P1: open moderation queue items (reports + held sends) above this hold the
    # rollout (seed 000: "auto-filter and manual escalation work").
    release_max_moderation_backlog: int = Field(default=100, ge=0)

    # -- disputes (docs/disputes.md) -----------------------------------------------------------
    # SLA per status: how long a dispute may stay open, collecting evidence, and in review before
    # it is overdue (the scheduler fires once per deadline, across restarts and nodes).
    dispute_sla_open_seconds: int = Field(default=24 * 3600, ge=1)
    dispute_sla_evidence_seconds: int = Field(default=72 * 3600, ge=1)
    dispute_sla_review_seconds: int = Field(default=48 * 3600, ge=1)
    # The scheduler sleeps until the next deadline, but at most this long (deadlines set by
    # other nodes are seen within it).
    dispute_scheduler_seconds: float = Field(default=5.0, gt=0, le=300)
    # Every dispute transition is POSTed here (signed, retried); empty: no webhook.
    dispute_webhook_url: str = ""
    # HMAC-SHA256 key of the `X-Parley-Signature` header; required with a webhook URL.
    dispute_webhook_secret: str = ""
    # Deliveries are retried with exponential backoff (1 s doubling, at most 1 h) this many times.
    dispute_webhook_max_attempts: int = Field(default=12, ge=1, le=100)
    dispute_webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Release gate P1 (seed 000: "no overdue disputes"): more overdue disputes than this hold.
    release_max_overdue_disputes: int = Field(default=0, ge=0)
    # -- notifications: e-mail, Web Push, Telegram (docs/notifications.md) -------------------------
    # Where the notification worker runs: "in_process" (every `parley serve`, the embedded
    # default) or "external" (only `parley worker` processes; serve nodes just write the outbox).
    notify_worker: str = Field(default="in_process", pattern=r"^(in_process|external)$")
    # A member hears of a message they have not read within this many seconds and are not online
    # for; then at most one notification per this many seconds (the rest wait and become a
    # digest); messages older than the last figure are no longer worth a notification.
    notify_delay_seconds: float = Field(default=60.0, ge=0)
    notify_digest_seconds: float = Field(default=300.0, ge=0)
    notify_max_age_seconds: float = Field(default=24 * 3600.0, gt=0)
    # Sends are retried with exponential backoff from this many seconds (full jitter, capped at an
    # hour); after this many failed attempts a delivery is dead-lettered (counted as dropped).
    notify_retry_base_seconds: float = Field(default=5.0, gt=0)
    notify_max_attempts: int = Field(default=6, ge=1, le=50)
    # How often an idle worker looks for work, how much it takes per round, how many sends it has
    # in flight at once, and how long a claimed send is its own before another worker retries it.
    notify_poll_seconds: float = Field(default=1.0, gt=0)
    # After a round that found work but less than a batch: the wait before the next round.
    notify_gather_seconds: float = Field(default=0.25, ge=0, le=10)
    notify_batch: int = Field(default=200, ge=1, le=10_000)
    notify_concurrency: int = Field(default=20, ge=1, le=500)
    notify_lease_seconds: float = Field(default=60.0, gt=0)
    # The drop rate on /metrics and in the release gates covers deliveries finished this recently.
    notify_drop_window_seconds: int = Field(default=3600, ge=60)

    # E-mail over SMTP. Empty host: no e-mail channel. tls: "starttls" (port 587), "tls"
    # (implicit TLS, port 465) or "none" (a local relay only).
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_tls: str = Field(default="starttls", pattern=r"^(starttls|tls|none)$")
    smtp_username: str = ""
    smtp_password: str = ""
    # A CA bundle to trust for the SMTP server's certificate (empty: the system's).
    smtp_ca_file: str = ""
    smtp_from: str = "Parley <parley@localhost>"
    smtp_timeout_seconds: float = Field(default=20.0, gt=0)

    # Web Push (VAPID): the key pair `parley push keys` prints, and the contact push services may
    # write to about this sender. Empty private key: no push channel.
    push_vapid_private_key: str = ""
    push_vapid_public_key: str = ""
    push_vapid_subject: str = "mailto:admin@localhost"
    # Hosts a browser's push subscription may point at ("*.example.com" for subdomains): the push
    # services of Chrome, Firefox, Safari and Edge. Parley posts only there (no SSRF through a
    # made-up endpoint); plain http is accepted for a loopback host only (tests).
    push_endpoint_hosts: list[str] = Field(
        default_factory=lambda: [
            "fcm.googleapis.com",
            "*.push.services.mozilla.com",
            "*.push.apple.com",
            "*.notify.windows.com",
        ]
    )
    # How long a push service keeps an undelivered notification (the TTL header), in seconds.
    push_ttl_seconds: int = Field(default=24 * 3600, ge=0)

    # Telegram Bot API: the bot's token (from @BotFather; empty: no Telegram channel), the API's
    # base URL (tests point it at a local server), and the chat that gets operational alerts
    # (release kill switch, P0 breach; empty: none).
    telegram_bot_token: str = ""
    telegram_api_url: str = "https://api.telegram.org"
    telegram_alert_chat_id: str = ""
    telegram_timeout_seconds: float = Field(default=10.0, gt=0)

    # Release gate P1: the most notifications (per channel) that may be dropped, as a rate.
    release_max_notification_drop_rate: float = Field(default=0.01, ge=0)
    # -- calls: WebRTC signalling and ICE servers (docs/calls.md) ---------------------------------
    # An offer nobody answers within this many seconds becomes a missed call.
    calls_ring_seconds: int = Field(default=45, ge=1, le=600)
    # An active call still going after this long is ended (a tab that vanished mid-call must not
    # keep its device busy forever).
    calls_max_seconds: int = Field(default=4 * 3600, ge=60)
    # How often each node ends unanswered and over-long calls. Their deadlines are stored, so any
    # node ends them, also after a restart.
    calls_sweep_seconds: float = Field(default=1.0, gt=0)
    # STUN servers handed to clients by GET /v1/calls/config, e.g. ["stun:turn.example.com:3478"].
    calls_stun_urls: list[str] = Field(default_factory=list)
    # TURN servers, e.g. ["turn:turn.example.com:3478?transport=udp", "turns:...:5349"], and the
    # secret they share with Parley (coturn: use-auth-secret, static-auth-secret=...). Clients get
    # time-limited credentials (TURN REST API): username "<expiry unix time>:<user id>", password
    # base64(HMAC-SHA1(secret, username)); the secret itself never leaves the server.
    calls_turn_urls: list[str] = Field(default_factory=list)
    calls_turn_secret: str = ""
    # How long the TURN credentials handed out stay valid.
    calls_turn_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # -- single sign-on: OpenID Connect (docs/sso.md) -------------------------------------------
    # The providers, as a JSON list of objects (see SsoProvider above for the fields), e.g.
    # [{"name": "corp", "title": "Corp SSO", "issuer": "https://id.corp.example",
    #   "client_id": "parley", "client_secret": "...", "role_claim": "groups",
    #   "roles": {"chat-admins": "admin"}}]
    sso_providers: list[SsoProvider] = Field(default_factory=list)
    # PARLEY_PUBLIC_URL (declared above) also makes the redirect URI registered at each provider:
    # <public_url>/v1/auth/sso/<name>/callback. Empty: taken from each request's own URL.
    # How long a sign-in may spend at the provider before its state expires.
    sso_login_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    # Leeway for the ID token's times (exp, iat) against this server's clock.
    sso_clock_leeway_seconds: int = Field(default=60, ge=0, le=600)
    # Name and password sign-in (POST /v1/auth/login). Turn it off where everyone signs in with
    # SSO; API tokens from `parley user token` keep working either way.
    password_login: bool = True
    # -- operations: maintenance, backups, deploys, alerts (docs/operations.md) --------------------
    # How often each node re-reads the maintenance switch (a runtime setting shared by every node
    # through the database, so `parley maintenance on` from any host reaches all of them).
    maintenance_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Retry-After (seconds) a 503 carries during maintenance, unless `--retry-after` says otherwise.
    maintenance_retry_after_seconds: int = Field(default=300, ge=1, le=86_400)
    # Where `parley backup` writes (one folder per backup). Empty: `<data_dir>/backups`.
    # Keep it on another disk, and copy it off the host (docs/operations.md).
    backup_dir: Path | None = None
    # Rotation after each `parley backup` (and `parley backup rotate`): keep the newest backup of
    # each of the last N days, of each of the last N ISO weeks and of each of the last N months.
    # The newest backup and the newest pre-deploy backup are always kept.
    backup_keep_daily: int = Field(default=7, ge=1)
    backup_keep_weekly: int = Field(default=4, ge=0)
    backup_keep_monthly: int = Field(default=6, ge=0)
    # Preflight: the newest verified backup must be younger than this, and (staging profile) the
    # newest anonymized dump younger than the second figure (seed 000: staging ≤ 7 days old).
    backup_max_age_hours: float = Field(default=24.0, gt=0)
    staging_dump_max_age_days: float = Field(default=7.0, gt=0)
    # `parley deploy` on a single host (deploy/systemd): the git checkout it moves between refs,
    # the URL its smoke test reaches, and the shell-free commands of each step ({repo}, {python},
    # {url} are filled in). The release log goes to `<repo>/.deploy/release-log.tsv`.
    deploy_repo: Path = Path("/opt/parley")
    deploy_url: str = "http://127.0.0.1:8000"
    deploy_install_command: str = "{python} -m pip install --quiet --editable {repo}"
    deploy_migrate_command: str = "{python} -m parley migrate up"
    deploy_restart_command: str = "systemctl restart parley.service"
    deploy_stop_command: str = "systemctl stop parley.service"
    deploy_smoke_command: str = "{python} -m parley smoke {url}"
    # How long a restarted service has to answer /readyz 200 before the deploy counts as failed.
    deploy_ready_timeout_seconds: float = Field(default=60.0, gt=0)
    # POSTed a JSON summary after every deploy and rollback (the team's chat or incident hook);
    # empty: nobody is told but the release log.
    deploy_webhook_url: str = ""
    # `parley alerts test` posts a test alert here (Alertmanager's /api/v2/alerts, or any
    # receiver's webhook). Empty: give --url.
    alerts_webhook_url: str = ""

    @property
    def effective_backup_dir(self) -> Path:
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

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
