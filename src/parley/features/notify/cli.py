"""`parley worker`, `parley push keys`, `parley notify status | dead | retry`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import start_http_server
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.audit import Target
from parley.core.notify import DeliveryStatus
from parley.features.notify.service import DropRate
from parley.logs import configure_logging
from parley.runner import cli_actor, run_with_services
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head
from parley.storage.notify import Delivery

push_app = typer.Typer(help="Web Push: VAPID keys.", no_args_is_help=True)
notify_app = typer.Typer(
    help="Notification queues: status, drop rate, dead letters.", no_args_is_help=True
)
console = Console()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@push_app.command("keys")
def push_keys(
    json_out: Annotated[bool, typer.Option("--json", help="Print the pair as JSON.")] = False,
) -> None:
    """Make a VAPID key pair for Web Push and print the settings that hold it."""
    private = ec.generate_private_key(ec.SECP256R1())
    raw_private = private.private_numbers().private_value.to_bytes(32, "big")
    public = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    pair = {"private_key": _b64url(raw_private), "public_key": _b64url(public)}
    if json_out:
        print(json.dumps(pair))
        return
    console.print(
        "Web Push keys (keep the private one secret; every node and worker needs both):",
        style="bold",
    )
    print(f"PARLEY_PUSH_VAPID_PRIVATE_KEY={pair['private_key']}")
    print(f"PARLEY_PUSH_VAPID_PUBLIC_KEY={pair['public_key']}")


def worker_command(
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this process's /metrics on 127.0.0.1:PORT.")
    ] = None,
) -> None:
    """Run the notification worker (e-mail, Web Push, Telegram) until SIGTERM/SIGINT.

    Run as many as you like on PostgreSQL (they share the work); on SQLite run one, or leave it
    to `parley serve` (PARLEY_NOTIFY_WORKER=in_process, the default).
    """
    settings = Settings()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    if settings.is_embedded:
        upgrade_to_head(settings.effective_database_url)
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1")
    asyncio.run(_work(settings))


async def _work(settings: Settings) -> None:
    services = Services.build(settings)
    worker = services.notifications.worker
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    console.print(
        f"Notification worker: channels {', '.join(sorted(worker.senders)) or 'none configured'}"
    )
    worker.start()
    try:
        await stop.wait()
    finally:
        await worker.stop()
        with contextlib.suppress(Exception):
            await services.stream.ephemeral.close()
        await services.db.dispose()


@notify_app.command("status")
def notify_status(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Queues and the drop rate per channel over PARLEY_NOTIFY_DROP_WINDOW_SECONDS."""

    async def run(services: Services) -> tuple[dict[str, int], list[DropRate]]:
        notify = services.notifications
        queues = {
            "outbox": await notify.store.count_outbox(),
            "pending": await notify.store.count_pending(),
            **await notify.store.count_by_status(),
        }
        return queues, await notify.drop_rates()

    queues, rates = run_with_services(run)
    if json_out:
        print(
            json.dumps(
                {
                    "queues": queues,
                    "drop_rates": {
                        r.channel: {
                            "sent": r.sent,
                            "dropped": r.dropped,
                            "expired": r.expired,
                            "drop_rate": r.rate,
                        }
                        for r in rates
                    },
                }
            )
        )
        return
    table = Table("queue", "rows")
    for name, count in queues.items():
        table.add_row(name, str(count))
    console.print(table)
    rate_table = Table("channel", "sent", "dropped", "expired", "drop rate")
    for r in rates:
        colour = "red" if r.rate >= 0.01 else "green"
        rate_table.add_row(
            r.channel,
            str(r.sent),
            str(r.dropped),
            str(r.expired),
            f"[{colour}]{r.rate:.2%}[/{colour}]",
        )
    console.print(rate_table)


@notify_app.command("dead")
def notify_dead(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
) -> None:
    """The newest dead letters: deliveries given up after their last attempt."""

    async def run(services: Services) -> list[Delivery]:
        return await services.notifications.store.list_deliveries(
            status=DeliveryStatus.DEAD, limit=limit
        )

    table = Table("id", "user", "channel", "subject", "attempts", "last error", "finished (UTC)")
    for d in run_with_services(run):
        table.add_row(
            str(d.id),
            str(d.user_id),
            d.channel,
            d.subject,
            str(d.attempts),
            d.last_error or "",
            d.finished_at.strftime("%Y-%m-%d %H:%M:%S") if d.finished_at else "",
        )
    console.print(table)


@notify_app.command("retry")
def notify_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead letters' ids.")] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Send dead letters again (fresh attempts), e.g. after fixing the SMTP settings."""
    if not ids and not all_dead:
        raise typer.BadParameter("name dead letters' ids (see `parley notify dead`) or --all")

    async def run(services: Services) -> int:
        from datetime import UTC, datetime

        queued = await services.notifications.store.retry_dead(
            None if all_dead else list(ids or []), datetime.now(UTC)
        )
        await services.audit.record(
            cli_actor(),
            "notify.retry_dead",
            Target.of(
                "notification_deliveries", "*" if all_dead else ",".join(map(str, ids or []))
            ),
            after={"queued": queued},
        )
        return queued

    console.print(f"{run_with_services(run)} dead letter(s) queued again")
