"""`parley export conversation ID`: a conversation's package, built here with a progress bar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from parley.assembly import Services
from parley.core.errors import NotFound
from parley.core.exports import ExportJob, ExportStatus
from parley.runner import cli_actor, run_with_services

export_app = typer.Typer(
    help="Export packages: README, messages.csv, attachments/, metadata.json.",
    no_args_is_help=True,
)
console = Console()

OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Where to write the ZIP [default: its name, here].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the job as JSON when done.")]


async def run_job(services: Services, job: ExportJob, out: Path | None) -> tuple[ExportJob, Path]:
    """Build `job` now with a progress bar on stderr, and copy the ZIP to `out`."""
    progress = Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("export", total=None)
        done = await services.exports.run(
            job, on_progress=lambda n, total: progress.update(task, completed=n, total=total)
        )
    if done.status is not ExportStatus.DONE:
        console.print(f"[red]ERR_EXPORT_FAILED[/red]: {done.error}")
        raise typer.Exit(1)
    found = await services.exports.open_download(cli_actor(), done)
    target = out or Path(done.file_name)
    shutil.copyfile(found.path, target)
    return done, target


def report(job: ExportJob, target: Path, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "id": job.id,
                    "kind": job.kind.value,
                    "subject_id": job.subject_id,
                    "file": str(target),
                    "size": job.size,
                    "sha256": job.sha256,
                    "messages": job.done,
                }
            )
        )
        return
    console.print(
        f"Wrote [bold]{target}[/bold]: {job.done} messages, {job.size} bytes, sha256 {job.sha256}"
    )


@export_app.command("conversation")
def export_conversation(
    conversation_id: Annotated[int, typer.Argument(min=1, help="The conversation's id.")],
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write one conversation's export package (recorded in the audit log)."""

    async def run(services: Services) -> tuple[ExportJob, Path]:
        if await services.exports.store.get_conversation(conversation_id) is None:
            raise NotFound(f"no conversation {conversation_id}; `parley` lists none by that id")
        job = await services.exports.do_request_conversation(cli_actor(), conversation_id)
        return await run_job(services, job, out)

    job, target = run_with_services(run)
    report(job, target, json_out)
