"""The anonymizer's rules: every text column of the schema has one (a new table without one
makes `--anonymize` refuse), and scrambling keeps shapes while the content is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from parley.features.ops.anonymize import POLICY, Scrambler, uncovered
from parley.storage.migrate import upgrade_to_head
from parley.storage.rewrite import text_columns


def test_every_text_and_json_column_of_the_schema_has_a_rule(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
    upgrade_to_head(url)

    columns = asyncio.run(text_columns(url))

    assert uncovered(columns) == []
    assert set(POLICY) <= set(columns)  # no rule names a table that does not exist


def test_a_column_without_a_rule_is_named() -> None:
    found = uncovered({"users": {"name": "text"}, "payouts": {"iban": "text", "memo": "json"}})

    assert found == ["payouts.iban", "payouts.memo"]


@given(st.text(max_size=200))
def test_scrambled_text_keeps_its_length_and_the_place_of_spaces_and_punctuation(
    text: str,
) -> None:
    scrambled = Scrambler(b"k" * 32).text(text)

    assert scrambled is not None and len(scrambled) == len(text)
    for before, after in zip(text, scrambled, strict=True):
        if before.isalpha():
            assert after.isalpha() and after.isupper() == before.isupper()
        elif before.isdigit():
            assert after.isdigit()
        else:
            assert after == before


def test_the_same_value_scrambles_the_same_within_a_run_and_differently_across_runs() -> None:
    one, two = Scrambler(), Scrambler()
    email = "ann.smith@example.com"

    assert one.text(email) == one.text(email) != email
    assert one.text(email) != two.text(email)
    assert str(one.file_name("Contract Ann.pdf")).endswith(".pdf")
    original = "https://shop.example.com/orders/ann?mail=ann@x.io"
    page = str(one.url(original))
    assert page.startswith("https://shop.example.com/") and page != original
    assert len(page) == len(original) and "?" in page and "@" in page
    assert one.external_id("crm-42") == one.external_id("crm-42") != "crm-42"
    assert one.actor("cli:ann") == "cli:operator" and one.actor("system") == "system"
