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
        f"**Decision: {verdict.decision}** — {data['timestamp_utc']} (UTC), "
        f"{data['profile']} profile",
        "",
    ]
    if data["approval"] is not None:
        lines += _approval(data)
    if data["areas"]:
        lines += [
            "## Smoke areas (seed 002 §8.3)",
            "",
            "| area | result | from |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {area} | **{row['result']}** | {_cell(row['why'])} |"
            for area, row in data["areas"].items()
        ]
        lines.append("")
    if verdict.reasons:
        lines += ["## Why NO-GO", ""]
        lines += [f"- {_line(reason)}" for reason in verdict.reasons]
        recheck = "(default: a day later; set --recheck)" if not data["recheck_given"] else ""
        lines += ["", f"Re-check: **{data['recheck_utc']}** {recheck}".rstrip(), ""]
    if data["excluded"]:
        lines += ["## Excluded, with the reason", ""]
        lines += [f"- {item['name']}: {_line(item['reason'])}" for item in data["excluded"]]
        lines.append("")
    lines += ["## Known blockers", ""]
    lines += [f"- {_line(b)}" for b in data["blockers"]] or ["- none declared"]
    lines += ["", "## Automated checks", "", "| check | result | evidence |", "| --- | --- | --- |"]
    for check in data["checks"]:
        lines.append(
            f"| {_cell(check['title'])} (`{check['name']}`) | **{check['result']}** | "
            f"{_cell(check['evidence'])} |"
        )
    gates = next((c["values"] for c in data["checks"] if c["name"] == "gates"), None)
    if gates and "gates" in gates:
        lines += ["", *_gate_table(gates["gates"])]
    if data["probe"]:
        lines += ["", *_probe(data["probe"])]
    lines += [
        "",
        "Any failed or unrun check, a missing owner sign-off, an undefined rollback ref, a "
        "target off the main branch or another commit deployed is an automatic NO-GO "
        "(seed 002 §8.2).",
        "",
    ]
    return "\n".join(lines)


def _approval(data: dict[str, Any]) -> list[str]:
    approval = data["approval"]
    rows = [
        ("Release Owner", approval["release_owner"]),
        ("Rollback Owner", approval["rollback_owner"]),
        ("Incident Comms Owner", approval["incident_comms_owner"]),
        ("QA sign-off", approval["qa_signoff"]),
        ("Product sign-off", approval["product_signoff"]),
        ("Legal sign-off", approval["legal_signoff"]),
        ("Target ref", _ref(approval["target_ref"], approval["target_sha"])),
        ("Main ref", approval["main_ref"]),
        ("Deployed SHA", approval["deployed_sha"]),
        ("Last test deploy SHA", approval["last_test_deploy_sha"]),
        ("Rollback ref", _ref(approval["rollback_ref"], approval["rollback_sha"])),
        ("Decision", data["decision"]),
        ("Timestamp UTC", data["timestamp_utc"]),
    ]
    lines = ["## Approval record (seed 002 §7)", "", "| field | value |", "| --- | --- |"]
    lines += [f"| {label} | {_cell(value) or '—'} |" for label, value in rows]
    return [*lines, ""]


def _ref(given: str, sha: str | None) -> str:
    if not given:
        return ""
    return f"{given} ({sha[:12]})" if sha else f"{given} (unresolved)"


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


def _probe(probe: dict[str, Any]) -> list[str]:
    wrote, trimmed = probe.get("wrote", {}), probe.get("trimmed", {})
    lines = [
        "## What this run wrote",
        "",
        f"Probe conversation {probe.get('conversation_id') or '—'}: "
        f"{wrote.get('messages', 0)} messages, {len(wrote.get('attachments', []))} attachments "
        f"({', '.join(wrote.get('attachments', [])) or 'none'}), "
        f"{wrote.get('client_reports', 0)} client report round(s).",
    ]
    if "error" in trimmed:
        lines.append(f"Trim: {_line(trimmed['error'])}")
    elif trimmed:
        lines.append(
            f"Trimmed to seq {trimmed['kept_from_seq']} onwards: deleted "
            f"{trimmed['deleted_messages']} older messages and {trimmed['deleted_attachments']} "
            "attachments."
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
