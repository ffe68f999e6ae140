"""`parley release ...`: the rollout and the flags from a terminal, as readable tables.

Works on the database directly (like `parley user`), so it works with every node down too;
running nodes announce the changes to their clients within `PARLEY_RELEASE_WATCH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from parley.core.rollout import HistoryEntry, RolloutState
from parley.features.release.gates import GateReport
from parley.runner import run_with_services

release_app = typer.Typer(
    help="Roll the release through its stages, watch the gates, kill it; manage flags.",
    no_args_is_help=True,
)
console = Console()
T = TypeVar("T")

Actor = Annotated[str, typer.Option(help="Who is acting, for the log [default: cli:$USER].")]
Reason = Annotated[str, typer.Option(help="Why, for the state and the decision log.")]
Owner = Annotated[str, typer.Option(help="The owner approving this step [default: the actor].")]


def _actor(actor: str) -> str:
    return actor or f"cli:{getpass.getuser()}"


# -- reading ------------------------------------------------------------------------------------


@release_app.command("status")
def status() -> None:
    """The rollout state: stage, percentage, kill switch, reason, actor, times (UTC)."""
    console.print(state_table(run_with_services(lambda s: s.release.rollout.get_state())))


@release_app.command("gates")
def gates(
    json_out: Annotated[bool, typer.Option("--json", help="Print the gate JSON.")] = False,
) -> None:
    """Release gates from live metrics per cohort, and the decision (PROCEED | HOLD | ROLLBACK)."""
    report = run_with_services(lambda s: s.release.rollout.compute_gates())
    if json_out:
        print(json.dumps(report.snapshot(), indent=2))
        return
    print_gates(report)


@release_app.command("history")
def history(
    limit: Annotated[int, typer.Argument(min=1, max=10_000, help="How many, newest first.")] = 20,
) -> None:
    """The decision log: UTC time, from → to, decision, override, owner, actor, reason."""
    console.print(history_table(run_with_services(lambda s: s.release.rollout.list_history(limit))))


@release_app.command("export")
def export(
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """State, gates and the whole decision log as one JSON document."""
    text = json.dumps(run_with_services(lambda s: s.release.rollout.export()), indent=2)
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n")
        console.print(f"Wrote {out}")


# -- moving -------------------------------------------------------------------------------------


@release_app.command("promote")
def promote(
    owner: Owner = "",
    reason: Reason = "",
    override: Annotated[
        bool, typer.Option(help="Promote even though the decision is not PROCEED (logged).")
    ] = False,
    actor: Actor = "",
) -> None:
    """One stage forward — only when the gates say PROCEED (or with a logged --override)."""
    state, report = run_with_services(
        lambda s: s.release.rollout.do_promote(
            _actor(actor), owner=owner, reason=reason, override=override
        )
    )
    console.print(f"Decision was [bold]{report.rollout_decision}[/bold].")
    console.print(state_table(state))


@release_app.command("hold")
def hold(reason: Reason = "", actor: Actor = "") -> None:
    """Back to canary_1 for investigation; the kill switch stays as it is."""
    state, _ = run_with_services(lambda s: s.release.rollout.do_hold(_actor(actor), reason=reason))
    console.print(state_table(state))


@release_app.command("kill")
def kill(reason: Reason = "", actor: Actor = "") -> None:
    """Kill switch on: back to canary_1 and the release off for everyone."""
    state, _ = run_with_services(lambda s: s.release.rollout.do_kill(_actor(actor), reason=reason))
    console.print(state_table(state))


@release_app.command("resume")
def resume(reason: Reason = "", owner: Owner = "", actor: Actor = "") -> None:
    """Kill switch off again (stays at canary_1)."""
    state, _ = run_with_services(
        lambda s: s.release.rollout.do_resume(_actor(actor), reason=reason, owner=owner)
    )
    console.print(state_table(state))


@release_app.command("abort")
def abort(reason: Reason = "", actor: Actor = "") -> None:
    """Switch the release off entirely (stage off, 0 %)."""
    state, _ = run_with_services(lambda s: s.release.rollout.do_abort(_actor(actor), reason=reason))
    console.print(state_table(state))


# -- flags --------------------------------------------------------------------------------------


@release_app.command("flags")
def flags() -> None:
    """Every feature flag and its rules."""
    table = Table("flag", "on", "internal only", "percentage", "by", "roles", "allow", "updated")
    for flag in run_with_services(lambda s: s.release.flags.list_flags()):
        table.add_row(
            flag.key,
            "[green]on[/green]" if flag.enabled else "off",
            "yes" if flag.internal_only else "",
            "" if flag.percentage is None else f"{flag.percentage} %",
            flag.stickiness.value if flag.percentage is not None else "",
            ", ".join(sorted(flag.roles)),
            ", ".join([*map(str, sorted(flag.allow_users)), *sorted(flag.allow_keys)]),
            f"{_utc(flag.updated_at)} by {flag.updated_by}" if flag.updated_at else "",
        )
    console.print(table)


@release_app.command("flag")
def flag(
    key: Annotated[str, typer.Argument(help="The flag to change.")],
    on: Annotated[bool | None, typer.Option("--on/--off", help="Switch it.")] = None,
    percent: Annotated[
        int | None, typer.Option(min=0, max=100, help="Share of keys it is on for.")
    ] = None,
    no_percent: Annotated[bool, typer.Option(help="Drop the percentage rule.")] = False,
    by: Annotated[str | None, typer.Option(help="Bucket by user|contract|inbox|room.")] = None,
    internal_only: Annotated[
        bool | None, typer.Option("--internal-only/--everyone", help="Dark launch.")
    ] = None,
    roles: Annotated[str | None, typer.Option(help="Comma-separated roles ('' for any).")] = None,
    allow_users: Annotated[
        str | None, typer.Option(help="Comma-separated user ids always on.")
    ] = None,
    allow_keys: Annotated[
        str | None, typer.Option(help="Comma-separated contract/inbox/room keys always on.")
    ] = None,
    actor: Actor = "",
) -> None:
    """Change a flag's rules (chat_full_release's size belongs to the rollout)."""
    changes: dict[str, Any] = {}
    if on is not None:
        changes["enabled"] = on
    if percent is not None or no_percent:
        changes["percentage"] = None if no_percent else percent
    if by is not None:
        changes["stickiness"] = by
    if internal_only is not None:
        changes["internal_only"] = internal_only
    if roles is not None:
        changes["roles"] = _split(roles)
    if allow_users is not None:
        changes["allow_users"] = [int(u) for u in _split(allow_users)]
    if allow_keys is not None:
        changes["allow_keys"] = _split(allow_keys)
    if not changes:
        raise typer.BadParameter("say what to change (see --help)")
    changed = run_with_services(
        lambda s: s.release.flags.do_update_flag(_actor(actor), key, changes)
    )
    console.print(f"[bold]{changed.key}[/bold] is now {'on' if changed.enabled else 'off'}.")


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# -- rendering ----------------------------------------------------------------------------------


def state_table(state: RolloutState) -> Table:
    table = Table("release", "stage", "share", "kill switch", "reason", "actor", "changed (UTC)")
    table.add_row(
        state.release,
        f"[bold]{state.stage}[/bold]",
        f"{state.stage.percentage} %",
        "[red]ON[/red]" if state.killed else "off",
        state.reason,
        state.actor,
        _utc(state.changed_at),
    )
    return table


def print_gates(report: GateReport) -> None:
    colour = {"PROCEED": "green", "HOLD": "yellow", "ROLLBACK": "red"}[report.rollout_decision]
    console.print(
        f"Stage [bold]{report.stage}[/bold]"
        f"{' (kill switch ON)' if report.killed else ''}, window since "
        f"{_utc(report.window_start)}: decision [bold {colour}]{report.rollout_decision}"
        f"[/bold {colour}]"
    )
    summary = Table("gate", "ok")
    for name, ok in (
        ("gate_p0_ok", report.gate_p0_ok),
        ("gate_p1_ok", report.gate_p1_ok),
        ("gate_rollout_ok", report.gate_rollout_ok),
    ):
        summary.add_row(name, _mark(ok))
    console.print(summary)
    table = Table("gate", "ok", "value", "baseline", "threshold", "detail")
    table.add_column("check", no_wrap=True)
    table.columns.insert(1, table.columns.pop())
    for check in report.checks:
        table.add_row(
            check.gate,
            check.name,
            _mark(check.ok),
            _value(check.value),
            _value(check.baseline),
            _value(check.threshold),
            check.detail,
        )
    console.print(table)
    cohorts = Table("cohort", "reports", "sessions", "messages", "write_receipt_p95_ms")
    for name, summary_row in report.cohorts.items():
        cohorts.add_row(
            name,
            str(summary_row["reports"]),
            str(summary_row["sessions"]),
            str(summary_row["messages"]),
            _value(summary_row["write_receipt_p95_ms"]),
        )
    console.print(cohorts)
    for reason in report.reasons:
        console.print(f"• {reason}", markup=False)


def history_table(entries: list[HistoryEntry]) -> Table:
    table = Table(
        "#", "at (UTC)", "action", "from → to", "kill", "decision", "owner", "actor", "reason"
    )
    for e in entries:
        table.add_row(
            str(e.id),
            _utc(e.at),
            f"{e.action.value} refused" if e.refused else e.action.value,
            f"{e.from_stage} → {e.to_stage}",
            "ON" if e.killed else "",
            f"{e.decision}{' (override)' if e.override else ''}",
            e.owner,
            e.actor,
            e.reason,
        )
    return table


def _mark(ok: bool | None) -> str:
    return {True: "[green]✔ yes[/green]", False: "[red]✘ no[/red]", None: "… waiting"}[ok]


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _utc(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


# -- Go/No-Go and smoke (against a live deployment over HTTP) -----------------------------------

SenderToken = Annotated[
    str,
    typer.Option(
        "--token", envvar="PARLEY_SMOKE_TOKEN", help="API token of the smoke sender account."
    ),
]
ReceiverToken = Annotated[
    str,
    typer.Option(
        "--peer-token",
        envvar="PARLEY_SMOKE_PEER_TOKEN",
        help="API token of the smoke receiver account.",
    ),
]


def gonogo_command(
    url: Annotated[str, typer.Option(help="The deployment, e.g. https://chat.example.com")],
    token: SenderToken,
    peer_token: ReceiverToken,
    admin_token: Annotated[
        str,
        typer.Option(
            envvar="PARLEY_ADMIN_TOKEN",
            help="An admin's token: the release gates and the deployment's configuration.",
        ),
    ] = "",
    profile: Annotated[
        str,
        typer.Option(
            help="production | staging | embedded [default: production for a non-loopback "
            "URL, else what the deployment says it is]."
        ),
    ] = "",
    release_owner: Annotated[str, typer.Option(help="Who signs off this release.")] = "",
    rollback_owner: Annotated[str, typer.Option(help="Who rolls back if it goes wrong.")] = "",
    incident_owner: Annotated[
        str, typer.Option(help="On-duty owner of incident comms (release log, channel).")
    ] = "",
    qa: Annotated[str, typer.Option(help="QA sign-off (required in production).")] = "",
    product: Annotated[str, typer.Option(help="Product sign-off (required in production).")] = "",
    legal: Annotated[str, typer.Option(help="Legal sign-off (required in production).")] = "",
    target_ref: Annotated[
        str, typer.Option(help="What ships: a ref or SHA, or BRANCH@SHA (origin/main@de48a78).")
    ] = "",
    rollback_ref: Annotated[str, typer.Option(help="The known-good commit to roll back to.")] = "",
    main_ref: Annotated[
        str, typer.Option(help="The target must be on (an ancestor of) this ref ('' for any).")
    ] = "origin/main",
    repo: Annotated[
        Path, typer.Option(help="The git checkout that resolves the refs (fetch it first).")
    ] = Path(),
    test_deploy_sha: Annotated[
        str, typer.Option(help="The commit last deployed to test (for the record).")
    ] = "",
    result: Annotated[
        list[str] | None,
        typer.Option(help="AREA=PASS|FAIL[:evidence] run elsewhere, e.g. web_e2e=PASS:ci/123."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="NAME=REASON: leave a check or area out, with the reason on record."),
    ] = None,
    blocker: Annotated[
        list[str] | None, typer.Option(help="A known blocker (any makes it NO-GO).")
    ] = None,
    recheck: Annotated[
        str, typer.Option(help="When a NO-GO is checked again (UTC, ISO 8601) [default: +1 day].")
    ] = "",
    burst: Annotated[int, typer.Option(min=5, max=2000, help="Messages of the canary burst.")] = 30,
    tls_min_days: Annotated[
        int, typer.Option(min=0, help="Fail when the URL's certificate expires sooner.")
    ] = 14,
    out: Annotated[Path, typer.Option(help="Directory for the Markdown + JSON report.")] = Path(),
) -> None:
    """Go/No-Go: the seeds' automated checks against a live deployment; writes the record.

    Exits 0 on GO, 1 on NO-GO. Any failed or unrun check, a missing sign-off, a target off the
    main ref, another commit deployed or a known blocker is an automatic NO-GO.
    """
    from parley.features.release import gonogo, report

    if profile not in ("", "production", "staging", "embedded"):
        raise typer.BadParameter("production, staging or embedded", param_hint="--profile")
    target = gonogo.Target(
        url.rstrip("/"), token, peer_token, admin_token, profile, burst, tls_min_days
    )
    sign_off = gonogo.SignOff(release_owner, rollback_owner, incident_owner, qa, product, legal)
    plan = gonogo.Plan(
        target_ref=target_ref,
        rollback_ref=rollback_ref,
        main_ref=main_ref,
        repo=repo,
        test_deploy_sha=test_deploy_sha,
        results=dict(_result(item) for item in result or []),
        excluded=dict(_pair(item, "--exclude") for item in exclude or []),
        blockers=tuple(b for b in blocker or [] if b.strip()),
        recheck=_when(recheck) if recheck else None,
    )
    verdict = asyncio.run(gonogo.gonogo(target, sign_off, plan))
    md_path, json_path = report.write(verdict, out)
    _print_verdict(verdict)
    console.print(f"Report: {md_path} and {json_path}")
    raise typer.Exit(0 if verdict.go else 1)


def _pair(item: str, option: str) -> tuple[str, str]:
    name, _, value = item.partition("=")
    if not name.strip() or not value.strip():
        raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=option)
    return name.strip(), value.strip()


def _result(item: str) -> tuple[str, tuple[str, str]]:
    name, value = _pair(item, "--result")
    outcome, _, evidence = value.partition(":")
    if outcome.upper() not in ("PASS", "FAIL"):
        raise typer.BadParameter(f"{name}: PASS or FAIL, got {outcome!r}", param_hint="--result")
    return name, (outcome.upper(), evidence.strip() or "no evidence given")


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"not an ISO 8601 time: {text!r}", param_hint="--recheck"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def smoke_command(
    url: Annotated[str, typer.Argument(help="The deployment, e.g. https://chat.example.com")],
    token: SenderToken,
    peer_token: ReceiverToken,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fast smoke: health, delivery (WS/SSE/poll), receipts, reconnect, SSO, calls. 1 on FAIL."""
    from parley.features.release import gonogo

    verdict = asyncio.run(gonogo.smoke(gonogo.Target(url.rstrip("/"), token, peer_token)))
    if json_out:
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        _print_verdict(verdict, labels=("PASS", "FAIL"))
    raise typer.Exit(0 if verdict.go else 1)


RESULT_COLOURS = {"PASS": "green", "FAIL": "red", "SKIP": "red", "WARN": "yellow"}


def _print_verdict(verdict: Any, labels: tuple[str, str] = ("GO", "NO-GO")) -> None:
    table = Table("check", "result", "evidence")
    for check in verdict.checks:
        word = check.status.value
        colour = RESULT_COLOURS.get(word, "dim")
        table.add_row(check.title, f"[{colour}]{word}[/{colour}]", check.evidence)
    console.print(table)
    word = labels[0] if verdict.go else labels[1]
    colour = "green" if verdict.go else "red"
    console.print(f"Decision: [bold {colour}]{word}[/bold {colour}]")
    for reason in verdict.reasons:
        console.print(f"• {reason}", markup=False)
    if verdict.reasons and getattr(verdict, "recheck_at", None):
        console.print(f"Re-check: {verdict.recheck_at:%Y-%m-%d %H:%M} UTC")
