"""The Go/No-Go record as Markdown (for people and the release log) and JSON (for machines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parley.features.release.gonogo import Verdict


def markdown(verdict: Verdict) -> str:
    data = verdict.to_json()
    lines = [
        f"# Go/No-Go: {_cell(verdict.url)}",
        "",
        f"**Decision: {verdict.decision}** — {data['timestamp_utc']} (UTC)",
        "",
    ]
    if data["approval"] is not None:
        approval = data["approval"]
        lines += [
            "## Approval record",
            "",
            "| field | value |",
            "| --- | --- |",
            f"| Release Owner | {_cell(approval['release_owner']) or '—'} |",
            f"| Rollback Owner | {_cell(approval['rollback_owner']) or '—'} |",
            f"| Target ref | {_cell(approval['target_ref']) or '—'} |",
            f"| Rollback ref | {_cell(approval['rollback_ref']) or '—'} |",
            f"| Decision | {verdict.decision} |",
            f"| Timestamp UTC | {data['timestamp_utc']} |",
            "",
        ]
    if verdict.reasons:
        lines += ["## Why NO-GO", ""]
        lines += [f"- {_line(reason)}" for reason in verdict.reasons]
        lines.append("")
    lines += ["## Automated checks", "", "| check | result | evidence |", "| --- | --- | --- |"]
    for check in data["checks"]:
        lines.append(
            f"| {_cell(check['title'])} | **{check['result']}** | {_cell(check['evidence'])} |"
        )
    gates = next((c["values"] for c in data["checks"] if c["name"] == "gates"), None)
    if gates and "gates" in gates:
        lines += ["", *_gate_table(gates["gates"])]
    lines += [
        "",
        "Any failed check, a missing owner sign-off, an undefined rollback ref or a target off "
        "the main branch is an automatic NO-GO (seed 002 §8.2).",
        "",
    ]
    return "\n".join(lines)


def _gate_table(gates: dict[str, Any]) -> list[str]:
    lines = [
        f"## Release gates (stage {gates['stage']}, decision {gates['rollout_decision']})",
        "",
        "| gate | check | ok | value | baseline | threshold | detail |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for check in gates["checks"]:
        ok = {True: "yes", False: "**no**", None: "waiting"}[check["ok"]]
        lines.append(
            f"| {check['gate']} | {check['name']} | {ok} | {_cell(check['value'])} | "
            f"{_cell(check['baseline'])} | {_cell(check['threshold'])} | {_cell(check['detail'])} |"
        )
    return lines


def write(verdict: Verdict, out_dir: Path) -> tuple[Path, Path]:
    """Write `gonogo-<UTC>.md` and `.json` into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"gonogo-{verdict.at.strftime('%Y%m%dT%H%M%SZ')}"
    md_path, json_path = stem.with_suffix(".md"), stem.with_suffix(".json")
    md_path.write_text(markdown(verdict))
    json_path.write_text(json.dumps(verdict.to_json(), indent=2) + "\n")
    return md_path, json_path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        value = f"{value:.4g}"
    return _line(str(value)).replace("|", "\\|")


def _line(text: str) -> str:
    return " ".join(text.split())
