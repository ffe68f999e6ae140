"""The `parley` command: serve and manage users; every feature adds its commands below."""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from parley.assembly import Services
from parley.core.audit import Target
from parley.core.models import Role
from parley.logs import configure_logging
from parley.metrics import serve_metrics
from parley.runner import cli_actor, run_with_services
from parley.settings import Settings
from parley.storage.migrate import upgrade_to_head
from parley.transports.http import header_deadline_protocol
from parley.transports.ws import expose_protocol

app = typer.Typer(
    help="Parley: self-hosted chat with release safety built in.", no_args_is_help=True
)
user_app = typer.Typer(help="Manage users and their tokens.", no_args_is_help=True)
app.add_typer(user_app, name="user")
console = Console()
T = TypeVar("T")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address [PARLEY_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [PARLEY_PORT].")] = None,
    demo: Annotated[
        bool | None,
        typer.Option("--demo/--no-demo", help="Seed alice & bob for / and a demo admin (printed)."),
    ] = None,
    migrate: Annotated[
        bool, typer.Option(help="Apply migrations first (always on for the embedded SQLite).")
    ] = False,
) -> None:
    """Run the server (embedded SQLite + in-process bus unless PARLEY_DATABASE_URL is set)."""
    overrides = {
        k: v for k, v in {"host": host, "port": port, "demo": demo}.items() if v is not None
    }
    settings = Settings(**overrides)
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    if settings.is_embedded or migrate:
        upgrade_to_head(settings.effective_database_url)
    from parley.api.routes.demo import DEMO_ADMIN, DEMO_ADMIN_PASSWORD
    from parley.app import create_app

    if settings.demo:
        base = f"http://{settings.host}:{settings.port}"
        console.print(f"Demo: open {base}/ (alice / bob)", markup=False)
        # A demo account on purpose: printed once to the terminal, never to the log.
        console.print(
            f"Demo admin: sign in at {base}/admin/release as {DEMO_ADMIN} / {DEMO_ADMIN_PASSWORD}",
            markup=False,
        )
    app_instance = create_app(settings)
    config = uvicorn.Config(
        expose_protocol(app_instance),
        host=settings.host,
        port=settings.port,
        log_config=None,
        ws_max_size=settings.ws_max_frame_bytes,
        ws_per_message_deflate=settings.ws_compression,
        http=header_deadline_protocol(
            settings.http_header_timeout_seconds, settings.stream_send_timeout_seconds
        ),
        timeout_keep_alive=settings.http_keep_alive_seconds,
        timeout_graceful_shutdown=10,
        # Whatever FORWARDED_ALLOW_IPS says: only PARLEY_TRUSTED_PROXIES (in create_app) may set
        # the client address. uvicorn's default would believe any local process.
        proxy_headers=False,
        server_header=False,
        access_log=False,  # ours (parley.access) logs route templates, never query strings
    )
    if settings.metrics_listen:
        serve_metrics(settings.metrics_listen)
    DrainingServer(config, app_instance).run()


class DrainingServer(uvicorn.Server):
    """On SIGTERM/SIGINT, first tell every stream to move (WS close 1012, SSE/poll end)."""

    def __init__(self, config: uvicorn.Config, app_instance: Any) -> None:
        super().__init__(config)
        self.app_instance = app_instance

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self.app_instance.state, "services", None)
        if services is not None:
            # A signal handler may interrupt the loop anywhere: let the loop run the drain.
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_soon_threadsafe(services.stream.drain)
        super().handle_exit(sig, frame)


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Login name: letters, digits, '.', '_', '-'.")],
    role: Annotated[Role, typer.Option(help="Deployment-wide role.")] = Role.MEMBER,
    internal: Annotated[
        bool, typer.Option(help="An internal (staff) user: dark launches.")
    ] = False,
    password: Annotated[str | None, typer.Option(help="Allow password login too.")] = None,
    email: Annotated[
        str | None, typer.Option(help="Their e-mail: single sign-on with it verified links here.")
    ] = None,
) -> None:
    """Create a user and print an API token for them (shown once)."""

    async def run(services: Services) -> str:
        user = await services.identity.do_create_user(
            name, role=role, internal=internal, password=password, email=email
        )
        await services.audit.record(
            cli_actor(),
            "user.create",
            Target.of("user", user.id),
            after={"name": user.name, "role": user.role, "internal": user.internal},
        )
        return await services.identity.do_issue_token(user, label="cli")

    token = run_with_services(run)
    console.print(f"Created user [bold]{name}[/bold] ({role.value}). API token (shown once):")
    print(token)


@user_app.command("token")
def user_token(name: Annotated[str, typer.Argument(help="An existing user.")]) -> None:
    """Issue a new API token for an existing user."""

    async def run(services: Services) -> str:
        users = await services.identity.users.find_users_by_name([name])
        if not users:
            raise typer.BadParameter(f"no user named {name!r}; create one with `parley user add`")
        token = await services.identity.do_issue_token(users[0], label="cli")
        await services.audit.record(cli_actor(), "user.token_issue", Target.of("user", users[0].id))
        return token

    print(run_with_services(run))


@user_app.command("list")
def user_list() -> None:
    """List users."""

    async def run(services: Services) -> Table:
        table = Table("id", "name", "display name", "role", "internal", "disabled", "created (UTC)")
        for user in await services.identity.users.list_users():
            if user.visitor:
                continue  # website visitors: `parley inbox` shows their conversations
            table.add_row(
                str(user.id),
                user.name,
                user.display_name,
                user.role.value,
                "yes" if user.internal else "",
                "yes" if user.disabled else "",
                user.created_at.strftime("%Y-%m-%d %H:%M"),
            )
        return table

    console.print(run_with_services(run))


def main() -> None:
    app()


_STREAMS_NOTE = (
    "Every token of the user is revoked; the servers close their streams within "
    "PARLEY_STREAM_AUTH_RECHECK_SECONDS."
)


@user_app.command("role")
def user_role(
    name: Annotated[str, typer.Argument(help="An existing user.")],
    role: Annotated[Role, typer.Argument(help="The new deployment-wide role.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
) -> None:
    """Change a user's role (audited); they sign in again (tokens revoked, streams closed)."""

    async def run(services: Services) -> str:
        user = await services.identity.access_user(name)
        await services.identity.do_set_role(user, role, actor=cli_actor(), reason=reason)
        return Role(user.role).value

    before = run_with_services(run)
    console.print(f"[bold]{name}[/bold]: {before} → {role.value}. {_STREAMS_NOTE}")


@user_app.command("disable")
def user_disable(name: Annotated[str, typer.Argument(help="An existing user.")]) -> None:
    """Disable a user: no sign-in, every token revoked, every stream closed."""

    async def run(services: Services) -> None:
        user = await services.identity.access_user(name)
        await services.identity.do_set_disabled(user, True, actor=cli_actor())

    run_with_services(run)
    console.print(f"[bold]{name}[/bold] is disabled. {_STREAMS_NOTE}")


@user_app.command("enable")
def user_enable(name: Annotated[str, typer.Argument(help="A disabled user.")]) -> None:
    """Let a disabled user sign in again (their old tokens stay revoked)."""

    async def run(services: Services) -> None:
        user = await services.identity.access_user(name)
        await services.identity.do_set_disabled(user, False, actor=cli_actor())

    run_with_services(run)
    console.print(f"[bold]{name}[/bold] may sign in again.")


@user_app.command("password")
def user_password(
    name: Annotated[str, typer.Argument(help="An existing user.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="The new password (asked for when not given; 8+ characters).",
        ),
    ],
) -> None:
    """Set a user's password; every token of theirs is revoked (sign in again everywhere)."""

    async def run(services: Services) -> None:
        user = await services.identity.access_user(name)
        await services.identity.do_set_password(user, password, actor=cli_actor())

    run_with_services(run)
    console.print(f"Password of [bold]{name}[/bold] changed. {_STREAMS_NOTE}")


@user_app.command("add-many")
def user_add_many(
    prefix: Annotated[str, typer.Argument(help="Names are PREFIX-0, PREFIX-1, ...")],
    count: Annotated[int, typer.Argument(min=1, max=100_000, help="How many users.")],
    json_out: Annotated[
        bool, typer.Option("--json", help='Print {"users": [{id, name, token}]} as JSON.')
    ] = False,
) -> None:
    """Create many users with a token each, in one go (load tests: `parley bench`)."""

    async def run(services: Services) -> list[tuple[Any, str]]:
        names = [f"{prefix}-{i}" for i in range(count)]
        return await services.identity.do_create_users(names, label="bench")

    created = run_with_services(run)
    if json_out:
        import json

        rows = [{"id": user.id, "name": user.name, "token": token} for user, token in created]
        print(json.dumps({"users": rows}))
    else:
        for user, token in created:
            print(f"{user.name} {token}")


from parley.bench.command import HELP as BENCH_HELP  # noqa: E402 - appended command
from parley.bench.command import bench as bench_command  # noqa: E402

app.command("bench", help=BENCH_HELP)(bench_command)

from parley.features.release.cli import (  # noqa: E402 - appended commands
    gonogo_command,
    release_app,
    smoke_command,
)

app.add_typer(release_app, name="release")
app.command("gonogo")(gonogo_command)
app.command("smoke")(smoke_command)

from parley.features.inbox.cli import inbox_app  # noqa: E402

app.add_typer(inbox_app, name="inbox")

from parley.features.livechat.cli import branch_app  # noqa: E402

app.add_typer(branch_app, name="branch")

from parley.features.audit.cli import audit_app  # noqa: E402

app.add_typer(audit_app, name="audit")
from parley.features.ops.preflight_cli import preflight_command  # noqa: E402

app.command("preflight")(preflight_command)
from parley.features.notify.cli import notify_app, push_app, worker_command  # noqa: E402

app.add_typer(push_app, name="push")
app.add_typer(notify_app, name="notify")
app.command("worker")(worker_command)

from parley.features.moderation.cli import moderation_app  # noqa: E402

app.add_typer(moderation_app, name="moderation")

from parley.features.disputes.cli import disputes_app  # noqa: E402

app.add_typer(disputes_app, name="disputes")
from parley.features.calls.cli import calls_app  # noqa: E402

app.add_typer(calls_app, name="calls")

from parley.features.sso.cli import sso_app  # noqa: E402

app.add_typer(sso_app, name="sso")

from parley.features.ops.cli import (  # noqa: E402
    alerts_app,
    backup_app,
    deploy_app,
    maintenance_app,
    migrate_app,
    restore_command,
    rollback_command,
)

app.add_typer(migrate_app, name="migrate")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(backup_app, name="backup")
app.command("restore")(restore_command)
app.add_typer(deploy_app, name="deploy")
app.command("rollback")(rollback_command)
app.add_typer(alerts_app, name="alerts")

from parley.features.export.cli import export_app  # noqa: E402

app.add_typer(export_app, name="export")

from parley.features.privacy.cli import privacy_app  # noqa: E402

app.add_typer(privacy_app, name="privacy")
