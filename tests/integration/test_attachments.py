"""Attachments over REST: sniffed types, safe downloads, size limits, and who may use them."""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from parley.settings import Settings
from tests.conftest import PeopleFactory, Person, create_conversation

MAX_BYTES = 1024

# `attachment; filename="<printable ASCII, no quote or backslash>"; filename*=UTF-8''<pct-encoded>`
DISPOSITION = re.compile(
    r"(?P<kind>inline|attachment); "
    r'filename="(?P<fallback>[\x20\x21\x23-\x5b\x5d-\x7e]+)"; '
    r"filename\*=UTF-8''(?P<encoded>[A-Za-z0-9%!#$&+.^_`|~-]+)"
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"attachment_max_bytes": MAX_BYTES})


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = tiny_png()
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
JS = b"fetch('/v1/conversations').then(r => r.text()).then(alert)\n"


def upload_url(cid: int) -> str:
    return f"/v1/conversations/{cid}/attachments"


async def upload(
    person: Person,
    cid: int,
    content: bytes,
    name: str = "file.bin",
    declared: str = "application/octet-stream",
) -> httpx.Response:
    """Upload as a browser would (httpx percent-encodes quotes and control characters)."""
    return await person.http.post(upload_url(cid), files={"file": (name, content, declared)})


async def upload_raw_name(person: Person, cid: int, content: bytes, name: str) -> httpx.Response:
    """Upload with `name` written into the multipart header as is, only quote-escaped."""
    boundary = "parley-test-boundary"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{escaped}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return await person.http.post(
        upload_url(cid),
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


async def uploaded(person: Person, cid: int, content: bytes, name: str = "f.bin") -> dict[str, Any]:
    response = await upload(person, cid, content, name)
    assert response.status_code == 201, response.text
    return response.json()


async def send(
    person: Person, cid: int, client_msg_id: str, attachments: list[str]
) -> httpx.Response:
    return await person.http.post(
        f"/v1/conversations/{cid}/messages",
        json={"client_msg_id": client_msg_id, "body": "see attached", "attachments": attachments},
    )


def stored_files(settings: Settings) -> list[Path]:
    root = settings.attachments_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_safe_disposition(header: str, stored_name: str) -> str:
    """The header cannot be split or misparsed, and `filename*` names the stored file exactly."""
    assert "\r" not in header and "\n" not in header
    match = DISPOSITION.fullmatch(header)
    assert match, header
    assert unquote(match["encoded"], errors="strict") == stored_name
    assert "%" not in match["fallback"]  # some browsers percent-decode the fallback
    return match["kind"]


# Sniffing ------------------------------------------------------------------------------------


async def test_upload_answers_with_metadata_and_sha256(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    response = await upload(alice, cid, PNG, "pixel.png", "image/png")

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("att_")
    assert body == {
        "id": body["id"],
        "file_name": "pixel.png",
        "content_type": "image/png",
        "size": len(PNG),
        "sha256": hashlib.sha256(PNG).hexdigest(),
    }


async def test_png_named_txt_is_sniffed_as_png(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    body = (await upload(alice, cid, PNG, "notes.txt", "text/plain")).json()

    assert body["content_type"] == "image/png"


@pytest.mark.parametrize(
    "content",
    [
        HTML,
        b"  \n<HTML><body>hi</body></HTML>",
        b"\xef\xbb\xbf<!DOCTYPE html><title>x</title>",
        b"<!-- a comment --><html></html>",
        b"<body onload=alert(1)>",
        b"<iframe src=javascript:alert(1)></iframe>",
        b"<script>alert(1)</script>",
    ],
    ids=["doctype", "uppercase", "bom", "comment", "body", "iframe", "script"],
)
async def test_html_declared_as_png_is_sniffed_as_html(
    people: PeopleFactory, content: bytes
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    body = (await upload(alice, cid, content, "cat.png", "image/png")).json()

    assert body["content_type"] == "text/html"


async def test_svg_is_sniffed_as_svg(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    body = (await upload(alice, cid, SVG, "logo.png", "image/png")).json()

    assert body["content_type"] == "image/svg+xml"


# Serving -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "name"),
    [(HTML, "page.html"), (HTML, "cat.png"), (SVG, "logo.svg"), (JS, "app.js"), (JS, "a.txt")],
    ids=["html", "html-named-png", "svg", "js", "js-named-txt"],
)
async def test_active_content_is_never_served_inline(
    people: PeopleFactory, content: bytes, name: str
) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    attachment = await uploaded(alice, cid, content, name)

    response = await bob.http.get(f"/v1/attachments/{attachment['id']}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    kind = assert_safe_disposition(response.headers["content-disposition"], name)
    assert kind == "attachment"
    assert response.content == content


@pytest.mark.parametrize(("content", "content_type"), [(PNG, "image/png"), (GIF, "image/gif")])
async def test_images_are_served_inline_with_their_sniffed_type(
    people: PeopleFactory, content: bytes, content_type: str
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)
    attachment = await uploaded(alice, cid, content, "picture")

    response = await alice.http.get(f"/v1/attachments/{attachment['id']}")

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert assert_safe_disposition(response.headers["content-disposition"], "picture") == "inline"
    assert response.content == content


async def test_downloaded_bytes_equal_uploaded_bytes(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    content = bytes(range(256)) * 4  # every byte value, exactly the size limit
    attachment = await uploaded(alice, cid, content, "blob.bin")

    response = await bob.http.get(f"/v1/attachments/{attachment['id']}")

    assert response.status_code == 200
    assert response.content == content
    assert hashlib.sha256(response.content).hexdigest() == attachment["sha256"]
    assert response.headers["content-length"] == str(len(content))


# File names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("C:\\Users\\eve\\report.pdf", "report.pdf"),
        ("/absolute/path.txt", "path.txt"),
        ("..", "file"),
        ("", "file"),
    ],
)
async def test_stored_file_name_never_contains_a_path(
    people: PeopleFactory, settings: Settings, sent: str, stored: str
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    response = await upload_raw_name(alice, cid, b"hello", sent)

    assert response.status_code == 201, response.text
    assert response.json()["file_name"] == stored
    root = settings.attachments_dir.resolve()
    files = stored_files(settings)
    assert len(files) == 1
    assert files[0].resolve().is_relative_to(root)
    assert files[0].name == response.json()["id"]


@pytest.mark.parametrize(
    "name",
    [
        'say "hi".txt',
        "semi;colon, comma.txt",
        "back\\slash",
        "tab\there.txt",
        "nul\x00byte.txt",
        "del\x7fchar.txt",
        "next\x85line\u2028sep\u2029para.txt",
        "bidi\u202etxt.exe",
        "100% done.txt",
        "résumé 日本語 📎.pdf",
        "only unicode 日本語",
        "x" * 1000 + ".txt",
        "日" * 400,
    ],
)
async def test_content_disposition_is_safe_for_any_file_name(
    people: PeopleFactory, name: str
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    response = await upload_raw_name(alice, cid, b"plain words", name)

    assert response.status_code == 201, response.text
    stored = response.json()["file_name"]
    assert stored and len(stored) <= 255
    assert not any(c in stored for c in '/\\"\x00\t\x7f\x85\u2028\u2029\u202e')
    download = await alice.http.get(f"/v1/attachments/{response.json()['id']}")
    assert_safe_disposition(download.headers["content-disposition"], stored)


@pytest.mark.parametrize("name", ["evil\r\nSet-Cookie: a=b.txt", 'quote".txt', "a\rb\nc.txt"])
async def test_browser_encoded_file_name_cannot_inject_headers(
    people: PeopleFactory, name: str
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)
    attachment = await uploaded(alice, cid, b"plain words", name)

    response = await alice.http.get(f"/v1/attachments/{attachment['id']}")

    assert "set-cookie" not in response.headers
    assert_safe_disposition(response.headers["content-disposition"], attachment["file_name"])


async def test_unicode_file_name_round_trips_through_filename_star(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)
    attachment = await uploaded(alice, cid, PNG, "café 🐈.png")

    response = await alice.http.get(f"/v1/attachments/{attachment['id']}")

    assert attachment["file_name"] == "café 🐈.png"
    header = response.headers["content-disposition"]
    assert "filename*=UTF-8''caf%C3%A9%20%F0%9F%90%88.png" in header
    assert assert_safe_disposition(header, "café 🐈.png") == "inline"


# Limits --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MAX_BYTES + 1, 200 * 1024])
async def test_upload_over_the_size_limit_is_refused_and_leaves_no_file(
    people: PeopleFactory, settings: Settings, size: int
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    response = await upload(alice, cid, b"x" * size, "big.bin")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "ERR_PAYLOAD_TOO_LARGE"
    assert stored_files(settings) == []


async def test_upload_of_exactly_the_size_limit_is_accepted(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    response = await upload(alice, cid, b"x" * MAX_BYTES, "full.bin")

    assert response.status_code == 201
    assert response.json()["size"] == MAX_BYTES


async def test_empty_file_is_refused_and_leaves_no_file(
    people: PeopleFactory, settings: Settings
) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    response = await upload(alice, cid, b"", "empty.txt")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ERR_VALIDATION"
    assert stored_files(settings) == []


# Who may use an attachment -------------------------------------------------------------------


async def test_non_member_cannot_upload(people: PeopleFactory, settings: Settings) -> None:
    alice, eve = await people.add(), await people.add()
    cid = await create_conversation(alice)

    response = await upload(eve, cid, PNG, "x.png")

    assert response.status_code == 404
    assert stored_files(settings) == []


async def test_non_member_download_looks_like_a_missing_attachment(
    people: PeopleFactory,
) -> None:
    alice, eve = await people.add(), await people.add()
    cid = await create_conversation(alice)
    attachment = await uploaded(alice, cid, PNG, "private.png")

    as_stranger = await eve.http.get(f"/v1/attachments/{attachment['id']}")
    missing = await eve.http.get("/v1/attachments/att_doesnotexist0000000000")

    assert as_stranger.status_code == 404
    assert (as_stranger.status_code, as_stranger.json()) == (missing.status_code, missing.json())
    assert "private" not in as_stranger.text


async def test_removed_member_can_no_longer_download(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    attachment = await uploaded(alice, cid, PNG, "x.png")
    assert (await bob.http.get(f"/v1/attachments/{attachment['id']}")).status_code == 200

    await alice.http.delete(f"/v1/conversations/{cid}/members/{bob.user.id}")

    assert (await bob.http.get(f"/v1/attachments/{attachment['id']}")).status_code == 404


async def test_message_lists_its_attachments_with_metadata(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    picture = await uploaded(alice, cid, PNG, "pixel.png")
    notes = await uploaded(alice, cid, b"some notes\n", "notes.txt")

    response = await send(alice, cid, "m1", [picture["id"], notes["id"]])

    assert response.status_code == 201, response.text
    expected = [
        {key: a[key] for key in ("id", "file_name", "content_type", "size")}
        for a in (picture, notes)
    ]
    assert response.json()["attachments"] == expected
    page = (await bob.http.get(f"/v1/conversations/{cid}/messages")).json()
    assert page["messages"][0]["attachments"] == expected


async def test_attachment_from_another_conversation_is_unavailable(
    people: PeopleFactory,
) -> None:
    alice, bob = await people.add(), await people.add()
    first = await create_conversation(alice, bob)
    second = await create_conversation(alice, bob)
    attachment = await uploaded(alice, first, PNG, "x.png")

    response = await send(alice, second, "m1", [attachment["id"]])

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ERR_ATTACHMENT_UNAVAILABLE"
    page = (await alice.http.get(f"/v1/conversations/{second}/messages")).json()
    assert page["messages"] == []


async def test_another_members_attachment_cannot_be_reused(people: PeopleFactory) -> None:
    alice, bob = await people.add(), await people.add()
    cid = await create_conversation(alice, bob)
    attachment = await uploaded(alice, cid, PNG, "x.png")

    response = await send(bob, cid, "m1", [attachment["id"]])

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ERR_ATTACHMENT_UNAVAILABLE"


async def test_unknown_attachment_id_is_unavailable(people: PeopleFactory) -> None:
    alice = await people.add()
    cid = await create_conversation(alice)

    response = await send(alice, cid, "m1", ["att_doesnotexist0000000000"])

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "ERR_ATTACHMENT_UNAVAILABLE"
